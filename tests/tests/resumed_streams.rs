//! Resumed streams against a scripted tool server that ends a call's POST
//! stream before answering and answers (or not) on a later GET stream:
//! the end passes through untouched, the answer on the resumed stream is
//! recorded before the agent sees it (and taints), a call never answered
//! is recorded as timed out, and a server that answers on a GET stream what
//! nothing waits for — or answers twice — gets nothing past the sidecar.

#![allow(clippy::unwrap_used)]

use aegis_e2e::mcp::{McpAnswer, McpClient, call, result_text};
use aegis_e2e::scripted::{self, SESSION, Scripted, event, text_answer};
use aegis_e2e::{Sidecar, run, wait_for};
use http::Method;
use serde_json::{Value, json};

/// `fetch_page` and `slow_page` taint; `write_file` is a sink. `slow_page`'s
/// timeout is short (the test of it waits for the record, never for time).
const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: resumption
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo, fetch_page, slow_page, write_file]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000, timeout_ms: 60000,
            max_output_bytes: 4096}
policy:
  high_risk_sinks: [write_file]
  non_tainting_tools: [echo]
"#;

async fn start(manifest: &str) -> (Sidecar, Scripted, McpClient) {
    let upstream = Scripted::start().await;
    let sidecar =
        aegis_e2e::mcp::sidecar_in_front_of("tools", &upstream.url, manifest, |_| {}).await;
    let client = McpClient::new(sidecar.running.mcp_addr().unwrap(), "/mcp/tools")
        .with_header("mcp-session-id", SESSION);
    (sidecar, upstream, client)
}

async fn resume(client: &McpClient, last: &str) -> McpAnswer {
    client
        .send(Method::GET, Vec::new(), &[("last-event-id", last)])
        .await
}

async fn events(sidecar: &Sidecar) -> Vec<Value> {
    sidecar.http.session_events("default", "default").await
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

async fn metric(sidecar: &Sidecar, outcome: &str) -> f64 {
    let sample = format!("aegis_mcp_resumed_answers_total{{outcome=\"{outcome}\"}}");
    sidecar.http.metric(&sample).await.unwrap()
}

#[test]
fn the_resumed_answer_is_recorded_before_the_agent_gets_it_and_taints() {
    run(async {
        let (sidecar, upstream, client) = start(MANIFEST).await;
        let first = client
            .post(&call(
                7,
                "fetch_page",
                json!({"url": "https://example.com"}),
            ))
            .await;
        // The end passes through untouched: the priming event, no -32603.
        assert_eq!(first.status, 200);
        assert_eq!(first.body, "id: 1\ndata: \n\n", "{first:?}");
        assert_eq!(
            sidecar.http.metric("aegis_mcp_awaiting_resumption").await,
            Some(1.0)
        );
        let answer = text_answer(&json!(7), scripted::INJECTION);
        upstream.queue_stream(vec![event(2, &answer)]);
        let resumed = resume(&client, "1").await;
        assert_eq!(upstream.gets(), [Some("1".to_owned())]);
        let got = resumed.answer(&json!(7));
        assert_eq!(result_text(&got), scripted::INJECTION);
        let all = events(&sidecar).await;
        let results = of_type(&all, "TOOL_RESULT");
        assert_eq!(results.len(), 1, "{all:#?}");
        assert_eq!(results[0]["payload"]["tool_name"], "fetch_page");
        assert_eq!(results[0]["payload"]["call_id"], 7);
        assert_eq!(metric(&sidecar, "settled").await, 1.0);
        assert_eq!(
            sidecar.http.metric("aegis_mcp_awaiting_resumption").await,
            Some(0.0)
        );
        // Tainted: the sink is refused and never reaches the server.
        let denied = client
            .call(8, "write_file", json!({"path": "/tmp/x", "text": "y"}))
            .await;
        assert!(
            result_text(&denied).starts_with("Denied by policy (TAINTED_TO_HIGH_RISK)"),
            "{denied}"
        );
        assert_eq!(upstream.ran("write_file"), 0);

        // The client resumes from before the answer: the same answer again.
        upstream.queue_stream(vec![event(2, &answer)]);
        let again = resume(&client, "1").await;
        assert_eq!(result_text(&again.answer(&json!(7))), scripted::INJECTION);
        assert_eq!(metric(&sidecar, "replayed").await, 1.0);
        // A different answer under the settled id is not relayed.
        let other = text_answer(&json!(7), "a second, different answer");
        upstream.queue_stream(vec![event(2, &other)]);
        let swapped = resume(&client, "1").await;
        assert!(swapped.messages().is_empty(), "{swapped:?}");
        assert_eq!(of_type(&events(&sidecar).await, "TOOL_RESULT").len(), 1);
    });
}

#[test]
fn an_answer_over_the_limit_on_a_resumed_stream_is_withheld() {
    run(async {
        let (sidecar, upstream, client) = start(MANIFEST).await;
        client.post(&call(3, "fetch_page", json!({}))).await;
        let big = "x".repeat(8192);
        upstream.queue_stream(vec![event(2, &text_answer(&json!(3), &big))]);
        let resumed = resume(&client, "1").await;
        let got = resumed.answer(&json!(3));
        assert_eq!(got["result"]["isError"], true, "{got}");
        assert!(
            result_text(&got).starts_with("Result withheld by policy"),
            "{got}"
        );
        assert!(!String::from_utf8_lossy(&resumed.body).contains(&big));
        let all = events(&sidecar).await;
        let results = of_type(&all, "TOOL_RESULT");
        assert_eq!(results[0]["payload"]["withheld"], true, "{all:#?}");
    });
}

#[test]
fn answers_on_a_get_stream_for_nothing_waiting_are_dropped() {
    run(async {
        let (sidecar, upstream, client) = start(MANIFEST).await;
        // No request waits: a hostile server answers one anyway (an id the
        // client might have pending on an open POST), beside a notification
        // and a batch holding an answer.
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                          "params": {"level": "info", "data": "hello"}});
        let batch = json!([text_answer(&json!(5), "batched"), note.clone()]);
        upstream.queue_stream(vec![
            event(1, &text_answer(&json!(5), scripted::INJECTION)),
            event(2, &note),
            event(3, &batch),
        ]);
        let stream = resume(&client, "0").await;
        assert_eq!(stream.messages(), [note], "{stream:?}");
        assert_eq!(metric(&sidecar, "dropped").await, 2.0);
        assert!(of_type(&events(&sidecar).await, "TOOL_RESULT").is_empty());
        // The session is not tainted by what never reached the agent.
        let wrote = client
            .call(6, "write_file", json!({"path": "/tmp/x"}))
            .await;
        assert_eq!(result_text(&wrote), "ran write_file", "{wrote}");
    });
}

#[test]
fn a_call_whose_answer_never_arrives_is_recorded_as_timed_out() {
    run(async {
        let manifest = MANIFEST.replace("timeout_ms: 60000", "timeout_ms: 200");
        let (sidecar, upstream, client) = start(&manifest).await;
        let first = client.post(&call(4, "slow_page", json!({}))).await;
        assert_eq!(first.body, "id: 1\ndata: \n\n");
        // No resumed stream brings the answer: the call's deadline records it.
        let raised = wait_for("the call's timeout to be recorded", || async {
            let all = events(&sidecar).await;
            of_type(&all, "ERROR_RAISED").first().map(|e| (*e).clone())
        })
        .await;
        assert_eq!(raised["payload"]["error"], "timeout", "{raised}");
        assert_eq!(raised["payload"]["tool_name"], "slow_page");
        // A late answer is replaced by the timed-out tool error.
        upstream.queue_stream(vec![event(2, &text_answer(&json!(4), "too late"))]);
        let late = resume(&client, "1").await;
        let got = late.answer(&json!(4));
        assert!(
            result_text(&got).starts_with("Timed out by policy"),
            "{got}"
        );
        assert!(of_type(&events(&sidecar).await, "TOOL_RESULT").is_empty());
    });
}

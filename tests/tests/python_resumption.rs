//! Stream resumption with the official Python SDK 2.3.0 on both ends: the
//! server (`MCPServer` with an event store) ends a call's POST stream
//! before answering, and the client (`mcp.Client`) reconnects with GET and
//! `Last-Event-ID` to get the answer — the official conformance fixture's
//! `test_reconnection`. Direct, and through the sidecar, the client
//! completes the call; through the sidecar the ledger holds the call's
//! `TOOL_RESULT` (recorded from the resumed stream) and the session is
//! tainted by it: the next high-risk call is denied and never runs.

#![allow(clippy::unwrap_used)]

use aegis_e2e::python::{self, ClientOpts, Mode, PyServer, Sdk, ServerOpts, run_client, step};

use serde_json::json;

/// `answer_after_reconnect` taints (it is not exempt); `write_note` is a
/// high-risk sink.
const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: python-resumption
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo, answer_after_reconnect, write_note]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000, timeout_ms: 60000}
policy:
  high_risk_sinks: [write_note]
  non_tainting_tools: [echo]
"#;

fn run_py<F: std::future::Future<Output = ()>>(body: F) {
    python::prepare(&[Sdk::V2]);
    aegis_e2e::run_within(python::TEST_TIMEOUT, body);
}

fn script() -> serde_json::Value {
    json!([
        step::call("echo", json!({"text": "before"})),
        step::call("answer_after_reconnect", json!({"text": "resumed"})),
        step::call("write_note", json!({"text": "after"})),
    ])
}

#[test]
fn direct_the_client_resumes_the_stream_and_gets_the_answer() {
    run_py(async {
        let server = PyServer::start(Sdk::V2, ServerOpts::sse().event_store()).await;
        let out = run_client(
            Sdk::V2,
            &server.url,
            &ClientOpts::mode(Mode::Handshake),
            &script(),
        )
        .await;
        assert!(out.get("error").is_none(), "{out:#}");
        let steps = out["steps"].as_array().unwrap();
        assert_eq!(steps[1]["is_error"], false, "{out:#}");
        assert_eq!(steps[1]["text"], "after reconnecting: resumed", "{out:#}");
        assert_eq!(steps[2]["text"], "noted: after", "{out:#}");
        assert_eq!(server.calls("answer_after_reconnect").await, 1);
    });
}

#[test]
fn through_the_sidecar_the_resumed_answer_is_recorded_and_taints() {
    run_py(async {
        let server = PyServer::start(Sdk::V2, ServerOpts::sse().event_store()).await;
        let sidecar =
            aegis_e2e::mcp::sidecar_in_front_of("py", &server.url, MANIFEST, |_| {}).await;
        let url = format!("http://{}/mcp/py", sidecar.running.mcp_addr().unwrap());
        let out = run_client(Sdk::V2, &url, &ClientOpts::mode(Mode::Handshake), &script()).await;
        assert!(out.get("error").is_none(), "{out:#}");
        let steps = out["steps"].as_array().unwrap();
        for s in &steps[..2] {
            assert!(s.get("error").is_none(), "a step failed: {s:#}");
        }
        assert_eq!(steps[0]["text"], "before", "{out:#}");
        // The call completes as it does direct: no -32603 from the sidecar.
        assert_eq!(steps[1]["is_error"], false, "{out:#}");
        assert_eq!(steps[1]["text"], "after reconnecting: resumed", "{out:#}");
        // Its result tainted the session: the sink is refused.
        assert_eq!(steps[2]["is_error"], true, "{out:#}");
        let text = steps[2]["text"].as_str().unwrap();
        assert!(
            text.starts_with("Denied by policy (TAINTED_TO_HIGH_RISK)"),
            "{text}"
        );
        assert_eq!(server.calls("answer_after_reconnect").await, 1);
        assert_eq!(server.calls("write_note").await, 0);

        // The principal's one session (the default scope).
        let events = sidecar.http.session_events("default", "default").await;
        let result = events
            .iter()
            .find(|e| {
                e["event_type"] == "TOOL_RESULT"
                    && e["payload"]["tool_name"] == "answer_after_reconnect"
            })
            .unwrap_or_else(|| panic!("no TOOL_RESULT for the resumed call: {events:#?}"));
        assert_eq!(result["payload"]["is_error"], false);
        let kept = result["payload"]["result"].to_string();
        assert!(kept.contains("after reconnecting: resumed"), "{kept}");
        assert!(
            !events.iter().any(|e| e["event_type"] == "ERROR_RAISED"),
            "{events:#?}"
        );
        let settled = sidecar
            .http
            .metric("aegis_mcp_resumed_answers_total{outcome=\"settled\"}")
            .await;
        assert_eq!(settled, Some(1.0));
    });
}

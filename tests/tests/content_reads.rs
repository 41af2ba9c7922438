//! Resources and prompts are inputs too: a `resources/read` or
//! `prompts/get` answer carries a tool server's text into the model, so it
//! is recorded (`TOOL_RESULT` with `source`) and taints the session — the
//! next high-risk call is denied and never reaches the server — unless the
//! manifest trusts it (`policy.trusted_content`). A resource embedded in a
//! tool result taints even when the tool's own results do not.

#![allow(clippy::unwrap_used)]

use aegis_e2e::mcp::{McpClient, result_text};
use aegis_e2e::scripted::{INJECTION, Scripted};
use aegis_e2e::{Sidecar, run};
use serde_json::{Value, json};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: content-reads
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo, embed_resource, write_file]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000}
policy:
  high_risk_sinks: [write_file]
  non_tainting_tools: [echo, embed_resource]
  trusted_content:
    resources: ["docs://handbook/*"]
    prompts: [house_style]
"#;

async fn start() -> (Sidecar, Scripted, McpClient) {
    let upstream = Scripted::start().await;
    let sidecar = aegis_e2e::mcp::sidecar_in_front_of(
        "tools",
        &upstream.url,
        MANIFEST,
        aegis_e2e::mcp::client_sessions,
    )
    .await;
    let client = McpClient::new(sidecar.running.mcp_addr().unwrap(), "/mcp/tools");
    (sidecar, upstream, client)
}

fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Reads with `read` in session `session`, then tries the sink there:
/// whether the sink ran, and the read's record.
async fn read_then_sink(
    sidecar: &Sidecar,
    upstream: &Scripted,
    client: &McpClient,
    session: &str,
    read: Value,
) -> (bool, Value) {
    let client = client.clone().with_header("x-aegis-session-id", session);
    let answer = client.post(&read).await.answer(&read["id"]);
    // The agent gets the content unchanged.
    assert!(answer.to_string().contains(INJECTION), "{answer}");
    let before = upstream.ran("write_file");
    let sink = client
        .call(99, "write_file", json!({"path": "/tmp/x"}))
        .await;
    let ran = upstream.ran("write_file") > before;
    if !ran {
        assert!(
            result_text(&sink).starts_with("Denied by policy (TAINTED_TO_HIGH_RISK)"),
            "{sink}"
        );
    }
    let events = sidecar.http.session_events("default", session).await;
    let record = events
        .iter()
        .find(|e| e["event_type"] == "TOOL_RESULT" && e["payload"]["call_id"] == read["id"])
        .cloned()
        .unwrap_or_else(|| panic!("the read is not recorded: {events:#?}"));
    (ran, record)
}

#[test]
fn an_untrusted_resource_read_taints_and_a_trusted_one_does_not() {
    run(async {
        let (sidecar, upstream, client) = start().await;
        let untrusted = request(
            1,
            "resources/read",
            json!({"uri": "https://evil.example/page"}),
        );
        let (ran, record) = read_then_sink(&sidecar, &upstream, &client, "r1", untrusted).await;
        assert!(!ran, "the sink ran after an untrusted read");
        let p = &record["payload"];
        assert_eq!(p["source"], "resources/read");
        assert_eq!(p["uri"], "https://evil.example/page");
        assert_eq!(p["trusted"], false);
        assert_eq!(p["upstream"], "tools");
        assert!(p["sha256"].as_str().unwrap().len() == 64, "{p}");
        assert!(p["result"].to_string().contains(INJECTION), "{p}");

        let trusted = request(
            2,
            "resources/read",
            json!({"uri": "docs://handbook/intro.md"}),
        );
        let (ran, record) = read_then_sink(&sidecar, &upstream, &client, "r2", trusted).await;
        assert!(ran, "a trusted read tainted the session");
        assert_eq!(record["payload"]["trusted"], true);

        // A trusted pattern does not trust a path that climbs out of it.
        let climbing = request(
            3,
            "resources/read",
            json!({"uri": "docs://handbook/../secrets"}),
        );
        let (ran, record) = read_then_sink(&sidecar, &upstream, &client, "r3", climbing).await;
        assert!(!ran);
        assert_eq!(record["payload"]["trusted"], false);
        assert_eq!(upstream.requests("resources/read"), 3);
    });
}

#[test]
fn prompts_taint_unless_trusted_by_name() {
    run(async {
        let (sidecar, upstream, client) = start().await;
        let untrusted = request(1, "prompts/get", json!({"name": "from_the_server"}));
        let (ran, record) = read_then_sink(&sidecar, &upstream, &client, "p1", untrusted).await;
        assert!(!ran);
        assert_eq!(record["payload"]["source"], "prompts/get");
        assert_eq!(record["payload"]["prompt"], "from_the_server");
        let trusted = request(2, "prompts/get", json!({"name": "house_style"}));
        let (ran, record) = read_then_sink(&sidecar, &upstream, &client, "p2", trusted).await;
        assert!(ran);
        assert_eq!(record["payload"]["trusted"], true);
    });
}

#[test]
fn an_untrusted_resource_embedded_in_a_non_tainting_tools_result_taints() {
    run(async {
        let (sidecar, upstream, client) = start().await;
        let embed = |id: i64, uri: &str| {
            request(
                id,
                "tools/call",
                json!({"name": "embed_resource", "arguments": {"uri": uri}}),
            )
        };
        let (ran, record) = read_then_sink(
            &sidecar,
            &upstream,
            &client,
            "e1",
            embed(1, "https://evil.example/x"),
        )
        .await;
        assert!(!ran, "an embedded untrusted resource did not taint");
        assert_eq!(record["payload"]["untrusted_content"], true);
        assert_eq!(
            record["payload"]["embedded_resources"],
            json!(["https://evil.example/x"])
        );
        let (ran, record) = read_then_sink(
            &sidecar,
            &upstream,
            &client,
            "e2",
            embed(2, "docs://handbook/a.md"),
        )
        .await;
        assert!(ran, "a trusted embedded resource tainted");
        assert!(record["payload"].get("untrusted_content").is_none());
    });
}

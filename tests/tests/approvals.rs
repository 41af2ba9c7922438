//! Approvals with the official MCP Python SDKs (mcp 1.30.0 and 2.3.0) as the
//! agent, through the sidecar, in `retry` mode: the first call is answered
//! pending and the tool server never sees it; an operator approves it
//! through the API; the same call made again runs once, and the tool
//! server ran it exactly once; a third identical call, and a call with
//! other arguments, each need an approval of their own; a denied call
//! never runs.

#![allow(clippy::unwrap_used)]

use aegis_e2e::python::{self, ClientOpts, Mode, PyServer, Sdk, ServerOpts, run_client, step};
use aegis_e2e::{Sidecar, mcp::upstream_config};
use aegis_proxy::admin::Role;
use serde_json::{Value, json};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: python-approvals-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo, write_note]
  approval_required: [write_note]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000}
policy:
  non_tainting_tools: [echo, write_note]
"#;

fn run_py<F: std::future::Future<Output = ()>>(body: F) {
    python::prepare(&Sdk::ALL);
    aegis_e2e::run_within(python::TEST_TIMEOUT, body);
}

/// The approval a step's result says the call waits for.
fn pending(step: &Value) -> String {
    assert_eq!(step["is_error"], true, "{step:#}");
    let text = step["text"].as_str().unwrap();
    assert!(
        text.starts_with("Approval pending (APPROVAL_REQUIRED)"),
        "{text}"
    );
    let meta = &step["meta"]["aegis/decision"];
    assert_eq!(meta["outcome"], "require_approval", "{step:#}");
    let id = meta["approval_id"].as_str().unwrap().to_owned();
    assert!(text.contains(&id), "{text}");
    id
}

async fn retry_flow(sdk: Sdk, opts: ServerOpts, mode: Mode) {
    let client_sdk = sdk;
    let server = PyServer::start(sdk, opts).await;
    let sidecar = Sidecar::start_with_token(Role::Operator, |config| {
        let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        config.manifest = Some(path);
        config.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
        config.mcp.upstreams = vec![upstream_config("py", &server.url)];
        config.mcp.default_upstream = Some("py".into());
        aegis_e2e::mcp::client_sessions(config);
    })
    .await;
    let url = format!("http://{}/mcp/py", sidecar.running.mcp_addr().unwrap());
    let client = ClientOpts::mode(mode).header("x-aegis-session-id", "py-approvals");
    let note = |text: &str| step::call("write_note", json!({"text": text}));
    let run = |script: Value| {
        let (url, client) = (url.clone(), client.clone());
        async move {
            let out = run_client(client_sdk, &url, &client, &script).await;
            assert!(out.get("error").is_none(), "{out:#}");
            out["steps"].as_array().unwrap().clone()
        }
    };

    let first = run(json!([note("ship it")])).await;
    let id = pending(&first[0]);
    assert_eq!(server.calls("write_note").await, 0);

    // The agent's side has no credential: it cannot approve its own call.
    let refused = sidecar
        .http
        .without_token()
        .post_json(&format!("/v1/approvals/{id}/approve"), "{}")
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let approved = sidecar
        .http
        .post_json(
            &format!("/v1/approvals/{id}/approve"),
            r#"{"reason": "the release note is expected"}"#,
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()["state"], "approved");

    let steps = run(json!([
        note("ship it"),
        note("ship it"),
        note("ship it later")
    ]))
    .await;
    assert_eq!(steps[0]["is_error"], false, "{:#}", steps[0]);
    assert_eq!(steps[0]["text"], "noted: ship it");
    let third = pending(&steps[1]);
    let other = pending(&steps[2]);
    assert!(third != id && other != id && other != third);
    assert_eq!(server.calls("write_note").await, 1, "ran exactly once");

    let denied = sidecar
        .http
        .post_json(
            &format!("/v1/approvals/{other}/deny"),
            r#"{"reason": "no"}"#,
        )
        .await;
    assert_eq!(denied.json()["state"], "denied", "{}", denied.text());
    let after = run(json!([note("ship it later")])).await;
    assert_ne!(pending(&after[0]), other);
    assert_eq!(server.calls("write_note").await, 1);

    let approval = sidecar
        .http
        .get(&format!("/v1/approvals/{id}"))
        .await
        .json();
    assert_eq!(approval["state"], "consumed", "{approval:#}");
    let events = sidecar.http.session_events("default", "py-approvals").await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for kind in [
        "APPROVAL_REQUESTED",
        "APPROVAL_DECIDED",
        "TOOL_CALL_ALLOWED",
        "TOOL_RESULT",
    ] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }
    let allowed = events
        .iter()
        .find(|e| e["event_type"] == "TOOL_CALL_ALLOWED")
        .unwrap();
    assert_eq!(
        allowed["payload"]["approval_id"],
        id.as_str(),
        "{allowed:#}"
    );
    sidecar.stop().await;
}

#[test]
fn retry_with_the_v1_sdk() {
    run_py(retry_flow(Sdk::V1, ServerOpts::sse(), Mode::Handshake));
}

#[test]
fn retry_with_the_v2_sdk_stateless() {
    run_py(retry_flow(
        Sdk::V2,
        ServerOpts::sse().stateless(),
        Mode::Stateless,
    ));
}

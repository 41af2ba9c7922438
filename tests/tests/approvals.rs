//! Approvals with the official MCP Python SDKs (mcp 1.30.0 and 2.3.0) as the
//! agent, through the sidecar, in `retry` mode: the first call is answered
//! pending and the tool server never sees it; an operator approves it
//! through the API; the same call made again runs once, and the tool
//! server ran it exactly once; a third identical call, and a call with
//! other arguments, each need an approval of their own; a denied call
//! never runs. And in `hold` mode: the call waits, open, while an operator
//! approves (the client gets the tool's result, after a progress
//! notification), denies (a tool error) or lets it expire.

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

/// A manifest whose `write_note` is held (`policy.approvals`): the agent's
/// request stays open until a person decides.
const HOLD_MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: python-hold-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo, write_note]
  approval_required: [write_note]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000}
policy:
  non_tainting_tools: [echo, write_note]
  approvals:
    write_note: {mode: hold}
"#;

async fn hold_sidecar(
    server: &PyServer,
    tune: impl FnOnce(&mut aegis_proxy::config::Config),
) -> Sidecar {
    Sidecar::start_with_token(Role::Operator, |config| {
        let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
        std::fs::write(&path, HOLD_MANIFEST).unwrap();
        config.manifest = Some(path);
        config.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
        config.mcp.upstreams = vec![upstream_config("py", &server.url)];
        config.mcp.default_upstream = Some("py".into());
        aegis_e2e::mcp::client_sessions(config);
        tune(config);
    })
    .await
}

/// The one pending approval of `session`, once the held call has asked.
async fn pending_approval(sidecar: &Sidecar, session: &str) -> String {
    let path = format!("/v1/approvals?state=pending&tenant_id=default&session_id={session}");
    aegis_e2e::wait_for("the held call's approval", || async {
        let page = sidecar.http.get(&path).await.json();
        let id = page["approvals"].get(0)?["id"].as_str()?.to_owned();
        Some(id)
    })
    .await
}

/// Runs `script` as the agent while `operator` acts on the approval it
/// waits for; the client's steps.
async fn held_run<F, Fut>(
    sdk: Sdk,
    url: &str,
    client: &ClientOpts,
    script: Value,
    operator: F,
) -> Vec<Value>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let agent = async {
        let out = run_client(sdk, url, client, &script).await;
        assert!(out.get("error").is_none(), "{out:#}");
        out["steps"].as_array().unwrap().clone()
    };
    let (steps, ()) = tokio::join!(agent, operator());
    steps
}

async fn hold_flow(sdk: Sdk, opts: ServerOpts, mode: Mode) {
    let server = PyServer::start(sdk, opts).await;
    let sidecar = hold_sidecar(&server, |_| {}).await;
    let url = format!("http://{}/mcp/py", sidecar.running.mcp_addr().unwrap());
    let session = "py-hold";
    let client = ClientOpts::mode(mode).header("x-aegis-session-id", session);
    let note = |text: &str| step::call_progress("write_note", json!({"text": text}));

    // Approved while the call waits: the client gets the tool's own result.
    let approver = || async {
        let id = pending_approval(&sidecar, session).await;
        assert_eq!(server.calls("write_note").await, 0, "ran before approval");
        // The agent's side has no credential: it cannot approve it.
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
                r#"{"reason": "ok"}"#,
            )
            .await;
        assert_eq!(approved.status, 200, "{}", approved.text());
    };
    let steps = held_run(sdk, &url, &client, json!([note("ship it")]), approver).await;
    let step = &steps[0];
    assert_eq!(step["is_error"], false, "{step:#}");
    assert_eq!(step["text"], "noted: ship it", "{step:#}");
    assert_eq!(server.calls("write_note").await, 1, "ran exactly once");
    // It was told it waits, before the result.
    assert_eq!(step["progress_before_result"], true, "{step:#}");
    let messages = step["progress_messages"].as_array().unwrap();
    assert!(
        messages.iter().any(|m| m
            .as_str()
            .unwrap_or_default()
            .contains("waiting for a person to approve")),
        "{step:#}"
    );
    let approvals = sidecar
        .http
        .get("/v1/approvals?state=consumed&tenant_id=default")
        .await
        .json();
    assert_eq!(
        approvals["approvals"].as_array().unwrap().len(),
        1,
        "{approvals:#}"
    );

    // Denied while it waits: a tool error naming the denial; never run.
    let denier = || async {
        let id = pending_approval(&sidecar, session).await;
        let denied = sidecar
            .http
            .post_json(
                &format!("/v1/approvals/{id}/deny"),
                r#"{"reason": "not today"}"#,
            )
            .await;
        assert_eq!(denied.json()["state"], "denied", "{}", denied.text());
    };
    let steps = held_run(sdk, &url, &client, json!([note("ship it later")]), denier).await;
    let step = &steps[0];
    assert_eq!(step["is_error"], true, "{step:#}");
    let text = step["text"].as_str().unwrap();
    assert!(text.contains("was denied by token:"), "{text}");
    assert!(text.contains("not today"), "{text}");
    assert_eq!(step["meta"]["aegis/decision"]["approval_state"], "denied");
    assert_eq!(
        server.calls("write_note").await,
        1,
        "the denied call never ran"
    );

    let events = sidecar.http.session_events("default", session).await;
    let allowed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "TOOL_CALL_ALLOWED")
        .collect();
    assert_eq!(allowed.len(), 1, "{events:#?}");
    assert!(allowed[0]["payload"]["approval_id"].is_string());
    sidecar.stop().await;

    // Nobody decides before the approval expires: the expiry is the answer.
    let sidecar = hold_sidecar(&server, |config| {
        config.approval.ttl = std::time::Duration::from_millis(1500);
        config.approval.hold_timeout = std::time::Duration::from_millis(1500);
    })
    .await;
    let url = format!("http://{}/mcp/py", sidecar.running.mcp_addr().unwrap());
    let steps = run_client(sdk, &url, &client, &json!([note("too late")])).await;
    let step = &steps["steps"][0];
    assert_eq!(step["is_error"], true, "{step:#}");
    let text = step["text"].as_str().unwrap();
    assert!(text.contains("expired before it was approved"), "{text}");
    assert_eq!(
        server.calls("write_note").await,
        1,
        "the expired call never ran"
    );
    sidecar.stop().await;
}

#[test]
fn hold_with_the_v1_sdk() {
    run_py(hold_flow(Sdk::V1, ServerOpts::sse(), Mode::Handshake));
}

#[test]
fn hold_with_the_v2_sdk_stateless() {
    run_py(hold_flow(
        Sdk::V2,
        ServerOpts::sse().stateless(),
        Mode::Stateless,
    ));
}

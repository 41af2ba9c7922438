//! The official MCP Python SDKs through the sidecar: mcp 1.30.0 (FastMCP
//! server, `streamable_http_client`) and mcp 2.3.0 (`MCPServer`,
//! `mcp.Client`, with the initialize handshake and in the stateless
//! 2026-07-28 mode), JSON and SSE answers. The client sees `tools/list`
//! filtered, an allowed call, a denied call as a tool error (and the next
//! call working), progress before the result; the server never runs the
//! denied tool; afterwards the ledger holds the calls and verifies offline.

#![allow(clippy::unwrap_used)]

use aegis_e2e::python::{self, ClientOpts, Mode, PyServer, Sdk, ServerOpts, run_client, step};
use aegis_e2e::{Sidecar, mcp::upstream_config};
use aegis_proxy::cli::VerifyArgs;
use serde_json::{Value, json};

/// Declares every test-server tool but `delete_everything`.
const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: python-sdk-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo, add, read_secret, write_note, count_to]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000}
policy:
  non_tainting_tools: [echo, add, read_secret, write_note, count_to]
"#;

const DECLARED: [&str; 5] = ["echo", "add", "read_secret", "write_note", "count_to"];

fn run_py<F: std::future::Future<Output = ()>>(body: F) {
    python::prepare(&Sdk::ALL);
    aegis_e2e::run_within(python::TEST_TIMEOUT, body);
}

/// Runs the script with `client_sdk` in `mode` through a sidecar in front of
/// a `server_sdk` server, and checks what the client, the server and the
/// ledger saw.
async fn through_the_sidecar(server_sdk: Sdk, opts: ServerOpts, client_sdk: Sdk, mode: Mode) {
    let server = PyServer::start(server_sdk, opts.clone()).await;
    let sidecar = Sidecar::start_with(|config| {
        let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        config.manifest = Some(path);
        config.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
        config.mcp.upstreams = vec![upstream_config("py", &server.url)];
        config.mcp.default_upstream = Some("py".into());
        // The client names its session (`x-aegis-session-id`).
        aegis_e2e::mcp::client_sessions(config);
    })
    .await;
    let url = format!("http://{}/mcp/py", sidecar.running.mcp_addr().unwrap());
    let session = "py-session";
    let script = json!([
        step::list_tools(),
        step::call("echo", json!({"text": "allowed"})),
        step::call("delete_everything", json!({})),
        step::call("add", json!({"a": 2, "b": 3})),
        step::call_progress("count_to", json!({"n": 3})),
    ]);
    let client = ClientOpts::mode(mode).header("x-aegis-session-id", session);
    let out = run_client(client_sdk, &url, &client, &script).await;
    assert!(out.get("error").is_none(), "{out:#}");
    let steps = out["steps"].as_array().unwrap();
    for s in steps {
        assert!(s.get("error").is_none(), "a step failed: {s:#}");
    }
    assert_eq!(
        steps[0]["tools"],
        json!(DECLARED),
        "tools/list is filtered: {out:#}"
    );
    assert_eq!(steps[1]["is_error"], false, "{out:#}");
    assert_eq!(steps[1]["text"], "allowed");
    // Denied: a tool error the model reads, with the reason.
    assert_eq!(steps[2]["is_error"], true, "{out:#}");
    let text = steps[2]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Denied by policy (PERMISSION_UNDECLARED): "),
        "{text}"
    );
    // The session stays usable.
    assert_eq!(steps[3]["is_error"], false, "{out:#}");
    assert_eq!(steps[3]["text"], "5");
    let count = &steps[4];
    assert_eq!(count["text"], "counted to 3", "{count:#}");
    if !opts.json_response {
        assert_eq!(count["progress"], json!([1.0, 2.0, 3.0]), "{count:#}");
        assert_eq!(count["progress_before_result"], true, "{count:#}");
    }
    assert_eq!(server.calls("delete_everything").await, 0);
    assert_eq!(server.calls("echo").await, 1);

    let events = sidecar.http.session_events("default", session).await;
    let calls: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["payload"]["tool_name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = [
        ("TOOL_CALL_PROPOSED", "echo"),
        ("TOOL_CALL_ALLOWED", "echo"),
        ("TOOL_RESULT", "echo"),
        ("TOOL_CALL_PROPOSED", "delete_everything"),
        ("TOOL_CALL_DENIED", "delete_everything"),
        ("TOOL_CALL_PROPOSED", "add"),
        ("TOOL_CALL_ALLOWED", "add"),
        ("TOOL_RESULT", "add"),
        ("TOOL_CALL_PROPOSED", "count_to"),
        ("TOOL_CALL_ALLOWED", "count_to"),
        ("TOOL_RESULT", "count_to"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
        .collect();
    assert_eq!(calls, expect);

    // Offline verification, as `aegis-proxy verify` does it.
    let stopped = sidecar.stop().await;
    let args = VerifyArgs {
        ledger: stopped.ledger_path(),
        tenant: None,
        session: None,
        json: true,
    };
    let mut report = Vec::new();
    let code = aegis_proxy::commands::verify(&args, &mut report);
    let report: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{report:#}");
    assert_eq!(report["valid"], true, "{report:#}");
}

#[test]
fn v1_fastmcp_and_streamable_http_client_with_sse_answers() {
    run_py(through_the_sidecar(
        Sdk::V1,
        ServerOpts::sse(),
        Sdk::V1,
        Mode::Handshake,
    ));
}

#[test]
fn v1_fastmcp_and_streamable_http_client_with_json_answers() {
    run_py(through_the_sidecar(
        Sdk::V1,
        ServerOpts::json(),
        Sdk::V1,
        Mode::Handshake,
    ));
}

#[test]
fn v2_mcpserver_and_client_with_the_handshake() {
    run_py(through_the_sidecar(
        Sdk::V2,
        ServerOpts::sse(),
        Sdk::V2,
        Mode::Handshake,
    ));
}

#[test]
fn v2_mcpserver_and_client_with_the_handshake_and_json_answers() {
    run_py(through_the_sidecar(
        Sdk::V2,
        ServerOpts::json(),
        Sdk::V2,
        Mode::Handshake,
    ));
}

#[test]
fn v2_mcpserver_and_client_in_the_stateless_2026_07_28_mode() {
    run_py(through_the_sidecar(
        Sdk::V2,
        ServerOpts::sse(),
        Sdk::V2,
        Mode::Stateless,
    ));
}

#[test]
fn v2_mcpserver_and_client_in_the_stateless_mode_with_json_answers() {
    run_py(through_the_sidecar(
        Sdk::V2,
        ServerOpts::json(),
        Sdk::V2,
        Mode::Stateless,
    ));
}

#[test]
fn v2_client_discovers_the_protocol_through_the_sidecar() {
    run_py(through_the_sidecar(
        Sdk::V2,
        ServerOpts::sse(),
        Sdk::V2,
        Mode::Auto,
    ));
}

/// The official 2.3.0 client in the stateless 2026-07-28 mode against the
/// demo tool server, through the sidecar: its `ListToolsResult` needs
/// `ttlMs` and `cacheScope`, which the demo sends and the sidecar's filter
/// keeps (making the public scope private: the list is this agent's).
#[test]
fn v2_stateless_client_lists_and_calls_the_demo_servers_tools_through_the_sidecar() {
    run_py(async {
        let stack = aegis_e2e::mcp::Stack::start(
            aegis_e2e::mcp::MANIFEST,
            aegis_demo_upstream::AnswerMode::Json,
            |_| {},
        )
        .await;
        let url = format!(
            "http://{}/mcp/tools",
            stack.sidecar.running.mcp_addr().unwrap()
        );
        let script = json!([
            step::list_tools(),
            step::call("echo", json!({"text": "hi"}))
        ]);
        let out = run_client(Sdk::V2, &url, &ClientOpts::mode(Mode::Stateless), &script).await;
        assert!(out.get("error").is_none(), "{out:#}");
        assert_eq!(out["protocol_version"], "2026-07-28", "{out:#}");
        let steps = out["steps"].as_array().unwrap();
        for s in steps {
            assert!(s.get("error").is_none(), "a step failed: {s:#}");
        }
        let tools = steps[0]["tools"].as_array().unwrap();
        assert!(tools.contains(&json!("echo")), "{out:#}");
        assert!(!tools.contains(&json!("delete_everything")), "{out:#}");
        assert_eq!(steps[1]["text"], "hi", "{out:#}");
        assert_eq!(stack.upstream.stats().tool_calls("echo"), 1);
    });
}

/// The sidecar asked to stop (SIGTERM's path) while a handshake-era client
/// waits for a streamed answer. During the drain delay readiness already
/// answers 503 and the listener still accepts, so the client gets its
/// answer whole and makes the requests that follow it (both SDKs fetch
/// `tools/list` after calling a tool they have not listed, and end their
/// session with a DELETE): with the listener closed at once, the client
/// failed with "All connection attempts failed" and lost the answer. A
/// second signal (here: the client having finished) ends the delay.
#[test]
fn a_handshake_client_gets_its_streamed_answer_when_the_sidecar_stops_mid_call() {
    for sdk in Sdk::ALL {
        run_py(async move {
            let stack = aegis_e2e::mcp::Stack::start(
                aegis_e2e::mcp::MANIFEST,
                aegis_demo_upstream::AnswerMode::Sse,
                |config| {
                    aegis_e2e::mcp::client_sessions(config);
                    // Hang guards: the call drains because it is in flight,
                    // and the delay ends when the client is done.
                    config.mcp.shutdown_grace = aegis_e2e::HANG_GUARD;
                    config.mcp.drain_delay = aegis_e2e::HANG_GUARD;
                },
            )
            .await;
            let url = format!(
                "http://{}/mcp/tools",
                stack.sidecar.running.mcp_addr().unwrap()
            );
            let script = json!([step::call("slow", json!({"ms": 2000}))]);
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let client = tokio::spawn(async move {
                let opts = ClientOpts::mode(Mode::Handshake).header("x-aegis-session-id", "stop");
                let out = run_client(sdk, &url, &opts, &script).await;
                let _ = done.send(());
                out
            });
            let stats = stack.upstream.stats();
            aegis_e2e::wait_until("the slow call to reach the tool server", || {
                stats.tool_calls("slow") == 1
            })
            .await;
            let aegis_e2e::mcp::Stack {
                sidecar, upstream, ..
            } = stack;
            let http = sidecar.http.clone();
            let stopping = tokio::spawn(sidecar.running.shutdown_after(
                aegis_e2e::HANG_GUARD,
                async move {
                    let _ = finished.await;
                },
            ));
            aegis_e2e::wait_for("readiness to turn false", || {
                let http = http.clone();
                async move { (http.get("/readyz").await.status == 503).then_some(()) }
            })
            .await;
            let out = client.await.unwrap();
            assert!(out.get("error").is_none(), "{sdk:?}: {out:#}");
            let step = &out["steps"][0];
            assert!(step.get("error").is_none(), "{sdk:?}: {step:#}");
            assert_eq!(step["text"], "slept 2000 ms", "{sdk:?}: {step:#}");
            tokio::time::timeout(aegis_e2e::HANG_GUARD, stopping)
                .await
                .unwrap()
                .unwrap();
            drop(upstream);
        });
    }
}

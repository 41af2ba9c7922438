//! The official MCP Python SDKs (mcp 1.30.0 and 2.3.0) talking to each other
//! directly, with no sidecar between them: the baseline the sidecar tests
//! compare against, and a record of what each SDK puts on the wire.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use aegis_e2e::python::{
    self, ClientOpts, Mode, PyServer, SECRET, Sdk, ServerOpts, TOOLS, run_client, step,
};
use serde_json::{Value, json};

/// Installs both venvs (outside the test's time bound), then runs `body`
/// under [`python::TEST_TIMEOUT`].
fn run_py<F: std::future::Future<Output = ()>>(body: F) {
    python::prepare(&Sdk::ALL);
    aegis_e2e::run_within(python::TEST_TIMEOUT, body);
}

/// Every kind of step once, and a call of an unknown tool last.
fn full_script() -> Value {
    json!([
        step::list_tools(),
        step::call("echo", json!({"text": "hello"})),
        step::call("add", json!({"a": 2, "b": 3})),
        step::call("read_secret", json!({})),
        step::call_progress("count_to", json!({"n": 3})),
        step::call("write_note", json!({"text": "remember"})),
        step::call("no_such_tool", json!({})),
    ])
}

/// Checks a client's report of [`full_script`]; `progress` says whether the
/// progress notifications can reach the client (not with JSON responses).
fn check_full_run(out: &Value, protocol_version: &str, progress: bool) {
    assert!(out.get("error").is_none(), "{out:#}");
    assert_eq!(out["protocol_version"], protocol_version, "{out:#}");
    let steps = out["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7, "{out:#}");
    for s in steps {
        assert!(s.get("error").is_none(), "a step failed: {s:#}");
    }
    assert_eq!(steps[0]["tools"], json!(TOOLS), "{out:#}");

    assert_eq!(steps[1]["is_error"], false);
    assert_eq!(steps[1]["text"], "hello");
    assert_eq!(steps[2]["text"], "5");
    assert_eq!(steps[2]["structured"], json!({"result": 5}));
    assert_eq!(steps[3]["text"], SECRET);

    let count = &steps[4];
    assert_eq!(count["is_error"], false, "{count:#}");
    assert_eq!(count["text"], "counted to 3");
    if progress {
        assert_eq!(count["progress"], json!([1.0, 2.0, 3.0]), "{count:#}");
        assert_eq!(count["progress_at_result"], 3, "{count:#}");
        assert_eq!(count["progress_before_result"], true, "{count:#}");
    } else {
        assert_eq!(count["progress"], json!([]), "{count:#}");
    }

    assert_eq!(steps[5]["text"], "noted: remember");
    assert_eq!(steps[6]["is_error"], true, "{:#}", steps[6]);
    assert_eq!(steps[6]["text"], "Unknown tool: no_such_tool");
}

/// The tool calls [`full_script`] executes on the server.
fn full_run_stats() -> BTreeMap<String, u64> {
    ["echo", "add", "read_secret", "count_to", "write_note"]
        .into_iter()
        .map(|t| (t.to_owned(), 1))
        .collect()
}

async fn full_run(server_sdk: Sdk, opts: ServerOpts, client_sdk: Sdk, mode: Mode) -> Value {
    let server = PyServer::start(server_sdk, opts.clone()).await;
    let client = ClientOpts::mode(mode).header("x-aegis-session-id", "py-sdk-test");
    let out = run_client(client_sdk, &server.url, &client, &full_script()).await;
    let modern = mode == Mode::Stateless || (mode == Mode::Auto && server_sdk == Sdk::V2);
    let version = if modern { "2026-07-28" } else { "2025-11-25" };
    check_full_run(&out, version, !opts.json_response);
    assert_eq!(server.stats().await, full_run_stats());
    assert_eq!(server.calls("delete_everything").await, 0);
    out
}

fn header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

fn body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap_or(Value::Null)
}

// ------------------------------------------------------------- same SDK

#[test]
fn v1_client_v1_server_sse() {
    run_py(async {
        let out = full_run(Sdk::V1, ServerOpts::sse(), Sdk::V1, Mode::Handshake).await;
        assert_eq!(out["server_info"]["name"], "aegis-test-server-v1");
        assert!(out["session_id"].is_string(), "{out:#}");
    });
}

#[test]
fn v1_client_v1_server_json() {
    run_py(async {
        full_run(Sdk::V1, ServerOpts::json(), Sdk::V1, Mode::Handshake).await;
    });
}

#[test]
fn v1_client_v1_server_stateless() {
    run_py(async {
        let out = full_run(
            Sdk::V1,
            ServerOpts::sse().stateless(),
            Sdk::V1,
            Mode::Handshake,
        )
        .await;
        assert_eq!(out["session_id"], Value::Null, "{out:#}");
    });
}

#[test]
fn v2_client_v2_server_handshake_sse() {
    run_py(async {
        let out = full_run(Sdk::V2, ServerOpts::sse(), Sdk::V2, Mode::Handshake).await;
        assert_eq!(out["server_info"]["name"], "aegis-test-server-v2");
    });
}

#[test]
fn v2_client_v2_server_handshake_json() {
    run_py(async {
        full_run(Sdk::V2, ServerOpts::json(), Sdk::V2, Mode::Handshake).await;
    });
}

#[test]
fn v2_client_v2_server_stateless_sse() {
    run_py(async {
        let out = full_run(Sdk::V2, ServerOpts::sse(), Sdk::V2, Mode::Stateless).await;
        // No discover, so no server identity up front; each result carries it.
        assert_eq!(out["server_info"], Value::Null);
        assert_eq!(
            out["steps"][1]["meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "aegis-test-server-v2"
        );
    });
}

#[test]
fn v2_client_v2_server_stateless_json() {
    run_py(async {
        full_run(Sdk::V2, ServerOpts::json(), Sdk::V2, Mode::Stateless).await;
    });
}

#[test]
fn v2_client_v2_server_auto_discovers_the_stateless_protocol() {
    run_py(async {
        let out = full_run(Sdk::V2, ServerOpts::sse(), Sdk::V2, Mode::Auto).await;
        assert_eq!(out["server_info"]["name"], "aegis-test-server-v2");
    });
}

// ------------------------------------------------------------ across SDKs

#[test]
fn v1_client_v2_server() {
    run_py(async {
        full_run(Sdk::V2, ServerOpts::sse(), Sdk::V1, Mode::Handshake).await;
        full_run(Sdk::V2, ServerOpts::json(), Sdk::V1, Mode::Handshake).await;
    });
}

#[test]
fn v2_client_v1_server_handshake() {
    run_py(async {
        full_run(Sdk::V1, ServerOpts::sse(), Sdk::V2, Mode::Handshake).await;
    });
}

#[test]
fn v2_client_v1_server_auto_falls_back_to_the_handshake() {
    run_py(async {
        let server = PyServer::start(Sdk::V1, ServerOpts::sse()).await;
        let out = run_client(
            Sdk::V2,
            &server.url,
            &ClientOpts::mode(Mode::Auto),
            &full_script(),
        )
        .await;
        check_full_run(&out, "2025-11-25", true);
        let requests = server.requests().await;
        // The probe: refused with a 400 by the 1.x server, then initialize.
        assert_eq!(body(&requests[0])["method"], "server/discover");
        assert_eq!(requests[0]["status"], 400);
        assert_eq!(body(&requests[1])["method"], "initialize");
    });
}

/// A client pinned to 2026-07-28 cannot talk to a 1.x server: every request
/// is refused and no tool runs.
#[test]
fn v2_stateless_client_v1_server_does_not_interoperate() {
    run_py(async {
        for opts in [ServerOpts::sse(), ServerOpts::sse().stateless()] {
            let server = PyServer::start(Sdk::V1, opts).await;
            let out = run_client(
                Sdk::V2,
                &server.url,
                &ClientOpts::mode(Mode::Stateless),
                &full_script(),
            )
            .await;
            for s in out["steps"].as_array().unwrap() {
                assert!(s["error"].is_string(), "{s:#}");
                assert_eq!(s["code"], -32600, "{s:#}");
            }
            assert_eq!(server.stats().await, BTreeMap::new());
        }
    });
}

// ------------------------------------------------------------- the wire

/// What a 2.3.0 client sends in the stateless 2026-07-28 mode: no
/// initialize, no session; every POST names its version, method and (for
/// tools/call) tool in headers and in `params._meta`.
#[test]
fn v2_stateless_wire() {
    run_py(async {
        let server = PyServer::start(Sdk::V2, ServerOpts::sse()).await;
        let client = ClientOpts::mode(Mode::Stateless).header("x-aegis-session-id", "wire-1");
        let script = json!([
            step::list_tools(),
            step::call("echo", json!({"text": "hi"})),
            step::call_progress("count_to", json!({"n": 2})),
        ]);
        let out = run_client(Sdk::V2, &server.url, &client, &script).await;
        assert!(out.get("error").is_none(), "{out:#}");
        let requests = server.requests().await;
        assert_eq!(requests.len(), 3, "{requests:#?}");
        for (request, (method, name)) in requests.iter().zip([
            ("tools/list", None),
            ("tools/call", Some("echo")),
            ("tools/call", Some("count_to")),
        ]) {
            assert_eq!(request["method"], "POST");
            assert_eq!(header(request, "mcp-protocol-version"), Some("2026-07-28"));
            assert_eq!(header(request, "mcp-method"), Some(method));
            assert_eq!(header(request, "mcp-name"), name);
            assert_eq!(header(request, "mcp-session-id"), None);
            assert_eq!(header(request, "x-aegis-session-id"), Some("wire-1"));
            let rpc = body(request);
            assert_eq!(rpc["method"], method);
            let meta = &rpc["params"]["_meta"];
            assert_eq!(
                meta["io.modelcontextprotocol/protocolVersion"],
                "2026-07-28"
            );
            assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
            assert!(meta["io.modelcontextprotocol/clientInfo"].is_object());
            assert_eq!(request["status"], 200);
        }
        // Results say `"resultType": "complete"`; progress makes the answer SSE.
        assert_eq!(requests[1]["content_type"], "application/json");
        let result: Value =
            serde_json::from_str(requests[1]["response_body"].as_str().unwrap()).unwrap();
        assert_eq!(result["result"]["resultType"], "complete");
        assert_eq!(requests[2]["content_type"], "text/event-stream");
        assert_eq!(
            body(&requests[2])["params"]["_meta"]["progressToken"],
            body(&requests[2])["id"]
        );
    });
}

/// The handshake as a 2.3.0 client does it: initialize, the session id
/// echoed from then on with the negotiated version, a DELETE at the end.
#[test]
fn v2_handshake_wire() {
    run_py(async {
        let server = PyServer::start(Sdk::V2, ServerOpts::sse()).await;
        let client = ClientOpts::mode(Mode::Handshake).header("x-aegis-session-id", "wire-2");
        let script = json!([step::call("echo", json!({"text": "hi"}))]);
        let out = run_client(Sdk::V2, &server.url, &client, &script).await;
        assert!(out.get("error").is_none(), "{out:#}");
        let requests = server.requests().await;
        let first = &requests[0];
        assert_eq!(body(first)["method"], "initialize");
        assert_eq!(header(first, "mcp-session-id"), None);
        assert_eq!(header(first, "mcp-method"), None);
        let session = first["response_headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "mcp-session-id")
            .and_then(|h| h[1].as_str())
            .unwrap()
            .to_owned();
        for request in &requests[1..] {
            assert_eq!(header(request, "mcp-session-id"), Some(session.as_str()));
            assert_eq!(header(request, "mcp-protocol-version"), Some("2025-11-25"));
            assert_eq!(header(request, "x-aegis-session-id"), Some("wire-2"));
        }
        // (The GET stream is opened in the background, so whether it got
        // through before the client closed is left open.)
        let methods: Vec<&str> = requests
            .iter()
            .map(|r| r["method"].as_str().unwrap())
            .collect();
        assert!(methods.contains(&"DELETE"), "{methods:?}");
        let posted: Vec<Value> = requests
            .iter()
            .filter(|r| r["method"] == "POST")
            .map(|r| body(r)["method"].clone())
            .collect();
        // A successful call of a tool the client has not listed yet makes it
        // list the tools afterwards, for the output schema to check the
        // structured result against (1.x does the same; an isError result
        // is not checked, so it triggers no listing).
        assert_eq!(
            posted,
            json!([
                "initialize",
                "notifications/initialized",
                "tools/call",
                "tools/list"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    });
}

/// Stats count what ran, including the dangerous tool when nothing stops it.
#[test]
fn stats_count_every_executed_call() {
    run_py(async {
        let server = PyServer::start(Sdk::V2, ServerOpts::json()).await;
        let script = json!([
            step::call("delete_everything", json!({})),
            step::call("echo", json!({"text": "a"})),
            step::call("echo", json!({"text": "b"})),
        ]);
        for mode in [Mode::Handshake, Mode::Stateless] {
            let out = run_client(Sdk::V2, &server.url, &ClientOpts::mode(mode), &script).await;
            assert_eq!(out["steps"][0]["text"], "deleted everything", "{out:#}");
        }
        assert_eq!(server.calls("delete_everything").await, 2);
        assert_eq!(server.calls("echo").await, 4);
        assert_eq!(server.calls("write_note").await, 0);
    });
}

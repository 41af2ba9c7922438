//! Approvals through the real binary, in `retry` mode: a call that needs a
//! human is answered pending and never reaches the tool server; an operator
//! approves it through the API; the same call made again runs exactly once;
//! other arguments, a repeat, a denial, the agent's own credentials and a
//! restart change none of that. In `hold` mode the request stays open
//! until two operators approved it (then it runs), or its hold times out
//! (answered pending; the approval stands), or the sidecar shuts down.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{Api, DEADLINE, Server, block_on};

const SESSION: &str = "approvals-e2e";
const ALICE: &str = "alice-operator-token-0123456789abcdef";
const BOB: &str = "bob-operator-token-0123456789abcdef";
const AGENT: &str = "agent-ingest-token-0123456789abcdef";

fn manifest(approvers: u32) -> String {
    manifest_in(approvers, "retry")
}

/// [`manifest`] with `write_file` waiting in `mode` (`hold` or `retry`).
fn manifest_in(approvers: u32, mode: &str) -> String {
    format!(
        r#"
schema: aegis.dev/manifest/v0.1
name: approvals-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {{required: true}}
permissions:
  tools: [echo, write_file]
  approval_required: [write_file]
  budgets: {{max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000}}
policy:
  # What write_file answers is not untrusted content; otherwise the first
  # run taints the session and every later write is denied.
  non_tainting_tools: [write_file]
  # The test makes the same call more often than the default loop rule
  # (the third identical call in twenty) allows.
  loops: {{identical_calls: 10, identical_window: 20}}
  approvals:
    write_file: {{approvers: {approvers}, mode: {mode}}}
"#
    )
}

/// A config with two operator tokens (alice, bob) and the agent's ingest
/// token, each in its own file under `dir`.
/// ...and `extra` YAML after it.
fn auth_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let mut tokens = String::new();
    for (name, token, role) in [
        ("alice", ALICE, "operator"),
        ("bob", BOB, "operator"),
        ("agent", AGENT, "ingest"),
    ] {
        let file = dir.join(format!("{name}.token"));
        std::fs::write(&file, format!("{token}\n")).unwrap();
        tokens.push_str(&format!(
            "      - file: {}\n        role: {role}\n",
            file.display()
        ));
    }
    let config = dir.join("auth.yaml");
    std::fs::write(
        &config,
        format!("admin:\n  auth:\n    tokens:\n{tokens}{extra}"),
    )
    .unwrap();
    config
}

fn start(dir: &Path, ledger: &Path, manifest: &Path, upstream: &str) -> (Server, SocketAddr) {
    start_with(dir, ledger, manifest, upstream, "")
}

fn start_with(
    dir: &Path,
    ledger: &Path,
    manifest: &Path,
    upstream: &str,
    extra: &str,
) -> (Server, SocketAddr) {
    let config = auth_config(dir, extra);
    let upstream = format!("tools={upstream}");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--ledger"),
        ledger.as_os_str(),
        OsStr::new("--manifest"),
        manifest.as_os_str(),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--upstream"),
        OsStr::new(&upstream),
    ];
    let server = Server::start(dir, &args, &[("AEGIS_SESSION_SCOPE", OsStr::new("client"))]);
    let mcp = server.ready["mcp"].as_str().unwrap().parse().unwrap();
    (server, mcp)
}

/// One `tools/call` of `write_file` with `content`: its result.
async fn write(
    client: &Client<HttpConnector, Full<Bytes>>,
    mcp: SocketAddr,
    content: &str,
) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "write_file", "arguments": {"path": "note.txt", "content": content}}});
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{mcp}/mcp/tools"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-aegis-session-id", SESSION)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let exchange = async {
        let resp = client.request(req).await.unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    tokio::time::timeout(DEADLINE, exchange).await.unwrap()["result"].clone()
}

/// The id of the approval a result says the call waits for.
fn pending(result: &Value) -> String {
    let meta = &result["_meta"]["aegis/decision"];
    assert_eq!(meta["outcome"], "require_approval", "{result}");
    assert_eq!(result["isError"], true);
    let text = result["content"][0]["text"].as_str().unwrap();
    let id = meta["approval_id"].as_str().unwrap().to_owned();
    assert!(
        text.contains(&id) && text.contains("same call again"),
        "{text}"
    );
    id
}

fn ran(result: &Value) {
    assert_eq!(result["isError"], false, "{result}");
    assert!(result["_meta"]["aegis/decision"].is_null(), "{result}");
}

async fn vote(api: &Api, id: &str, decision: &str) -> (StatusCode, Value) {
    api.request(
        Method::POST,
        &format!("/v1/approvals/{id}/{decision}"),
        Some(&json!({"reason": format!("test says {decision}")})),
    )
    .await
    .unwrap()
}

#[test]
fn an_approved_call_runs_once_and_nothing_else_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest_file = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_file, manifest(1)).unwrap();
    block_on(Duration::from_secs(120), async {
        let upstream = demo_upstream(dir.path()).await;
        let runs = || upstream.stats().tool_calls("write_file");
        let (server, mcp) = start(dir.path(), &ledger, &manifest_file, &upstream.url());
        let client = Client::builder(TokioExecutor::new()).build_http();
        let alice = Api::new(server.addr).with_token(ALICE);

        let id = pending(&write(&client, mcp, "hello").await);
        assert_eq!(runs(), 0);

        // The agent — without a credential, or with its own ingest token —
        // can neither see nor decide it.
        for (agent, expected) in [
            (Api::new(server.addr), StatusCode::UNAUTHORIZED),
            (
                Api::new(server.addr).with_token(AGENT),
                StatusCode::FORBIDDEN,
            ),
        ] {
            for (method, path) in [
                (Method::GET, "/v1/approvals".to_owned()),
                (Method::GET, format!("/v1/approvals/{id}")),
                (Method::POST, format!("/v1/approvals/{id}/approve")),
                (Method::POST, format!("/v1/approvals/{id}/deny")),
            ] {
                let body = (method == Method::POST).then(|| json!({}));
                let (status, answer) = agent.request(method, &path, body.as_ref()).await.unwrap();
                assert_eq!(status, expected, "{path}: {answer}");
            }
        }
        let listed = alice.get("/v1/approvals?state=pending").await;
        let approvals = listed["approvals"].as_array().unwrap();
        assert_eq!(approvals.len(), 1, "{listed}");
        assert_eq!(approvals[0]["id"], id.as_str());
        assert_eq!(approvals[0]["state"], "pending");
        assert_eq!(
            approvals[0]["args"],
            json!({"path": "note.txt", "content": "hello"})
        );
        assert_eq!(approvals[0]["session_id"], SESSION);

        // Asked again while it waits: the same approval; still nothing ran.
        assert_eq!(pending(&write(&client, mcp, "hello").await), id);
        assert_eq!(runs(), 0);

        let (status, approved) = vote(&alice, &id, "approve").await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!(approved["state"], "approved");
        let approver = approved["votes"][0]["approver"].as_str().unwrap();
        assert!(
            approver.starts_with("token:") && approver.ends_with("alice.token"),
            "{approver}"
        );
        // Voting again, or denying now, is refused and changes nothing.
        let (status, again) = vote(&alice, &id, "deny").await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");

        // Other arguments are not released.
        let other = pending(&write(&client, mcp, "HELLO").await);
        assert_ne!(other, id);
        assert_eq!(runs(), 0);
        // The approved call runs, once.
        ran(&write(&client, mcp, "hello").await);
        assert_eq!(runs(), 1);
        assert_eq!(
            alice.get(&format!("/v1/approvals/{id}")).await["state"],
            "consumed"
        );
        let third = pending(&write(&client, mcp, "hello").await);
        assert_ne!(third, id);
        assert_eq!(runs(), 1);

        // A denial: the call does not run, and asking again asks anew.
        let (status, denied) = vote(&alice, &other, "deny").await;
        assert_eq!(
            (status, denied["state"].as_str()),
            (StatusCode::OK, Some("denied"))
        );
        let after_deny = pending(&write(&client, mcp, "HELLO").await);
        assert_ne!(after_deny, other);
        assert_eq!(runs(), 1);

        let (_, metrics) = alice.get_text("/metrics").await;
        for line in [
            "aegis_approvals_released_total 1",
            "aegis_approvals_decided_total{outcome=\"approved\"} 1",
            "aegis_approvals_decided_total{outcome=\"denied\"} 1",
            "aegis_approval_decision_seconds_count 2",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
        }

        // A restart: what waits still waits and can be approved; what was
        // used stays used.
        server.kill();
        let (server, mcp) = start(dir.path(), &ledger, &manifest_file, &upstream.url());
        let alice = Api::new(server.addr).with_token(ALICE);
        assert_eq!(
            alice.get(&format!("/v1/approvals/{third}")).await["state"],
            "pending"
        );
        assert_eq!(
            alice.get(&format!("/v1/approvals/{id}")).await["state"],
            "consumed"
        );
        let (status, _) = vote(&alice, &third, "approve").await;
        assert_eq!(status, StatusCode::OK);
        ran(&write(&client, mcp, "hello").await);
        assert_eq!(runs(), 2);
        pending(&write(&client, mcp, "hello").await);
        assert_eq!(runs(), 2);

        let (status, missing) = vote(&alice, "appr-nonexistent", "approve").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        let (status, bad) = alice
            .request(Method::GET, "/v1/approvals?state=waiting", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let verified = alice.verify_session("default", SESSION).await;
        assert_eq!(verified["valid"], true, "{verified}");
        server.terminate();
    });
}

#[test]
fn two_person_approval_needs_two_distinct_operators() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest_file = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_file, manifest(2)).unwrap();
    block_on(Duration::from_secs(120), async {
        let upstream = demo_upstream(dir.path()).await;
        let runs = || upstream.stats().tool_calls("write_file");
        let (server, mcp) = start(dir.path(), &ledger, &manifest_file, &upstream.url());
        let client = Client::builder(TokioExecutor::new()).build_http();
        let (alice, bob) = (
            Api::new(server.addr).with_token(ALICE),
            Api::new(server.addr).with_token(BOB),
        );

        let id = pending(&write(&client, mcp, "two keys").await);
        let (status, once) = vote(&alice, &id, "approve").await;
        assert_eq!(
            (status, once["state"].as_str()),
            (StatusCode::OK, Some("pending"))
        );
        assert_eq!(once["approvals"], 1);
        assert_eq!(pending(&write(&client, mcp, "two keys").await), id);
        // The same operator twice counts once.
        let (status, twice) = vote(&alice, &id, "approve").await;
        assert_eq!(status, StatusCode::CONFLICT, "{twice}");
        assert_eq!(pending(&write(&client, mcp, "two keys").await), id);
        assert_eq!(runs(), 0);

        let (status, both) = vote(&bob, &id, "approve").await;
        assert_eq!(
            (status, both["state"].as_str()),
            (StatusCode::OK, Some("approved"))
        );
        ran(&write(&client, mcp, "two keys").await);
        assert_eq!(runs(), 1);
        pending(&write(&client, mcp, "two keys").await);
        assert_eq!(runs(), 1);
        server.terminate();
    });
}

/// `aegis-proxy approvals ...` against `server`, with `token` (a file).
fn cli(server: SocketAddr, token: &Path, args: &[String]) -> support::Output {
    let mut all: Vec<String> = vec!["approvals".into()];
    all.extend(args.iter().cloned());
    all.extend([
        "--server".to_owned(),
        format!("http://{server}"),
        "--token-file".to_owned(),
        token.display().to_string(),
    ]);
    support::aegis(all)
}

#[test]
fn the_cli_lists_shows_approves_denies_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest_file = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_file, manifest(1)).unwrap();
    block_on(Duration::from_secs(120), async {
        let upstream = demo_upstream(dir.path()).await;
        let (server, mcp) = start(dir.path(), &ledger, &manifest_file, &upstream.url());
        let client = Client::builder(TokioExecutor::new()).build_http();
        let (alice, agent) = (
            dir.path().join("alice.token"),
            dir.path().join("agent.token"),
        );
        let admin = server.addr;
        let run = |token: std::path::PathBuf, args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            tokio::task::spawn_blocking(move || cli(admin, &token, &args))
        };

        let first = pending(&write(&client, mcp, "one").await);
        let listed = run(alice.clone(), &["list", "--state", "pending"])
            .await
            .unwrap();
        listed.expect_code(0, "list");
        let line = listed.stdout.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("{first} pending 0/1 write_file default/{SESSION}")),
            "{line}"
        );
        assert!(line.contains("\"content\":\"one\""), "{line}");

        let id = first.as_str();
        let shown = run(alice.clone(), &["show", id]).await.unwrap();
        shown.expect_code(0, "show");
        assert!(
            shown.stdout.contains("\"content\": \"one\""),
            "{}",
            shown.stdout
        );

        // The agent's own token cannot decide: exit 1, nothing changed.
        let refused = run(agent, &["approve", id]).await.unwrap();
        refused.expect_code(1, "approve with the agent's token");
        assert!(refused.stderr.contains("403"), "{}", refused.stderr);

        // watch: prints what waits now and what is requested while it runs.
        let watching = run(
            alice.clone(),
            &["watch", "--count", "2", "--interval-ms", "100", "--json"],
        );
        let second = pending(&write(&client, mcp, "two").await);
        let watched = watching.await.unwrap();
        watched.expect_code(0, "watch");
        let ids: Vec<String> = watched
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, [first.clone(), second.clone()]);

        let approved = run(alice.clone(), &["approve", id, "--reason", "expected"])
            .await
            .unwrap();
        approved.expect_code(0, "approve");
        assert!(
            approved
                .stdout
                .starts_with(&format!("{first} approved 1/1")),
            "{}",
            approved.stdout
        );
        let again = run(alice.clone(), &["deny", id]).await.unwrap();
        again.expect_code(1, "deny after approve");
        assert!(again.stderr.contains("409"), "{}", again.stderr);
        let denied = run(alice.clone(), &["deny", &second, "--json"])
            .await
            .unwrap();
        denied.expect_code(0, "deny");
        assert_eq!(denied.json()["state"], "denied");
        assert_eq!(denied.json()["votes"][0]["reason"], "");

        ran(&write(&client, mcp, "one").await);
        assert_eq!(upstream.stats().tool_calls("write_file"), 1);
        let unknown = run(alice.clone(), &["show", "appr-unknown"]).await.unwrap();
        unknown.expect_code(1, "show an unknown id");
        let usage = run(alice, &["show", "../etc"]).await.unwrap();
        usage.expect_code(2, "a path for an id");
        server.terminate();
    });
}

/// A webhook receiver on `127.0.0.1:0`: every POSTed body, in order.
async fn webhook_receiver() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

#[test]
fn the_webhook_hears_of_each_request_and_decision() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest_file = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_file, manifest(1)).unwrap();
    block_on(Duration::from_secs(120), async {
        let upstream = demo_upstream(dir.path()).await;
        let (hook, mut heard) = webhook_receiver().await;
        let extra = format!("approval:\n  webhook_url: http://{hook}/aegis\n");
        let (server, mcp) =
            start_with(dir.path(), &ledger, &manifest_file, &upstream.url(), &extra);
        let client = Client::builder(TokioExecutor::new()).build_http();
        let alice = Api::new(server.addr).with_token(ALICE);

        let id = pending(&write(&client, mcp, "hook").await);
        let requested = next(&mut heard).await;
        assert_eq!(requested["type"], "approval.requested", "{requested}");
        assert_eq!(requested["approval"]["id"], id.as_str());
        assert_eq!(
            requested["approval"]["args"],
            json!({"path": "note.txt", "content": "hook"})
        );
        // Asked again while it waits: not a new request, no new event.
        assert_eq!(pending(&write(&client, mcp, "hook").await), id);

        let other = pending(&write(&client, mcp, "other").await);
        let (status, _) = vote(&alice, &id, "approve").await;
        assert_eq!(status, StatusCode::OK);
        // Events arrive in order: the second request, then the decision.
        let second = next(&mut heard).await;
        assert_eq!(
            (second["type"].as_str(), second["approval"]["id"].as_str()),
            (Some("approval.requested"), Some(other.as_str()))
        );
        let decided = next(&mut heard).await;
        assert_eq!(decided["type"], "approval.decided", "{decided}");
        assert_eq!(decided["approval"]["id"], id.as_str());
        assert_eq!(decided["approval"]["state"], "approved");
        assert_eq!(
            decided["approval"]["votes"][0]["reason"],
            "test says approve"
        );
        // Counted once the receiver has answered, which is after it heard
        // the event: look until the count is there (bounded by the test's
        // own deadline), and fail at once if an event failed instead.
        let delivered = "aegis_approval_webhooks_total{result=\"delivered\"} 3";
        let failed = "aegis_approval_webhooks_total{result=\"failed\"} 0";
        loop {
            let (_, metrics) = alice.get_text("/metrics").await;
            assert!(
                metrics.lines().any(|l| l == failed),
                "a webhook event failed"
            );
            if metrics.lines().any(|l| l == delivered) {
                break;
            }
            tokio::task::yield_now().await;
        }
        server.terminate();
    });
}

/// The next webhook body (failing after the test deadline).
async fn next(heard: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(DEADLINE, heard.recv())
        .await
        .expect("a webhook event within the deadline")
        .expect("the receiver is running")
}

/// The demo tool server on `127.0.0.1:0`, its sandbox under `dir`.
async fn demo_upstream(dir: &Path) -> DemoServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = DemoConfig {
        sandbox: dir.join("sandbox"),
        answer: AnswerMode::Json,
        ..DemoConfig::default()
    };
    std::fs::create_dir_all(&config.sandbox).unwrap();
    DemoServer::start(listener, config).await.unwrap()
}

/// The `write_file` call of [`write`], as an HTTP request accepting `accept`.
fn write_request(mcp: SocketAddr, content: &str, accept: &'static str) -> Request<Full<Bytes>> {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "write_file", "arguments": {"path": "note.txt", "content": content}}});
    Request::builder()
        .method(Method::POST)
        .uri(format!("http://{mcp}/mcp/tools"))
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-aegis-session-id", SESSION)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The next blank-line-ended block of an event stream (`buffer` keeps what
/// came after it); `None` when the stream ended first.
async fn next_block(body: &mut hyper::body::Incoming, buffer: &mut String) -> Option<String> {
    let read = async {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block = buffer[..end].to_owned();
                buffer.replace_range(..end + 2, "");
                return Some(block);
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                _ => return None,
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.unwrap()
}

/// The JSON-RPC result of an SSE `message` event block.
fn event_result(block: &str) -> Value {
    let data: String = block
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str::<Value>(&data).unwrap()["result"].clone()
}

/// The approval id a keep-alive comment (`: waiting for approval <id> (..)`) names.
fn comment_approval(block: &str) -> String {
    let rest = block
        .strip_prefix(": waiting for approval ")
        .unwrap_or_else(|| panic!("not a hold keep-alive: {block:?}"));
    rest.split(' ').next().unwrap().to_owned()
}

#[test]
fn a_held_call_waits_for_two_operators_times_out_pending_and_ends_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest_file = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_file, manifest_in(2, "hold")).unwrap();
    block_on(Duration::from_secs(120), async {
        let upstream = demo_upstream(dir.path()).await;
        let runs = || upstream.stats().tool_calls("write_file");
        let (server, mcp) = start(dir.path(), &ledger, &manifest_file, &upstream.url());
        let client = Client::builder(TokioExecutor::new()).build_http();
        let (alice, bob, agent) = (
            Api::new(server.addr).with_token(ALICE),
            Api::new(server.addr).with_token(BOB),
            Api::new(server.addr).with_token(AGENT),
        );

        // Held: an event stream at once, its first block naming the approval.
        let sse = "application/json, text/event-stream";
        let response = tokio::time::timeout(
            DEADLINE,
            client.request(write_request(mcp, "two keys", sse)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        let mut buffer = String::new();
        let id = comment_approval(&next_block(&mut body, &mut buffer).await.unwrap());
        assert!(id.starts_with("appr-"), "{id}");
        // The agent's own credential cannot approve it; one operator is
        // not enough; the same one twice counts once.
        let (status, _) = vote(&agent, &id, "approve").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, once) = vote(&alice, &id, "approve").await;
        assert_eq!(
            (status, once["state"].as_str()),
            (StatusCode::OK, Some("pending"))
        );
        let (status, _) = vote(&alice, &id, "approve").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(runs(), 0, "ran on one approval");
        let (status, both) = vote(&bob, &id, "approve").await;
        assert_eq!(
            (status, both["state"].as_str()),
            (StatusCode::OK, Some("approved"))
        );
        // The held request now carries the tool's own answer, and ends.
        let result = loop {
            let block = next_block(&mut body, &mut buffer).await.unwrap();
            if !block.starts_with(':') {
                break event_result(&block);
            }
        };
        ran(&result);
        assert_eq!(next_block(&mut body, &mut buffer).await, None);
        assert_eq!(runs(), 1);
        let (_, used) = alice
            .request(Method::GET, &format!("/v1/approvals/{id}"), None)
            .await
            .unwrap();
        assert_eq!(used["state"], "consumed", "{used}");
        // A batch is not held: its call is answered pending at once.
        let batch = json!([{"jsonrpc": "2.0", "id": 8, "method": "tools/call",
            "params": {"name": "write_file", "arguments": {"path": "b.txt", "content": "batch"}}}]);
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{mcp}/mcp/tools"))
            .header("content-type", "application/json")
            .header("accept", sse)
            .header("mcp-protocol-version", "2025-03-26")
            .header("x-aegis-session-id", SESSION)
            .body(Full::new(Bytes::from(batch.to_string())))
            .unwrap();
        let answer = tokio::time::timeout(DEADLINE, async {
            let resp = client.request(req).await.unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        })
        .await
        .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        pending(&answer[0]["result"]);
        let (_, metrics) = alice.get_text("/metrics").await;
        for line in [
            "aegis_approval_holds_ended_total{outcome=\"released\"} 1",
            "aegis_approval_holds_ended_total{outcome=\"timed_out\"} 0",
            "aegis_approval_held_calls 0",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
        }
        server.terminate();

        // A hold that times out: a JSON-only client hears nothing until it
        // is answered pending; the approval stands, and the same call made
        // once it is approved runs at once.
        let (server, mcp) = start_with(
            dir.path(),
            &ledger,
            &manifest_file,
            &upstream.url(),
            "approval:\n  hold_timeout_ms: 300\n",
        );
        let (alice, bob) = (
            Api::new(server.addr).with_token(ALICE),
            Api::new(server.addr).with_token(BOB),
        );
        let answer = tokio::time::timeout(DEADLINE, async {
            let resp = client
                .request(write_request(mcp, "later", "application/json"))
                .await
                .unwrap();
            assert_eq!(resp.headers()["content-type"], "application/json");
            resp.into_body().collect().await.unwrap().to_bytes()
        })
        .await
        .unwrap();
        let result = serde_json::from_slice::<Value>(&answer).unwrap()["result"].clone();
        assert_eq!(result["isError"], true, "{result}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("Approval pending: nobody decided"),
            "{text}"
        );
        let meta = &result["_meta"]["aegis/decision"];
        assert_eq!(meta["approval_state"], "pending", "{result}");
        let id = meta["approval_id"].as_str().unwrap().to_owned();
        assert_eq!(runs(), 1);
        vote(&alice, &id, "approve").await;
        vote(&bob, &id, "approve").await;
        let answer = tokio::time::timeout(DEADLINE, async {
            let resp = client
                .request(write_request(mcp, "later", "application/json"))
                .await
                .unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        })
        .await
        .unwrap();
        ran(&serde_json::from_slice::<Value>(&answer).unwrap()["result"]);
        assert_eq!(runs(), 2);
        server.terminate();

        // Shutdown ends a hold at once, answered pending (it would
        // otherwise hold the drain for the whole hold).
        let (server, mcp) = start(dir.path(), &ledger, &manifest_file, &upstream.url());
        let response = tokio::time::timeout(
            DEADLINE,
            client.request(write_request(mcp, "at shutdown", sse)),
        )
        .await
        .unwrap()
        .unwrap();
        let mut body = response.into_body();
        let mut buffer = String::new();
        comment_approval(&next_block(&mut body, &mut buffer).await.unwrap());
        support::signal(server.pid(), "TERM");
        let result = event_result(&next_block(&mut body, &mut buffer).await.unwrap());
        pending(&result);
        server.terminate();
        assert_eq!(runs(), 2);
    });
}

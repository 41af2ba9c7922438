//! Budgets survive a crash, through the real binary: the sidecar proxies
//! `tools/call`s from concurrent clients to the demo tool server, is
//! SIGKILLed mid-load, and restarts on the same ledger. A sixty-call budget
//! stays sixty calls: exactly sixty are allowed, every call after is denied,
//! the tool server never ran more calls than were allowed, and the chain
//! verifies.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{DEADLINE, Server, block_on};
use tokio::sync::Notify;
use tokio::task::JoinSet;

const BUDGET: usize = 60;
const CLIENTS: usize = 8;
/// Allowed calls before the kill.
const KILL_AFTER: usize = 25;
/// Calls the clients may start before the kill, all together: short of the
/// budget, so however late the kill lands, none is denied before it and
/// some of the budget is left for after the restart.
const BEFORE_KILL_MAX: usize = BUDGET - 10;
const SESSION: &str = "crash-budget";

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: crash-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo]
  budgets: {max_steps: 100000, max_tool_calls: 60, max_wall_time_ms: 3600000}
policy:
  loops: {identical_calls: 1000, identical_window: 1000}
"#;

/// What one call came back as.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Allowed,
    Denied(String),
    /// No answer: the sidecar is gone.
    Transport,
}

async fn call(client: &Client<HttpConnector, Full<Bytes>>, mcp: SocketAddr, n: usize) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": format!("call {n}")}}});
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
        let resp = client.request(req).await.ok()?;
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    match tokio::time::timeout(DEADLINE, exchange).await {
        Ok(Some(answer)) => match answer["result"]["_meta"]["aegis/decision"]["reason"].as_str() {
            Some(reason) => Reply::Denied(reason.to_owned()),
            None if answer["result"]["isError"] == false => Reply::Allowed,
            None => panic!("unexpected answer: {answer}"),
        },
        _ => Reply::Transport,
    }
}

#[test]
fn a_sigkill_under_load_does_not_reset_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    block_on(Duration::from_secs(180), async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = DemoConfig {
            sandbox: dir.path().join("sandbox"),
            answer: AnswerMode::Json,
            ..DemoConfig::default()
        };
        let upstream = DemoServer::start(listener, config).await.unwrap();
        let (server, mcp) = Server::with_mcp(dir.path(), &ledger, &manifest, &upstream.url(), &[]);

        // Load from several clients until enough calls were allowed, then
        // kill. The clients share BEFORE_KILL_MAX tickets, so how far they
        // get before the kill lands is bounded by count, not by how quickly
        // this task wakes up; a client out of tickets just stops.
        let allowed = Arc::new(AtomicUsize::new(0));
        let tickets = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(Notify::new());
        let mut clients = JoinSet::new();
        for c in 0..CLIENTS {
            let (allowed, tickets, enough) = (allowed.clone(), tickets.clone(), enough.clone());
            clients.spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http();
                for k in 0.. {
                    if tickets.fetch_add(1, Ordering::SeqCst) >= BEFORE_KILL_MAX {
                        return;
                    }
                    match call(&client, mcp, c * 100_000 + k).await {
                        Reply::Allowed => {
                            if allowed.fetch_add(1, Ordering::SeqCst) + 1 >= KILL_AFTER {
                                enough.notify_one();
                            }
                        }
                        Reply::Denied(reason) => panic!("denied before the budget: {reason}"),
                        Reply::Transport => return,
                    }
                }
            });
        }
        enough.notified().await;
        server.kill();
        while clients.join_next().await.is_some() {}
        let before_kill = allowed.load(Ordering::SeqCst);
        assert!(before_kill >= KILL_AFTER);
        assert!(
            before_kill < BUDGET,
            "the load should not use the whole budget before the kill"
        );

        // Restart: calls go on until the budget, then are denied.
        let (server, mcp) = Server::with_mcp(dir.path(), &ledger, &manifest, &upstream.url(), &[]);
        let client = Client::builder(TokioExecutor::new()).build_http();
        let mut after = 0;
        let denied = loop {
            match call(&client, mcp, 1_000_000 + after).await {
                Reply::Allowed => after += 1,
                Reply::Denied(reason) => break reason,
                Reply::Transport => panic!("the restarted sidecar did not answer"),
            }
            assert!(after <= BUDGET, "the budget was reset by the restart");
        };
        assert_eq!(denied, "BUDGET_EXCEEDED");
        assert_eq!(
            call(&client, mcp, 2_000_000).await,
            Reply::Denied("BUDGET_EXCEEDED".into())
        );

        // A proposal and its decision are one commit, so the kill left no
        // proposal without a decision: exactly the budget was allowed, each
        // decision right after its proposal. The server ran no more than
        // that (a call allowed just before the kill may never have been sent).
        let events = server.api().list_session("default", SESSION).await;
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        for (i, t) in types.iter().enumerate() {
            if *t == "TOOL_CALL_PROPOSED" {
                let next = types.get(i + 1).copied();
                assert!(
                    matches!(next, Some("TOOL_CALL_ALLOWED" | "TOOL_CALL_DENIED")),
                    "seq {i}: a proposal followed by {next:?}"
                );
            }
        }
        let count = |t: &str| types.iter().filter(|x| **x == t).count();
        let allowed_total = count("TOOL_CALL_ALLOWED");
        assert_eq!(allowed_total, BUDGET);
        assert_eq!(
            count("TOOL_CALL_PROPOSED") - count("TOOL_CALL_DENIED"),
            BUDGET
        );
        let ran = usize::try_from(upstream.stats().tool_calls("echo")).unwrap();
        assert!(
            ran <= allowed_total,
            "the tool server ran {ran} calls, {allowed_total} allowed"
        );
        assert!(
            ran >= before_kill + after,
            "{ran} < {before_kill} + {after}"
        );
        let verify = server.api().verify_session("default", SESSION).await;
        assert_eq!(verify["valid"], true, "{verify}");
        server.terminate();
        upstream.shutdown().await;
    });
}

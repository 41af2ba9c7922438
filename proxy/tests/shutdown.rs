//! The real binary stopped by SIGTERM with calls in flight: a streamed
//! (SSE) answer and a JSON one reach the client whole, and the ledger holds
//! their results; the process exits 0. With `--drain-delay-ms`, readiness
//! turns false at once while new connections are still served, until the
//! delay ends or a second signal ends it.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use support::{DEADLINE, Server, block_on};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: shutdown-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [slow, progress]
"#;

/// One `tools/call` of `slow`, answered as the upstream answers; the
/// body read to its end.
async fn call(mcp: SocketAddr, params: serde_json::Value) -> Result<String, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{mcp}/mcp/tools"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-aegis-session-id", "drain")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("the answer was cut: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The demo tool server (answering `answer`) and the real binary in front
/// of it, with `envs`, on a ledger in `dir`.
struct Rig {
    upstream: DemoServer,
    server: Server,
    mcp: SocketAddr,
}

impl Rig {
    async fn start(dir: &Path, answer: AnswerMode, envs: &[(&str, &OsStr)]) -> Rig {
        let manifest = dir.join("manifest.yaml");
        std::fs::write(&manifest, MANIFEST).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = DemoConfig {
            sandbox: dir.join("sandbox"),
            answer,
            ..DemoConfig::default()
        };
        let upstream = DemoServer::start(listener, config).await.unwrap();
        let (server, mcp) = Server::with_mcp(dir, &ledger(dir), &manifest, &upstream.url(), envs);
        Rig {
            upstream,
            server,
            mcp,
        }
    }

    /// Waits (bounded) until the tool server has started running `tool`.
    async fn reached(&self, tool: &str) {
        let stats = self.upstream.stats();
        let started = std::time::Instant::now();
        while stats.tool_calls(tool) == 0 {
            assert!(
                started.elapsed() < DEADLINE,
                "the call never reached the tool server"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn ledger(dir: &Path) -> PathBuf {
    dir.join("ledger.db")
}

/// The session `drain` as `events export` prints it, once the process ended.
fn exported(dir: &Path) -> String {
    let mut cmd = support::command();
    cmd.args(["events", "export", "--ledger"])
        .arg(ledger(dir))
        .args(["--tenant", "default", "--session", "drain"]);
    support::output(cmd).stdout
}

fn drains(answer: AnswerMode, tool: &'static str, params: serde_json::Value, says: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    block_on(Duration::from_secs(120), async {
        let rig = Rig::start(dir.path(), answer, &[]).await;
        // Long enough to be in flight when SIGTERM lands; within the grace.
        let in_flight = tokio::spawn(call(rig.mcp, params));
        rig.reached(tool).await;
        let Rig {
            upstream, server, ..
        } = rig;
        let stop = tokio::task::spawn_blocking(move || server.terminate());
        let answer = tokio::time::timeout(DEADLINE, in_flight)
            .await
            .unwrap()
            .unwrap();
        let text = answer.unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains(says), "{text}");
        stop.await.unwrap();
        upstream.shutdown().await;
    });
    let out = exported(dir.path());
    assert!(out.contains("TOOL_RESULT"), "{out}");
}

#[test]
fn a_streamed_answer_in_flight_at_sigterm_reaches_the_client_whole() {
    let slow = json!({"name": "slow", "arguments": {"ms": 1500}});
    drains(AnswerMode::Sse, "slow", slow, "slept 1500 ms");
}

#[test]
fn a_json_answer_in_flight_at_sigterm_reaches_the_client_whole() {
    let slow = json!({"name": "slow", "arguments": {"ms": 1500}});
    drains(AnswerMode::Json, "slow", slow, "slept 1500 ms");
}

#[test]
fn a_stream_of_progress_in_flight_at_sigterm_reaches_the_client_whole() {
    let progress = json!({"name": "progress", "arguments": {"steps": 75},
                          "_meta": {"progressToken": "p-1"}});
    drains(AnswerMode::Sse, "progress", progress, "completed 75 steps");
}

#[test]
fn a_connection_made_during_the_drain_delay_is_served() {
    let dir = tempfile::tempdir().unwrap();
    block_on(Duration::from_secs(120), async {
        // A hang guard: the second SIGTERM ends the delay.
        let delay = [("AEGIS_DRAIN_DELAY_MS", OsStr::new("600000"))];
        let rig = Rig::start(dir.path(), AnswerMode::Json, &delay).await;
        support::signal(rig.server.pid(), "TERM");
        let api = support::Api::new(rig.server.addr);
        let started = std::time::Instant::now();
        loop {
            let (status, _) = api.request(Method::GET, "/readyz", None).await.unwrap();
            if status == 503 {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "readiness never turned false");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A new connection, after SIGTERM: still served.
        let answer = call(rig.mcp, json!({"name": "slow", "arguments": {"ms": 1}})).await;
        assert!(answer.unwrap().contains("slept 1 ms"));
        assert_eq!(rig.upstream.stats().tool_calls("slow"), 1);
        // The second signal ends the delay: a clean exit.
        let Rig {
            upstream, server, ..
        } = rig;
        tokio::task::spawn_blocking(move || server.terminate())
            .await
            .unwrap();
        upstream.shutdown().await;
    });
}

/// With no grace (`mcp.shutdown_grace_ms: 0`), a call in flight at SIGTERM
/// is cut: the client sees its answer fail, and the ledger does not say it
/// was answered — the call stays open (allowed, no result), which the next
/// process records as `result_not_recorded` before the session's next
/// decision (`gate::record_lost`, tested in `gate/tests.rs`).
#[test]
fn a_call_cut_by_the_grace_period_is_not_recorded_as_answered() {
    let dir = tempfile::tempdir().unwrap();
    block_on(Duration::from_secs(120), async {
        let no_grace = [("AEGIS_SHUTDOWN_GRACE_MS", OsStr::new("0"))];
        let rig = Rig::start(dir.path(), AnswerMode::Sse, &no_grace).await;
        // Far longer than the test: it is in flight when SIGTERM lands.
        let slow = json!({"name": "slow", "arguments": {"ms": 60000}});
        let in_flight = tokio::spawn(call(rig.mcp, slow));
        rig.reached("slow").await;
        let Rig {
            upstream, server, ..
        } = rig;
        tokio::task::spawn_blocking(move || server.terminate())
            .await
            .unwrap();
        let answer = tokio::time::timeout(DEADLINE, in_flight)
            .await
            .unwrap()
            .unwrap();
        assert!(
            answer.as_ref().map_or(true, |text| !text.contains("slept")),
            "{answer:?}"
        );
        upstream.shutdown().await;
    });
    let out = exported(dir.path());
    assert!(out.contains("TOOL_CALL_ALLOWED"), "{out}");
    assert!(!out.contains("TOOL_RESULT"), "{out}");
}

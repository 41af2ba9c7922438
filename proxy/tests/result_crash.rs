//! A result the agent saw but the ledger never got cannot un-taint a
//! session, through the real binary. With `ledger.result_commit:
//! after_answer` (the default) the agent gets a tool's answer while its
//! `TOOL_RESULT` is still being committed. Here the ledger's write lock is
//! held by another connection from the moment the tool server has the call,
//! so the answer reaches the agent and its result cannot commit; the sidecar
//! is then SIGKILLed. After a restart on the same ledger the session is
//! tainted — its next high-risk call is refused and never reaches the tool
//! server — and the ledger says the result was not recorded.

#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_ledger::testing::WriteLock;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::{DEADLINE, Server, block_on};
use tokio::sync::{mpsc, oneshot};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: result-crash-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [lookup, send_email]
policy:
  high_risk_sinks: [send_email]
  # A lookup's result alone does not taint: only a result that went
  # unrecorded does.
  non_tainting_tools: [lookup]
"#;

/// A tool server that answers every `tools/call` and counts them by tool.
/// While a hold is set, the next call is reported on `arrived` and answered
/// only when the test says so.
#[derive(Clone, Default)]
struct ToolServer {
    calls: Arc<Mutex<Vec<String>>>,
    hold: Arc<Mutex<Option<Hold>>>,
}

struct Hold {
    arrived: mpsc::Sender<()>,
    answer: oneshot::Receiver<()>,
}

impl ToolServer {
    fn calls_of(&self, tool: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == tool)
            .count()
    }

    async fn serve(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let message: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(message["method"], "tools/call", "only calls are sent here");
        let tool = message["params"]["name"].as_str().unwrap().to_owned();
        self.calls.lock().unwrap().push(tool.clone());
        let hold = self.hold.lock().unwrap().take();
        if let Some(hold) = hold {
            hold.arrived.send(()).await.unwrap();
            hold.answer.await.unwrap();
        }
        let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
            "content": [{"type": "text", "text": format!("{tool} done")}], "isError": false}});
        Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap())
    }

    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| server.clone().serve(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }
}

/// What the agent got back for one call.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Answered(String),
    Refused(String),
}

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    mcp: SocketAddr,
    session: &str,
    id: u64,
    tool: &str,
) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {}}});
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{mcp}/mcp/tools"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-aegis-session-id", session)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["id"], id, "{answer}");
    match answer["result"]["_meta"]["aegis/decision"]["reason"].as_str() {
        Some(reason) => Reply::Refused(reason.to_owned()),
        None => Reply::Answered(
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .into(),
        ),
    }
}

fn start(dir: &Path, ledger: &Path, manifest: &Path, upstream: SocketAddr) -> (Server, SocketAddr) {
    let upstream = format!("tools=http://{upstream}/mcp");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--ledger"),
        ledger.as_os_str(),
        OsStr::new("--manifest"),
        manifest.as_os_str(),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--upstream"),
        OsStr::new(&upstream),
    ];
    // The agent names its session (`x-aegis-session-id`); the default
    // result_commit (after_answer) is what is tried.
    let scope = [("AEGIS_SESSION_SCOPE", OsStr::new("client"))];
    let server = Server::start(dir, &args, &scope);
    let mcp = server.ready["mcp"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("ready file has no mcp address: {}", server.ready));
    (server, mcp)
}

/// A wire-form envelope's type and payload.
fn typed(event: &Value) -> (&str, Value) {
    let payload = match &event["payload"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    };
    (event["event_type"].as_str().unwrap(), payload)
}

#[test]
fn a_sigkill_after_the_answer_and_before_its_result_commits_taints_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    block_on(Duration::from_secs(180), async {
        let tools = ToolServer::default();
        let upstream = tools.start().await;
        let (server, mcp) = start(dir.path(), &ledger, &manifest, upstream);
        let client = Client::builder(TokioExecutor::new()).build_http();

        // The control: a recorded lookup leaves the session clean, so a
        // high-risk call after it runs.
        let control = "control";
        assert_eq!(
            call(&client, mcp, control, 1, "lookup").await,
            Reply::Answered("lookup done".into())
        );
        assert_eq!(
            call(&client, mcp, control, 2, "send_email").await,
            Reply::Answered("send_email done".into())
        );
        assert_eq!(tools.calls_of("send_email"), 1);

        // The lookup whose result is lost: its proposal and decision are
        // committed (the tool server has the call); then the write lock is
        // taken, and only then does the tool answer.
        let session = "lost-result";
        let (arrived_tx, mut arrived) = mpsc::channel(1);
        let (answer, answer_rx) = oneshot::channel();
        *tools.hold.lock().unwrap() = Some(Hold {
            arrived: arrived_tx,
            answer: answer_rx,
        });
        let lookup = tokio::spawn({
            let client = client.clone();
            async move { call(&client, mcp, session, 3, "lookup").await }
        });
        arrived.recv().await.unwrap();
        let lock = tokio::task::spawn_blocking({
            let ledger = ledger.clone();
            move || WriteLock::take(&ledger, DEADLINE).unwrap()
        })
        .await
        .unwrap();
        answer.send(()).unwrap();
        // The agent has its answer though the result is not in the ledger.
        assert_eq!(lookup.await.unwrap(), Reply::Answered("lookup done".into()));
        server.kill();
        drop(lock);

        // Restarted on the same ledger: the session's next decision finds the
        // call that ran without a recorded result, records that, and is
        // made on a tainted session.
        let (server, mcp) = start(dir.path(), &ledger, &manifest, upstream);
        assert_eq!(
            call(&client, mcp, session, 4, "send_email").await,
            Reply::Refused("TAINTED_TO_HIGH_RISK".into())
        );
        assert_eq!(
            tools.calls_of("send_email"),
            1,
            "the refused call never ran"
        );
        assert_eq!(tools.calls_of("lookup"), 2);

        let listed = server.api().list_session("default", session).await;
        let events: Vec<(&str, Value)> = listed.iter().map(typed).collect();
        let types: Vec<&str> = events.iter().map(|(t, _)| *t).collect();
        assert!(!types.contains(&"TOOL_RESULT"), "{types:?}");
        let lookup = events
            .iter()
            .position(|(t, p)| *t == "TOOL_CALL_PROPOSED" && p["tool_name"] == "lookup")
            .unwrap();
        let lost = events
            .iter()
            .position(|(t, p)| *t == "ERROR_RAISED" && p["error"] == "result_not_recorded")
            .unwrap_or_else(|| panic!("the lost result is recorded: {types:?}"));
        assert_eq!(events[lost].1["proposal_seq"], listed[lookup]["seq"]);
        let refused = events
            .iter()
            .position(|(t, p)| *t == "TOOL_CALL_PROPOSED" && p["tool_name"] == "send_email")
            .unwrap();
        assert!(lost < refused, "recorded before the next call was decided");
        assert_eq!(types[refused + 1], "TOOL_CALL_DENIED");
        let verify = server.api().verify_session("default", session).await;
        assert_eq!(verify["valid"], true, "{verify}");
        server.terminate();
    });
}

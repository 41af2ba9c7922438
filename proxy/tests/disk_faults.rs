//! The real binary on a ledger that cannot record: a full disk (a real
//! tmpfs) and the ledger file deleted underneath. Every call it cannot
//! record is refused and never reaches the tool server, `/readyz` says so,
//! and once the fault clears calls go on without a restart, on a chain that
//! verifies.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use aegis_ledger::testing::{Tmpfs, fill};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{Api, DEADLINE, Server, block_on};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: disk-fault-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [echo]
policy:
  loops: {identical_calls: 100000, identical_window: 100000}
"#;

const SESSION: &str = "disk-faults";

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// The tool's own answer.
    Ran,
    /// Refused by the sidecar: what it said.
    Refused(String),
}

struct Rig {
    server: Server,
    mcp: SocketAddr,
    upstream: DemoServer,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Rig {
    async fn start(dir: &Path, ledger: &Path) -> Rig {
        let manifest = dir.join("manifest.yaml");
        std::fs::write(&manifest, MANIFEST).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = DemoConfig {
            sandbox: dir.join("sandbox"),
            answer: AnswerMode::Json,
            ..DemoConfig::default()
        };
        let upstream = DemoServer::start(listener, config).await.unwrap();
        let (server, mcp) = Server::with_mcp(dir, ledger, &manifest, &upstream.url(), &[]);
        Rig {
            server,
            mcp,
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn tool_calls(&self) -> u64 {
        self.upstream.stats().tool_calls("echo")
    }

    async fn call(&self, n: usize) -> Reply {
        let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": format!("call {n} {}", "x".repeat(3000))}}});
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/mcp/tools", self.mcp))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("x-aegis-session-id", SESSION)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let exchange = async {
            let resp = self.client.request(req).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let answer = tokio::time::timeout(DEADLINE, exchange).await.unwrap();
        if answer["result"]["isError"] == false
            && answer["result"]["_meta"]["aegis/decision"].is_null()
        {
            Reply::Ran
        } else {
            Reply::Refused(answer.to_string())
        }
    }

    async fn ready(&self) -> (StatusCode, Value) {
        Api::new(self.server.addr)
            .request(Method::GET, "/readyz", None)
            .await
            .unwrap()
    }

    async fn writable(&self) -> String {
        let (_, scrape) = Api::new(self.server.addr).get_text("/metrics").await;
        scrape
            .lines()
            .find(|l| l.starts_with("aegis_ledger_writable "))
            .unwrap_or("aegis_ledger_writable missing")
            .to_owned()
    }
}

fn verify(ledger: &Path) {
    let mut cmd = support::command();
    cmd.arg("verify").arg("--ledger").arg(ledger);
    support::output(cmd).expect_code(0, "verify");
}

#[test]
fn a_full_disk_refuses_calls_unforwarded_and_they_resume_without_a_restart() {
    let Some(fs) = Tmpfs::mount(8 * 1024 * 1024) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = fs.path().join("ledger.db");
    block_on(Duration::from_secs(180), async {
        let rig = Rig::start(dir.path(), &ledger).await;
        for n in 0..3 {
            assert_eq!(rig.call(n).await, Reply::Ran);
        }
        assert_eq!(rig.ready().await.0, StatusCode::OK);
        assert_eq!(rig.tool_calls(), 3);

        let filler = fill(fs.path());
        // Each call's records grow the WAL; the first that cannot be
        // written is refused, and so is every one after it.
        let mut ran = 3;
        let mut refusal = None;
        for n in 3..200 {
            match rig.call(n).await {
                Reply::Ran => ran += 1,
                Reply::Refused(why) => {
                    refusal = Some(why);
                    break;
                }
            }
        }
        let refusal = refusal.expect("a full disk refused no call");
        assert!(refusal.contains("ledger"), "{refusal}");
        assert_eq!(
            rig.tool_calls(),
            ran,
            "a refused call reached the tool server"
        );
        for n in 200..203 {
            assert!(matches!(rig.call(n).await, Reply::Refused(_)));
        }
        assert_eq!(rig.tool_calls(), ran);
        let (status, body) = rig.ready().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(rig.writable().await, "aegis_ledger_writable 0");

        std::fs::remove_file(filler).unwrap();
        assert_eq!(
            rig.ready().await.0,
            StatusCode::OK,
            "ready again, no restart"
        );
        assert_eq!(rig.writable().await, "aegis_ledger_writable 1");
        assert_eq!(rig.call(300).await, Reply::Ran);
        assert_eq!(rig.tool_calls(), ran + 1);
        rig.server.terminate();
        rig.upstream.shutdown().await;
    });
    verify(&ledger);
}

#[test]
fn a_ledger_file_deleted_underneath_refuses_every_call_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    block_on(Duration::from_secs(120), async {
        let rig = Rig::start(dir.path(), &ledger).await;
        assert_eq!(rig.call(0).await, Reply::Ran);
        std::fs::remove_file(&ledger).unwrap();
        for n in 1..11 {
            match rig.call(n).await {
                Reply::Refused(why) => assert!(why.contains("was deleted"), "{why}"),
                Reply::Ran => panic!("call {n} ran on a deleted ledger"),
            }
        }
        assert_eq!(rig.tool_calls(), 1, "nothing reached the tool server");
        let (status, body) = rig.ready().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("was deleted"),
            "{body}"
        );
        assert_eq!(rig.writable().await, "aegis_ledger_writable 0");
        rig.server.kill();
        rig.upstream.shutdown().await;
    });
}

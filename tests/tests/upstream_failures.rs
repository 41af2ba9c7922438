//! What an agent learns when things go wrong, and what it can make the
//! sidecar hold: an upstream failure is answered without the upstream's
//! URL, address or error chain (the log and the ledger keep them), and a
//! made-up HTTP method becomes no new metric series.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, McpClient, Stack, call, upstream_config};
use aegis_e2e::{Sidecar, run};
use http::Method;
use serde_json::json;

/// A "tool server" that accepts connections and closes them unanswered:
/// unreachable in the proxy's terms, with no port that could be reused.
async fn hang_up_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    addr
}

#[test]
fn upstream_failures_name_no_internal_address() {
    run(async {
        let addr = hang_up_server().await;
        let url = format!("http://{addr}/internal/mcp");
        let sidecar = Sidecar::start_with(|config| {
            let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
            std::fs::write(&path, MANIFEST).unwrap();
            config.manifest = Some(path);
            config.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
            config.mcp.upstreams = vec![upstream_config("tools", &url)];
            config.mcp.default_upstream = Some("tools".into());
        })
        .await;
        let client = McpClient::new(sidecar.running.mcp_addr().unwrap(), "/mcp/tools");
        let secret_parts = [
            addr.to_string(),
            addr.port().to_string(),
            "/internal/mcp".to_owned(),
        ];

        // A tool call, a plain request, and a GET stream.
        let tool = client.post(&call(1, "echo", json!({"text": "hi"}))).await;
        let other = client
            .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
            .await;
        let stream = client.send(Method::GET, "", &[]).await;
        for answer in [&tool, &other, &stream] {
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            assert!(text.contains("unreachable"), "{text}");
            for part in &secret_parts {
                assert!(!text.contains(part.as_str()), "{part} leaked: {text}");
            }
        }
        assert_eq!(
            tool.answer(&json!(1))["error"]["data"]["kind"],
            "unreachable"
        );

        // The ledger keeps what happened, address included, for whoever may
        // read it.
        let events = sidecar.http.session_events("default", "default").await;
        let raised = events
            .iter()
            .find(|e| e["event_type"] == "ERROR_RAISED")
            .unwrap();
        let message = raised["payload"]["message"].as_str().unwrap();
        assert!(message.contains(&addr.to_string()), "{message}");
    });
}

#[test]
fn made_up_methods_become_one_metric_series() {
    run(async {
        let stack = Stack::start(MANIFEST, AnswerMode::Json, |_| {}).await;
        for i in 0..50 {
            let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
            let answer = stack.client.send(method, "", &[]).await;
            assert_eq!(answer.status, http::StatusCode::METHOD_NOT_ALLOWED);
        }
        let text = stack.sidecar.http.get("/metrics").await.text();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("aegis_mcp_requests_total{"))
            .collect();
        assert!(series.iter().all(|l| !l.contains("BREW")), "{series:#?}");
        let other = series
            .iter()
            .find(|l| l.contains("method=\"other\""))
            .unwrap_or_else(|| panic!("no method=\"other\" series: {series:#?}"));
        assert!(other.ends_with(" 50"), "{other}");
        assert_eq!(stack.upstream.stats().total_tool_calls(), 0);
    });
}

/// `mcp.ready_checks_upstreams`: off (the default), readiness ignores the
/// tool servers; on, it answers 503 naming the upstream it cannot connect
/// to, and 200 again once it can.
#[test]
fn readiness_follows_the_upstreams_only_when_asked() {
    run(async {
        let held = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = held.local_addr().unwrap();
        let url = format!("http://{addr}/mcp");
        let checking =
            aegis_e2e::mcp::sidecar_in_front_of("tools", &url, aegis_e2e::mcp::MANIFEST, |c| {
                c.mcp.ready_checks_upstreams = true;
            })
            .await;
        let plain =
            aegis_e2e::mcp::sidecar_in_front_of("tools", &url, aegis_e2e::mcp::MANIFEST, |_| {})
                .await;
        assert_eq!(checking.http.get("/readyz").await.status, 200);
        assert_eq!(plain.http.get("/readyz").await.status, 200);
        // Nothing listens there any more.
        drop(held);
        let down = checking.http.get("/readyz").await;
        assert_eq!(down.status, 503, "{}", down.text());
        assert!(down.text().contains("upstream tools"), "{}", down.text());
        assert_eq!(plain.http.get("/readyz").await.status, 200);
        let back = tokio::net::TcpListener::bind(addr).await.unwrap();
        assert_eq!(checking.http.get("/readyz").await.status, 200);
        drop(back);
    });
}

//! The MCP listener's front door against DNS rebinding: a browser page on a
//! name the attacker controls, resolved to 127.0.0.1, sends the sidecar its
//! own `Host` and `Origin`. Both are refused before anything is routed,
//! authenticated or forwarded (the tool server sees nothing), while the
//! agent's own requests — loopback names, no `Origin` — pass.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, Stack, call, is_error};
use aegis_e2e::run;
use http::{Method, StatusCode};
use serde_json::json;

fn nothing_reached(stack: &Stack) -> bool {
    let snapshot = stack.upstream.stats().snapshot();
    snapshot.methods.values().all(|n| *n == 0) && snapshot.tools.values().all(|n| *n == 0)
}

#[test]
fn a_rebound_host_or_a_foreign_origin_is_refused_before_anything_is_forwarded() {
    run(async {
        let stack = Stack::start(MANIFEST, AnswerMode::Json, |_| {}).await;
        let port = stack.sidecar.running.mcp_addr().unwrap().port();
        let rebound = format!("attacker.example:{port}");
        let echo = call(1, "echo", json!({"text": "from a web page"})).to_string();
        let attempts: [&[(&str, &str)]; 4] = [
            &[("host", &rebound)],
            &[("host", &rebound), ("origin", "http://attacker.example")],
            &[("origin", "http://attacker.example")],
            &[("origin", "null")],
        ];
        for headers in attempts {
            for method in [Method::POST, Method::GET, Method::DELETE] {
                let answer = stack
                    .client
                    .send(method.clone(), echo.clone(), headers)
                    .await;
                assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {headers:?}");
                let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("DNS rebinding"),
                    "{body}"
                );
            }
        }
        assert!(
            nothing_reached(&stack),
            "{:?}",
            stack.upstream.stats().snapshot()
        );
        let http = &stack.sidecar.http;
        let host = http
            .metric("aegis_mcp_front_door_refusals_total{reason=\"host\"}")
            .await;
        let origin = http
            .metric("aegis_mcp_front_door_refusals_total{reason=\"origin\"}")
            .await;
        assert_eq!((host, origin), (Some(6.0), Some(6.0)));
        // Nothing was recorded either.
        let events = http.session_events("default", "default").await;
        assert!(events.is_empty(), "{events:?}");

        // The agent's own requests pass: a loopback Host, no Origin.
        let mut client = stack.client.clone();
        client.initialize().await;
        let reply = client.call(2, "echo", json!({"text": "hi"})).await;
        assert!(!is_error(&reply), "{reply}");
        let reply = client
            .send(
                Method::POST,
                call(3, "echo", json!({"text": "hi"})).to_string(),
                &[("host", &format!("localhost:{port}"))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    });
}

#[test]
fn configured_origins_and_hosts_are_let_in() {
    run(async {
        let stack = Stack::start(MANIFEST, AnswerMode::Json, |config| {
            config.mcp.allowed_origins = vec!["http://localhost:3000".into()];
            config.mcp.allowed_hosts = vec!["127.0.0.1".into(), "tools.agents.svc".into()];
        })
        .await;
        let mut client = stack.client.clone();
        client.initialize().await;
        let echo = call(2, "echo", json!({"text": "hi"})).to_string();
        let allowed = client
            .send(
                Method::POST,
                echo.clone(),
                &[("origin", "http://localhost:3000")],
            )
            .await;
        assert_eq!(allowed.status, StatusCode::OK);
        let named = client
            .send(Method::POST, echo.clone(), &[("host", "tools.agents.svc")])
            .await;
        assert_eq!(named.status, StatusCode::OK);
        // The configured list replaces the loopback default.
        let localhost = client
            .send(Method::POST, echo, &[("host", "localhost")])
            .await;
        assert_eq!(localhost.status, StatusCode::FORBIDDEN);
        assert_eq!(stack.upstream.stats().tool_calls("echo"), 2);
    });
}

#[test]
fn the_listeners_own_origin_passes_and_another_local_ports_does_not() {
    run(async {
        let stack = Stack::start(MANIFEST, AnswerMode::Json, |_| {}).await;
        let port = stack.sidecar.running.mcp_addr().unwrap().port();
        let mut client = stack.client.clone();
        client.initialize().await;
        let echo = call(2, "echo", json!({"text": "same origin"})).to_string();
        // What a browser sends for a same-origin POST (and the conformance
        // suite's dns-rebinding-protection scenario requires to pass).
        let own = format!("http://127.0.0.1:{port}");
        let reply = client
            .send(Method::POST, echo.clone(), &[("origin", &own)])
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        // A page served by another local server: refused, never forwarded.
        let other_port = port.wrapping_add(1).max(1);
        for origin in [
            format!("http://127.0.0.1:{other_port}"),
            format!("http://localhost:{port}"),
            format!("ws://127.0.0.1:{port}"),
        ] {
            let refused = client
                .send(Method::POST, echo.clone(), &[("origin", &origin)])
                .await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
        }
        assert_eq!(stack.upstream.stats().tool_calls("echo"), 1);
    });
}

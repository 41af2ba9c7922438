//! The scenarios bench's pieces do what they say: every route answers every
//! scenario correctly (the bare proxy relays JSON and SSE, the three
//! sidecars allow `big`, the NORMAL one refuses an undeclared tool without
//! calling the tool server), the open loop sends exactly what is due, and
//! the bare proxy streams an SSE answer event by event. No timing is
//! asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aegis_bench::bare_proxy::BareProxy;
use aegis_bench::mcp::{Answering, Upstreams, runtime};
use aegis_bench::scenarios::{Bench, Load, Route, Timing, round_plan};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

#[test]
fn every_route_answers_every_scenario() {
    let bench = Bench::start().unwrap();
    let timing = Timing {
        warmup: Duration::ZERO,
        seconds: Duration::from_millis(100),
        open_warmup: Duration::from_millis(50),
        open_seconds: Duration::from_millis(200),
        open_connections: 8,
        // A hang guard: an answer later than this is a `timeout` failure.
        request_timeout: Duration::from_secs(60),
    };
    for scenario in round_plan(4, &[100]) {
        let run = bench.run(0, scenario, &timing);
        let label = &run.label;
        assert_eq!(run.report.failures, Default::default(), "{label}");
        assert!(run.report.ok > 0, "{label}");
        match scenario.route {
            Route::Deny => assert_eq!(run.upstream_calls, 0, "{label}"),
            _ => assert!(run.upstream_calls >= run.report.ok, "{label}"),
        }
        let through_sidecar = !matches!(scenario.route, Route::Direct | Route::Bare);
        assert_eq!(run.stages.is_some(), through_sidecar, "{label}");
        if let Some(stages) = run.stages {
            assert!(stages.tool_calls >= run.report.ok as f64, "{label}");
        }
        if let Load::Open { .. } = scenario.group.load {
            // 200 ms at 100/s: 20 due, each answered.
            assert_eq!(run.due, Some(20), "{label}");
            assert_eq!(run.report.ok, 20, "{label}");
            assert!(run.report.connections <= 8, "{label}");
        }
    }
    bench.shutdown();
}

#[test]
fn the_bare_proxy_streams_sse_event_by_event() {
    let upstreams = Upstreams::start().unwrap();
    let rt = runtime("test").unwrap();
    let routes = vec![("/mcp/sse".to_owned(), upstreams.url(Answering::Sse))];
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let proxy = BareProxy::start(&routes).await.unwrap();
            let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
            let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            // Five progress notifications 20 ms apart, then the result.
            let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":5},"_meta":{"progressToken":"t"}}}"#;
            let request = Request::post("/mcp/sse")
                .header("host", proxy.addr().to_string())
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", aegis_demo_upstream::STATELESS_PROTOCOL_VERSION)
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let mut body = response.into_body();
            let mut frames = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    frames.push(String::from_utf8(data.to_vec()).unwrap());
                }
            }
            let first_progress = frames
                .iter()
                .position(|f| f.contains("notifications/progress"))
                .expect("a progress notification");
            // Relayed as it came: the first notification arrived alone, not
            // in one piece with the result.
            assert!(!frames[first_progress].contains("\"result\""), "{frames:?}");
            let all = frames.concat();
            assert_eq!(all.matches("notifications/progress").count(), 5);
            assert!(all.contains(r#""result""#) && all.contains(r#""id":1"#), "{all}");
            proxy.shutdown();
        })
        .await
        .expect("the exchange ends");
    });
    drop(rt);
    upstreams.shutdown();
}

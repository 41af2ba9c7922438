//! Sessions: required and checked in stateful mode, the GET stream held open
//! until DELETE or shutdown, stateless mode, and the stateless 2026-07-28
//! revision.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use aegis_demo_upstream::{PROTOCOL_VERSIONS, SERVER_NAME};
use bytes::Bytes;
use common::{Demo, EventReader, call, initialize, run, text_of};
use http::{Method, StatusCode};
use http_body_util::Empty;
use serde_json::json;

/// How long a stream must stay quiet to count as held open.
const QUIET: Duration = Duration::from_millis(100);

fn ping(id: u64) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
}

#[test]
fn requests_after_initialize_need_a_live_session() {
    run(async {
        let demo = Demo::start().await;
        let answer = demo.post(&[], &ping(1)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.json()["error"]["code"], -32600);
        let answer = demo.post(&[("mcp-session-id", "0123abcd")], &ping(1)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.json()["error"]["code"], -32001);
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(demo.post(&[], &note).await.status, StatusCode::BAD_REQUEST);
        // Nothing refused reached a tool or was counted.
        let refused = demo.post(&[], &call(2, "echo", json!({"text": "x"}))).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(demo.server.stats().total_tool_calls(), 0);
        assert_eq!(demo.server.stats().method_calls("ping"), 0);
        let session = demo.initialize().await;
        let answer = demo.post(&[("mcp-session-id", &session)], &ping(3)).await;
        assert_eq!(answer.status, StatusCode::OK);
    });
}

#[test]
fn the_get_stream_is_held_open_until_delete() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let headers = [
            ("mcp-session-id", session.as_str()),
            ("accept", "text/event-stream"),
        ];
        let response = demo
            .open(Method::GET, "/mcp", &headers, Empty::<Bytes>::new())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut stream = EventReader::new(response);
        let priming = stream.next().await.unwrap();
        assert!(priming.is_priming(), "{priming:?}");
        assert_eq!(priming.retry.as_deref(), Some("1000"));
        // The session works while the stream is open, and the stream stays.
        assert_eq!(
            demo.post(&headers[..1], &ping(1)).await.status,
            StatusCode::OK
        );
        assert!(stream.still_open(QUIET).await);
        // DELETE ends the session, and so the stream.
        let answer = demo
            .send(Method::DELETE, "/mcp", &headers[..1], Bytes::new())
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(stream.next().await, None);
        let answer = demo.post(&headers[..1], &ping(2)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let answer = demo
            .send(Method::DELETE, "/mcp", &headers[..1], Bytes::new())
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let response = demo
            .open(Method::GET, "/mcp", &headers, Empty::<Bytes>::new())
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn get_and_delete_need_a_session() {
    run(async {
        let demo = Demo::start().await;
        let answer = demo.send(Method::GET, "/mcp", &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let answer = demo.send(Method::DELETE, "/mcp", &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let answer = demo
            .send(
                Method::GET,
                "/mcp",
                &[("mcp-session-id", "feed")],
                Bytes::new(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
    });
}

#[test]
fn shutdown_ends_held_streams() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let headers = [("mcp-session-id", session.as_str())];
        let response = demo
            .open(Method::GET, "/mcp", &headers, Empty::<Bytes>::new())
            .await;
        let mut stream = EventReader::new(response);
        assert!(stream.next().await.unwrap().is_priming());
        let common::Demo { server, dir, .. } = demo;
        tokio::time::timeout(common::WAIT, server.shutdown())
            .await
            .expect("shutdown in time");
        assert_eq!(stream.next().await, None);
        drop(dir);
    });
}

#[test]
fn stateless_mode_has_no_sessions() {
    run(async {
        let demo = Demo::start_with(|c| c.stateful = false).await;
        let answer = demo.post(&[], &initialize(1, "2025-11-25")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("mcp-session-id"), None);
        let answer = demo
            .post(&[], &call(2, "echo", json!({"text": "no session"})))
            .await;
        assert_eq!(text_of(&answer.json()["result"]).0, "no session");
        // A session id sent anyway is ignored.
        let answer = demo.post(&[("mcp-session-id", "whatever")], &ping(3)).await;
        assert_eq!(answer.status, StatusCode::OK);
        for method in [Method::GET, Method::DELETE] {
            let answer = demo
                .send(
                    method.clone(),
                    "/mcp",
                    &[("mcp-session-id", "whatever")],
                    Bytes::new(),
                )
                .await;
            assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(answer.header("allow"), Some("POST"));
        }
    });
}

#[test]
fn the_stateless_revision_needs_no_session() {
    run(async {
        let demo = Demo::start().await;
        let headers = [("mcp-protocol-version", "2026-07-28")];
        let discover =
            json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}});
        let answer = demo.post(&headers, &discover).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("mcp-session-id"), None);
        let result = answer.json()["result"].clone();
        assert_eq!(result["supportedVersions"], json!(PROTOCOL_VERSIONS));
        assert_eq!(result["serverInfo"]["name"], SERVER_NAME);
        assert_eq!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            SERVER_NAME
        );
        assert_eq!(result["capabilities"]["tools"]["listChanged"], false);
        assert_eq!(result["resultType"], "complete");
        let answer = demo
            .post(&headers, &call(2, "echo", json!({"text": "hi"})))
            .await;
        let result = answer.json()["result"].clone();
        assert_eq!(text_of(&result), ("hi".to_owned(), false));
        assert_eq!(result["resultType"], "complete");
        let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
        let result = demo.post(&headers, &list).await.json()["result"].clone();
        assert_eq!(result["resultType"], "complete");
        assert_eq!(demo.server.stats().tool_calls("echo"), 1);
        // That revision has no GET stream.
        let answer = demo.send(Method::GET, "/mcp", &headers, Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        // Older revisions still need one.
        let answer = demo
            .post(&[("mcp-protocol-version", "2025-11-25")], &ping(4))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    });
}

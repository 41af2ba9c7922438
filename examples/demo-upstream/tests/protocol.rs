//! Streamable HTTP and JSON-RPC: answers as JSON and as SSE, batches,
//! notifications, and the refusals (malformed, wrong shapes, too large).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;

use aegis_demo_upstream::{AnswerMode, LATEST_PROTOCOL_VERSION, SERVER_NAME, TOOL_NAMES};
use bytes::Bytes;
use common::{Answer, Chunks, Demo, call, initialize, run, text_of};
use http::{Method, StatusCode};
use serde_json::{Value, json};

#[test]
fn initialize_as_json_mints_a_session() {
    run(async {
        let demo = Demo::start().await;
        let answer = demo.post(&[], &initialize(1, "2025-06-18")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let session = answer.header("mcp-session-id").unwrap();
        assert_eq!(session.len(), 32);
        assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
        let message = answer.json();
        assert_eq!(message["jsonrpc"], "2.0");
        assert_eq!(message["id"], 1);
        let result = &message["result"];
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(result["serverInfo"]["name"], SERVER_NAME);
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            result["capabilities"],
            json!({"tools": {"listChanged": false}})
        );
        assert!(result.get("resultType").is_none());
        // Each initialize is a new session.
        let again = demo.post(&[], &initialize(2, "2025-06-18")).await;
        assert_ne!(again.header("mcp-session-id").unwrap(), session);
    });
}

#[test]
fn initialize_answers_a_version_it_speaks() {
    run(async {
        let demo = Demo::start().await;
        for (asked, answered) in [
            ("2025-03-26", "2025-03-26"),
            ("2025-11-25", "2025-11-25"),
            ("2026-07-28", "2026-07-28"),
            ("2024-11-05", LATEST_PROTOCOL_VERSION),
            ("someday", LATEST_PROTOCOL_VERSION),
        ] {
            let message = demo.post(&[], &initialize(1, asked)).await.json();
            assert_eq!(message["result"]["protocolVersion"], answered, "{asked}");
        }
    });
}

#[test]
fn initialize_as_sse_primes_the_stream() {
    run(async {
        let demo = Demo::start().await;
        let answer = demo
            .post(&[("x-demo-answer", "sse")], &initialize(1, "2025-11-25"))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("cache-control"), Some("no-cache"));
        assert!(answer.header("mcp-session-id").is_some());
        let events = answer.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].is_priming(), "{:?}", events[0]);
        assert_eq!(events[0].retry.as_deref(), Some("1000"));
        assert_eq!(events[1].event.as_deref(), Some("message"));
        let first: u64 = events[0].id.as_deref().unwrap().parse().unwrap();
        let second: u64 = events[1].id.as_deref().unwrap().parse().unwrap();
        assert!(second > first);
        let message = events[1].json();
        assert_eq!(message["id"], 1);
        assert_eq!(message["result"]["serverInfo"]["name"], SERVER_NAME);
    });
}

#[test]
fn the_answer_mode_is_configured_and_overridden_per_request() {
    run(async {
        let demo = Demo::start_with(|c| c.answer = AnswerMode::Sse).await;
        let answer = demo.post(&[], &initialize(1, "2025-11-25")).await;
        assert_eq!(answer.content_type(), "text/event-stream");
        let session = answer.header("mcp-session-id").unwrap().to_owned();
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        let answer = demo
            .post(
                &[("mcp-session-id", &session), ("x-demo-answer", "json")],
                &ping,
            )
            .await;
        assert_eq!(
            answer.json(),
            json!({"jsonrpc": "2.0", "id": 2, "result": {}})
        );
        let answer = demo
            .post(
                &[("mcp-session-id", &session), ("x-demo-answer", "xml")],
                &ping,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    });
}

#[test]
fn tools_list_has_every_tool_with_a_schema() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let request = json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"});
        let message = demo
            .post(&[("mcp-session-id", &session)], &request)
            .await
            .json();
        assert_eq!(message["id"], "list");
        let tools = message["result"]["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, TOOL_NAMES);
        for tool in tools {
            assert!(tool["description"].is_string());
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        }
        let echo = &tools[0]["inputSchema"];
        assert_eq!(echo["properties"]["text"]["type"], "string");
        assert_eq!(echo["required"], json!(["text"]));
    });
}

#[test]
fn ping_unknown_methods_and_unknown_tools() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let headers = [("mcp-session-id", session.as_str())];
        let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        assert_eq!(demo.post(&headers, &ping).await.json()["result"], json!({}));
        let unknown = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/list"});
        let message = demo.post(&headers, &unknown).await.json();
        assert_eq!(message["error"]["code"], -32601);
        let message = demo
            .post(&headers, &call(3, "rm_rf", json!({})))
            .await
            .json();
        assert_eq!(message["error"]["code"], -32602);
        assert!(
            message["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rm_rf")
        );
        let nameless = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {}});
        let message = demo.post(&headers, &nameless).await.json();
        assert_eq!(message["error"]["code"], -32602);
    });
}

#[test]
fn a_batch_is_answered_with_an_array_in_order() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let batch = json!([
            {"jsonrpc": "2.0", "id": "a", "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}},
            call(2, "echo", json!({"text": "hi"})),
            42,
        ]);
        let answer = demo.post(&[("mcp-session-id", &session)], &batch).await;
        assert_eq!(answer.status, StatusCode::OK);
        let messages = answer.json();
        let messages = messages.as_array().unwrap();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(messages[0]["id"], "a");
        assert_eq!(messages[1]["id"], 2);
        assert_eq!(text_of(&messages[1]["result"]), ("hi".to_owned(), false));
        assert_eq!(messages[2]["id"], Value::Null);
        assert_eq!(messages[2]["error"]["code"], -32600);
    });
}

#[test]
fn a_batch_as_sse_is_one_event_per_answer() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            call(2, "echo", json!({"text": "hi"})),
        ]);
        let answer = demo
            .post(
                &[("mcp-session-id", &session), ("x-demo-answer", "sse")],
                &batch,
            )
            .await;
        let events = answer.events();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[0].is_priming());
        assert_eq!(events[1].json()["id"], 1);
        assert_eq!(events[2].json()["id"], 2);
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_deref().unwrap()).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids, unique);
    });
}

#[test]
fn notifications_and_responses_only_get_202() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let headers = [("mcp-session-id", session.as_str())];
        for body in [
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
            json!({"jsonrpc": "2.0", "id": 5, "result": {}}),
            json!([
                {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
                {"jsonrpc": "2.0", "id": 6, "error": {"code": -1, "message": "no"}},
            ]),
        ] {
            let answer = demo.post(&headers, &body).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{body}");
            assert!(answer.body.is_empty());
        }
        // Also in SSE mode: nothing to stream.
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = demo
            .post(
                &[("mcp-session-id", &session), ("x-demo-answer", "sse")],
                &note,
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    });
}

#[test]
fn malformed_json_is_400_parse_error() {
    run(async {
        let demo = Demo::start().await;
        for body in ["{\"jsonrpc\": \"2.0\",", "not json", ""] {
            let answer = demo.post_text(&[], body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body:?}");
            let message = answer.json();
            assert_eq!(message["error"]["code"], -32700, "{body:?}");
            assert_eq!(message["id"], Value::Null);
        }
    });
}

#[test]
fn wrong_shapes_are_400_invalid_request() {
    run(async {
        let demo = Demo::start().await;
        for body in [
            r#"{"jsonrpc":"1.0","id":1,"method":"initialize"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"initialize"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}"#,
            "[]",
            "17",
        ] {
            let answer = demo.post_text(&[], body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(answer.json()["error"]["code"], -32600, "{body}");
        }
    });
}

#[test]
fn oversized_bodies_are_413() {
    run(async {
        let demo = Demo::start().await;
        // A Content-Length past the limit: refused before any body is read.
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: demo\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            LIMIT + 1
        );
        let answer = raw_exchange(&demo, head.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("-32600"), "{answer}");
        // Chunked, no length announced: refused once one byte past the limit
        // has been read (and nothing more is sent, so nothing is left unread).
        let mut chunked = format!(
            "POST /mcp HTTP/1.1\r\nhost: demo\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n",
            LIMIT + 1
        )
        .into_bytes();
        chunked.resize(chunked.len() + LIMIT + 1, b' ');
        let answer = raw_exchange(&demo, chunked).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // Just under the limit is read (and refused for its shape only).
        let fits = format!("{{\"x\":\"{}\"}}", "a".repeat(LIMIT - 16));
        let answer = demo.post_text(&[], &fits).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.json()["error"]["code"], -32600);
        // Sent in chunks with no length, it is read all the same.
        let body = Bytes::from(fits.into_bytes());
        let chunks = Chunks(VecDeque::from([
            body.slice(..1_000_000),
            body.slice(1_000_000..),
        ]));
        let response = demo
            .open(
                Method::POST,
                "/mcp",
                &[("content-type", "application/json")],
                chunks,
            )
            .await;
        assert_eq!(Answer::read(response).await.status, StatusCode::BAD_REQUEST);
    });
}

/// The body limit: 4 MiB.
const LIMIT: usize = 4 * 1024 * 1024;

/// Writes `request` on a fresh connection and reads until the server closes.
async fn raw_exchange(demo: &Demo, request: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(demo.server.addr())
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move { write.write_all(&request).await });
    let mut answer = Vec::new();
    tokio::time::timeout(common::WAIT, read.read_to_end(&mut answer))
        .await
        .expect("the server did not close in time")
        .unwrap();
    writer.await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn other_paths_and_methods_are_refused() {
    run(async {
        let demo = Demo::start().await;
        let answer = demo.send(Method::GET, "/nope", &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let answer = demo.send(Method::PUT, "/mcp", &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.header("allow"), Some("GET, POST, DELETE"));
        let answer = demo.send(Method::POST, "/stats", &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    });
}

#[test]
fn an_unsupported_protocol_version_header_is_400() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        let answer = demo
            .post(
                &[
                    ("mcp-session-id", &session),
                    ("mcp-protocol-version", "1999-01-01"),
                ],
                &ping,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let answer = demo
            .post(
                &[
                    ("mcp-session-id", &session),
                    ("mcp-protocol-version", "2025-06-18"),
                ],
                &ping,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    });
}

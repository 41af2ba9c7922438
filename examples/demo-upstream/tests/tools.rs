//! Each tool through the real server: results, refusals as `isError`,
//! the sandbox, progress over SSE, and the counters.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Demo, EventReader, call, run, text_of};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

#[test]
fn echo_big_and_delete_everything() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let result = demo
            .call(&session, "echo", json!({"text": "héllo \"world\"\n"}))
            .await;
        assert_eq!(text_of(&result), ("héllo \"world\"\n".to_owned(), false));
        for bytes in [0_usize, 1, 100_000, 1024 * 1024] {
            let result = demo.call(&session, "big", json!({"bytes": bytes})).await;
            let (text, is_error) = text_of(&result);
            assert!(!is_error);
            assert_eq!(text.len(), bytes);
            assert!(text.bytes().all(|b| b == b'x'));
        }
        let result = demo
            .call(&session, "big", json!({"bytes": 16 * 1024 * 1024 + 1}))
            .await;
        assert!(text_of(&result).1);
        let result = demo.call(&session, "delete_everything", json!({})).await;
        assert_eq!(
            text_of(&result),
            ("deleted nothing (demo)".to_owned(), false)
        );
        // No arguments at all count as `{}`.
        let bare = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "delete_everything"}});
        let answer = demo.post(&[("mcp-session-id", &session)], &bare).await;
        assert!(!text_of(&answer.json()["result"]).1);
    });
}

#[test]
fn bad_arguments_are_error_results() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        for (tool, arguments) in [
            ("echo", json!({})),
            ("echo", json!({"text": 5})),
            ("echo", json!({"text": "a", "extra": 1})),
            ("echo", json!(["a"])),
            ("slow", json!({"ms": -1})),
            ("big", json!({"bytes": "many"})),
            ("delete_everything", json!({"really": true})),
        ] {
            let result = demo.call(&session, tool, arguments.clone()).await;
            let (text, is_error) = text_of(&result);
            assert!(is_error, "{tool} {arguments}");
            assert!(
                text.starts_with(&format!("invalid arguments for {tool}")),
                "{text}"
            );
        }
        // They reached their tools, so they count.
        assert_eq!(demo.server.stats().tool_calls("echo"), 4);
    });
}

#[test]
fn slow_waits_and_is_bounded() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let result = demo.call(&session, "slow", json!({"ms": 20})).await;
        assert_eq!(text_of(&result), ("slept 20 ms".to_owned(), false));
        let result = demo.call(&session, "slow", json!({"ms": 60_001})).await;
        assert!(text_of(&result).1);
    });
}

#[test]
fn shutdown_interrupts_a_slow_call() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let request = call(1, "slow", json!({"ms": 60_000})).to_string();
        let headers = [
            ("mcp-session-id", session.as_str()),
            ("content-type", "application/json"),
        ];
        let response = demo.open(
            Method::POST,
            "/mcp",
            &headers,
            Full::new(Bytes::from(request)),
        );
        // Shut down once the call has reached the tool.
        let stats = demo.server.stats();
        let common::Demo { server, dir, .. } = demo;
        let stop = async move {
            while stats.tool_calls("slow") == 0 {
                tokio::task::yield_now().await;
            }
            server.shutdown().await;
        };
        let (response, ()) = tokio::join!(response, stop);
        let answer = common::Answer::read(response).await;
        let (text, is_error) = text_of(&answer.json()["result"]);
        assert!(is_error);
        assert!(text.contains("shutting down"), "{text}");
        drop(dir);
    });
}

#[test]
fn files_stay_inside_the_sandbox() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let write = |path: &str, content: &str| json!({"path": path, "content": content});
        let result = demo
            .call(&session, "write_file", write("notes/today/a.txt", "hello"))
            .await;
        assert_eq!(text_of(&result), ("wrote 5 bytes".to_owned(), false));
        let on_disk = std::fs::read_to_string(demo.sandbox().join("notes/today/a.txt")).unwrap();
        assert_eq!(on_disk, "hello");
        let result = demo
            .call(&session, "read_file", json!({"path": "notes/today/a.txt"}))
            .await;
        assert_eq!(text_of(&result), ("hello".to_owned(), false));
        let outside = demo.dir.path().join("outside.txt");
        std::fs::write(&outside, "secret").unwrap();
        let absolute = outside.to_str().unwrap().to_owned();
        for path in [
            absolute.as_str(),
            "../outside.txt",
            "notes/../../outside.txt",
            "",
        ] {
            let result = demo
                .call(&session, "read_file", json!({"path": path}))
                .await;
            let (text, is_error) = text_of(&result);
            assert!(is_error, "{path}: {text}");
            assert!(!text.contains("secret"));
            let result = demo
                .call(&session, "write_file", write(path, "pwned"))
                .await;
            assert!(text_of(&result).1, "{path}");
        }
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");
        let result = demo
            .call(&session, "read_file", json!({"path": "missing.txt"}))
            .await;
        let (text, is_error) = text_of(&result);
        assert!(is_error);
        assert!(text.contains("no such file"), "{text}");
        // 1 MiB is read; a byte more is refused.
        std::fs::write(demo.sandbox().join("max.txt"), "y".repeat(1024 * 1024)).unwrap();
        std::fs::write(demo.sandbox().join("over.txt"), "y".repeat(1024 * 1024 + 1)).unwrap();
        let result = demo
            .call(&session, "read_file", json!({"path": "max.txt"}))
            .await;
        assert_eq!(text_of(&result).0.len(), 1024 * 1024);
        let result = demo
            .call(&session, "read_file", json!({"path": "over.txt"}))
            .await;
        assert!(text_of(&result).1);
    });
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_sandbox_are_refused() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let outside = demo.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(&outside, demo.sandbox().join("door")).unwrap();
        let inside = demo.sandbox().join("real.txt");
        std::fs::write(&inside, "fine").unwrap();
        std::os::unix::fs::symlink(&inside, demo.sandbox().join("alias.txt")).unwrap();
        let result = demo
            .call(&session, "read_file", json!({"path": "door/secret.txt"}))
            .await;
        let (text, is_error) = text_of(&result);
        assert!(is_error);
        assert!(text.contains("outside the sandbox"), "{text}");
        let arguments = json!({"path": "door/new/x.txt", "content": "pwned"});
        let result = demo.call(&session, "write_file", arguments).await;
        assert!(text_of(&result).1);
        assert!(!outside.join("new").exists());
        // A symlink that stays inside is followed.
        let result = demo
            .call(&session, "read_file", json!({"path": "alias.txt"}))
            .await;
        assert_eq!(text_of(&result), ("fine".to_owned(), false));
    });
}

#[test]
fn fetch_url_gets_http_only() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let other = Demo::start().await;
        let url = format!("http://{}/stats", other.server.addr());
        let result = demo.call(&session, "fetch_url", json!({"url": url})).await;
        let (text, is_error) = text_of(&result);
        assert!(!is_error, "{text}");
        let (status, body) = text.split_once("\n\n").unwrap();
        assert_eq!(status, "HTTP 200 OK");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["tools"]["echo"], 0);
        for url in ["https://example.com/", "file:///etc/passwd", "nonsense"] {
            let result = demo.call(&session, "fetch_url", json!({"url": url})).await;
            let (text, is_error) = text_of(&result);
            assert!(is_error, "{url}: {text}");
        }
        // A port bound but never listened on: refused, and held (no other
        // process can start listening there meanwhile).
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        let result = demo.call(&session, "fetch_url", json!({"url": url})).await;
        assert!(text_of(&result).1);
        drop(closed);
    });
}

#[test]
fn fetch_url_caps_the_body() {
    run(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        // A server that answers 100 KiB to whatever it is sent.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let _ = stream.read(&mut head).await.unwrap();
            let body = "z".repeat(100 * 1024);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            // The client may stop reading past its cap.
            let _ = stream.write_all(response.as_bytes()).await;
        });
        let url = format!("http://{addr}/big");
        let result = demo.call(&session, "fetch_url", json!({"url": url})).await;
        let (text, is_error) = text_of(&result);
        assert!(!is_error, "{text}");
        let zs = text.bytes().filter(|b| *b == b'z').count();
        assert_eq!(zs, 64 * 1024);
        assert!(
            text.ends_with("[body truncated at 65536 bytes]"),
            "{}",
            &text[text.len() - 60..]
        );
        serving.await.unwrap();
    });
}

#[test]
fn progress_events_come_before_the_result_over_sse() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let mut request = call(5, "progress", json!({"steps": 3}));
        request["params"]["_meta"] = json!({"progressToken": "tok-1"});
        let headers = [
            ("mcp-session-id", session.as_str()),
            ("content-type", "application/json"),
            ("x-demo-answer", "sse"),
        ];
        let body = Full::new(Bytes::from(request.to_string()));
        let response = demo.open(Method::POST, "/mcp", &headers, body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut stream = EventReader::new(response);
        assert!(stream.next().await.unwrap().is_priming());
        for step in 1..=3 {
            let event = stream.next().await.unwrap();
            assert_eq!(event.event.as_deref(), Some("message"));
            let message = event.json();
            assert_eq!(message["method"], "notifications/progress", "{message}");
            assert!(message.get("id").is_none());
            assert_eq!(
                message["params"],
                json!({"progressToken": "tok-1", "progress": step, "total": 3})
            );
        }
        let message = stream.next().await.unwrap().json();
        assert_eq!(message["id"], 5);
        assert_eq!(
            text_of(&message["result"]),
            ("completed 3 steps".to_owned(), false)
        );
        assert_eq!(stream.next().await, None);
    });
}

#[test]
fn progress_without_a_stream_or_token_is_just_the_result() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        let mut request = call(5, "progress", json!({"steps": 3}));
        request["params"]["_meta"] = json!({"progressToken": 77});
        let answer = demo.post(&[("mcp-session-id", &session)], &request).await;
        assert_eq!(text_of(&answer.json()["result"]).0, "completed 3 steps");
        let request = call(6, "progress", json!({"steps": 3}));
        let answer = demo
            .post(
                &[("mcp-session-id", &session), ("x-demo-answer", "sse")],
                &request,
            )
            .await;
        let events = answer.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[1].json()["id"], 6);
    });
}

#[test]
fn stats_count_what_reached_each_tool() {
    run(async {
        let demo = Demo::start().await;
        let session = demo.initialize().await;
        for _ in 0..3 {
            demo.call(&session, "echo", json!({"text": "x"})).await;
        }
        demo.call(&session, "delete_everything", json!({})).await;
        // Unknown tools and refused requests reach nothing.
        demo.post(&[("mcp-session-id", &session)], &call(1, "nope", json!({})))
            .await;
        demo.post(&[], &call(1, "echo", json!({"text": "no session"})))
            .await;
        let stats = demo.server.stats();
        assert_eq!(stats.tool_calls("echo"), 3);
        assert_eq!(stats.tool_calls("delete_everything"), 1);
        assert_eq!(stats.tool_calls("read_file"), 0);
        assert_eq!(stats.tool_calls("nope"), 0);
        assert_eq!(stats.total_tool_calls(), 4);
        assert_eq!(stats.method_calls("tools/call"), 5);
        assert_eq!(stats.method_calls("initialize"), 1);
        let served = demo.stats().await;
        assert_eq!(served["tools"]["echo"], 3);
        assert_eq!(served["tools"]["delete_everything"], 1);
        assert_eq!(served["tools"]["big"], 0);
        assert_eq!(served["methods"]["tools/call"], 5);
        assert_eq!(served["methods"]["notifications/initialized"], 1);
        assert_eq!(served, serde_json::to_value(stats.snapshot()).unwrap());
    });
}

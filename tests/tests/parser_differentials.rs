//! Parser differentials: bodies the sidecar and a tool server nobody here
//! wrote could read differently. The stand-in server keeps the FIRST of
//! two equal member names (as many parsers do, where `serde_json` keeps the
//! last) and counts every request it gets: a refused body must reach it
//! zero times, and nothing may be recorded for it.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use aegis_e2e::mcp::{MANIFEST, McpClient, upstream_config};
use aegis_e2e::{Sidecar, run, wait_until};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The text after the FIRST `"<name>":` in `message`, up to the next `,`
/// or `}`: how the stand-in reads a member (first wins), where
/// `serde_json` keeps the last.
fn first(message: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":");
    let at = message.find(&key)? + key.len();
    let rest = &message[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

/// What the stand-in saw: every request body, and every tool it ran.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<Bytes>>,
    ran: Mutex<Vec<String>>,
}

impl Seen {
    fn bodies(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
    fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap().clone()
    }
}

async fn stand_in(seen: Arc<Seen>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    seen.bodies.lock().unwrap().push(body.clone());
    let text = std::str::from_utf8(&body).unwrap();
    let batch = text.trim_start().starts_with('[');
    let items: Vec<&str> = if batch {
        let raw: Vec<&RawValue> = serde_json::from_str(text).unwrap();
        raw.iter().map(|r| r.get()).collect()
    } else {
        vec![text]
    };
    let mut answers = Vec::new();
    for item in items {
        let (Some(id), Some(method)) = (first(item, "id"), first(item, "method")) else {
            continue;
        };
        let result = match method.as_str() {
            r#""tools/call""# => {
                let name = first(item, "name").unwrap_or_default();
                let name = name.trim_matches('"').to_owned();
                seen.ran.lock().unwrap().push(name.clone());
                json!({"content": [{"type": "text", "text": format!("ran {name}")}]})
            }
            _ => json!({}),
        };
        answers.push(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
        ));
    }
    if answers.is_empty() {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::ACCEPTED;
        return r;
    }
    let text = if batch {
        format!("[{}]", answers.join(","))
    } else {
        answers.remove(0)
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// The stand-in on a free port, the sidecar in front of it (declaring
/// `echo`, not `delete_everything`), and a client.
async fn start() -> (Sidecar, Arc<Seen>, McpClient) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(stand_in(state, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
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
    (sidecar, seen, client)
}

/// How many envelopes the agent's session holds (its principal's one
/// session, under the default configuration).
async fn ledger_len(sidecar: &Sidecar) -> usize {
    sidecar
        .http
        .session_events("default", "default")
        .await
        .len()
}

/// Sends `body` as is; asserts the whole body was refused as an invalid
/// request (400, -32600, id null) and returns the error message.
async fn refused(client: &McpClient, body: &str) -> String {
    let answer = client.send(Method::POST, body.to_owned(), &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
    let error: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(error["error"]["code"], -32600, "{body}: {error}");
    assert_eq!(error["id"], Value::Null, "{body}");
    error["error"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn duplicate_member_names_never_reach_the_tool_server() {
    run(async {
        let (sidecar, seen, client) = start().await;
        let before = ledger_len(&sidecar).await;
        for body in [
            // The sidecar (last wins) would decide `echo`; the stand-in
            // (first wins) would run `delete_everything`.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything","name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_everything"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":{"b":[{"c":1,"c":2}]}}}}"#,
            r#"{"jsonrpc":"2.0","method":"ping","id":1,"method":"tools/call","params":{"name":"delete_everything"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"\u0069d":2,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_everything","name":"echo"}}]"#,
        ] {
            let message = refused(&client, body).await;
            assert!(
                message.contains("duplicate member name"),
                "{body}: {message}"
            );
        }
        assert_eq!(seen.bodies(), 0, "the tool server received a refused body");
        assert!(seen.ran().is_empty());
        assert_eq!(ledger_len(&sidecar).await, before, "nothing recorded");

        // The same call without the duplicate runs (the stand-in works).
        let ok = client
            .send(
                Method::POST,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
                &[],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(seen.ran(), ["echo"]);
    });
}

#[test]
fn a_tools_call_notification_never_reaches_the_tool_server() {
    run(async {
        let (sidecar, seen, client) = start().await;
        let before = ledger_len(&sidecar).await;
        let single =
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_everything"}}"#;
        let message = refused(&client, single).await;
        assert!(message.contains("needs an \"id\""), "{message}");
        let allowed =
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        refused(&client, allowed).await;
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}]"#;
        refused(&client, batch).await;
        assert_eq!(seen.bodies(), 0);
        assert_eq!(ledger_len(&sidecar).await, before, "nothing recorded");

        // Other notifications still pass (202 from the stand-in).
        let note = client
            .send(
                Method::POST,
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                &[],
            )
            .await;
        assert_eq!(note.status, StatusCode::ACCEPTED);
        assert_eq!(seen.bodies(), 1);
    });
}

#[test]
fn colliding_ids_in_a_batch_refuse_it_whole() {
    run(async {
        let (sidecar, seen, client) = start().await;
        let before = ledger_len(&sidecar).await;
        let call = |id: &str, tool: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
            )
        };
        for (a, b) in [("7", "7"), ("7", "7.0"), (r#""x""#, r#""\u0078""#)] {
            let body = format!("[{},{}]", call(a, "echo"), call(b, "echo"));
            let message = refused(&client, &body).await;
            assert!(message.contains("already used"), "{message}");
            // A denied call sharing the id of an allowed one.
            let body = format!("[{},{}]", call(a, "echo"), call(b, "delete_everything"));
            refused(&client, &body).await;
        }
        assert_eq!(seen.bodies(), 0);
        assert_eq!(ledger_len(&sidecar).await, before, "nothing recorded");

        // Distinct ids: both run, each answer under its own id.
        let body = format!("[{},{}]", call("7", "echo"), call("8", "echo"));
        let ok = client.send(Method::POST, body, &[]).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(seen.ran(), ["echo", "echo"]);
    });
}

const BIG_ID: &str = "123456789012345678901234567890";

#[test]
fn a_long_number_id_is_echoed_byte_for_byte() {
    run(async {
        let (sidecar, seen, client) = start().await;
        let call = |tool: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{BIG_ID},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
            )
        };
        let expect = format!(r#""id":{BIG_ID},"#);

        // A denial, made by the sidecar.
        let denied = client
            .send(Method::POST, call("delete_everything"), &[])
            .await;
        assert_eq!(denied.status, StatusCode::OK);
        let text = String::from_utf8(denied.body.to_vec()).unwrap();
        assert!(text.contains(&expect), "{text}");
        assert!(text.contains("isError"), "{text}");
        assert_eq!(seen.bodies(), 0);

        // An allowed call: the upstream's answer, id intact.
        let allowed = client.send(Method::POST, call("echo"), &[]).await;
        assert_eq!(allowed.status, StatusCode::OK);
        let text = String::from_utf8(allowed.body.to_vec()).unwrap();
        assert!(text.contains(&expect), "{text}");
        assert!(text.contains("ran echo"), "{text}");
        // What went upstream is the bytes sent.
        assert_eq!(
            seen.bodies.lock().unwrap()[0],
            Bytes::from(call("echo")),
            "forwarded byte for byte"
        );

        // A batch with one call denied: the denial and the allowed call's
        // answer both carry their exact ids, and the allowed message goes
        // upstream as its own text.
        let allowed_text = r#"{"jsonrpc":"2.0","id":1.50,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        let batch = format!("[{} , {allowed_text}]", call("delete_everything"));
        let answer = client.send(Method::POST, batch, &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        let text = String::from_utf8(answer.body.to_vec()).unwrap();
        assert!(text.contains(&expect), "{text}");
        assert!(text.contains(r#""id":1.50,"#), "{text}");
        wait_until("the batch reached the stand-in", || seen.bodies() == 2).await;
        assert_eq!(
            seen.bodies.lock().unwrap()[1],
            Bytes::from(format!("[{allowed_text}]"))
        );
        assert_eq!(seen.ran(), ["echo", "echo"]);
        // The ledger keeps the exact text beside the parsed number when the
        // two differ, in every envelope of those calls.
        let events = sidecar.http.session_events("default", "default").await;
        let long: Vec<&Value> = events
            .iter()
            .filter(|e| e["payload"]["call_id_text"] == BIG_ID)
            .collect();
        // Denied twice (proposal + denial), allowed once (+ result).
        assert_eq!(long.len(), 2 + 2 + 3, "{events:#?}");
        let kinds: Vec<&str> = long
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"TOOL_RESULT"), "{kinds:?}");
        let short: Vec<&Value> = events
            .iter()
            .filter(|e| e["payload"]["call_id"] == 1.5)
            .collect();
        assert_eq!(short.len(), 3, "{events:#?}");
        assert!(
            short.iter().all(|e| e["payload"]["call_id_text"] == "1.50"),
            "{short:#?}"
        );
        drop(sidecar);
    });
}

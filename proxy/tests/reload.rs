//! Hot reload against a running `aegis-proxy run --manifest`: in-place
//! writes, rename-over and Kubernetes `..data` symlink swaps change the live
//! decision; an invalid manifest keeps the old one live and shows in
//! `GET /v1/manifest` and `/metrics`; SIGHUP and `POST /v1/manifest/reload`
//! (with an operator token) reload; decisions never fail during 100
//! reloads; SIGHUP re-reads the admin token files too.
//!
//! Waits are polls of the HTTP API until the change shows, bounded only by
//! the hang guard [`CHANGE_DEADLINE`]; how long each change took to be seen
//! is printed (`--nocapture`), not asserted. A reload's metrics are recorded
//! just after it swaps the manifest in, so they are waited for too.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Api, Server, block_on, hangup};
use tokio::sync::Notify;

/// Longest a change may take to be seen before the test fails: a hang
/// guard only (the acceptance bar is 1 s; the printed times are the
/// measurement), so a loaded machine can never fail the test.
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// A valid manifest declaring `tools`.
fn manifest(tools: &[&str]) -> String {
    format!(
        "schema: aegis.dev/manifest/v0.1\nname: reload-test\nversion: \"1.0.0\"\n\
         publisher: acme\npermissions:\n  tools: [{}]\nsandbox:\n  required: false\n",
        tools.join(", ")
    )
}

const INVALID: &str = "schema: aegis.dev/manifest/v9\nname: reload-test\n";

fn read_only() -> String {
    manifest(&["read_file"])
}

fn read_write() -> String {
    manifest(&["read_file", "write_file"])
}

fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A Kubernetes ConfigMap volume: `dir/..data -> ..<stamp>`,
/// `dir/manifest.yaml -> ..data/manifest.yaml`.
struct ConfigMap {
    dir: PathBuf,
    swaps: u32,
}

impl ConfigMap {
    fn new(dir: &Path, text: &str) -> ConfigMap {
        std::fs::create_dir_all(dir).unwrap();
        let mut map = ConfigMap {
            dir: dir.to_path_buf(),
            swaps: 0,
        };
        map.swap(text);
        std::os::unix::fs::symlink("..data/manifest.yaml", dir.join("manifest.yaml")).unwrap();
        map
    }

    fn path(&self) -> PathBuf {
        self.dir.join("manifest.yaml")
    }

    /// A new timestamped directory, a temporary symlink to it renamed over `..data`.
    fn swap(&mut self, text: &str) {
        self.swaps += 1;
        let stamp = format!(
            "..2026_11_22_04_00_{:02}.{}",
            self.swaps,
            std::process::id()
        );
        std::fs::create_dir(self.dir.join(&stamp)).unwrap();
        std::fs::write(self.dir.join(&stamp).join("manifest.yaml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// A sidecar on `DIR/ledger.db` with `--manifest manifest` and an
/// operator token (`POST /v1/manifest/reload` is an operator action), which
/// `server.api()` sends.
fn start(dir: &Path, manifest: &Path) -> Server {
    let ledger = dir.join("ledger.db");
    Server::start_with_operator_token(
        dir,
        &[
            OsStr::new("--ledger"),
            ledger.as_os_str(),
            OsStr::new("--manifest"),
            manifest.as_os_str(),
        ],
        &[],
    )
}

/// `POST /v1/policy/decide` for `write_file` on a fresh session, with no
/// manifest in the body (so the live one decides). Must answer 200.
async fn decide_write(api: &Api) -> Value {
    let body = json!({
        "event": {"event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "write_file", "args": {"path": "/w/x"}}},
        "snapshot": {},
    });
    let (status, answer) = api
        .request(Method::POST, "/v1/policy/decide", Some(&body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Calls `probe` every [`POLL`] until it answers `Ok`, for at most
/// [`CHANGE_DEADLINE`]; the value and how long it took (printed, never
/// asserted). `Err` says what was seen instead, for the failure message.
async fn poll<T, F: Future<Output = Result<T, String>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        let seen = match probe().await {
            Ok(found) => {
                let took = started.elapsed();
                eprintln!("{what}: seen after {took:?}");
                return (found, took);
            }
            Err(seen) => seen,
        };
        assert!(
            started.elapsed() < CHANGE_DEADLINE,
            "{what}: not seen after {CHANGE_DEADLINE:?}: {seen}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the `write_file` decision until its outcome is `want`; returns the
/// answer and how long it took.
async fn wait_outcome(api: &Api, want: &str, what: &str) -> (Value, Duration) {
    poll(what, || async {
        let answer = decide_write(api).await;
        if answer["outcome"] == want {
            Ok(answer)
        } else {
            Err(format!("decision still {answer}"))
        }
    })
    .await
}

/// Polls `GET /v1/manifest` until `done` holds.
async fn wait_status(api: &Api, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    poll(what, || async {
        let status = api.get("/v1/manifest").await;
        if done(&status) {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await
    .0
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Polls `/metrics` until `done` holds; the scrape that satisfied it.
async fn wait_metrics(api: &Api, what: &str, done: impl Fn(&str) -> bool) -> String {
    poll(what, || async {
        let (code, text) = api.get_text("/metrics").await;
        assert_eq!(code, StatusCode::OK);
        if done(&text) {
            Ok(text)
        } else {
            Err(format!("\n{text}"))
        }
    })
    .await
    .0
}

#[test]
fn in_place_writes_rename_over_invalid_files_sighup_and_the_api_reload() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let path = manifests.join("manifest.yaml");
    std::fs::write(&path, read_only()).unwrap();
    let server = start(dir.path(), &path);
    let api = server.api();
    block_on(TEST_LIMIT, async {
        let answer = decide_write(&api).await;
        assert_eq!(
            (&answer["outcome"], &answer["reason"]),
            (&json!("deny"), &json!("PERMISSION_UNDECLARED"))
        );
        assert_eq!(answer["manifest_generation"], 1);
        let status = api.get("/v1/manifest").await;
        assert_eq!(status["generation"], 1);
        assert_eq!(status["name"], "reload-test");
        assert_eq!(status["path"], path.display().to_string());
        assert_eq!(status["sha256"], answer["manifest_sha256"]);
        assert!(status["loaded_at"].as_i64().unwrap() > 0);
        assert_eq!(status["last_error"], Value::Null);

        // (5) SIGHUP and POST /v1/manifest/reload each reload: with nothing
        // written yet the watch is silent, so only they can count an
        // `unchanged` reload.
        hangup(&server);
        wait_status(&api, "SIGHUP", |s| s["reloads_unchanged"] == 1).await;
        let (code, body) = api
            .request(Method::POST, "/v1/manifest/reload", None)
            .await
            .unwrap();
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["result"], "unchanged");
        assert_eq!(
            (&body["generation"], &body["reloads_unchanged"]),
            (&json!(1), &json!(2))
        );

        // (1) In-place write.
        std::fs::write(&path, read_write()).unwrap();
        let (answer, _) = wait_outcome(&api, "allow", "in-place write").await;
        assert_eq!(answer["manifest_generation"], 2);
        assert_eq!(api.get("/v1/manifest").await["generation"], 2);

        // (2) Rename-over.
        rename_over(&path, &read_only());
        let (answer, _) = wait_outcome(&api, "deny", "rename-over").await;
        assert_eq!(answer["reason"], "PERMISSION_UNDECLARED");
        assert_eq!(answer["manifest_generation"], 3);

        // (4) An invalid manifest: the old one stays live, the problem shows.
        // (Written in place, the watch may first read it empty, which fails
        // too: waited for is the complaint about this file's schema.)
        std::fs::write(&path, INVALID).unwrap();
        let status = wait_status(&api, "invalid manifest", |s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("schema"))
        })
        .await;
        assert_eq!(status["generation"], 3);
        assert_eq!(status["last_result"], "failed");
        let answer = decide_write(&api).await;
        assert_eq!(answer["reason"], "PERMISSION_UNDECLARED");
        assert_eq!(answer["manifest_generation"], 3);
        let metrics = wait_metrics(&api, "failed reload", |m| {
            metric(m, "aegis_manifest_reloads_total{result=\"failed\"}") >= 1.0
                && metric(m, "aegis_manifest_last_reload_success") == 0.0
        })
        .await;
        assert_eq!(metric(&metrics, "aegis_manifest_generation"), 3.0);

        // The API reload of an invalid file answers 422 and keeps the old one.
        let (code, body) = api
            .request(Method::POST, "/v1/manifest/reload", None)
            .await
            .unwrap();
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["result"], "failed");
        assert!(body["error"].as_str().unwrap().contains("schema"), "{body}");
        assert_eq!(body["generation"], 3);

        // Fixing the file (here with a SIGHUP racing the watch) clears the
        // error. The decision sees the new manifest the moment it is swapped
        // in; the status and the metrics are written just after.
        std::fs::write(&path, read_write()).unwrap();
        hangup(&server);
        wait_outcome(&api, "allow", "fix + SIGHUP").await;
        let status = wait_status(&api, "fix + SIGHUP", |s| s["last_error"].is_null()).await;
        assert_eq!(status["generation"], 4);
        // (The SIGHUP and the watch both reload here, and each reports on
        // its own thread: in either order.)
        let metrics = wait_metrics(&api, "fix + SIGHUP", |m| {
            metric(m, "aegis_manifest_last_reload_success") == 1.0
                && metric(m, "aegis_manifest_reloads_total{result=\"reloaded\"}") >= 3.0
        })
        .await;
        assert_eq!(metric(&metrics, "aegis_manifest_generation"), 4.0);
    });
    server.terminate();
}

#[test]
fn a_configmap_symlink_swap_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let mut map = ConfigMap::new(&dir.path().join("config"), &read_only());
    let server = start(dir.path(), &map.path());
    let api = server.api();
    block_on(TEST_LIMIT, async {
        assert_eq!(decide_write(&api).await["outcome"], "deny");
        map.swap(&read_write());
        let (answer, _) = wait_outcome(&api, "allow", "..data swap").await;
        assert_eq!(answer["manifest_generation"], 2);
        map.swap(&read_only());
        let (answer, _) = wait_outcome(&api, "deny", "second ..data swap").await;
        assert_eq!(answer["manifest_generation"], 3);
        let status = api.get("/v1/manifest").await;
        assert_eq!(status["generation"], 3);
        assert_eq!(status["sha256"], answer["manifest_sha256"]);
    });
    server.terminate();
}

#[test]
fn decisions_never_fail_during_100_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let path = manifests.join("manifest.yaml");
    std::fs::write(&path, read_only()).unwrap();
    let server = start(dir.path(), &path);
    let api = server.api();
    block_on(TEST_LIMIT, async {
        let stop = Arc::new(AtomicBool::new(false));
        // Decisions made so far, and a wake-up for each: the reloads start
        // once the client is deciding, and stop it only after it decided
        // again, so it decides during them by count, not by luck.
        let decided = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        let client = {
            let api = api.clone();
            let stop = stop.clone();
            let (decided, progress) = (decided.clone(), progress.clone());
            tokio::spawn(async move {
                let (mut allow, mut deny, mut last_generation) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    let answer = decide_write(&api).await;
                    match answer["outcome"].as_str() {
                        Some("allow") => allow += 1,
                        Some("deny") => deny += 1,
                        _ => panic!("unexpected decision {answer}"),
                    }
                    let generation = answer["manifest_generation"].as_u64().unwrap();
                    assert!(generation >= last_generation, "{answer}");
                    last_generation = generation;
                    decided.fetch_add(1, Ordering::SeqCst);
                    progress.notify_one();
                }
                (allow, deny)
            })
        };
        // `notify_one` keeps a permit: a decision made before this waits
        // still counts.
        while decided.load(Ordering::SeqCst) == 0 {
            progress.notified().await;
        }
        let started = Instant::now();
        for i in 1..=100u64 {
            let text = if i % 2 == 1 {
                read_write()
            } else {
                read_only()
            };
            rename_over(&path, &text);
            // Reload now rather than waiting for the watch's debounce; the
            // watch's own reload then finds the bytes unchanged.
            let (code, body) = api
                .request(Method::POST, "/v1/manifest/reload", None)
                .await
                .unwrap();
            assert_eq!(code, StatusCode::OK, "{body}");
            assert_eq!(body["generation"], 1 + i, "{body}");
        }
        let took = started.elapsed();
        let before_stop = decided.load(Ordering::SeqCst);
        while decided.load(Ordering::SeqCst) == before_stop {
            progress.notified().await;
        }
        stop.store(true, Ordering::SeqCst);
        let (allow, deny) = client.await.unwrap();
        eprintln!("100 reloads in {took:?}; {allow} allow + {deny} deny decisions, none failed");
        assert!(allow + deny > 0);
        assert_eq!(api.get("/v1/manifest").await["generation"], 101);
    });
    server.terminate();
}

#[test]
fn run_refuses_an_invalid_manifest_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, INVALID).unwrap();
    let ledger = dir.path().join("ledger.db");
    let out = support::aegis([
        OsStr::new("run"),
        OsStr::new("--admin-listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--ledger"),
        ledger.as_os_str(),
        OsStr::new("--manifest"),
        path.as_os_str(),
    ]);
    assert_ne!(out.code(), Some(0), "{out:?}");
    for needle in ["invalid manifest", "schema", "version", "permissions"] {
        assert!(
            out.stderr.contains(needle),
            "missing {needle:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !ledger.exists(),
        "the manifest is checked before the ledger is opened"
    );

    let out = support::aegis([
        OsStr::new("run"),
        OsStr::new("--admin-listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--ledger"),
        ledger.as_os_str(),
        OsStr::new("--manifest"),
        dir.path().join("absent.yaml").as_os_str(),
    ]);
    assert_ne!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains("cannot read the manifest"),
        "{}",
        out.stderr
    );
}

/// SIGHUP re-reads the admin token files too. The configured token path is
/// a symlink into a directory nobody watches, so only the SIGHUP can see
/// the new token.
#[test]
fn sighup_rereads_the_admin_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, elsewhere) = (dir.path().join("tokens"), dir.path().join("elsewhere"));
    std::fs::create_dir(&tokens).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("operator");
    let old = "before-sighup-token-0123456789";
    let new = "after-sighup-token-0123456789";
    std::fs::write(&target, old).unwrap();
    let link = tokens.join("operator");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let config = dir.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  auth:\n    tokens:\n      - file: {}\n        role: operator\n",
            link.display()
        ),
    )
    .unwrap();
    let ledger = dir.path().join("ledger.db");
    let server = Server::start(
        dir.path(),
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--ledger"),
            ledger.as_os_str(),
        ],
        &[],
    );
    let api = |token: &str| Api::new(server.addr).with_token(token);
    let status = |token: &str| {
        let api = api(token);
        async move {
            api.request(Method::POST, "/v1/manifest/reload", None)
                .await
                .unwrap()
                .0
        }
    };
    block_on(TEST_LIMIT, async {
        assert_eq!(status(old).await, StatusCode::OK);
        std::fs::write(&target, new).unwrap();
        assert_eq!(status(old).await, StatusCode::OK, "unseen until SIGHUP");
        hangup(&server);
        poll("the token after SIGHUP", || async {
            match status(new).await {
                StatusCode::OK => Ok(()),
                other => Err(other.to_string()),
            }
        })
        .await;
        assert_eq!(status(old).await, StatusCode::UNAUTHORIZED);
    });
    server.terminate();
}

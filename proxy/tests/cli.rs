//! The `aegis-proxy` command line, run as the real binary: offline `verify` and
//! `events export` on ledgers the sidecar wrote, damaged copies of them, usage
//! errors, and how `run` loads (and refuses) its configuration.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use aegis_ledger::testing::{Tamper, tamper};
use serde_json::Value;
use support::{DEADLINE, Server, aegis, block_on, copy_ledger, is_hex_hash};
use tempfile::TempDir;

const TENANT: &str = "t";
/// Envelopes appended to each of the two sessions.
const PER_SESSION: u64 = 6;

/// A ledger written by a real sidecar, which has since stopped (SIGTERM).
struct Built {
    /// Keeps the ledger's directory alive.
    _dir: TempDir,
    ledger: PathBuf,
    /// What `GET /v1/events` listed for session "s" while the sidecar ran.
    listed_s: Vec<Value>,
}

/// Starts the sidecar, appends [`PER_SESSION`] envelopes to sessions "s" and
/// "other" of tenant "t" (interleaved), lists "s", and stops it.
fn built_ledger() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let server = Server::on_ledger(dir.path(), &ledger, &[]);
    let api = server.api();
    let listed_s = block_on(DEADLINE, async {
        for n in 0..PER_SESSION {
            for session in ["s", "other"] {
                let (seq, _) = api.append_ok(TENANT, session, n).await;
                assert_eq!(seq, n, "sealed at the head of {session}");
            }
        }
        api.list_session(TENANT, "s").await
    });
    assert_eq!(listed_s.len(), PER_SESSION as usize);
    server.terminate();
    Built {
        _dir: dir,
        ledger,
        listed_s,
    }
}

fn verify(ledger: &Path, extra: &[&str]) -> support::Output {
    let mut args: Vec<&OsStr> = vec![OsStr::new("verify"), OsStr::new("--ledger")];
    args.push(ledger.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    aegis(args)
}

fn export(ledger: &Path, tenant: &str, session: &str) -> support::Output {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("events"),
        OsStr::new("export"),
        OsStr::new("--ledger"),
    ];
    args.push(ledger.as_os_str());
    args.extend(["--tenant", tenant, "--session", session].map(OsStr::new));
    aegis(args)
}

#[test]
fn verify_accepts_a_ledger_the_sidecar_wrote() {
    let built = built_ledger();
    let ledger = &built.ledger;

    let out = verify(ledger, &[]);
    out.expect_code(0, "verify");
    assert!(out.stdout.starts_with("OK"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("2 session(s), 12 envelope(s), 0 invalid"),
        "{}",
        out.stdout
    );

    let out = verify(ledger, &["--json"]);
    out.expect_code(0, "verify --json");
    let report = out.json();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["sessions"], 2, "{report}");
    assert_eq!(report["envelopes"], 12, "{report}");
    assert_eq!(report["invalid"], serde_json::json!([]), "{report}");

    let out = verify(ledger, &["--tenant", TENANT, "--json"]);
    out.expect_code(0, "verify --tenant");
    assert_eq!(out.json()["sessions"], 2);

    let out = verify(ledger, &["--tenant", TENANT, "--session", "s", "--json"]);
    out.expect_code(0, "verify --tenant --session");
    let report = out.json();
    assert_eq!(
        (&report["valid"], &report["sessions"], &report["envelopes"]),
        (&Value::from(true), &Value::from(1), &Value::from(6)),
        "{report}"
    );

    // Asking for something that is not there is a failed check: a whole
    // chain could have been deleted.
    for extra in [
        &["--tenant", "nobody"][..],
        &["--tenant", TENANT, "--session", "nope"][..],
        &["--tenant", "nobody", "--session", "s"][..],
    ] {
        let out = verify(ledger, extra);
        out.expect_code(1, &format!("verify {extra:?}"));
        assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
        let out = verify(ledger, &[extra, &["--json"][..]].concat());
        out.expect_code(1, &format!("verify {extra:?} --json"));
        let report = out.json();
        assert_eq!(report["valid"], false, "{report}");
        assert_eq!(report["sessions"], 0, "{report}");
        assert!(report["error"].is_string(), "{report}");
    }
}

#[test]
fn verify_names_the_first_bad_seq_of_every_kind_of_damage() {
    let built = built_ledger();
    for &how in Tamper::ALL {
        let auditor = tempfile::tempdir().unwrap();
        let copy = copy_ledger(&built.ledger, auditor.path());
        let bad =
            tamper(&copy, TENANT, "s", 3, how).unwrap_or_else(|e| panic!("tamper {how:?}: {e}"));
        assert_eq!(bad, 3);

        let out = verify(&copy, &[]);
        out.expect_code(1, &format!("verify after {how:?}"));
        assert!(
            out.stdout.contains(r#"session="s""#) && out.stdout.contains("first_bad_seq=3"),
            "{how:?}: {}",
            out.stdout
        );
        assert!(
            !out.stdout.contains(r#"session="other""#),
            "{how:?}: the undamaged session is not reported: {}",
            out.stdout
        );
        assert!(out.stdout.contains("FAILED"), "{how:?}: {}", out.stdout);

        let out = verify(&copy, &["--tenant", TENANT, "--session", "s", "--json"]);
        out.expect_code(1, &format!("verify --session s --json after {how:?}"));
        let report = out.json();
        assert_eq!(report["valid"], false, "{how:?}: {report}");
        assert_eq!(report["invalid"][0]["session_id"], "s", "{how:?}: {report}");
        assert_eq!(
            report["invalid"][0]["first_bad_seq"], 3,
            "{how:?}: {report}"
        );
        assert!(
            report["invalid"][0]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{how:?}: the reason is given: {report}"
        );

        verify(&copy, &["--tenant", TENANT, "--session", "other"])
            .expect_code(0, &format!("undamaged session after {how:?}"));
    }
    // The original was never touched.
    verify(&built.ledger, &[]).expect_code(0, "the original ledger");
}

#[test]
fn verify_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.db");
    let out = verify(&missing, &[]);
    out.expect_code(2, "missing file");
    assert!(out.stderr.contains("missing.db"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a sqlite database\n".repeat(200)).unwrap();
    let out = verify(&garbage, &["--json"]);
    out.expect_code(2, "garbage file");
    assert!(!out.stderr.trim().is_empty());
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // A zero-byte file is a valid, empty SQLite database, but not a ledger.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = verify(&empty, &[]);
    out.expect_code(2, "empty (non-ledger) database");
    assert!(out.stderr.contains("not an aegis ledger"), "{}", out.stderr);

    let out = verify(&missing, &["--session", "s"]);
    out.expect_code(2, "--session without --tenant");
    assert!(out.stderr.contains("--tenant"), "{}", out.stderr);

    let out = export(&missing, TENANT, "s");
    out.expect_code(2, "export of a missing file");
    assert!(out.stderr.contains("missing.db"), "{}", out.stderr);
}

#[test]
fn events_export_writes_the_listed_chain_as_ndjson() {
    let built = built_ledger();
    let out = export(&built.ledger, TENANT, "s");
    out.expect_code(0, "events export");
    assert!(out.stdout.ends_with('\n'), "{:?}", out.stdout);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(lines.len(), PER_SESSION as usize, "{}", out.stdout);

    let mut prev: Option<&str> = None;
    for (i, line) in lines.iter().enumerate() {
        assert!(line.is_object(), "{line}");
        assert_eq!(line["seq"], i as u64, "{line}");
        assert_eq!(line["tenant_id"], TENANT);
        assert_eq!(line["session_id"], "s");
        let hash = line["hash"].as_str().unwrap();
        assert!(is_hex_hash(hash), "{line}");
        match prev {
            None => assert!(line.get("prev_hash").is_none(), "{line}"),
            Some(prev) => assert_eq!(line["prev_hash"], prev, "{line}"),
        }
        prev = Some(hash);
    }
    assert_eq!(
        lines, built.listed_s,
        "the export equals what GET /v1/events listed"
    );

    let out = export(&built.ledger, TENANT, "nope");
    out.expect_code(1, "export of an unknown session");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}

#[test]
fn run_reports_every_configuration_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let ready = dir.path().join("ready.json");

    let mut cmd = support::command();
    cmd.args(["run", "--admin-listen", "nonsense", "--ledger"])
        .arg(&ledger)
        .arg("--ready-file")
        .arg(&ready)
        .env("AEGIS_LEDGER_SYNCHRONOUS", "sometimes");
    let out = support::output(cmd);
    out.expect_code(2, "invalid flag and env");
    for needle in [
        "admin.listen",
        "\"nonsense\"",
        "--admin-listen",
        "ledger.synchronous",
        "\"sometimes\"",
        "AEGIS_LEDGER_SYNCHRONOUS",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} in:\n{}",
            out.stderr
        );
    }
    assert!(!ledger.exists(), "nothing is opened on a bad configuration");
    assert!(!ready.exists());

    let config = dir.path().join("aegis.yaml");
    std::fs::write(
        &config,
        "admin:\n  listen: 127.0.0.1:0\n  listen_backlog: 5\nledger:\n  path: x.db\n",
    )
    .unwrap();
    let mut cmd = support::command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready);
    let out = support::output(cmd);
    out.expect_code(2, "unknown key in the config file");
    assert!(out.stderr.contains("listen_backlog"), "{}", out.stderr);
    assert!(out.stderr.contains("aegis.yaml"), "{}", out.stderr);
    assert!(!ready.exists());

    // Every problem in the file at once, each under its setting's path.
    std::fs::write(
        &config,
        "mcp:\n  listn: 127.0.0.1:0\nledger:\n  path: x.db\n  synchronous: fast\n  queue_capacity: -1\n",
    )
    .unwrap();
    let mut cmd = support::command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready);
    let out = support::output(cmd);
    out.expect_code(2, "three problems in the config file");
    for needle in [
        "mcp.listn",
        "listen",
        "ledger.synchronous",
        "\"fast\"",
        "ledger.queue_capacity",
        "-1",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} in:\n{}",
            out.stderr
        );
    }
    assert!(!ready.exists());
}

#[test]
fn run_refuses_a_public_admin_listen_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let mut cmd = support::command();
    cmd.args(["run", "--admin-listen", "0.0.0.0:0", "--ledger"])
        .arg(&ledger);
    let out = support::output(cmd);
    out.expect_code(2, "a public admin.listen in dev mode");
    for needle in [
        "admin.listen",
        "not a loopback address",
        "admin.auth",
        "--admin-listen",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} in:\n{}",
            out.stderr
        );
    }
    assert!(!ledger.exists(), "nothing is opened on a bad configuration");
}

#[test]
fn metrics_listen_serves_the_probes_and_the_ready_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let server = Server::start_with_operator_token(
        dir.path(),
        &[
            OsStr::new("--ledger"),
            ledger.as_os_str(),
            OsStr::new("--metrics-listen"),
            OsStr::new("127.0.0.1:0"),
        ],
        &[],
    );
    let metrics: std::net::SocketAddr = server.ready["metrics"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {}", server.ready));
    assert_ne!(metrics, server.addr);
    let probes = support::Api::new(metrics).with_token(support::OPERATOR_TOKEN);
    block_on(DEADLINE, async {
        assert_eq!(probes.get("/healthz").await["status"], "ok");
        assert_eq!(probes.get("/readyz").await["status"], "ok");
        let (status, text) = probes.get_text("/metrics").await;
        assert_eq!(status, 200);
        assert!(text.contains("aegis_api_auth_failures_total"), "{text}");
        let (status, _) = probes
            .request(http::Method::POST, "/v1/manifest/reload", None)
            .await
            .unwrap();
        assert_eq!(status, 404, "no /v1 on the metrics listener");
        // The admin listener needs the token for /v1.
        let (status, body) = support::Api::new(server.addr)
            .request(http::Method::GET, "/v1/manifest", None)
            .await
            .unwrap();
        assert_eq!(status, 401, "{body}");
        // (`get` asserts 200.)
        server.api().get("/v1/manifest").await;
    });
    server.terminate();
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    // Dev mode is announced at warn level: a line that would be coloured.
    let server = Server::start(
        dir.path(),
        &[OsStr::new("--ledger"), ledger.as_os_str()],
        &[],
    );
    let log = server.log.clone();
    server.terminate();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file: {text:?}"
    );
}

#[test]
fn run_layers_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file.db");
    let from_env = dir.path().join("from-env.db");
    let config = dir.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  listen: 127.0.0.1:1\nledger:\n  path: {}\n",
            serde_json::to_string(from_file.to_str().unwrap()).unwrap()
        ),
    )
    .unwrap();

    // `Server::start` passes `--admin-listen 127.0.0.1:0`: the flag must beat
    // the file's unusable port, and the environment the file's ledger path.
    let server = Server::start(
        dir.path(),
        &[OsStr::new("--config"), config.as_os_str()],
        &[("AEGIS_LEDGER_PATH", from_env.as_os_str())],
    );
    assert_eq!(
        server.ready["ledger"],
        from_env.to_str().unwrap(),
        "{}",
        server.ready
    );
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_ne!(server.addr.port(), 0);
    assert_ne!(server.addr.port(), 1, "the flag beats the file");
    let health = block_on(DEADLINE, server.api().get("/healthz"));
    assert_eq!(health["status"], "ok");
    server.terminate();
    assert!(
        from_env.exists(),
        "the ledger is where the environment said"
    );
    assert!(!from_file.exists(), "the file's ledger path was overridden");
}

#[test]
fn the_demo_enforces_calls_end_to_end_and_its_chain_verifies() {
    for answer in [&[][..], &["--sse"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("demo"),
            OsStr::new("--dir"),
            dir.path().as_os_str(),
        ];
        args.extend(answer.iter().map(OsStr::new));
        let out = aegis(args);
        out.expect_code(0, "demo");
        for line in [
            "offered: echo, read_file, write_file",
            "DENIED    Denied by policy (PERMISSION_UNDECLARED)",
            "DENIED    Denied by policy (TAINTED_TO_HIGH_RISK)",
            "DENIED    Denied by policy (BUDGET_EXCEEDED)",
            "delete_everything 0 times, keys.txt never written",
            "verify: chain valid, 24 envelopes",
        ] {
            assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
        }
        verify(&dir.path().join("ledger.db"), &[]).expect_code(0, "verify after the demo");
    }
}

//! The policy commands run as the real binary: `manifest validate` on the
//! shipped examples and a broken manifest, `decide` offline, and
//! `conformance run` on the Aegis packs in `tests/data/aegis-conformance`.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use aegis_policy::Manifest;
use serde_json::{Value, json};
use support::aegis;
use tempfile::TempDir;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/manifests")
}

fn packs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/aegis-conformance/packs")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    write(dir, name, &value.to_string())
}

#[test]
fn every_example_manifest_validates() {
    let mut paths: Vec<PathBuf> = fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(paths.len() >= 2, "the examples exist: {paths:?}");
    for path in &paths {
        let out = aegis(["manifest".as_ref(), "validate".as_ref(), path.as_os_str()]);
        out.expect_code(0, &format!("validate {}", path.display()));
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let expected = match name {
            "example" => "OK: research-assistant 1.2.0 (4 tools)\n",
            "demo" => "OK: demo-agent 1.0.0 (3 tools)\n",
            other => panic!("a new example manifest {other}: add what it validates as"),
        };
        assert_eq!(out.stdout, expected, "{}", path.display());
    }
}

#[test]
fn the_json_and_yaml_examples_are_the_same_manifest() {
    let dir = manifests_dir();
    let yaml = Manifest::parse(&fs::read(dir.join("example.yaml")).unwrap()).unwrap();
    let json = Manifest::parse(&fs::read(dir.join("example.json")).unwrap()).unwrap();
    assert_eq!(yaml, json);
    assert_eq!(
        yaml.permissions.exec.as_ref().unwrap().allowed_bins,
        ["ls", "git"]
    );
    assert_eq!(yaml.permissions.approval_required, ["write_file"]);
    assert!(yaml.sandbox.required);
}

#[test]
fn validate_reports_every_problem_with_its_path() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        r#"schema: aegis.dev/manifest/v9
name: broken
version: "0.1.0"
publisher: acme
permissions:
  tools: [net.fetch]
  net:
    domains: ["a.*.com"]
  budgets:
    max_steps: 0
sandbox:
  required: true
integrity: {}
"#,
    );
    let out = aegis(["manifest".as_ref(), "validate".as_ref(), path.as_os_str()]);
    out.expect_code(1, "validate an invalid manifest");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per problem:\n{}", out.stdout);
    for prefix in [
        "schema: ",
        "permissions.net.domains[0]: ",
        "permissions.budgets.max_steps: ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no {prefix:?} problem in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn validate_a_missing_file_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing.yaml");
    let out = aegis([
        "manifest".as_ref(),
        "validate".as_ref(),
        missing.as_os_str(),
    ]);
    out.expect_code(2, "validate a missing file");
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

/// `aegis-proxy decide` on the YAML example with `event` (and `snapshot`).
fn decide(event: &Value, snapshot: Option<&Value>) -> support::Output {
    let dir = TempDir::new().unwrap();
    let manifest = manifests_dir().join("example.yaml");
    let event = write_json(dir.path(), "event.json", event);
    let mut args = vec![
        "decide".into(),
        "--manifest".into(),
        manifest.into_os_string(),
        "--event".into(),
        event.into_os_string(),
    ];
    if let Some(snapshot) = snapshot {
        args.push("--snapshot".into());
        args.push(write_json(dir.path(), "snapshot.json", snapshot).into_os_string());
    }
    aegis(args)
}

fn proposal(tool: &str, args: Value) -> Value {
    json!({
        "event_type": "TOOL_CALL_PROPOSED",
        "payload": {"tool_name": tool, "call_id": "c1", "args": args},
    })
}

#[test]
fn decide_allows_a_declared_read() {
    let out = decide(
        &proposal("read_file", json!({"path": "/workspace/a.txt"})),
        None,
    );
    out.expect_code(0, "decide");
    assert_eq!(
        out.json(),
        json!({
            "outcome": "allow",
            "reason": "OK",
            "constraints": {"max_output_bytes": 1_048_576, "timeout_ms": 30_000},
        })
    );
}

#[test]
fn decide_denies_an_undeclared_tool() {
    let out = decide(&proposal("delete_file", json!({})), None);
    out.expect_code(0, "a deny is still a decision");
    assert_eq!(
        out.json(),
        json!({"outcome": "deny", "reason": "PERMISSION_UNDECLARED", "constraints": {}})
    );
}

#[test]
fn decide_denies_a_tainted_write() {
    let event = proposal("write_file", json!({"path": "/workspace/out/x"}));
    let out = decide(
        &event,
        Some(&json!({"is_tainted": true, "steps_consumed": 2})),
    );
    out.expect_code(0, "decide");
    assert_eq!(
        out.json(),
        json!({"outcome": "deny", "reason": "TAINTED_TO_HIGH_RISK", "constraints": {}})
    );
    // Untainted, the same write waits for approval.
    let out = decide(&event, None);
    out.expect_code(0, "decide");
    assert_eq!(out.json()["outcome"], "require_approval");
}

#[test]
fn decide_refuses_invalid_input() {
    let dir = TempDir::new().unwrap();
    let manifest = write(dir.path(), "m.json", r#"{"schema": "nope"}"#);
    let event = write_json(dir.path(), "e.json", &proposal("read_file", json!({})));
    let out = aegis([
        "decide".as_ref(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
        "--event".as_ref(),
        event.as_os_str(),
    ]);
    out.expect_code(2, "decide with an invalid manifest");
    assert!(out.stderr.contains("schema: "), "{}", out.stderr);
    assert!(out.stderr.contains("permissions: "), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    let bad_event = write(dir.path(), "bad.json", "not json");
    let out = aegis([
        "decide".as_ref(),
        "--manifest".as_ref(),
        manifests_dir().join("example.json").as_os_str(),
        "--event".as_ref(),
        bad_event.as_os_str(),
    ]);
    out.expect_code(2, "decide with an invalid event");
}

#[test]
fn conformance_run_reports_18_of_19_with_pi_003_failing() {
    let packs = packs_dir();
    let out = aegis(["conformance".as_ref(), "run".as_ref(), packs.as_os_str()]);
    out.expect_code(1, "one test fails");
    assert!(
        out.stdout.lines().any(|l| l == "18 of 19 passed"),
        "{}",
        out.stdout
    );
    let pi_003 = out
        .stdout
        .lines()
        .find(|l| l.starts_with("PI-003 "))
        .unwrap_or_else(|| panic!("no PI-003 row:\n{}", out.stdout));
    assert!(
        pi_003.contains("FAIL") && pi_003.contains("EXEC_DENY"),
        "{pi_003}"
    );
    let failing: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(" FAIL "))
        .collect();
    assert_eq!(failing, [pi_003], "only PI-003 fails");
}

#[test]
fn conformance_run_json_lists_every_result() {
    let packs = packs_dir();
    let out = aegis([
        "conformance".as_ref(),
        "run".as_ref(),
        packs.as_os_str(),
        "--json".as_ref(),
    ]);
    out.expect_code(1, "one test fails");
    let report = out.json();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 19);
    let failed: Vec<&Value> = results.iter().filter(|r| r["passed"] == false).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["id"], "PI-003");
    assert_eq!(failed[0]["got"], "deny EXEC_DENY");
    assert_eq!(
        (report["passed"].as_u64(), report["total"].as_u64()),
        (Some(18), Some(19))
    );
}

#[test]
fn conformance_run_passes_a_passing_pack_and_refuses_a_broken_one() {
    let dir = TempDir::new().unwrap();
    let one = packs_dir().join("baseline-safety.yaml");
    let out = aegis(["conformance".as_ref(), "run".as_ref(), one.as_os_str()]);
    out.expect_code(0, "every test of the pack passes");
    assert!(out.stdout.contains("5 of 5 passed"), "{}", out.stdout);

    let broken = write(dir.path(), "broken.yaml", "name: [unclosed\n");
    let out = aegis(["conformance".as_ref(), "run".as_ref(), broken.as_os_str()]);
    out.expect_code(2, "an invalid pack");
    assert!(out.stderr.contains("broken.yaml"), "{}", out.stderr);

    let missing = dir.path().join("missing.yaml");
    let out = aegis(["conformance".as_ref(), "run".as_ref(), missing.as_os_str()]);
    out.expect_code(2, "a missing pack");
}

#[test]
fn conformance_run_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::on_ledger(dir.path(), &dir.path().join("ledger.db"), &[]);
    let url = format!("http://{}", server.addr);
    let packs = packs_dir();
    let out = aegis([
        "conformance".as_ref(),
        "run".as_ref(),
        "--server".as_ref(),
        url.as_ref(),
        packs.as_os_str(),
    ]);
    out.expect_code(1, "one test fails against the server too");
    assert!(
        out.stdout.lines().any(|l| l == "18 of 19 passed"),
        "{}",
        out.stdout
    );
    let failing: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(" FAIL "))
        .collect();
    assert_eq!(failing.len(), 1, "{}", out.stdout);
    assert!(
        failing[0].starts_with("PI-003 ") && failing[0].contains("EXEC_DENY"),
        "{}",
        failing[0]
    );
    server.terminate();

    // Against a sidecar with admin.auth: without the token every case is a
    // 401; with --token-file (or AEGIS_ADMIN_TOKEN_FILE) they all run.
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start_with_operator_token(
        dir.path(),
        &[
            "--ledger".as_ref(),
            dir.path().join("ledger.db").as_os_str(),
        ],
        &[],
    );
    let url = format!("http://{}", server.addr);
    let token_file = dir.path().join("operator.token");
    let run = |extra: &[&std::ffi::OsStr], envs: &[(&str, &std::ffi::OsStr)]| {
        let mut cmd = support::command();
        cmd.args(["conformance", "run", "--server", &url])
            .args(extra)
            .arg(&packs)
            .envs(envs.iter().copied());
        support::output(cmd)
    };
    let out = run(&[], &[]);
    out.expect_code(1, "no token");
    assert!(out.stdout.contains("0 of 19 passed"), "{}", out.stdout);
    assert!(out.stdout.contains("401"), "{}", out.stdout);
    let out = run(&["--token-file".as_ref(), token_file.as_os_str()], &[]);
    out.expect_code(1, "with --token-file");
    assert!(out.stdout.contains("18 of 19 passed"), "{}", out.stdout);
    assert!(!out.stdout.contains(support::OPERATOR_TOKEN));
    let out = run(&[], &[("AEGIS_ADMIN_TOKEN_FILE", token_file.as_os_str())]);
    out.expect_code(1, "with AEGIS_ADMIN_TOKEN_FILE");
    assert!(out.stdout.contains("18 of 19 passed"), "{}", out.stdout);
    let missing = dir.path().join("absent.token");
    let out = run(&["--token-file".as_ref(), missing.as_os_str()], &[]);
    out.expect_code(2, "an unreadable token file");
    assert!(out.stderr.contains("absent.token"), "{}", out.stderr);
    server.terminate();

    // Nothing listening: every case is an error, and the run fails.
    let out = aegis([
        "conformance".as_ref(),
        "run".as_ref(),
        "--server".as_ref(),
        url.as_ref(),
        packs.as_os_str(),
    ]);
    out.expect_code(1, "no server");
    assert!(out.stdout.contains("0 of 19 passed"), "{}", out.stdout);
    let bad = aegis([
        "conformance".as_ref(),
        "run".as_ref(),
        "--server".as_ref(),
        "ftp://x".as_ref(),
        packs.as_os_str(),
    ]);
    bad.expect_code(2, "not an http URL");
}

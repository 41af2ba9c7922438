use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

mod admin;
mod file;
mod forward;
mod identity;
mod mcp;
mod results;
mod settings;
mod tls;
mod upstreams;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn yaml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("create temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file
}

fn flags_with_config(path: &Path) -> RunFlags {
    RunFlags {
        config: Some(path.to_owned()),
        ..RunFlags::default()
    }
}

fn problems(result: Result<Config, ConfigError>) -> Vec<String> {
    result
        .expect_err("configuration should be rejected")
        .problems
}

#[test]
fn defaults_without_file_env_or_flags() {
    let config = load(&RunFlags::default(), &env(&[])).expect("defaults are valid");
    assert_eq!(config, Config::default());
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin.max_body_bytes, 1_048_576);
    assert_eq!(config.admin.max_connections, 256);
    assert_eq!(config.admin.request_timeout, Duration::from_secs(30));
    assert_eq!(
        (config.admin.list_limit_default, config.admin.list_limit_max),
        (100, 1000)
    );
    assert_eq!(config.ledger.path, PathBuf::from("aegis-ledger.db"));
    assert_eq!(config.ledger.synchronous, Synchronous::Normal);
    assert_eq!(
        (config.ledger.queue_capacity, config.ledger.max_batch),
        (4096, 1024)
    );
    assert!(!config.ledger.fail_open, "fail closed by default");
    assert_eq!(config.mcp, McpConfig::default());
    assert_eq!(
        config.log,
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text
        }
    );
    assert_eq!((config.ready_file, config.source), (None, None));
}

#[test]
fn ledger_defaults_match_the_ledger_crate() {
    let ledger = LedgerConfig::new("x");
    assert_eq!(DEFAULT_LEDGER_QUEUE_CAPACITY, ledger.queue_capacity);
    assert_eq!(DEFAULT_LEDGER_MAX_BATCH, ledger.max_batch);
    assert_eq!(DEFAULT_LEDGER_CHECKPOINT_PAGES, ledger.checkpoint_pages);
    assert_eq!(DEFAULT_LEDGER_SYNCHRONOUS, ledger.synchronous);
}

#[test]
fn to_ledger_config_carries_every_setting() {
    let settings = LedgerSettings {
        path: PathBuf::from("/var/lib/aegis/l.db"),
        synchronous: Synchronous::Full,
        queue_capacity: 7,
        max_batch: 3,
        checkpoint_pages: 5,
        fail_open: true,
        result_commit: crate::gate::ResultCommit::BeforeAnswer,
    };
    let ledger = settings.to_ledger_config();
    assert_eq!(ledger.path, settings.path);
    assert_eq!(ledger.synchronous, Synchronous::Full);
    assert_eq!((ledger.queue_capacity, ledger.max_batch), (7, 3));
    assert_eq!(ledger.checkpoint_pages, 5);
}

#[test]
fn precedence_is_file_then_env_then_flag() {
    let file = yaml_file(
        "admin:\n  listen: 127.0.0.1:1001\nledger:\n  path: file.db\n  synchronous: full\n",
    );
    let flags = flags_with_config(file.path());

    let config = load(&flags, &env(&[])).expect("file alone");
    assert_eq!(config.admin.listen.port(), 1001);
    assert_eq!(config.ledger.path, PathBuf::from("file.db"));
    assert_eq!(config.ledger.synchronous, Synchronous::Full);
    assert_eq!(config.source.as_deref(), Some(file.path()));

    let vars = env(&[
        (ENV_ADMIN_LISTEN, "127.0.0.1:1002"),
        (ENV_LEDGER_PATH, "env.db"),
        (ENV_LEDGER_SYNCHRONOUS, "normal"),
    ]);
    let config = load(&flags, &vars).expect("env over file");
    assert_eq!(config.admin.listen.port(), 1002);
    assert_eq!(config.ledger.path, PathBuf::from("env.db"));
    assert_eq!(config.ledger.synchronous, Synchronous::Normal);

    let flags = RunFlags {
        admin_listen: Some("127.0.0.1:1003".to_owned()),
        ledger: Some(PathBuf::from("flag.db")),
        ledger_synchronous: Some("full".to_owned()),
        ..flags
    };
    let config = load(&flags, &vars).expect("flags over env");
    assert_eq!(config.admin.listen.port(), 1003);
    assert_eq!(config.ledger.path, PathBuf::from("flag.db"));
    assert_eq!(config.ledger.synchronous, Synchronous::Full);
}

#[test]
fn config_flag_wins_over_config_env_and_empty_env_is_unset() {
    let used = yaml_file("log:\n  format: json\n");
    let vars = env(&[
        (ENV_CONFIG, "/nonexistent/ignored.yaml"),
        (ENV_LOG_LEVEL, " "),
    ]);
    let config = load(&flags_with_config(used.path()), &vars).expect("--config wins");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, DEFAULT_LOG_LEVEL);

    let via_env = env(&[(ENV_CONFIG, &used.path().display().to_string())]);
    let config = load(&RunFlags::default(), &via_env).expect("AEGIS_CONFIG read");
    assert_eq!(config.source.as_deref(), Some(used.path()));
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn every_env_var_is_read() {
    let vars = env(&[
        (ENV_ADMIN_MAX_BODY_BYTES, "2048"),
        (ENV_ADMIN_MAX_CONNECTIONS, "8"),
        (ENV_ADMIN_REQUEST_TIMEOUT_MS, " 1500 "),
        (ENV_ADMIN_LIST_LIMIT_DEFAULT, "5"),
        (ENV_ADMIN_LIST_LIMIT_MAX, "5"),
        (ENV_LEDGER_QUEUE_CAPACITY, "16"),
        (ENV_LEDGER_MAX_BATCH, "4"),
        (ENV_LEDGER_CHECKPOINT_PAGES, "64"),
        (ENV_LOG_LEVEL, "debug"),
        (ENV_LOG_FORMAT, "JSON"),
        (ENV_READY_FILE, "/tmp/ready"),
    ]);
    let config = load(&RunFlags::default(), &vars).expect("valid env");
    let admin = &config.admin;
    assert_eq!((admin.max_body_bytes, admin.max_connections), (2048, 8));
    assert_eq!(admin.request_timeout, Duration::from_millis(1500));
    assert_eq!((admin.list_limit_default, admin.list_limit_max), (5, 5));
    assert_eq!(
        (config.ledger.queue_capacity, config.ledger.max_batch),
        (16, 4)
    );
    assert_eq!(config.ledger.checkpoint_pages, 64);
    assert_eq!(
        config.log,
        LogConfig {
            level: "debug".to_owned(),
            format: LogFormat::Json
        }
    );
    assert_eq!(config.ready_file, Some(PathBuf::from("/tmp/ready")));
}

#[test]
fn unknown_yaml_key_is_rejected_by_name() {
    let file = yaml_file("admin:\n  listen: 127.0.0.1:1\n  max_conections: 3\n");
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("max_conections"), "{}", problems[0]);
    assert!(problems[0].contains("line 3"), "{}", problems[0]);
    assert!(
        problems[0].contains(&file.path().display().to_string()),
        "{}",
        problems[0]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let file = yaml_file(
        "admin:\n  listen: abc\n  max_body_bytes: 0\n  max_connections: 0\n\
         ledger:\n  path: ''\n  synchronous: sometimes\n\
         log:\n  level: ''\nready_file: ''\n",
    );
    let flags = RunFlags {
        log_format: Some("xml".to_owned()),
        ..flags_with_config(file.path())
    };
    let vars = env(&[
        (ENV_LEDGER_MAX_BATCH, "many"),
        (ENV_ADMIN_REQUEST_TIMEOUT_MS, "0"),
    ]);
    let err = load(&flags, &vars).expect_err("everything here is wrong");
    let expected = [
        "admin.listen: invalid socket address \"abc\"",
        "admin.max_body_bytes: must be greater than 0",
        "admin.max_connections: must be greater than 0",
        "admin.request_timeout_ms: must be greater than 0, got 0 (from AEGIS_ADMIN_REQUEST_TIMEOUT_MS)",
        "ledger.path: must not be empty",
        "ledger.synchronous: expected \"normal\" or \"full\", got \"sometimes\"",
        "AEGIS_LEDGER_MAX_BATCH: expected a positive integer, got \"many\"",
        "log.level: must not be empty",
        "log.format: expected \"text\" or \"json\", got \"xml\" (from --log-format)",
        "ready_file: must not be empty",
    ];
    assert_eq!(err.problems.len(), expected.len(), "{err}");
    for prefix in expected {
        assert!(
            err.problems.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in:\n{err}"
        );
    }
    // Display: one problem per line.
    assert_eq!(err.to_string().lines().count(), expected.len());
}

#[test]
fn bad_env_number_is_named() {
    let vars = env(&[
        (ENV_ADMIN_MAX_CONNECTIONS, "x"),
        (ENV_LEDGER_QUEUE_CAPACITY, "-1"),
    ]);
    let problems = problems(load(&RunFlags::default(), &vars));
    assert_eq!(
        problems,
        [
            "AEGIS_ADMIN_MAX_CONNECTIONS: expected a positive integer, got \"x\"",
            "AEGIS_LEDGER_QUEUE_CAPACITY: expected a positive integer, got \"-1\"",
        ]
    );
}

#[test]
fn bad_flag_value_names_the_flag() {
    let flags = RunFlags {
        admin_listen: Some("localhost:80".to_owned()),
        ..RunFlags::default()
    };
    let problems = problems(load(&flags, &env(&[])));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("admin.listen: invalid socket address \"localhost:80\""));
    assert!(
        problems[0].ends_with("(from --admin-listen)"),
        "{}",
        problems[0]
    );
}

#[test]
fn list_limit_default_above_max_is_rejected() {
    let vars = env(&[
        (ENV_ADMIN_LIST_LIMIT_DEFAULT, "500"),
        (ENV_ADMIN_LIST_LIMIT_MAX, "200"),
    ]);
    let problems = problems(load(&RunFlags::default(), &vars));
    assert_eq!(
        problems,
        [
            "admin.list_limit_default: must not exceed admin.list_limit_max (200), got 500 \
          (from AEGIS_ADMIN_LIST_LIMIT_DEFAULT)"
        ]
    );
}

#[test]
fn ranges_are_enforced() {
    let file = yaml_file(&format!(
        "admin:\n  max_body_bytes: {}\n  list_limit_max: 4294967296\n",
        MAX_ADMIN_MAX_BODY_BYTES + 1
    ));
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("admin.max_body_bytes: must be at most 67108864"));
    assert!(problems[1].starts_with("admin.list_limit_max: 4294967296 is too large"));

    let at_limit = env(&[(ENV_ADMIN_MAX_BODY_BYTES, "67108864")]);
    let config = load(&RunFlags::default(), &at_limit).expect("the limit itself is allowed");
    assert_eq!(config.admin.max_body_bytes, MAX_ADMIN_MAX_BODY_BYTES);
}

#[test]
fn unreadable_file_is_named_with_other_problems() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.yaml");
    let vars = env(&[
        (ENV_CONFIG, &missing.display().to_string()),
        (ENV_LOG_FORMAT, "xml"),
    ]);
    let problems = problems(load(&RunFlags::default(), &vars));
    assert_eq!(problems.len(), 2, "{problems:?}");
    let expected = format!(
        "config file \"{}\" (from AEGIS_CONFIG): cannot read",
        missing.display()
    );
    assert!(problems[0].starts_with(&expected), "{}", problems[0]);
    assert!(problems[1].starts_with("log.format:"), "{}", problems[1]);
}

#[test]
fn unparsable_file_names_path_line_and_column() {
    let file = yaml_file("admin:\n  max_connections: lots\n");
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert!(
        problem.contains(&file.path().display().to_string()),
        "{problem}"
    );
    assert!(problem.contains("line 2, column 20"), "{problem}");
}

#[test]
fn empty_and_comment_only_files_are_all_defaults() {
    for text in ["", "# nothing set\n", "admin:\nledger: {}\n"] {
        let file = yaml_file(text);
        let config = load(&flags_with_config(file.path()), &env(&[])).expect("defaults");
        assert_eq!(config.admin, AdminConfig::default(), "{text:?}");
        assert_eq!(config.ledger, LedgerSettings::default(), "{text:?}");
    }
}

#[test]
fn log_format_round_trips() {
    for format in [LogFormat::Text, LogFormat::Json] {
        assert_eq!(format.as_str().parse::<LogFormat>(), Ok(format));
        assert_eq!(format.to_string(), format.as_str());
    }
    assert!(" Json ".parse::<LogFormat>().is_ok());
    assert!("yaml".parse::<LogFormat>().is_err());
}

#[test]
fn manifest_path_is_layered_file_env_flag() {
    let file = yaml_file("manifest:\n  path: /etc/aegis/file.yaml\n");
    let flags = flags_with_config(file.path());
    let config = load(&flags, &env(&[])).expect("valid");
    assert_eq!(config.manifest, Some(PathBuf::from("/etc/aegis/file.yaml")));

    let vars = env(&[(ENV_MANIFEST, "/env.yaml")]);
    let config = load(&flags, &vars).expect("valid");
    assert_eq!(config.manifest, Some(PathBuf::from("/env.yaml")));

    let flags = RunFlags {
        manifest: Some(PathBuf::from("/flag.yaml")),
        ..flags
    };
    let config = load(&flags, &vars).expect("valid");
    assert_eq!(config.manifest, Some(PathBuf::from("/flag.yaml")));

    let file = yaml_file("manifest:\n  path: ''\n");
    assert_eq!(
        problems(load(&flags_with_config(file.path()), &env(&[]))),
        ["manifest.path: must not be empty"]
    );
    assert_eq!(
        load(&RunFlags::default(), &env(&[]))
            .expect("defaults")
            .manifest,
        None
    );
}

#[test]
fn approval_settings_layer_and_a_hold_outlasting_the_ttl_is_refused() {
    let file = yaml_file("approval:\n  ttl_ms: 60000\n  max_pending_per_session: 3\n");
    let config = load(&flags_with_config(file.path()), &env(&[])).expect("valid");
    assert_eq!(
        config.approval,
        ApprovalConfig {
            mode: aegis_policy::ApprovalMode::Retry,
            ttl: Duration::from_secs(60),
            // Unset: the default, cut to the ttl.
            hold_timeout: Duration::from_secs(60),
            max_pending_per_session: 3,
            max_pending: 1024,
            webhook_url: None,
        }
    );
    assert_eq!(Config::default().approval.ttl, Duration::from_secs(3600));
    assert_eq!(
        Config::default().approval.hold_timeout,
        Duration::from_secs(300)
    );
    let vars = env(&[
        (ENV_APPROVAL_TTL_MS, "5000"),
        (ENV_APPROVAL_MODE, "hold"),
        (ENV_APPROVAL_HOLD_TIMEOUT_MS, "4000"),
    ]);
    // The file's hold (300 s by default) would outlast the env's ttl; the
    // env sets both.
    let config = load(&flags_with_config(file.path()), &vars).expect("valid");
    assert_eq!(config.approval.ttl, Duration::from_secs(5));
    assert_eq!(config.approval.hold_timeout, Duration::from_secs(4));
    assert_eq!(config.approval.mode, aegis_policy::ApprovalMode::Hold);

    let file = yaml_file(
        "approval:\n  mode: wait\n  ttl_ms: 0\n  max_pending_per_session: 0\n  hold_timeout_ms: 0\n",
    );
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    for expected in [
        "approval.hold_timeout_ms",
        "approval.mode: \"wait\" is not hold or retry",
        "approval.ttl_ms",
        "approval.max_pending_per_session",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected}: {problems:#?}"
        );
    }
    let file = yaml_file("approval:\n  ttl_ms: 60000\n  hold_timeout_ms: 60001\n");
    assert_eq!(
        self::problems(load(&flags_with_config(file.path()), &env(&[]))),
        vec![
            "approval.hold_timeout_ms: must not exceed approval.ttl_ms (60000), got 60001"
                .to_owned()
        ]
    );
    let problems = problems_of_env(&[
        (ENV_APPROVAL_MAX_PENDING, "4"),
        (ENV_APPROVAL_MAX_PENDING_PER_SESSION, "5"),
    ]);
    assert!(
        problems[0].starts_with(
            "approval.max_pending_per_session: must not exceed approval.max_pending (4)"
        ),
        "{problems:?}"
    );
    let config = load(
        &RunFlags::default(),
        &env(&[(ENV_APPROVAL_WEBHOOK_URL, "https://hooks.example.com/a?b=1")]),
    )
    .expect("valid");
    assert_eq!(
        config.approval.webhook_url.map(|u| u.to_string()),
        Some("https://hooks.example.com/a?b=1".to_owned())
    );
    for bad in ["ftp://x/y", "/relative", "http://"] {
        let problems = problems_of_env(&[(ENV_APPROVAL_WEBHOOK_URL, bad)]);
        assert!(
            problems[0].starts_with("approval.webhook_url: "),
            "{bad}: {problems:?}"
        );
    }
    let problems = problems_of_env(&[(ENV_APPROVAL_MODE, "wait")]);
    assert!(
        problems[0].contains("\"wait\" is not hold or retry"),
        "{problems:?}"
    );
}

fn problems_of_env(pairs: &[(&str, &str)]) -> Vec<String> {
    problems(load(&RunFlags::default(), &env(pairs)))
}

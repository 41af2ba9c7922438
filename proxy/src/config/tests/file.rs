//! The file's problems: every one at once, each with its setting's path and
//! where it stands, together with the other layers' problems.

use super::*;

fn file_problems(text: &str, vars: &[(&str, &str)]) -> (Vec<String>, String) {
    let file = yaml_file(text);
    let shown = file.path().display().to_string();
    (
        problems(load(&flags_with_config(file.path()), &env(vars))),
        shown,
    )
}

#[test]
fn a_typo_a_bad_enum_and_a_negative_number_are_all_reported_with_their_paths() {
    let (found, file) = file_problems(
        "mcp:\n  listn: 127.0.0.1:8081\nledger:\n  synchronous: fast\n  queue_capacity: -1\n",
        &[],
    );
    // `load` fails, so `run` exits before anything listens or opens.
    assert_eq!(
        found,
        [
            format!(
                "mcp.listn: unknown setting; did you mean `listen`? \
                 (config file \"{file}\", line 2, column 3)"
            ),
            format!(
                "ledger.queue_capacity: expected a non-negative integer, got -1 \
                 (config file \"{file}\", line 5, column 19)"
            ),
            "ledger.synchronous: expected \"normal\" or \"full\", got \"fast\"".to_owned(),
        ]
    );
}

#[test]
fn file_problems_come_with_the_environment_and_flag_problems() {
    let file = yaml_file("log:\n  levle: debug\n");
    let flags = RunFlags {
        log_format: Some("xml".to_owned()),
        ..flags_with_config(file.path())
    };
    let found = problems(load(&flags, &env(&[(ENV_LEDGER_MAX_BATCH, "many")])));
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("log.levle: unknown setting; did you mean `level`?"));
    assert_eq!(
        found[1],
        "AEGIS_LEDGER_MAX_BATCH: expected a positive integer, got \"many\""
    );
    assert_eq!(
        found[2],
        "log.format: expected \"text\" or \"json\", got \"xml\" (from --log-format)"
    );
}

#[test]
fn duplicate_keys_are_problems_naming_the_first() {
    let (found, file) = file_problems(
        "admin:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\nadmin: {}\n\
         forward:\n  dns_overrides: {a.example: 10.0.0.1, a.example: 10.0.0.2}\n",
        &[],
    );
    assert_eq!(
        found,
        [
            format!(
                "admin.listen: given twice (first at line 2, column 3); give each setting once \
                 (config file \"{file}\", line 3, column 3)"
            ),
            format!(
                "admin: given twice (first at line 1, column 1); give each setting once \
                 (config file \"{file}\", line 4, column 1)"
            ),
            format!(
                "forward.dns_overrides.a.example: given twice (first at line 6, column 19); \
                 give each setting once (config file \"{file}\", line 6, column 40)"
            ),
        ]
    );
}

#[test]
fn wrong_types_are_named_for_every_kind() {
    let (found, _) = file_problems(
        "admin:\n  listen: [127.0.0.1:1]\n  max_connections: lots\n\
         ledger:\n  fail_open: 1\n  checkpoint_pages: 1.5\n\
         mcp:\n  allowed_hosts: localhost\n  upstreams: {tools: x}\n  identity: on\n\
         forward:\n  allowed_ports: [80, x]\n  dns_overrides: [a]\n",
        &[],
    );
    let expected = [
        "admin.listen: expected a string, got a list (",
        "admin.max_connections: expected a non-negative integer, got \"lots\" (",
        "ledger.fail_open: expected true or false, got 1 (",
        "ledger.checkpoint_pages: expected a non-negative integer, got 1.5 (",
        "mcp.allowed_hosts: expected a list of strings, got \"localhost\" (",
        "mcp.upstreams: expected a list of entries, got a mapping (",
        "mcp.identity: expected a mapping, got on (",
        "forward.allowed_ports[1]: expected a non-negative integer, got \"x\" (",
        "forward.dns_overrides: expected a mapping of names to strings, got a list (",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (problem, prefix) in found.iter().zip(expected) {
        assert!(problem.starts_with(prefix), "{problem:?} vs {prefix:?}");
    }
}

#[test]
fn unknown_keys_without_a_close_match_list_what_is_allowed() {
    let (found, _) = file_problems("ledgr: {}\nlog:\n  colour: true\n", &[]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("ledgr: unknown setting; did you mean `ledger`?"),
        "{}",
        found[0]
    );
    assert!(
        found[1].starts_with("log.colour: unknown setting; expected one of level, format ("),
        "{}",
        found[1]
    );
}

#[test]
fn an_entry_with_a_bad_shape_is_reported_for_that_alone() {
    let (found, file) = file_problems(
        "mcp:\n  upstreams:\n    - {name: a, url: 'http://a/', timeout: 5}\n    - x\n    \
         - {name: c, url: 'http://c/', headers: [{nme: X-Key}]}\n",
        &[],
    );
    assert_eq!(
        found,
        [
            format!(
                "mcp.upstreams[0].timeout: unknown field; did you mean `timeout_ms`? \
                 (config file \"{file}\", line 3, column 35)"
            ),
            format!(
                "mcp.upstreams[1]: expected a mapping, got \"x\" (config file \"{file}\", line 4, column 7)"
            ),
            format!(
                "mcp.upstreams[2].headers[0].nme: unknown field; did you mean `name`? \
                 (config file \"{file}\", line 5, column 46)"
            ),
            format!(
                "mcp.upstreams[2].headers[0].name: missing; every entry needs one \
                 (config file \"{file}\", line 5, column 45)"
            ),
        ]
    );
}

#[test]
fn a_file_that_is_not_a_mapping_says_so() {
    let (found, _) = file_problems("- admin\n", &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("the file: expected a mapping of settings, got a list"),
        "{}",
        found[0]
    );
}

#[test]
fn from_yaml_keeps_the_problems_for_from_layers() {
    let raw = RawConfig::from_yaml("mcp:\n  listn: x\n").expect("valid YAML");
    let err = Config::from_layers(raw, None, &env(&[]), &RunFlags::default())
        .expect_err("an unknown key");
    assert_eq!(
        err.problems,
        ["mcp.listn: unknown setting; did you mean `listen`? (line 2, column 3)"]
    );
    // Only a syntax error is an error of the parse itself.
    let syntax = RawConfig::from_yaml("a:\n  b: 1\n c: 2\n").expect_err("bad indentation");
    assert!(syntax.contains("line 3"), "{syntax}");
}

#[test]
fn yaml_scalars_read_as_a_typed_parse_read_them() {
    let file = yaml_file(
        "mcp:\n  identity:\n    tenant: 123\n    user: yes\n  session_idle_ms: '5000'\n  \
         enforce: 'false'\nledger:\n  max_batch: 0x10\n  fail_open: on\n",
    );
    let config = load(&flags_with_config(file.path()), &env(&[])).expect("valid");
    assert_eq!(config.mcp.identity.default_tenant, "123");
    assert_eq!(config.mcp.identity.default_user, "yes");
    assert_eq!(config.mcp.session_idle, Duration::from_secs(5));
    assert!(!config.mcp.enforce);
    assert_eq!(config.ledger.max_batch, 16);
    assert!(config.ledger.fail_open);
}

/// aegisd's own config file (the Aegis reference's documented example):
/// each of its keys that means something else here is refused by name,
/// with what replaces it; `log` is the same and passes.
#[test]
fn an_aegisd_config_file_is_refused_key_by_key_with_the_replacements() {
    let (found, _) = file_problems(
        "dsn: \"file:aegis.db?mode=rwc&cache=shared&_journal_mode=WAL\"\n\
         addr: \":8080\"\n\
         manifest: \"aegis-manifest.json\"\n\
         trust_mode: \"dev\"\n\
         telemetry:\n  path: \"/tmp/aegis-traces.ndjson\"\n\
         log:\n  level: \"info\"\n  format: \"text\"\n",
        &[],
    );
    let expected = [
        ("dsn", "`ledger.path: aegis.db`"),
        ("addr", "`admin.listen`"),
        ("manifest", "`manifest: {path: FILE}`"),
        ("trust_mode", "`admin.auth`"),
        ("telemetry", "the ledger is the record"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (key, replacement) in expected {
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(&format!("{key}: is aegisd's setting; "))
                    && p.contains(replacement)),
            "{key}: {found:#?}"
        );
    }
    // Ours, as a mapping, is still ours.
    let file = yaml_file("manifest:\n  path: m.yaml\n");
    let config = load(&flags_with_config(file.path()), &env(&[])).expect("valid");
    assert_eq!(config.manifest, Some(PathBuf::from("m.yaml")));
}

#[test]
fn aegisds_addr_flag_is_refused_naming_admin_listen() {
    let flags = RunFlags {
        addr: Some(":8080".to_owned()),
        ..RunFlags::default()
    };
    let found = problems(load(&flags, &env(&[])));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("--addr: is aegisd's flag; the /v1 API here is --admin-listen"));
}

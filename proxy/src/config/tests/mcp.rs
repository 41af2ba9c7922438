//! `mcp:` settings apart from the upstream list (see `upstreams.rs`), and
//! `ledger.fail_open`.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::identity::{IdentityConfig, SessionScope};

const TOOLS: &str = "tools=http://127.0.0.1:9000/mcp";

fn with_upstream(flags: RunFlags) -> RunFlags {
    RunFlags {
        upstream: vec![TOOLS.to_owned()],
        ..flags
    }
}

#[test]
fn mcp_defaults() {
    let mcp = McpConfig::default();
    assert_eq!(mcp.listen, None, "no upstream, no listener");
    assert!(mcp.upstreams.is_empty() && mcp.default_upstream.is_none());
    assert_eq!(mcp.identity, IdentityConfig::default());
    assert_eq!(mcp.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!((mcp.max_connections, mcp.max_in_flight), (1024, 256));
    assert_eq!(mcp.result_capture_bytes, 64 * 1024);
    assert_eq!(mcp.max_response_bytes, 16 * 1024 * 1024);
    assert!(mcp.enforce);
    assert_eq!(mcp.session_idle, Duration::from_secs(600));
    assert_eq!(mcp.shutdown_grace, Duration::from_secs(10));
    assert_eq!(DEFAULT_MCP_LISTEN.to_string(), "127.0.0.1:8081");
}

#[test]
fn the_one_line_command_works() {
    let cli = Cli::try_parse_from([
        "aegis-proxy",
        "run",
        "--listen",
        "127.0.0.1:8081",
        "--upstream",
        TOOLS,
        "--manifest",
        "configs/manifests/example.yaml",
    ])
    .expect("the one-line command parses");
    let Command::Run(flags) = cli.command else {
        panic!("expected run");
    };
    let config = load(&flags, &env(&[])).expect("the one-line command is valid");
    let mcp = &config.mcp;
    assert_eq!(mcp.listen, Some(DEFAULT_MCP_LISTEN));
    assert_eq!(mcp.upstreams.len(), 1);
    assert_eq!(mcp.upstreams[0].name, "tools");
    assert_eq!(mcp.upstreams[0].url, "http://127.0.0.1:9000/mcp");
    assert_eq!(mcp.upstreams[0].timeout, Duration::from_secs(30));
    assert_eq!(mcp.default_upstream.as_deref(), Some("tools"));
    assert_eq!(mcp.upstream("tools"), mcp.upstreams.first());
}

#[test]
fn run_flags_for_mcp_parse_raw() {
    let cli = Cli::try_parse_from([
        "aegis-proxy",
        "run",
        "--upstream",
        "a=x",
        "--upstream=b=y",
        "--default-upstream",
        "b",
        "--enforce",
        "maybe",
        "--fail-open",
        "--shutdown-grace-ms",
        "soon",
    ])
    .expect("flags are kept raw");
    let Command::Run(flags) = cli.command else {
        panic!("expected run");
    };
    assert_eq!(flags.upstream, ["a=x", "b=y"]);
    assert_eq!(flags.default_upstream.as_deref(), Some("b"));
    assert_eq!(flags.enforce.as_deref(), Some("maybe"));
    assert!(flags.fail_open);
    assert_eq!(flags.shutdown_grace_ms.as_deref(), Some("soon"));
}

#[test]
fn an_upstream_alone_turns_the_listener_on_at_the_default() {
    let config = load(&with_upstream(RunFlags::default()), &env(&[])).expect("valid");
    assert_eq!(config.mcp.listen, Some(DEFAULT_MCP_LISTEN));
}

#[test]
fn precedence_of_mcp_settings_is_file_then_env_then_flag() {
    let file = yaml_file(
        "ledger:\n  fail_open: false\n\
         mcp:\n  listen: 127.0.0.1:2001\n  default_upstream: a\n  enforce: true\n  \
         shutdown_grace_ms: 1\n  upstreams:\n    - {name: a, url: 'http://a/'}\n    \
         - {name: b, url: 'http://b/'}\n    - {name: c, url: 'http://c/'}\n",
    );
    let flags = flags_with_config(file.path());
    let config = load(&flags, &env(&[])).expect("file alone");
    assert_eq!(config.mcp.listen.map(|a| a.port()), Some(2001));
    assert_eq!(config.mcp.default_upstream.as_deref(), Some("a"));
    assert!(config.mcp.enforce && !config.ledger.fail_open);
    assert_eq!(config.mcp.shutdown_grace, Duration::from_millis(1));

    let vars = env(&[
        (ENV_MCP_LISTEN, "127.0.0.1:2002"),
        (ENV_MCP_DEFAULT_UPSTREAM, "b"),
        (ENV_MCP_ENFORCE, "FALSE"),
        (ENV_LEDGER_FAIL_OPEN, "true"),
        (ENV_SHUTDOWN_GRACE_MS, "2"),
    ]);
    let config = load(&flags, &vars).expect("env over file");
    assert_eq!(config.mcp.listen.map(|a| a.port()), Some(2002));
    assert_eq!(config.mcp.default_upstream.as_deref(), Some("b"));
    assert!(!config.mcp.enforce && config.ledger.fail_open);
    assert_eq!(config.mcp.shutdown_grace, Duration::from_millis(2));

    let flags = RunFlags {
        listen: Some("127.0.0.1:2003".to_owned()),
        default_upstream: Some("c".to_owned()),
        enforce: Some("true".to_owned()),
        shutdown_grace_ms: Some("0".to_owned()),
        ..flags
    };
    let config = load(&flags, &vars).expect("flags over env");
    assert_eq!(config.mcp.listen.map(|a| a.port()), Some(2003));
    assert_eq!(config.mcp.default_upstream.as_deref(), Some("c"));
    assert!(config.mcp.enforce);
    assert_eq!(config.mcp.shutdown_grace, Duration::ZERO, "0 is allowed");

    // --fail-open can only switch it on.
    let file = yaml_file("ledger:\n  fail_open: false\n");
    let flags = RunFlags {
        fail_open: true,
        ..flags_with_config(file.path())
    };
    assert!(load(&flags, &env(&[])).expect("valid").ledger.fail_open);
}

#[test]
fn every_mcp_env_var_is_read_over_the_file() {
    let file = yaml_file(
        "mcp:\n  session_idle_ms: 1\n  identity:\n    trust_headers: false\n    tenant: f\n    \
         user: f\n    principal: f\n    session_scope: principal\n  limits:\n    max_body_bytes: 1\n    \
         max_connections: 1\n    max_in_flight: 1\n    result_capture_bytes: 1\n    \
         max_response_bytes: 1\n",
    );
    let vars = env(&[
        (ENV_MCP_SESSION_IDLE_MS, "5000"),
        (ENV_MCP_TRUST_IDENTITY_HEADERS, "true"),
        (ENV_TENANT_ID, " acme "),
        (ENV_USER_ID, "agent-7"),
        (ENV_PRINCIPAL, " pod-7 "),
        (ENV_SESSION_SCOPE, "client"),
        (ENV_MCP_MAX_BODY_BYTES, "100"),
        (ENV_MCP_MAX_CONNECTIONS, "2"),
        (ENV_MCP_MAX_IN_FLIGHT, "3"),
        (ENV_MCP_RESULT_CAPTURE_BYTES, "0"),
        (ENV_MCP_MAX_RESPONSE_BYTES, "500"),
    ]);
    let mcp = load(&flags_with_config(file.path()), &vars)
        .expect("valid")
        .mcp;
    assert_eq!(mcp.session_idle, Duration::from_secs(5));
    let identity = &mcp.identity;
    assert!(identity.trust_headers);
    assert_eq!(
        (
            identity.default_tenant.as_str(),
            identity.default_user.as_str(),
            identity.principal.as_str()
        ),
        ("acme", "agent-7", "pod-7")
    );
    assert_eq!(identity.session_scope, SessionScope::Client);
    assert_eq!((mcp.max_body_bytes, mcp.max_connections), (100, 2));
    assert_eq!(mcp.max_in_flight, 3);
    assert_eq!((mcp.result_capture_bytes, mcp.max_response_bytes), (0, 500));
}

#[test]
fn listen_without_an_upstream_is_a_problem_from_any_layer() {
    let message = "mcp.listen: no upstream to proxy; add mcp.upstreams or --upstream NAME=URL";
    let file = yaml_file("mcp:\n  listen: 127.0.0.1:8081\n  upstreams: []\n");
    assert_eq!(
        problems(load(&flags_with_config(file.path()), &env(&[]))),
        [message]
    );
    let vars = env(&[(ENV_MCP_LISTEN, "127.0.0.1:8081")]);
    assert_eq!(
        problems(load(&RunFlags::default(), &vars)),
        [format!("{message} (from AEGIS_MCP_LISTEN)")]
    );
    let flags = RunFlags {
        listen: Some("127.0.0.1:8081".to_owned()),
        ..RunFlags::default()
    };
    assert_eq!(
        problems(load(&flags, &env(&[]))),
        [format!("{message} (from --listen)")]
    );
}

#[test]
fn listen_must_differ_from_the_admin_address() {
    let flags = RunFlags {
        admin_listen: Some("127.0.0.1:8081".to_owned()),
        ..with_upstream(RunFlags::default())
    };
    assert_eq!(
        problems(load(&flags, &env(&[]))),
        ["mcp.listen: 127.0.0.1:8081 is also admin.listen; give them different addresses"]
    );
    // Port 0 twice means two different ephemeral ports: fine.
    let flags = RunFlags {
        admin_listen: Some("127.0.0.1:0".to_owned()),
        listen: Some("127.0.0.1:0".to_owned()),
        ..flags
    };
    assert!(load(&flags, &env(&[])).is_ok());
}

#[test]
fn default_upstream_rules() {
    let two = RunFlags {
        upstream: vec![TOOLS.to_owned(), "search=http://127.0.0.1:9001/".to_owned()],
        ..RunFlags::default()
    };
    let config = load(&two, &env(&[])).expect("valid");
    assert_eq!(
        config.mcp.default_upstream, None,
        "two upstreams, none chosen"
    );

    let vars = env(&[(ENV_MCP_DEFAULT_UPSTREAM, "search")]);
    let config = load(&two, &vars).expect("valid");
    assert_eq!(config.mcp.default_upstream.as_deref(), Some("search"));

    let unknown = RunFlags {
        default_upstream: Some("serch".to_owned()),
        ..two
    };
    assert_eq!(
        problems(load(&unknown, &env(&[]))),
        [
            "mcp.default_upstream: no upstream named \"serch\"; configured: tools, search \
             (from --default-upstream)"
        ]
    );

    let file = yaml_file("mcp:\n  default_upstream: tools\n");
    assert_eq!(
        problems(load(&flags_with_config(file.path()), &env(&[]))),
        ["mcp.default_upstream: no upstream named \"tools\": none is configured"]
    );
}

#[test]
fn bad_booleans_and_millis_name_their_layer() {
    let flags = RunFlags {
        enforce: Some("maybe".to_owned()),
        shutdown_grace_ms: Some("soon".to_owned()),
        ..RunFlags::default()
    };
    let vars = env(&[(ENV_LEDGER_FAIL_OPEN, "1"), (ENV_MCP_SESSION_IDLE_MS, "0")]);
    assert_eq!(
        problems(load(&flags, &vars)),
        [
            "ledger.fail_open: expected true or false, got \"1\" (from AEGIS_LEDGER_FAIL_OPEN)",
            "mcp.enforce: expected true or false, got \"maybe\" (from --enforce)",
            "mcp.session_idle_ms: must be greater than 0, got 0 (from AEGIS_MCP_SESSION_IDLE_MS)",
            "mcp.shutdown_grace_ms: expected a whole number of milliseconds, got \"soon\" \
             (from --shutdown-grace-ms)",
        ]
    );
}

#[test]
fn mcp_limits_are_bounded() {
    let file = yaml_file(&format!(
        "mcp:\n  limits:\n    max_body_bytes: {}\n    max_connections: 0\n    \
         max_in_flight: 0\n    max_response_bytes: {}\n",
        MAX_MCP_MAX_BODY_BYTES + 1,
        MAX_MCP_MAX_RESPONSE_BYTES + 1,
    ));
    assert_eq!(
        problems(load(&flags_with_config(file.path()), &env(&[]))),
        [
            "mcp.limits.max_body_bytes: must be at most 67108864 (64 MiB), got 67108865",
            "mcp.limits.max_connections: must be greater than 0, got 0",
            "mcp.limits.max_in_flight: must be greater than 0, got 0",
            "mcp.limits.max_response_bytes: must be at most 268435456 (256 MiB), got 268435457",
        ]
    );

    let vars = env(&[
        (ENV_MCP_MAX_RESPONSE_BYTES, "1000"),
        (ENV_MCP_RESULT_CAPTURE_BYTES, "1001"),
    ]);
    assert_eq!(
        problems(load(&RunFlags::default(), &vars)),
        [
            "mcp.limits.result_capture_bytes: must not exceed mcp.limits.max_response_bytes \
             (1000), got 1001 (from AEGIS_MCP_RESULT_CAPTURE_BYTES)"
        ]
    );

    let at_limits = env(&[
        (ENV_MCP_MAX_BODY_BYTES, "67108864"),
        (ENV_MCP_MAX_RESPONSE_BYTES, "268435456"),
    ]);
    let mcp = load(&RunFlags::default(), &at_limits)
        .expect("the limits themselves are allowed")
        .mcp;
    assert_eq!(mcp.max_body_bytes, MAX_MCP_MAX_BODY_BYTES);
    assert_eq!(mcp.max_response_bytes, MAX_MCP_MAX_RESPONSE_BYTES);
}

#[test]
fn every_mcp_problem_is_reported_at_once() {
    let file = yaml_file(
        "ledger:\n  fail_open: false\n\
         mcp:\n  listen: nowhere\n  session_idle_ms: 0\n  \
         upstreams:\n    - name: Tools\n      url: http://tools.example/mcp\n      \
         tls: {ca_file: /nonexistent/ca.pem}\n      timeout_ms: 0\n      headers:\n        - name: Host\n          value_from_env: NOPE\n  \
         identity:\n    tenant: ''\n  limits:\n    max_in_flight: 0\n",
    );
    let flags = RunFlags {
        upstream: vec!["broken".to_owned(), "x=ftp://x/".to_owned()],
        enforce: Some("sometimes".to_owned()),
        ..flags_with_config(file.path())
    };
    let vars = env(&[(ENV_MCP_UPSTREAMS, "a=http://a/,a=http://b/")]);
    let err = load(&flags, &vars).expect_err("everything here is wrong");
    let expected = [
        "mcp.upstreams[0].name: invalid name \"Tools\"",
        "mcp.upstreams[0].tls: applies to https:// upstreams only",
        "mcp.upstreams[0].timeout_ms: must be greater than 0",
        "mcp.upstreams[0].headers[0].name: \"Host\" is managed by the proxy itself",
        "mcp.upstreams[0].headers[0].value_from_env: environment variable NOPE is not set",
        "mcp.upstreams: \"a=http://b/\": upstream \"a\" is given twice (from AEGIS_MCP_UPSTREAMS)",
        "mcp.upstreams: \"broken\": expected NAME=URL",
        "mcp.upstreams: \"x=ftp://x/\": URL scheme must be http or https, got \"ftp\" (from --upstream)",
        "mcp.listen: invalid socket address \"nowhere\"",
        "mcp.identity.tenant: must not be empty",
        "mcp.limits.max_in_flight: must be greater than 0",
        "mcp.enforce: expected true or false, got \"sometimes\" (from --enforce)",
        "mcp.session_idle_ms: must be greater than 0",
    ];
    assert_eq!(err.problems.len(), expected.len(), "{err}");
    for prefix in expected {
        assert!(
            err.problems.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in:\n{err}"
        );
    }
}

//! `mcp:` settings apart from the upstream list (see `upstreams.rs`), and
//! `ledger.fail_open`.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::identity::{ClaimNames, IdentityConfig, JwtConfig, MAX_ID_LEN, SanKind, SessionScope};

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
fn identity_defaults_match_the_identity_module() {
    let identity = IdentityConfig::default();
    assert_eq!(identity.session_header.as_str(), DEFAULT_MCP_SESSION_HEADER);
    assert_eq!(identity.tenant_header.as_str(), DEFAULT_MCP_TENANT_HEADER);
    assert_eq!(identity.user_header.as_str(), DEFAULT_MCP_USER_HEADER);
    assert_eq!(identity.trust_headers, DEFAULT_MCP_TRUST_IDENTITY_HEADERS);
    assert_eq!(identity.default_tenant, DEFAULT_TENANT_ID);
    assert_eq!(identity.default_user, DEFAULT_USER_ID);
    assert_eq!(identity.principal, DEFAULT_PRINCIPAL);
    assert_eq!(identity.session_scope, DEFAULT_SESSION_SCOPE);
    assert_eq!(
        (identity.mtls.as_ref(), identity.jwt.as_ref()),
        (None, None)
    );
    assert_eq!(ClaimNames::default().principal, DEFAULT_JWT_PRINCIPAL_CLAIM);
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
fn identity_from_the_file() {
    let file = yaml_file(
        "mcp:\n  identity:\n    session_header: X-Session\n    tenant_header: x-t\n    \
         user_header: x-u\n    trust_headers: true\n    tenant: acme\n    user: ''\n    \
         principal: spiffe://c/pod\n    session_scope: client\n",
    );
    let identity = load(&flags_with_config(file.path()), &env(&[]))
        .expect("valid")
        .mcp
        .identity;
    assert_eq!(
        identity,
        IdentityConfig {
            session_header: http::HeaderName::from_static("x-session"),
            tenant_header: http::HeaderName::from_static("x-t"),
            user_header: http::HeaderName::from_static("x-u"),
            trust_headers: true,
            default_tenant: "acme".to_owned(),
            default_user: String::new(),
            principal: "spiffe://c/pod".to_owned(),
            session_scope: SessionScope::Client,
            mtls: None,
            jwt: None,
        }
    );
}

#[test]
fn bad_identity_settings_are_named() {
    let long = "t".repeat(MAX_ID_LEN + 1);
    let file = yaml_file(&format!(
        "mcp:\n  identity:\n    session_header: 'bad header'\n    tenant_header: ''\n    \
         tenant: ''\n    user: '{long}'\n    principal: \"a b\"\n    session_scope: pod\n"
    ));
    let vars = env(&[(ENV_MCP_TRUST_IDENTITY_HEADERS, "yes")]);
    let problems = problems(load(&flags_with_config(file.path()), &vars));
    assert_eq!(
        problems,
        [
            "mcp.identity.session_header: invalid header name \"bad header\"".to_owned(),
            "mcp.identity.tenant_header: invalid header name \"\"".to_owned(),
            "mcp.identity.trust_headers: expected true or false, got \"yes\" \
             (from AEGIS_MCP_TRUST_IDENTITY_HEADERS)"
                .to_owned(),
            "mcp.identity.tenant: must not be empty".to_owned(),
            format!("mcp.identity.user: must be at most {MAX_ID_LEN} bytes, got 513"),
            "mcp.identity.principal: must be 1 to 512 bytes of visible ASCII (no spaces), got \"a b\""
                .to_owned(),
            "mcp.identity.session_scope: expected \"principal\" or \"client\", got \"pod\""
                .to_owned(),
        ]
    );
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

// ---- mcp.results --------------------------------------------------------------

mod results {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;
    use crate::results::{DEFAULT_REDACT_PATTERNS, Keep, Redactor, ResultsConfig};

    fn loaded(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = yaml_file(yaml);
        load(&flags_with_config(file.path()), &env(vars))
    }

    #[test]
    fn results_default_to_full_with_the_built_in_patterns() {
        let results = McpConfig::default().results;
        assert_eq!(results.keep, DEFAULT_MCP_RESULTS_KEEP);
        assert_eq!(results.keep, Keep::Full);
        assert!(results.tools.is_empty());
        let builtin: Vec<String> = DEFAULT_REDACT_PATTERNS
            .iter()
            .map(|(_, p)| (*p).to_owned())
            .collect();
        assert_eq!(results.redactor.patterns(), builtin.as_slice());
        assert_eq!(results, ResultsConfig::default());
        let config = load(&RunFlags::default(), &env(&[])).unwrap();
        assert_eq!(config.mcp.results, ResultsConfig::default());
    }

    #[test]
    fn results_are_read_from_the_file_and_keep_from_the_environment() {
        let yaml = "mcp:\n  results:\n    keep: hash\n    tools:\n      get-env: hash\n      \
                    read_logs: REDACT\n      net.http: full\n    redact_patterns:\n      - 'sk-[a-z0-9]{8,}'\n      - '(?i)passphrase=\\S+'\n";
        let config = loaded(yaml, &[]).unwrap();
        let results = &config.mcp.results;
        assert_eq!(results.keep, Keep::Hash);
        let tools: BTreeMap<String, Keep> = [
            ("get-env".to_owned(), Keep::Hash),
            ("net.http".to_owned(), Keep::Full),
            ("read_logs".to_owned(), Keep::Redact),
        ]
        .into();
        assert_eq!(results.tools, tools);
        assert_eq!(
            results.redactor.patterns(),
            [
                "sk-[a-z0-9]{8,}".to_owned(),
                "(?i)passphrase=\\S+".to_owned()
            ]
        );
        assert_eq!(results.redactor.redact("k sk-abcdef123 PassPhrase=x").1, 2);

        let config = loaded(yaml, &[(ENV_MCP_RESULTS_KEEP, " Redact ")]).unwrap();
        assert_eq!(
            config.mcp.results.keep,
            Keep::Redact,
            "the environment wins"
        );
        assert_eq!(config.mcp.results.keep_for("get-env"), Keep::Hash);
    }

    #[test]
    fn bad_results_settings_are_named_all_at_once() {
        let yaml = "mcp:\n  results:\n    keep: everything\n    tools:\n      get-env: secret\n      \
                    ' padded ': hash\n    redact_patterns:\n      - ok\n      - '(unclosed'\n      - 'x*'\n";
        let found = problems(loaded(yaml, &[]));
        assert_eq!(
            found,
            [
                "mcp.results.keep: expected \"full\", \"hash\" or \"redact\", got \"everything\"",
                "mcp.results.tools: \" padded \" is not a tool name: it has surrounding spaces or control characters",
                "mcp.results.tools.get-env: expected \"full\", \"hash\" or \"redact\", got \"secret\"",
                "mcp.results.redact_patterns[1]: not a valid regular expression: unclosed group (at byte 0)",
                "mcp.results.redact_patterns[2]: \"x*\" can match the empty string; a redaction pattern must match at least one character",
            ]
        );

        let found = problems(load(
            &RunFlags::default(),
            &env(&[(ENV_MCP_RESULTS_KEEP, "none")]),
        ));
        assert_eq!(
            found,
            [
                "mcp.results.keep: expected \"full\", \"hash\" or \"redact\", got \"none\" (from AEGIS_MCP_RESULTS_KEEP)"
            ]
        );
    }

    #[test]
    fn an_empty_pattern_list_and_unknown_keys_are_refused() {
        let found = problems(loaded("mcp:\n  results:\n    redact_patterns: []\n", &[]));
        assert_eq!(
            found,
            ["mcp.results.redact_patterns: must not be empty; omit it for the built-in list"]
        );
        let err = loaded("mcp:\n  results:\n    keep_bytes: 10\n", &[]).unwrap_err();
        assert!(err.to_string().contains("keep_bytes"), "{err}");
    }

    #[test]
    fn the_built_in_redactor_is_the_one_the_list_compiles_to() {
        let builtin: Vec<String> = DEFAULT_REDACT_PATTERNS
            .iter()
            .map(|(_, p)| (*p).to_owned())
            .collect();
        assert_eq!(Redactor::new(&builtin).unwrap(), Redactor::builtin());
    }
}

/// A CA, and a server certificate and key signed by it, as files in `dir`:
/// (cert, key, CA).
fn mtls_files(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("test setup");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("test setup"))
        .expect("test setup");
    let key = KeyPair::generate().expect("test setup");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("test setup")
        .signed_by(&key, &ca)
        .expect("test setup");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("test setup");
        path
    };
    (
        write("server.crt", cert.pem()),
        write("server.key", key.serialize_pem()),
        write("ca.pem", ca.pem()),
    )
}

/// `mcp:` with an upstream and TLS with a client CA, then `rest`.
fn mcp_with_mtls(dir: &std::path::Path, rest: &str) -> tempfile::NamedTempFile {
    let (cert, key, ca) = mtls_files(dir);
    yaml_file(&format!(
        "mcp:\n  upstreams: [{{name: t, url: 'http://t/'}}]\n  tls:\n    cert_file: {}\n    \
         key_file: {}\n    client_ca_file: {}\n{rest}",
        cert.display(),
        key.display(),
        ca.display(),
    ))
}

#[test]
fn default_session_is_removed_with_a_pointer_to_what_replaces_it() {
    let file = yaml_file("mcp:\n  identity:\n    default_session: main\n");
    let vars = env(&[(REMOVED_ENV_MCP_DEFAULT_SESSION, "s0")]);
    let problems = problems(load(&flags_with_config(file.path()), &vars));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("mcp.identity.default_session: removed; "));
    assert!(problems[1].starts_with("AEGIS_MCP_DEFAULT_SESSION: removed; "));
    assert!(
        problems
            .iter()
            .all(|p| p.contains("mcp.identity.principal"))
    );
}

#[test]
fn jwt_and_mtls_from_the_file() {
    let dir = tempfile::tempdir().expect("test setup");
    let file = mcp_with_mtls(
        dir.path(),
        "  identity:\n    mtls: {san: dns}\n    jwt:\n      jwks_file: /etc/aegis/jwks.json\n      \
         issuer: https://issuer.example\n      audience: aegis-proxy\n      header: X-Token\n      \
         forward: true\n      leeway_s: 5\n      claims: {principal: agent, tenant: org, user: null}\n",
    );
    let identity = load(&flags_with_config(file.path()), &env(&[]))
        .expect("valid")
        .mcp
        .identity;
    assert_eq!(identity.mtls.map(|m| m.san), Some(SanKind::Dns));
    assert_eq!(
        identity.jwt,
        Some(JwtConfig {
            jwks_file: "/etc/aegis/jwks.json".into(),
            issuer: "https://issuer.example".into(),
            audience: "aegis-proxy".into(),
            header: http::HeaderName::from_static("x-token"),
            forward: true,
            leeway: Duration::from_secs(5),
            claims: ClaimNames {
                principal: "agent".into(),
                tenant: Some("org".into()),
                user: None,
            },
        })
    );
    // The defaults, with only what is required.
    let file =
        yaml_file("mcp:\n  identity:\n    jwt: {jwks_file: /k.json, issuer: i, audience: a}\n");
    let jwt = load(&flags_with_config(file.path()), &env(&[]))
        .expect("valid")
        .mcp
        .identity
        .jwt
        .expect("test setup");
    assert_eq!(jwt.header, http::header::AUTHORIZATION);
    assert!(!jwt.forward);
    assert_eq!(jwt.leeway, Duration::from_secs(60));
    assert_eq!(jwt.claims, ClaimNames::default());
}

#[test]
fn bad_jwt_and_mtls_settings_are_named() {
    let file = yaml_file(
        "mcp:\n  identity:\n    mtls: {san: email}\n    jwt:\n      issuer: ' '\n      \
         header: 'a b'\n      leeway_s: 601\n      claims: {principal: ''}\n",
    );
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert_eq!(
        problems,
        [
            "mcp.identity.mtls.san: expected \"uri\" or \"dns\", got \"email\"",
            "mcp.identity.mtls: needs mcp.tls.client_ca_file (the MCP listener must verify \
             client certificates for their SANs to name anyone)",
            "mcp.identity.jwt.issuer: required when mcp.identity.jwt is set",
            "mcp.identity.jwt.audience: required when mcp.identity.jwt is set",
            "mcp.identity.jwt.jwks_file: required when mcp.identity.jwt is set",
            "mcp.identity.jwt.header: invalid header name \"a b\"",
            "mcp.identity.jwt.leeway_s: must be at most 600 s, got 601",
            "mcp.identity.jwt.claims.principal: must not be empty (leave it out for the default)",
        ]
    );
}

#[test]
fn mtls_with_a_forward_listener_needs_a_jwt() {
    let dir = tempfile::tempdir().expect("test setup");
    let forward = "forward:\n  listen: 127.0.0.1:0\n";
    let file = mcp_with_mtls(
        dir.path(),
        &format!("  identity:\n    mtls: {{}}\n{forward}"),
    );
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("mcp.identity.mtls: the egress forward proxy"));
    let file = mcp_with_mtls(
        dir.path(),
        &format!(
            "  identity:\n    mtls: {{}}\n    jwt: {{jwks_file: /k.json, issuer: i, audience: a}}\n{forward}"
        ),
    );
    assert!(load(&flags_with_config(file.path()), &env(&[])).is_ok());
}

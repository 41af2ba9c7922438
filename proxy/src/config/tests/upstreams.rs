//! `mcp.upstreams`: parsing, merging across layers, and header secrets.

use super::*;

/// A secret that must never appear in a problem or a `Debug` print.
const TOKEN: &str = "Bearer s3cr3t-t0ken";

fn flags_with_upstreams(pairs: &[&str]) -> RunFlags {
    RunFlags {
        upstream: pairs.iter().map(|pair| (*pair).to_owned()).collect(),
        ..RunFlags::default()
    }
}

fn secret_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("create temp file");
    file.write_all(bytes).expect("write temp file");
    file
}

fn names(config: &Config) -> Vec<&str> {
    config
        .mcp
        .upstreams
        .iter()
        .map(|upstream| upstream.name.as_str())
        .collect()
}

/// The problems of a file holding one upstream whose only header is
/// `header_yaml` (indented as a list item's mapping).
fn header_problems(header_yaml: &str, vars: &HashMap<String, String>) -> Vec<String> {
    let file = yaml_file(&format!(
        "mcp:\n  upstreams:\n    - name: tools\n      url: http://127.0.0.1:9000/mcp\n      \
         headers:\n        - {header_yaml}\n"
    ));
    problems(load(&flags_with_config(file.path()), vars))
}

#[test]
fn a_file_upstream_with_headers_from_env_and_file() {
    let key = secret_file(b"k3y-from-file\n");
    let file = yaml_file(&format!(
        "mcp:\n  upstreams:\n    - name: tools\n      url: http://127.0.0.1:9000/mcp\n      \
         timeout_ms: 1500\n      headers:\n        - name: Authorization\n          \
         value_from_env: TOOLS_TOKEN\n        - name: X-Api-Key\n          \
         value_from_file: {}\n",
        key.path().display()
    ));
    let vars = env(&[("TOOLS_TOKEN", TOKEN)]);
    let config = load(&flags_with_config(file.path()), &vars).expect("valid");
    let [tools] = config.mcp.upstreams.as_slice() else {
        panic!("one upstream expected: {:?}", config.mcp.upstreams);
    };
    assert_eq!(tools.name, "tools");
    assert_eq!(tools.url.to_string(), "http://127.0.0.1:9000/mcp");
    assert_eq!(tools.url.path(), "/mcp");
    assert_eq!(tools.timeout, Duration::from_millis(1500));
    let headers: Vec<(&str, &[u8])> = tools
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.value().as_bytes()))
        .collect();
    assert_eq!(
        headers,
        [
            ("authorization", TOKEN.as_bytes()),
            ("x-api-key", &b"k3y-from-file"[..]),
        ]
    );
    assert!(tools.headers.iter().all(|h| h.value.value().is_sensitive()));
    assert_eq!(config.mcp.listen, Some(DEFAULT_MCP_LISTEN));
    assert_eq!(config.mcp.default_upstream.as_deref(), Some("tools"));
}

#[test]
fn debug_of_the_config_never_shows_a_secret() {
    let key = secret_file(TOKEN.as_bytes());
    let file = yaml_file(&format!(
        "mcp:\n  upstreams:\n    - name: tools\n      url: http://127.0.0.1:9000/mcp\n      \
         headers:\n        - {{name: Authorization, value_from_env: TOOLS_TOKEN}}\n        \
         - {{name: X-Api-Key, value_from_file: '{}'}}\n",
        key.path().display()
    ));
    let config = load(
        &flags_with_config(file.path()),
        &env(&[("TOOLS_TOKEN", TOKEN)]),
    )
    .expect("valid");
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let secret = SecretValue::new(http::HeaderValue::from_static(TOKEN));
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert!(secret.value().is_sensitive());
}

#[test]
fn upstream_flags_parse_and_keep_the_path() {
    let flags = flags_with_upstreams(&[
        "tools=http://127.0.0.1:9000/mcp",
        " search = http://search.internal:8000/ ",
        "bare=http://[::1]:9/v1/mcp?key=a=b",
    ]);
    let config = load(&flags, &env(&[])).expect("valid");
    assert_eq!(names(&config), ["tools", "search", "bare"]);
    let urls: Vec<String> = config
        .mcp
        .upstreams
        .iter()
        .map(|u| u.url.to_string())
        .collect();
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:9000/mcp",
            "http://search.internal:8000/",
            "http://[::1]:9/v1/mcp?key=a=b",
        ]
    );
    assert!(config.mcp.upstreams.iter().all(|u| u.timeout
        == Duration::from_millis(DEFAULT_UPSTREAM_TIMEOUT_MS)
        && u.headers.is_empty()));
}

#[test]
fn layers_merge_by_name_file_then_env_then_flags() {
    let file = yaml_file(
        "mcp:\n  upstreams:\n    - name: a\n      url: http://file-a/\n    \
         - name: b\n      url: http://file-b/\n      timeout_ms: 5\n      \
         headers:\n        - {name: X-Key, value_from_env: KEY}\n",
    );
    let vars = env(&[
        ("KEY", "k"),
        (ENV_MCP_UPSTREAMS, " b=http://env-b/ , c=http://env-c/,, "),
    ]);
    let flags = RunFlags {
        upstream: vec!["c=http://flag-c/".to_owned(), "d=http://flag-d/".to_owned()],
        ..flags_with_config(file.path())
    };
    let config = load(&flags, &vars).expect("valid");
    let got: Vec<(&str, String)> = config
        .mcp
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), u.url.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "http://file-a/".to_owned()),
            ("b", "http://env-b/".to_owned()),
            ("c", "http://flag-c/".to_owned()),
            ("d", "http://flag-d/".to_owned()),
        ]
    );
    // A replacement is whole: b from the environment has the default timeout
    // and none of the file's headers.
    let b = config.mcp.upstream("b").expect("b is configured");
    assert_eq!(
        b.timeout,
        Duration::from_millis(DEFAULT_UPSTREAM_TIMEOUT_MS)
    );
    assert!(b.headers.is_empty());
    assert_eq!(config.mcp.default_upstream, None, "four upstreams");
}

#[test]
fn duplicate_names_within_a_layer_are_problems() {
    let file = yaml_file(
        "mcp:\n  upstreams:\n    - {name: a, url: 'http://a/'}\n    \
         - {name: b, url: 'http://b/'}\n    - {name: a, url: 'http://c/'}\n",
    );
    let vars = env(&[(ENV_MCP_UPSTREAMS, "x=http://x/,x=http://y/")]);
    let flags = RunFlags {
        upstream: vec!["y=http://1/".to_owned(), "y=http://2/".to_owned()],
        ..flags_with_config(file.path())
    };
    assert_eq!(
        problems(load(&flags, &vars)),
        [
            "mcp.upstreams[2].name: \"a\" is also the name of mcp.upstreams[0]",
            "mcp.upstreams: \"x=http://y/\": upstream \"x\" is given twice \
             (from AEGIS_MCP_UPSTREAMS)",
            "mcp.upstreams: \"y=http://2/\": upstream \"y\" is given twice (from --upstream)",
        ]
    );
}

#[test]
fn bad_names_are_refused() {
    let long = "n".repeat(MAX_UPSTREAM_NAME_LEN + 1);
    let exact = "n".repeat(MAX_UPSTREAM_NAME_LEN);
    for bad in [
        "", "Tools", "-tools", "_x", "to ols", "tools/x", "tööls", &long,
    ] {
        let pair = format!("{bad}=http://127.0.0.1:9000/");
        let problems = problems(load(&flags_with_upstreams(&[&pair]), &env(&[])));
        assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        let expected = format!("mcp.upstreams: {pair:?}: invalid name {bad:?}: expected 1 to 63");
        assert!(problems[0].starts_with(&expected), "{}", problems[0]);
        assert!(
            problems[0].ends_with("(from --upstream)"),
            "{}",
            problems[0]
        );
    }
    // "egress" names the forward proxy's calls in the ledger.
    let problems = problems(load(
        &flags_with_upstreams(&["egress=http://127.0.0.1:9000/"]),
        &env(&[]),
    ));
    assert!(
        problems[0].contains("reserved for the egress forward proxy"),
        "{problems:?}"
    );
    for good in ["tools", "0day", "a-b_c", &exact] {
        let pair = format!("{good}=http://127.0.0.1:9000/");
        let config = load(&flags_with_upstreams(&[&pair]), &env(&[])).expect("valid name");
        assert_eq!(names(&config), [good]);
    }
}

#[test]
fn https_upstreams_get_tls_from_every_layer() {
    let file = yaml_file("mcp:\n  upstreams:\n    - {name: t, url: 'HTTPS://t.example/mcp'}\n");
    let config = load(&flags_with_config(file.path()), &env(&[])).expect("valid");
    assert!(config.mcp.upstreams[0].tls.is_some(), "{config:?}");
    let flags = flags_with_upstreams(&["t=https://t.example/mcp"]);
    let config = load(&flags, &env(&[])).expect("valid");
    assert!(config.mcp.upstreams[0].tls.is_some(), "{config:?}");
}

#[test]
fn bad_urls_are_refused_each_as_its_own_problem() {
    let cases = [
        (
            "a=127.0.0.1:9000",
            "\"127.0.0.1:9000\" is not an absolute URL",
        ),
        ("b=/mcp", "\"/mcp\" is not an absolute URL"),
        (
            "c=ftp://x/",
            "URL scheme must be http or https, got \"ftp\"",
        ),
        ("d=http://", "invalid URL \"http://\""),
        (
            "e=http://x:99999/",
            "URL \"http://x:99999/\" has an invalid port",
        ),
        ("f=http://x y/", "invalid URL \"http://x y/\""),
        ("g=", "invalid URL \"\""),
        ("h=http://:80/", "URL \"http://:80/\" has no host"),
        ("i=http://x:/", "URL \"http://x:/\" has an invalid port"),
    ];
    let pairs: Vec<&str> = cases.iter().map(|(pair, _)| *pair).collect();
    let problems = problems(load(&flags_with_upstreams(&pairs), &env(&[])));
    assert_eq!(problems.len(), cases.len(), "{problems:#?}");
    for ((pair, message), problem) in cases.iter().zip(&problems) {
        let expected = format!("mcp.upstreams: {pair:?}: {message}");
        assert!(
            problem.starts_with(&expected),
            "{problem}\nexpected {expected}"
        );
        assert!(problem.ends_with("(from --upstream)"), "{problem}");
    }
}

#[test]
fn credentials_in_a_url_are_refused_and_not_echoed() {
    let flags = flags_with_upstreams(&["t=http://user:hunter2@t.internal/mcp"]);
    let problems = problems(load(&flags, &env(&[])));
    assert_eq!(
        problems,
        [
            "mcp.upstreams: \"t=http://***@t.internal/mcp\": URL must not hold credentials \
             (user:password@); send them as a header with value_from_env or value_from_file \
             (from --upstream)"
        ]
    );
}

#[test]
fn header_values_come_only_from_env_or_file() {
    let vars = env(&[("EMPTY", " "), ("SET", "v")]);
    let cases = [
        (
            "{name: X-Key, value: inline-s3cr3t}",
            "mcp.upstreams[0].headers[0].value: inline header values are not accepted",
        ),
        (
            "{name: X-Key}",
            "mcp.upstreams[0].headers[0]: needs value_from_env or value_from_file",
        ),
        (
            "{name: X-Key, value_from_env: SET, value_from_file: /x}",
            "mcp.upstreams[0].headers[0]: give one of value_from_env and value_from_file",
        ),
        (
            "{name: X-Key, value_from_env: MISSING}",
            "mcp.upstreams[0].headers[0].value_from_env: environment variable MISSING is not set",
        ),
        (
            "{name: X-Key, value_from_env: EMPTY}",
            "mcp.upstreams[0].headers[0].value_from_env: environment variable EMPTY is empty",
        ),
        (
            "{name: X-Key, value_from_env: ''}",
            "mcp.upstreams[0].headers[0].value_from_env: must name an environment variable",
        ),
    ];
    for (header, expected) in cases {
        let problems = header_problems(header, &vars);
        assert_eq!(problems.len(), 1, "{header}: {problems:?}");
        assert!(problems[0].starts_with(expected), "{}", problems[0]);
        assert!(!problems[0].contains("s3cr3t"), "{}", problems[0]);
    }
}

#[test]
fn file_secrets_trim_one_newline_and_report_unreadable_files() {
    for (bytes, want) in [
        (&b"tok\n"[..], &b"tok"[..]),
        (b"tok\r\n", b"tok"),
        (b"tok", b"tok"),
        (b"a b\tc", b"a b\tc"),
    ] {
        let secret = secret_file(bytes);
        let header = format!(
            "{{name: X-Key, value_from_file: '{}'}}",
            secret.path().display()
        );
        let file = yaml_file(&format!(
            "mcp:\n  upstreams:\n    - name: t\n      url: http://t/\n      headers:\n        \
             - {header}\n"
        ));
        let config = load(&flags_with_config(file.path()), &env(&[])).expect("valid");
        let value = config.mcp.upstreams[0].headers[0].value.value();
        assert_eq!(value.as_bytes(), want, "{bytes:?}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("token");
    let problems = header_problems(
        &format!("{{name: X-Key, value_from_file: '{}'}}", missing.display()),
        &env(&[]),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    let expected = format!(
        "mcp.upstreams[0].headers[0].value_from_file: cannot read \"{}\": ",
        missing.display()
    );
    assert!(problems[0].starts_with(&expected), "{}", problems[0]);
}

#[test]
fn invalid_header_values_are_refused_without_quoting_them() {
    let two_lines = secret_file(b"s3cr3t-line-1\ns3cr3t-line-2\n");
    let empty = secret_file(b"\n");
    let vars = env(&[("BAD", "s3cr3t\u{7}bell")]);
    let cases = [
        (
            "{name: X-Key, value_from_env: BAD}".to_owned(),
            "mcp.upstreams[0].headers[0].value_from_env: the value of BAD is not a valid \
             header value (control characters and line breaks are not allowed)"
                .to_owned(),
        ),
        (
            format!(
                "{{name: X-Key, value_from_file: '{}'}}",
                two_lines.path().display()
            ),
            format!(
                "mcp.upstreams[0].headers[0].value_from_file: the contents of \"{}\" are not a \
                 valid header value (control characters and line breaks are not allowed)",
                two_lines.path().display()
            ),
        ),
        (
            format!(
                "{{name: X-Key, value_from_file: '{}'}}",
                empty.path().display()
            ),
            format!(
                "mcp.upstreams[0].headers[0].value_from_file: \"{}\" is empty",
                empty.path().display()
            ),
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(header_problems(&header, &vars), [expected]);
    }
}

#[test]
fn managed_and_invalid_header_names_are_refused() {
    let vars = env(&[("V", "v")]);
    for name in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "Proxy-Authorization",
        "proxy-connection",
        "Mcp-Session-Id",
        "MCP-Protocol-Version",
        "last-event-id",
    ] {
        let problems = header_problems(&format!("{{name: {name}, value_from_env: V}}"), &vars);
        assert_eq!(
            problems,
            [format!(
                "mcp.upstreams[0].headers[0].name: {name:?} is managed by the proxy itself and \
                 cannot be set"
            )]
        );
    }
    assert_eq!(
        header_problems("{name: 'x key', value_from_env: V}", &vars),
        ["mcp.upstreams[0].headers[0].name: invalid header name \"x key\""]
    );

    let file = yaml_file(
        "mcp:\n  upstreams:\n    - name: t\n      url: http://t/\n      headers:\n        \
         - {name: X-Key, value_from_env: V}\n        - {name: x-key, value_from_env: V}\n",
    );
    assert_eq!(
        problems(load(&flags_with_config(file.path()), &vars)),
        ["mcp.upstreams[0].headers[1].name: \"x-key\" is listed twice; give each header once"]
    );
}

#[test]
fn missing_name_or_url_is_a_parse_error_with_the_line() {
    let file = yaml_file("mcp:\n  upstreams:\n    - name: tools\n");
    let problems = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("url"), "{}", problems[0]);
    assert!(problems[0].contains("line 3"), "{}", problems[0]);
}

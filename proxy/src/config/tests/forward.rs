//! `forward:`: the egress forward proxy's settings across the layers.

use super::*;

#[test]
fn off_by_default_with_web_ports() {
    let config = load(&RunFlags::default(), &env(&[])).expect("defaults are valid");
    assert_eq!(config.forward, ForwardConfig::default());
    assert_eq!(config.forward.listen, None);
    assert_eq!(config.forward.allowed_ports, [80, 443]);
    assert_eq!(config.forward.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.forward.connect_timeout, Duration::from_secs(10));
    assert_eq!(config.forward.max_connections, 1024);
    assert!(config.forward.results_taint);
    assert!(config.forward.dns_overrides.is_empty());
}

#[test]
fn file_then_env_then_flag() {
    let file = yaml_file(
        "forward:\n  listen: 127.0.0.1:3128\n  allowed_ports: [443]\n  idle_timeout_ms: 5000\n  \
         results_taint: false\n  dns_overrides:\n    API.example.com.: 10.1.2.3\n",
    );
    let config = load(&flags_with_config(file.path()), &env(&[])).expect("valid");
    assert_eq!(
        config.forward.listen,
        Some("127.0.0.1:3128".parse().unwrap_or(DEFAULT_ADMIN_LISTEN))
    );
    assert_eq!(config.forward.allowed_ports, [443]);
    assert_eq!(config.forward.idle_timeout, Duration::from_secs(5));
    assert!(!config.forward.results_taint);
    assert_eq!(
        config
            .forward
            .dns_overrides
            .get("api.example.com")
            .map(ToString::to_string),
        Some("10.1.2.3".to_owned())
    );

    let vars = env(&[
        (ENV_FORWARD_LISTEN, "127.0.0.1:3129"),
        (ENV_FORWARD_ALLOWED_PORTS, "80,8443"),
        (ENV_FORWARD_RESULTS_TAINT, "true"),
    ]);
    let config = load(&flags_with_config(file.path()), &vars).expect("valid");
    assert_eq!(config.forward.listen.map(|a| a.port()), Some(3129));
    assert_eq!(config.forward.allowed_ports, [80, 8443]);
    assert!(config.forward.results_taint);

    let flags = RunFlags {
        forward_listen: Some("127.0.0.1:3130".into()),
        ..flags_with_config(file.path())
    };
    let config = load(&flags, &vars).expect("valid");
    assert_eq!(config.forward.listen.map(|a| a.port()), Some(3130));
}

#[test]
fn every_problem_at_once() {
    let file = yaml_file(
        "forward:\n  listen: nowhere\n  allowed_ports: [0]\n  idle_timeout_ms: 0\n  \
         dns_overrides:\n    a.example: not-an-ip\n",
    );
    let vars = env(&[(ENV_FORWARD_MAX_CONNECTIONS, "many")]);
    let found = problems(load(&flags_with_config(file.path()), &vars));
    for path in [
        "forward.listen:",
        "forward.allowed_ports:",
        "forward.idle_timeout_ms:",
        "forward.dns_overrides:",
        "AEGIS_FORWARD_MAX_CONNECTIONS:",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(path)),
            "{path} in {found:?}"
        );
    }
}

#[test]
fn may_not_share_the_admin_address() {
    let flags = RunFlags {
        admin_listen: Some("127.0.0.1:9000".into()),
        forward_listen: Some("127.0.0.1:9000".into()),
        ..RunFlags::default()
    };
    let found = problems(load(&flags, &env(&[])));
    assert_eq!(
        found,
        [
            "forward.listen: 127.0.0.1:9000 is also admin.listen; give them different addresses (from --forward-listen)"
        ]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let file = yaml_file("forward:\n  listne: 127.0.0.1:3128\n");
    let found = problems(load(&flags_with_config(file.path()), &env(&[])));
    assert!(found[0].contains("listne"), "{found:?}");
}

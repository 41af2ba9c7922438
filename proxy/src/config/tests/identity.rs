//! `mcp.identity`: principal, tenant, user, sessions, mTLS and JWT.

use super::*;
use crate::identity::{ClaimNames, IdentityConfig, JwtConfig, MAX_ID_LEN, SanKind, SessionScope};

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

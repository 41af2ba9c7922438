//! `admin.metrics_listen` and `admin.auth`: layering, token files read and
//! checked at load, mTLS entries, and the dev-mode rule.

#![allow(clippy::unwrap_used)]

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::*;

/// A token file in `dir` holding `text` and a newline.
fn token_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write token file");
    path
}

fn load_yaml(yaml: &str) -> Result<Config, ConfigError> {
    let file = yaml_file(yaml);
    load(&flags_with_config(file.path()), &env(&[]))
}

#[test]
fn metrics_listen_is_layered_and_off_by_default() {
    assert_eq!(Config::default().admin.metrics_listen, None);
    let file = yaml_file("admin:\n  metrics_listen: 0.0.0.0:9090\n");
    let flags = flags_with_config(file.path());
    let config = load(&flags, &env(&[])).expect("valid");
    assert_eq!(
        config.admin.metrics_listen,
        Some("0.0.0.0:9090".parse().unwrap())
    );

    let vars = env(&[(ENV_ADMIN_METRICS_LISTEN, "127.0.0.1:9091")]);
    let config = load(&flags, &vars).expect("valid");
    assert_eq!(config.admin.metrics_listen.unwrap().port(), 9091);

    let flags = RunFlags {
        metrics_listen: Some("127.0.0.1:9092".to_owned()),
        ..flags
    };
    let config = load(&flags, &vars).expect("valid");
    assert_eq!(config.admin.metrics_listen.unwrap().port(), 9092);

    let flags = RunFlags {
        metrics_listen: Some("127.0.0.1:8080".to_owned()),
        ..RunFlags::default()
    };
    assert_eq!(
        problems(load(&flags, &env(&[]))),
        [
            "admin.metrics_listen: 127.0.0.1:8080 is also admin.listen; give them different \
          addresses (from --metrics-listen)"
        ]
    );
    let flags = RunFlags {
        metrics_listen: Some("nine".to_owned()),
        ..RunFlags::default()
    };
    let problems = problems(load(&flags, &env(&[])));
    assert!(problems[0].starts_with("admin.metrics_listen: invalid socket address"));
}

#[test]
fn tokens_and_mtls_entries_load() {
    let dir = tempfile::tempdir().unwrap();
    let op = token_file(dir.path(), "op", "operator-token-0123456789");
    let reader = token_file(dir.path(), "reader", "reader-token-0123456789");
    let pki = Pki::new();
    let (cert, key) = pki.leaf();
    let ca = pki.ca_file();
    let config = load_yaml(&format!(
        "admin:\n  listen: 0.0.0.0:8080\n  tls:\n    cert_file: {}\n    key_file: {}\n    \
         client_ca_file: {}\n  auth:\n    tokens:\n      - file: {}\n        role: operator\n        \
         tenants: [acme]\n      - file: {}\n        role: reader\n    mtls:\n      - uri_san: \
         spiffe://cluster.local/ns/audit/sa/auditor\n        role: reader\n        tenants: [acme, \
         globex]\n      - dns_san: ops.example\n        role: operator\n      - subject: \
         CN=deployer\n        role: ingest\n",
        cert.display(),
        key.display(),
        ca.display(),
        op.display(),
        reader.display()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let auth = &config.admin.auth;
    assert!(!auth.is_dev_mode());
    assert_eq!(
        auth.tokens,
        [
            TokenEntry {
                file: op,
                role: Role::Operator,
                tenants: Some(vec!["acme".to_owned()])
            },
            TokenEntry {
                file: reader,
                role: Role::Reader,
                tenants: None
            },
        ]
    );
    assert_eq!(
        auth.mtls,
        [
            MtlsEntry {
                name: CertName::UriSan("spiffe://cluster.local/ns/audit/sa/auditor".to_owned()),
                role: Role::Reader,
                tenants: Some(vec!["acme".to_owned(), "globex".to_owned()]),
            },
            MtlsEntry {
                name: CertName::DnsSan("ops.example".to_owned()),
                role: Role::Operator,
                tenants: None,
            },
            MtlsEntry {
                name: CertName::Subject("CN=deployer".to_owned()),
                role: Role::Ingest,
                tenants: None,
            },
        ]
    );
    // Debug shows paths, never a token.
    let debug = format!("{config:?}");
    assert!(!debug.contains("operator-token"), "{debug}");
}

#[test]
fn bad_token_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let short = token_file(dir.path(), "short", "too-short");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let good = token_file(dir.path(), "good", "good-token-0123456789");
    let same = token_file(dir.path(), "same", "good-token-0123456789");
    let missing = dir.path().join("missing");
    let yaml = format!(
        "admin:\n  auth:\n    tokens:\n      - file: {}\n        role: reader\n      - file: {}\n        \
         role: reader\n      - file: {}\n        role: admin\n      - file: {}\n        role: \
         reader\n      - file: {}\n        role: reader\n      - role: reader\n      - file: {}\n        \
         tenants: []\n",
        short.display(),
        empty.display(),
        good.display(),
        same.display(),
        missing.display(),
        good.display(),
    );
    let problems = problems(load_yaml(&yaml));
    let expected = [
        "admin.auth.tokens[0].file: ",
        "admin.auth.tokens[1].file: ",
        "admin.auth.tokens[2].role: expected reader, ingest or operator, got \"admin\"",
        "admin.auth.tokens[3].file: ",
        "admin.auth.tokens[4].file: ",
        "admin.auth.tokens[5].file: missing",
        "admin.auth.tokens[6].role: missing",
        "admin.auth.tokens[6].tenants: must name at least one tenant",
    ];
    for prefix in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(prefix)),
            "missing {prefix:?} in {problems:#?}"
        );
    }
    let all = problems.join("\n");
    for needle in [
        "at least 16",
        "the file is empty",
        "same token as admin.auth.tokens[2]",
        "cannot read",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in {all}");
    }
    assert!(
        !all.contains("too-short") && !all.contains("good-token"),
        "{all}"
    );
    // tokens[6] names tokens[2]'s file again: a duplicate too.
    assert_eq!(problems.len(), expected.len() + 1, "{problems:#?}");
}

#[test]
fn mtls_needs_a_client_ca_and_one_name_per_entry() {
    let problems = problems(load_yaml(
        "admin:\n  auth:\n    mtls:\n      - uri_san: spiffe://a\n        role: reader\n      \
         - uri_san: spiffe://a\n        dns_san: a.example\n        role: reader\n      - role: \
         reader\n      - subject: ''\n        role: reader\n",
    ));
    assert_eq!(
        problems,
        [
            "admin.auth.mtls: needs admin.tls.client_ca_file (client certificates are verified, \
             and so can be mapped to roles, only on an mTLS admin listener)",
            "admin.auth.mtls[1]: needs exactly one of uri_san, dns_san or subject, got 2",
            "admin.auth.mtls[2]: needs exactly one of uri_san, dns_san or subject, got 0",
            "admin.auth.mtls[3]: the certificate name must not be empty",
        ]
    );
}

#[test]
fn without_credentials_only_loopback_may_listen() {
    for ok in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:0"] {
        let config = load_yaml(&format!("admin:\n  listen: \"{ok}\"\n")).expect(ok);
        assert!(config.admin.auth.is_dev_mode());
    }
    let problems = problems(load_yaml("admin:\n  listen: 0.0.0.0:8080\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("admin.listen: 0.0.0.0:8080 is not a loopback address"));
    assert!(problems[0].contains("admin.auth"), "{}", problems[0]);
    let flags = RunFlags {
        admin_listen: Some("10.0.0.7:8080".to_owned()),
        ..RunFlags::default()
    };
    let problems = super::problems(load(&flags, &env(&[])));
    assert!(
        problems[0].ends_with("(from --admin-listen)"),
        "{}",
        problems[0]
    );
    // The probes listener may be anywhere: it serves only the open routes.
    let config = load_yaml("admin:\n  metrics_listen: 0.0.0.0:9090\n").expect("valid");
    assert!(config.admin.auth.is_dev_mode());

    // With a credential, any address (a warning at start-up without TLS).
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "t", "some-token-0123456789");
    let config = load_yaml(&format!(
        "admin:\n  listen: 0.0.0.0:8080\n  auth:\n    tokens:\n      - file: {}\n        role: ingest\n",
        token.display()
    ))
    .expect("valid");
    assert_eq!(config.admin.auth.tokens.len(), 1);
    assert_eq!(
        dev_mode_problem(config.admin.listen, &config.admin.auth),
        None
    );
}

#[test]
fn unknown_auth_keys_are_rejected() {
    let problems = problems(load_yaml(
        "admin:\n  auth:\n    tokens:\n      - file: /x\n        role: reader\n        roles: [a]\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("roles"), "{}", problems[0]);
}

/// A throwaway CA, a leaf signed by it and the CA's file.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Pki {
            dir: tempfile::tempdir().expect("temp dir"),
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
                .expect("CA certificate"),
        }
    }

    fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca.pem()).expect("write CA");
        path
    }

    fn leaf(&self) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        let (crt, pem) = (self.dir.path().join("l.crt"), self.dir.path().join("l.key"));
        std::fs::write(&crt, cert.pem()).expect("write");
        std::fs::write(&pem, key.serialize_pem()).expect("write");
        (crt, pem)
    }
}

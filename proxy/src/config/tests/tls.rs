//! `admin.tls`, `mcp.tls` and `mcp.upstreams[].tls`: files read and checked
//! at load, every problem named by its setting and layer.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::*;

/// A throwaway CA and files made from it, in one temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        Pki {
            dir: tempfile::tempdir().expect("temp dir"),
            ca: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write PEM file");
        path
    }

    /// The CA certificate's file.
    fn ca_file(&self) -> PathBuf {
        self.file("ca.pem", &self.ca.pem())
    }

    /// A leaf for `localhost` signed by the CA: (certificate file, key file).
    fn leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        (
            self.file(&format!("{name}.crt"), &cert.pem()),
            self.file(&format!("{name}.key"), &key.serialize_pem()),
        )
    }
}

fn with_upstream(url: &str) -> RunFlags {
    RunFlags {
        upstream: vec![format!("tools={url}")],
        ..RunFlags::default()
    }
}

#[test]
fn mcp_tls_from_flags_and_admin_tls_from_env() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("mcp");
    let (admin_cert, admin_key) = pki.leaf("admin");
    let ca = pki.ca_file();
    let flags = RunFlags {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        tls_client_ca: Some(ca.clone()),
        ..with_upstream("http://127.0.0.1:9000/mcp")
    };
    let vars = env(&[
        (ENV_ADMIN_TLS_CERT, admin_cert.to_str().expect("utf-8")),
        (ENV_ADMIN_TLS_KEY, admin_key.to_str().expect("utf-8")),
    ]);
    let config = load(&flags, &vars).expect("valid");
    let mcp = config.mcp.tls.expect("mcp TLS on");
    assert_eq!(
        (mcp.cert_file, mcp.key_file, mcp.client_ca_file),
        (cert, key, Some(ca))
    );
    let admin = config.admin.tls.expect("admin TLS on");
    assert_eq!(admin.cert_file, admin_cert);
    assert_eq!(admin.client_ca_file, None);
    assert!(!format!("{admin:?}").contains("BEGIN"), "{admin:?}");
}

#[test]
fn flags_win_over_env_and_env_over_the_file() {
    let pki = Pki::new();
    let (file_cert, _) = pki.leaf("file");
    let (env_cert, env_key) = pki.leaf("env");
    let (flag_cert, flag_key) = pki.leaf("flag");
    let yaml = yaml_file(&format!(
        "mcp:\n  tls:\n    cert_file: {}\n    key_file: /nonexistent/file.key\n",
        file_cert.display()
    ));
    let vars = env(&[
        (ENV_MCP_TLS_CERT, env_cert.to_str().expect("utf-8")),
        (ENV_MCP_TLS_KEY, env_key.to_str().expect("utf-8")),
    ]);
    let flags = RunFlags {
        config: Some(yaml.path().to_owned()),
        ..with_upstream("http://127.0.0.1:9000/mcp")
    };
    let tls = load(&flags, &vars).expect("valid").mcp.tls.expect("TLS");
    assert_eq!((tls.cert_file, tls.key_file), (env_cert, env_key.clone()));
    let flags = RunFlags {
        tls_cert: Some(flag_cert.clone()),
        tls_key: Some(flag_key.clone()),
        ..flags
    };
    let tls = load(&flags, &vars).expect("valid").mcp.tls.expect("TLS");
    assert_eq!((tls.cert_file, tls.key_file), (flag_cert, flag_key));
}

#[test]
fn listener_file_problems_name_the_setting_and_layer() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("good");
    let (_, other_key) = pki.leaf("other");
    let not_pem = pki.file("notes.txt", "just some text\n");
    let rows: Vec<(RunFlags, &str)> = vec![
        (
            RunFlags {
                tls_cert: Some(PathBuf::from("/nonexistent/cert.pem")),
                tls_key: Some(key.clone()),
                ..RunFlags::default()
            },
            "mcp.tls.cert_file: cannot read \"/nonexistent/cert.pem\"",
        ),
        (
            RunFlags {
                tls_cert: Some(not_pem.clone()),
                tls_key: Some(key.clone()),
                ..RunFlags::default()
            },
            "holds no PEM certificate",
        ),
        (
            RunFlags {
                tls_cert: Some(cert.clone()),
                tls_key: Some(cert.clone()),
                ..RunFlags::default()
            },
            "mcp.tls.key_file: \"",
        ),
        (
            RunFlags {
                tls_cert: Some(cert.clone()),
                tls_key: Some(other_key.clone()),
                ..RunFlags::default()
            },
            "does not match the certificate",
        ),
        (
            RunFlags {
                tls_cert: Some(cert.clone()),
                ..RunFlags::default()
            },
            "mcp.tls.key_file: missing; mcp.tls.cert_file is set (from --tls-cert)",
        ),
        (
            RunFlags {
                tls_client_ca: Some(pki.ca_file()),
                ..RunFlags::default()
            },
            "mcp.tls.client_ca_file: client certificates are verified on a TLS listener only",
        ),
        (
            RunFlags {
                tls_cert: Some(cert.clone()),
                tls_key: Some(key.clone()),
                tls_client_ca: Some(not_pem.clone()),
                ..RunFlags::default()
            },
            "mcp.tls.client_ca_file: \"",
        ),
        (
            RunFlags {
                admin_tls_cert: Some(cert.clone()),
                admin_tls_key: Some(other_key.clone()),
                ..RunFlags::default()
            },
            "admin.tls.key_file: the private key in",
        ),
    ];
    for (flags, want) in rows {
        let flags = RunFlags {
            upstream: vec!["tools=http://127.0.0.1:9000/mcp".to_owned()],
            ..flags
        };
        let found = problems(load(&flags, &env(&[])));
        assert!(
            found.iter().any(|p| p.contains(want)),
            "want {want:?} in {found:?}"
        );
        assert!(
            found.iter().all(|p| !p.contains("-----END")),
            "PEM contents leaked: {found:?}"
        );
    }
}

#[test]
fn a_key_file_holding_no_key_is_named() {
    let pki = Pki::new();
    let (cert, _) = pki.leaf("good");
    let vars = env(&[
        (ENV_MCP_TLS_CERT, cert.to_str().expect("utf-8")),
        (ENV_MCP_TLS_KEY, cert.to_str().expect("utf-8")),
    ]);
    let found = problems(load(&with_upstream("http://127.0.0.1:9000/mcp"), &vars));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("mcp.tls.key_file: ")
            && found[0].contains("holds no PEM private key")
            && found[0].ends_with(&format!("(from {ENV_MCP_TLS_KEY})")),
        "{found:?}"
    );
}

#[test]
fn https_upstreams_are_allowed_with_webpki_roots_by_default() {
    let config = load(&with_upstream("https://tools.example:8443/mcp"), &env(&[])).expect("valid");
    let tls = config.mcp.upstreams[0].tls.as_ref().expect("https has TLS");
    assert_eq!(
        (tls.ca_file.as_ref(), tls.client_cert.as_ref()),
        (None, None)
    );
    let plain = load(&with_upstream("http://127.0.0.1:9000/mcp"), &env(&[])).expect("valid");
    assert!(plain.mcp.upstreams[0].tls.is_none());
}

#[test]
fn upstream_tls_from_the_file() {
    let pki = Pki::new();
    let ca = pki.ca_file();
    let (cert, key) = pki.leaf("client");
    let yaml = yaml_file(&format!(
        "mcp:\n  upstreams:\n    - name: tools\n      url: https://127.0.0.1:9443/mcp\n      \
         tls:\n        ca_file: {}\n        client_cert_file: {}\n        client_key_file: {}\n        \
         server_name: tools.internal\n",
        ca.display(),
        cert.display(),
        key.display()
    ));
    let config = load(&flags_with_config(yaml.path()), &env(&[])).expect("valid");
    let tls = config.mcp.upstreams[0].tls.as_ref().expect("TLS");
    assert_eq!(tls.ca_file.as_ref(), Some(&ca));
    assert_eq!(tls.client_cert, Some((cert, key)));
    assert_eq!(
        tls.server_name.as_ref().map(|n| n.to_str().into_owned()),
        Some("tools.internal".to_owned())
    );
}

#[test]
fn upstream_tls_problems() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("client");
    let (_, other_key) = pki.leaf("other");
    let rows = [
        (
            "http://127.0.0.1:9000/mcp",
            format!("ca_file: {}", pki.ca_file().display()),
            "mcp.upstreams[0].tls: applies to https:// upstreams only",
        ),
        (
            "https://127.0.0.1:9443/mcp",
            "ca_file: /nonexistent/ca.pem".to_owned(),
            "mcp.upstreams[0].tls.ca_file: cannot read \"/nonexistent/ca.pem\"",
        ),
        (
            "https://127.0.0.1:9443/mcp",
            format!("client_cert_file: {}", cert.display()),
            "mcp.upstreams[0].tls.client_key_file: missing",
        ),
        (
            "https://127.0.0.1:9443/mcp",
            format!(
                "client_cert_file: {}\n        client_key_file: {}",
                cert.display(),
                other_key.display()
            ),
            "mcp.upstreams[0].tls.client_key_file: the private key in",
        ),
        (
            "https://127.0.0.1:9443/mcp",
            "server_name: \"not a name\"".to_owned(),
            "mcp.upstreams[0].tls.server_name: \"not a name\" is not a DNS name",
        ),
        (
            "https://127.0.0.1:9443/mcp",
            "cert_file: x".to_owned(),
            "unknown field",
        ),
    ];
    let _ = key;
    for (url, tls_yaml, want) in rows {
        let yaml = yaml_file(&format!(
            "mcp:\n  upstreams:\n    - name: tools\n      url: {url}\n      tls:\n        {tls_yaml}\n"
        ));
        let found = problems(load(&flags_with_config(yaml.path()), &env(&[])));
        assert!(
            found.iter().any(|p| p.contains(want)),
            "want {want:?} in {found:?}"
        );
    }
}

#[test]
fn mcp_tls_without_an_upstream_is_a_problem_not_ignored() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("mcp");
    let flags = RunFlags {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..RunFlags::default()
    };
    let problems = load(&flags, &env(&[])).expect_err("no upstream").problems;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("mcp.tls: the MCP listener is off")),
        "{problems:?}"
    );
}

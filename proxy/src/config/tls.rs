//! TLS settings, as the file holds them and validated: `admin.tls` and
//! `mcp.tls` (a listener's certificate and key, and the CA that client
//! certificates must chain to for mTLS), and `mcp.upstreams[].tls` (how an
//! `https://` upstream is verified, and the client certificate it is offered).
//!
//! Validation reads every file and builds the rustls configuration once, so
//! an unreadable file, a file with no certificate or key, or a key that is not
//! the certificate's is a start-up problem naming the setting. The validated
//! values hold the built configuration; their `Debug` shows file paths only,
//! never certificate or key contents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

use crate::tls::{self, KeyProblem};

/// `mcp.upstreams[].tls:` in the config file; only for `https://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawUpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// A listener's TLS, ready to serve with. Equal when the files are.
#[derive(Clone)]
pub struct ServerTls {
    /// The certificate chain served, leaf first (PEM).
    pub cert_file: PathBuf,
    /// The leaf's private key (PEM).
    pub key_file: PathBuf,
    /// With it, every client must present a certificate chaining to one of
    /// these CAs (mTLS).
    pub client_ca_file: Option<PathBuf>,
    rustls: Arc<ServerConfig>,
}

impl ServerTls {
    /// The rustls configuration built from the files at start-up.
    pub fn rustls(&self) -> Arc<ServerConfig> {
        self.rustls.clone()
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("client_ca_file", &self.client_ca_file)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        (&self.cert_file, &self.key_file, &self.client_ca_file)
            == (&other.cert_file, &other.key_file, &other.client_ca_file)
    }
}

impl Eq for ServerTls {}

/// How the sidecar speaks TLS to one `https://` upstream. Equal when the
/// settings are.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The only CAs trusted for this upstream; `None`: the public web's
    /// roots (`webpki-roots`).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (leaf first) and its key, offered when the
    /// upstream asks.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name sent as SNI and verified in the upstream's certificate;
    /// `None`: the URL's host.
    pub server_name: Option<ServerName<'static>>,
    rustls: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// The rustls configuration built at start-up.
    pub fn rustls(&self) -> Arc<ClientConfig> {
        self.rustls.clone()
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        (&self.ca_file, &self.client_cert, &self.server_name)
            == (&other.ca_file, &other.client_cert, &other.server_name)
    }
}

impl Eq for UpstreamTls {}

/// A file setting after layering: its path and what a problem appends to
/// name the layer it came from (`""` for the file, ` (from AEGIS_…)`).
#[derive(Debug)]
pub(super) struct FileSetting {
    pub path: PathBuf,
    pub from: String,
}

/// Validates a listener's `{prefix}.cert_file`, `.key_file` and
/// `.client_ca_file`: `None` (TLS off) when neither certificate nor key is
/// given. Problems go to `problems`.
pub(super) fn server(
    prefix: &str,
    cert: Option<FileSetting>,
    key: Option<FileSetting>,
    client_ca: Option<FileSetting>,
    problems: &mut Vec<String>,
) -> Option<ServerTls> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if let Some(ca) = client_ca {
                problems.push(format!(
                    "{prefix}.client_ca_file: client certificates are verified on a TLS \
                     listener only; set {prefix}.cert_file and {prefix}.key_file too{}",
                    ca.from
                ));
            }
            return None;
        }
        (Some(cert), None) => {
            problems.push(format!(
                "{prefix}.key_file: missing; {prefix}.cert_file is set{} and needs its private key",
                cert.from
            ));
            return None;
        }
        (None, Some(key)) => {
            problems.push(format!(
                "{prefix}.cert_file: missing; {prefix}.key_file is set{} and needs its certificate",
                key.from
            ));
            return None;
        }
    };
    let mut check = |field: &str, setting: &FileSetting, message: String| {
        problems.push(format!("{prefix}.{field}: {message}{}", setting.from));
    };
    let certs = tls::read_certs(&cert.path)
        .map_err(|m| check("cert_file", &cert, m))
        .ok();
    let private_key = tls::read_key(&key.path)
        .map_err(|m| check("key_file", &key, m))
        .ok();
    let client_roots = match &client_ca {
        Some(ca) => Some(
            ca_roots(&ca.path)
                .map_err(|m| check("client_ca_file", ca, m))
                .ok()?,
        ),
        None => None,
    };
    let (certs, private_key) = (certs?, private_key?);
    match tls::server_config(certs, private_key, client_roots) {
        Ok(config) => Some(ServerTls {
            cert_file: cert.path,
            key_file: key.path,
            client_ca_file: client_ca.map(|ca| ca.path),
            rustls: Arc::new(config),
        }),
        Err(problem) => {
            problems.push(key_problem(
                &format!("{prefix}.key_file"),
                &format!("{prefix}.cert_file"),
                (&cert.path, &key.path),
                problem,
                &key.from,
            ));
            None
        }
    }
}

/// Validates `{path}.tls` of an upstream whose URL is `https` or not: `Some`
/// exactly for `https://` upstreams (with the defaults when `raw` is `None`).
/// The file's settings come from the file only, so problems name no layer.
pub(super) fn upstream(
    path: &str,
    raw: Option<RawUpstreamTls>,
    https: bool,
    problems: &mut Vec<String>,
) -> Option<UpstreamTls> {
    if !https {
        if raw.is_some() {
            problems.push(format!(
                "{path}.tls: applies to https:// upstreams only; this URL is http://"
            ));
        }
        return None;
    }
    let raw = raw.unwrap_or_default();
    let before = problems.len();
    let roots = match &raw.ca_file {
        Some(file) => ca_roots(file)
            .map_err(|m| problems.push(format!("{path}.tls.ca_file: {m}")))
            .ok(),
        None => Some(tls::webpki_root_store()),
    };
    let client_cert = match (raw.client_cert_file, raw.client_key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            problems.push(format!(
                "{path}.tls.client_key_file: missing; client_cert_file needs its private key"
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(format!(
                "{path}.tls.client_cert_file: missing; client_key_file needs its certificate"
            ));
            None
        }
    };
    let client_auth = client_cert.as_ref().and_then(|(cert, key)| {
        let certs = tls::read_certs(cert)
            .map_err(|m| problems.push(format!("{path}.tls.client_cert_file: {m}")))
            .ok();
        let key = tls::read_key(key)
            .map_err(|m| problems.push(format!("{path}.tls.client_key_file: {m}")))
            .ok();
        Some((certs?, key?))
    });
    let server_name = raw.server_name.and_then(|name| {
        let trimmed = name.trim().to_owned();
        ServerName::try_from(trimmed)
            .map_err(|_| {
                problems.push(format!(
                    "{path}.tls.server_name: {name:?} is not a DNS name or IP address"
                ))
            })
            .ok()
    });
    if problems.len() > before {
        return None;
    }
    let roots = roots?;
    match tls::client_config(roots, client_auth) {
        Ok(config) => Some(UpstreamTls {
            ca_file: raw.ca_file,
            client_cert,
            server_name,
            rustls: Arc::new(config),
        }),
        Err(problem) => {
            let (cert, key) = client_cert.unwrap_or_default();
            problems.push(key_problem(
                &format!("{path}.tls.client_key_file"),
                &format!("{path}.tls.client_cert_file"),
                (&cert, &key),
                problem,
                "",
            ));
            None
        }
    }
}

/// The CA certificates in `file`, as a trust store.
fn ca_roots(file: &Path) -> Result<rustls::RootCertStore, String> {
    let certs = tls::read_certs(file)?;
    tls::root_store(certs).map_err(|m| format!("\"{}\": {m}", file.display()))
}

/// The problem of a certificate and key that cannot be used together,
/// reported under the key's setting.
fn key_problem(
    key_setting: &str,
    cert_setting: &str,
    (cert, key): (&Path, &Path),
    problem: KeyProblem,
    from: &str,
) -> String {
    match problem {
        KeyProblem::Mismatch => format!(
            "{key_setting}: the private key in \"{}\" does not match the certificate in \"{}\" \
             ({cert_setting}){from}",
            key.display(),
            cert.display()
        ),
        KeyProblem::Unusable(why) => format!(
            "{key_setting}: cannot use the key \"{}\" with the certificate \"{}\": {why}{from}",
            key.display(),
            cert.display()
        ),
    }
}

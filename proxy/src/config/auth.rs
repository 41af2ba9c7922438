//! `admin.auth`, validated: who may call the admin API's `/v1` routes
//! (`crate::admin::auth` enforces it). Token files are read and checked at
//! start-up and re-read live; the entries themselves (paths, roles,
//! tenants, certificate names) need a restart to change.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::admin::auth::Role;

/// `admin.auth`: with neither tokens nor mTLS entries, dev mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Bearer tokens, one per file.
    pub tokens: Vec<TokenEntry>,
    /// Verified client certificates (admin.tls.client_ca_file) mapped to roles.
    pub mtls: Vec<MtlsEntry>,
}

impl AuthConfig {
    /// No credential is configured: callers are not checked, they have
    /// the `ingest` role, and operator actions are refused. Allowed only on
    /// a loopback `admin.listen` ([`dev_mode_problem`]).
    pub fn is_dev_mode(&self) -> bool {
        self.tokens.is_empty() && self.mtls.is_empty()
    }
}

/// One of `admin.auth.tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Holds the token (and at most one trailing newline); re-read when it
    /// changes.
    pub file: PathBuf,
    pub role: Role,
    /// `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

/// One of `admin.auth.mtls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsEntry {
    /// The name the verified client certificate must carry (exact match).
    pub name: CertName,
    pub role: Role,
    /// `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

/// Which of a client certificate's names an `admin.auth.mtls` entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertName {
    /// A `uniformResourceIdentifier` SAN, e.g. a SPIFFE ID.
    UriSan(String),
    /// A `dNSName` SAN.
    DnsSan(String),
    /// The subject as RFC 4514 text, as [`crate::peer::PeerCert`] renders it
    /// (`CN=auditor, O=acme`).
    Subject(String),
}

impl std::fmt::Display for CertName {
    /// As the config file writes it: `uri_san:…`, `dns_san:…`, `subject:…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertName::UriSan(name) => write!(f, "uri_san:{name}"),
            CertName::DnsSan(name) => write!(f, "dns_san:{name}"),
            CertName::Subject(name) => write!(f, "subject:{name}"),
        }
    }
}

/// Why `listen` may not serve without credentials, if it may not: dev mode
/// (no `admin.auth`) only on loopback. Checked with the configuration and
/// again at start-up.
pub fn dev_mode_problem(listen: SocketAddr, auth: &AuthConfig) -> Option<String> {
    if !auth.is_dev_mode() || listen.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "admin.listen: {listen} is not a loopback address and admin.auth configures no \
         credential, so anyone who reaches it could append events: configure \
         admin.auth.tokens or admin.auth.mtls, or listen on loopback (admin.metrics_listen \
         can serve /healthz, /readyz and /metrics on any address)"
    ))
}

//! The config file as serde reads it: every field optional (a missing one falls
//! through to the environment, the flags and the defaults), unknown keys
//! rejected so a typo is an error rather than a silently ignored setting.
//!
//! Values that need checking (addresses, enums, ranges) stay raw here; they are
//! validated in `layers.rs`, where every problem is collected at once.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// The whole config file; an empty file (or one holding only comments) is all
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<RawAdmin>,
    pub forward: Option<RawForward>,
    pub ledger: Option<RawLedger>,
    pub log: Option<RawLog>,
    pub manifest: Option<RawManifest>,
    pub mcp: Option<RawMcp>,
    pub ready_file: Option<PathBuf>,
}

/// `admin:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub max_connections: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub list_limit_default: Option<u64>,
    pub list_limit_max: Option<u64>,
    pub tls: Option<super::RawServerTls>,
    pub metrics_listen: Option<String>,
    pub auth: Option<RawAdminAuth>,
}

/// `admin.auth:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminAuth {
    pub tokens: Option<Vec<RawAdminToken>>,
    pub mtls: Option<Vec<RawAdminMtls>>,
}

/// One entry of `admin.auth.tokens`; `file` and `role` are required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminToken {
    pub file: Option<PathBuf>,
    pub role: Option<String>,
    pub tenants: Option<Vec<String>>,
}

/// One entry of `admin.auth.mtls`: exactly one of the names, and a role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminMtls {
    pub uri_san: Option<String>,
    pub dns_san: Option<String>,
    pub subject: Option<String>,
    pub role: Option<String>,
    pub tenants: Option<Vec<String>>,
}

/// `forward:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub listen: Option<String>,
    pub allowed_ports: Option<Vec<u64>>,
    pub idle_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub results_taint: Option<bool>,
    pub dns_overrides: Option<std::collections::BTreeMap<String, String>>,
}

/// `ledger:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    pub path: Option<PathBuf>,
    pub synchronous: Option<String>,
    pub queue_capacity: Option<u64>,
    pub max_batch: Option<u64>,
    pub checkpoint_pages: Option<u64>,
    pub fail_open: Option<bool>,
    pub result_commit: Option<String>,
}

/// `log:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// `manifest:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub path: Option<PathBuf>,
}

/// `mcp:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    pub listen: Option<String>,
    pub default_upstream: Option<String>,
    pub enforce: Option<bool>,
    pub session_idle_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub upstreams: Option<Vec<RawUpstream>>,
    pub identity: Option<RawIdentity>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub limits: Option<RawMcpLimits>,
    pub results: Option<RawResults>,
    pub tls: Option<super::RawServerTls>,
}

/// One entry of `mcp.upstreams`; `name` and `url` are required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub url: String,
    pub timeout_ms: Option<u64>,
    pub headers: Option<Vec<RawHeader>>,
    /// Only for `https://` URLs.
    pub tls: Option<super::RawUpstreamTls>,
}

/// One entry of `mcp.upstreams[].headers`: a name and where its value is read
/// from, exactly one of an environment variable or a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: String,
    pub value_from_env: Option<String>,
    pub value_from_file: Option<PathBuf>,
    /// An inline `value:` is accepted by the parser only to be refused with a
    /// clear problem; its contents (a secret) are never kept.
    pub value: Option<InlineValue>,
}

/// An inline header value in the file: present, contents discarded unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineValue;

impl<'de> Deserialize<'de> for InlineValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| InlineValue)
    }
}

/// `mcp.identity:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub principal: Option<String>,
    pub session_scope: Option<String>,
    pub session_header: Option<String>,
    pub trust_headers: Option<bool>,
    pub tenant_header: Option<String>,
    pub user_header: Option<String>,
    pub mtls: Option<RawMtls>,
    pub jwt: Option<RawJwt>,
    /// Removed (the session is the principal's): accepted by the parser only
    /// to be refused with a problem naming what replaces it.
    pub default_session: Option<InlineValue>,
}

/// `mcp.identity.mtls:` in the config file (`{}` for the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    pub san: Option<String>,
}

/// `mcp.identity.jwt:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub header: Option<String>,
    pub forward: Option<bool>,
    pub leeway_s: Option<u64>,
    pub claims: Option<RawJwtClaims>,
}

/// `mcp.identity.jwt.claims:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtClaims {
    pub principal: Option<String>,
    pub tenant: Option<String>,
    pub user: Option<String>,
}

/// `mcp.limits:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpLimits {
    pub max_body_bytes: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub result_capture_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
}

/// `mcp.results:` in the config file: what `TOOL_RESULT` keeps of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResults {
    pub keep: Option<String>,
    /// Tool name → `full` | `hash` | `redact`.
    pub tools: Option<std::collections::BTreeMap<String, String>>,
    pub redact_patterns: Option<Vec<String>>,
}

impl RawConfig {
    /// Parses YAML text. The error is one line and names the line and column
    /// (and, for an unknown key, the key and the keys allowed there).
    pub fn from_yaml(text: &str) -> Result<RawConfig, String> {
        serde_saphyr::from_str(text).map_err(|err| err.without_snippet().to_string())
    }
}

/// Reads and parses the config file at `path`. The error says what went wrong,
/// without the path (the caller adds it).
pub(super) fn read_file(path: &Path) -> Result<RawConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read: {err}"))?;
    RawConfig::from_yaml(&text)
}

//! The config file as serde reads it: every field optional (a missing one falls
//! through to the environment, the flags and the defaults), unknown keys
//! rejected so a typo is an error rather than a silently ignored setting.
//!
//! Values that need checking (addresses, enums, ranges) stay raw here; they are
//! validated in `layers.rs`, where every problem is collected at once.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole config file; an empty file (or one holding only comments) is all
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<RawAdmin>,
    pub ledger: Option<RawLedger>,
    pub log: Option<RawLog>,
    pub manifest: Option<RawManifest>,
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
}

/// `ledger:` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    pub path: Option<PathBuf>,
    pub synchronous: Option<String>,
    pub queue_capacity: Option<u64>,
    pub max_batch: Option<u64>,
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

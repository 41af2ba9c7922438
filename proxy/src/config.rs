//! Start-up configuration: what the sidecar listens on, which MCP servers it
//! proxies, where the ledger lives, how it logs.
//!
//! Three layers, later ones winning: the YAML file (`--config FILE` or
//! `AEGIS_CONFIG`) < `AEGIS_*` environment variables < `run` flags. Loading has
//! three stages: the file is parsed into a YAML tree ([`RawConfig`], `file`)
//! and walked against the setting declarations, collecting every problem of
//! its shape (unknown keys, wrong types, duplicates) with its path and line;
//! then [`Config::from_layers`] lays the environment and flags on top
//! (`layers`), fills in the defaults and validates, reporting every problem of
//! every layer at once in one [`ConfigError`].
//!
//! Every setting is declared once, in `settings` ([`settings::Setting`]: its
//! path, environment variable, flag, default, doc and kind); the walk, the
//! layering and the README's configuration table (checked by a test) all
//! follow the declarations. To add a setting:
//!
//! 1. declare it in the `settings` submodule of its section, next to its
//!    `ENV_*` and typed `DEFAULT_*` constants (with the reason for the
//!    default), and list it in that module's `SETTINGS`;
//! 2. for a flag, add the field to [`crate::cli::RunFlags`] and name it in the
//!    declaration (`.flag("--name", |f| text(&f.name))`);
//! 3. add its field to the validated type here (or in `mcp.rs`, `forward.rs`)
//!    and read it in `layers` with one `c.get(&settings::NAME, DEFAULT_NAME,
//!    check)`;
//! 4. add its row to the README's configuration table and to
//!    `configs/aegis.yaml`; the tests say what is missing.
//!
//! Nothing here reloads: changing any of these needs a restart. Only the
//! capability manifest's *contents* reload live (`manifest.path` names the
//! file; see `aegis_policy::store`), and so do the admin token files'
//! (`admin.auth.tokens[].file`; see `crate::admin::tokens`).

mod auth;
mod env;
mod file;
mod forward;
mod layers;
mod mcp;
mod raw;
pub mod settings;
#[cfg(test)]
mod tests;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use aegis_ledger::{LedgerConfig, Synchronous};

use crate::cli::RunFlags;

pub use auth::{AuthConfig, CertName, MtlsEntry, Role, TokenEntry, dev_mode_problem};
pub use env::{Env, ProcessEnv};
pub use forward::ForwardConfig;
pub use mcp::{ExtraHeader, McpConfig, SecretValue, UpstreamConfig};
pub use raw::{InlineValue, RawAdminMtls, RawAdminToken, RawConfig, RawHeader, RawUpstream};
pub use settings::*;
pub use tls::{RawUpstreamTls, ServerTls, UpstreamTls};

// ---- the config file itself -------------------------------------------------

/// The config file to read when `--config` is not given. Without either, only
/// the environment, the flags and the defaults below apply.
pub const ENV_CONFIG: &str = "AEGIS_CONFIG";

/// For the commands that call a running sidecar's admin API (`conformance
/// run --server`): the file holding the token they send, when
/// `--token-file` is not given. No default: no token is sent.
pub const ENV_ADMIN_TOKEN_FILE: &str = "AEGIS_ADMIN_TOKEN_FILE";

// ---- the validated configuration ---------------------------------------------

/// The validated configuration the sidecar runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub admin: AdminConfig,
    /// How calls that need a human's approval wait, and for how long.
    pub approval: ApprovalConfig,
    /// The egress forward proxy; its listener is off unless configured.
    pub forward: ForwardConfig,
    pub ledger: LedgerSettings,
    pub log: LogConfig,
    /// The capability manifest file; `None` when none is configured.
    pub manifest: Option<PathBuf>,
    /// The MCP reverse proxy; its listener is off without upstreams.
    pub mcp: McpConfig,
    /// Created (empty) once the sidecar is ready to serve.
    pub ready_file: Option<PathBuf>,
    /// The config file these settings were read from, if any.
    pub source: Option<PathBuf>,
}

pub use crate::gate::approval::ApprovalConfig;

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            mode: DEFAULT_APPROVAL_MODE,
            ttl: Duration::from_millis(DEFAULT_APPROVAL_TTL_MS),
            hold_timeout: Duration::from_millis(DEFAULT_APPROVAL_HOLD_TIMEOUT_MS),
            max_pending_per_session: DEFAULT_APPROVAL_MAX_PENDING_PER_SESSION,
            max_pending: DEFAULT_APPROVAL_MAX_PENDING,
            webhook_url: None,
        }
    }
}

/// The admin/API server: `/healthz`, `/readyz`, `/metrics` and the `/v1` API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Largest request body read; larger ones are refused (413).
    pub max_body_bytes: usize,
    /// Connections served at once; at the cap, the oldest connection still
    /// waiting for its first request is closed to make room, else accepting
    /// waits.
    pub max_connections: usize,
    /// Each request head must arrive within this; the first is counted
    /// from the connection's accept.
    pub header_timeout: Duration,
    /// Deadline for reading a request and answering it.
    pub request_timeout: Duration,
    /// Page size of list endpoints when the request gives none.
    pub list_limit_default: u32,
    /// Largest page size a request may ask for (larger asks are clamped).
    pub list_limit_max: u32,
    /// TLS (and mTLS) on the listener; `None`: plain HTTP.
    pub tls: Option<ServerTls>,
    /// The probes-and-scrape listener (plain HTTP; `/healthz`, `/readyz`,
    /// `/metrics` only); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Who may call the `/v1` routes; empty: dev mode.
    pub auth: AuthConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
            max_body_bytes: DEFAULT_ADMIN_MAX_BODY_BYTES,
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            header_timeout: Duration::from_millis(DEFAULT_ADMIN_HEADER_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_ADMIN_REQUEST_TIMEOUT_MS),
            list_limit_default: DEFAULT_ADMIN_LIST_LIMIT_DEFAULT,
            list_limit_max: DEFAULT_ADMIN_LIST_LIMIT_MAX,
            tls: None,
            metrics_listen: None,
            auth: AuthConfig::default(),
        }
    }
}

/// Where the ledger lives and how it commits; see [`LedgerSettings::to_ledger_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// The SQLite file; relative paths are relative to the working directory.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub queue_capacity: usize,
    pub max_batch: usize,
    /// WAL pages (4 KiB) after which a commit checkpoints the WAL into the
    /// database file.
    pub checkpoint_pages: u32,
    /// When the ledger cannot record a call: `false` refuses the call (fail
    /// closed), `true` forwards it unrecorded.
    pub fail_open: bool,
    /// When a call's result is committed: after the agent has its answer
    /// (the session's next decision waits for it), or before.
    pub result_commit: crate::gate::ResultCommit,
}

impl LedgerSettings {
    /// The settings in the form `aegis_ledger` opens a ledger with.
    pub fn to_ledger_config(&self) -> LedgerConfig {
        let mut config = LedgerConfig::new(self.path.clone());
        config.synchronous = self.synchronous;
        config.queue_capacity = self.queue_capacity;
        config.max_batch = self.max_batch;
        config.checkpoint_pages = self.checkpoint_pages;
        config
    }
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            path: PathBuf::from(DEFAULT_LEDGER_PATH),
            synchronous: DEFAULT_LEDGER_SYNCHRONOUS,
            queue_capacity: DEFAULT_LEDGER_QUEUE_CAPACITY,
            max_batch: DEFAULT_LEDGER_MAX_BATCH,
            checkpoint_pages: DEFAULT_LEDGER_CHECKPOINT_PAGES,
            fail_open: DEFAULT_LEDGER_FAIL_OPEN,
            result_commit: DEFAULT_LEDGER_RESULT_COMMIT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info,aegis_proxy=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            format: DEFAULT_LOG_FORMAT,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = String;

    /// `text` or `json`, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected \"text\" or \"json\", got {s:?}")),
        }
    }
}

/// Everything wrong with a configuration, one problem per line, each starting
/// with the setting's path (`admin.listen: ...`), the environment variable whose
/// value did not parse, or the config file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Lays `env` and `flags` over `file` (the config file's contents, or
    /// `RawConfig::default()` without one), fills in defaults and validates.
    /// `source` is the file `file` was read from, kept in [`Config::source`].
    /// `flags.config` is not read here; [`load`] handles it.
    pub fn from_layers(
        file: RawConfig,
        source: Option<PathBuf>,
        env: &dyn Env,
        flags: &RunFlags,
    ) -> Result<Config, ConfigError> {
        layers::resolve(file, source, env, flags, Vec::new())
    }
}

/// Loads the configuration for `run`: reads the file named by `--config` (else
/// `AEGIS_CONFIG`, else none), then applies the environment and the flags.
/// A file that cannot be read or parsed is reported together with every other
/// problem found in the environment and flags.
pub fn load(flags: &RunFlags, env: &dyn Env) -> Result<Config, ConfigError> {
    let source = match &flags.config {
        Some(path) => Some((path.clone(), "--config")),
        None => env::string(env, ENV_CONFIG).map(|path| (PathBuf::from(path), ENV_CONFIG)),
    };
    let mut problems = Vec::new();
    let file = match &source {
        Some((path, named_by)) => raw::read_file(path).unwrap_or_else(|message| {
            problems.push(format!(
                "config file \"{}\" (from {named_by}): {message}",
                path.display()
            ));
            RawConfig::default()
        }),
        None => RawConfig::default(),
    };
    layers::resolve(file, source.map(|(path, _)| path), env, flags, problems)
}

//! Start-up configuration: what the sidecar listens on, where the ledger lives,
//! how it logs.
//!
//! Three layers, later ones winning: the YAML file (`--config FILE` or
//! `AEGIS_CONFIG`) < `AEGIS_*` environment variables < `run` flags. Loading has
//! two stages: the file is read into [`RawConfig`] (every field optional, unknown
//! keys rejected); then [`Config::from_layers`] lays the environment and flags on
//! top, fills in the defaults below and validates, reporting every problem at once
//! in one [`ConfigError`].
//!
//! Nothing here reloads: changing any of these needs a restart. Only the
//! capability manifest's *contents* reload live (`manifest.path` names the
//! file; see `aegis_policy::store`).
//!
//! Each setting's environment variable (`ENV_*`) and default (`DEFAULT_*`) sit
//! together below, in the order of the example file `configs/aegis.yaml`.

mod env;
mod layers;
mod raw;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use aegis_ledger::{LedgerConfig, Synchronous};

use crate::cli::RunFlags;

pub use env::{Env, ProcessEnv};
pub use raw::{RawAdmin, RawConfig, RawLedger, RawLog, RawManifest};

// ---- the config file itself -------------------------------------------------

/// The config file to read when `--config` is not given. Without either, only
/// the environment, the flags and the defaults below apply.
pub const ENV_CONFIG: &str = "AEGIS_CONFIG";

// ---- admin: the admin/API server (/healthz, /readyz, /metrics, /v1) ---------

pub const ENV_ADMIN_LISTEN: &str = "AEGIS_ADMIN_LISTEN";
/// aegisd's default address, the one `AegisClient()` of the Aegis Python SDK
/// connects to; loopback, so the API is not exposed unless asked.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

pub const ENV_ADMIN_MAX_BODY_BYTES: &str = "AEGIS_ADMIN_MAX_BODY_BYTES";
/// Far above any real envelope or decide request, small enough that a full set
/// of connections cannot buffer more than a few hundred MiB.
pub const DEFAULT_ADMIN_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Upper bound on `admin.max_body_bytes`: bodies are read whole into memory,
/// so a larger limit is a memory-exhaustion setting, not a tuning one.
pub const MAX_ADMIN_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub const ENV_ADMIN_MAX_CONNECTIONS: &str = "AEGIS_ADMIN_MAX_CONNECTIONS";
/// Plenty for one agent, its SDK and a scraper; bounds tasks and memory if a
/// client leaks connections.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 256;

pub const ENV_ADMIN_REQUEST_TIMEOUT_MS: &str = "AEGIS_ADMIN_REQUEST_TIMEOUT_MS";
/// Long enough for a ledger commit under heavy load, short enough that a stuck
/// client frees its connection slot.
pub const DEFAULT_ADMIN_REQUEST_TIMEOUT_MS: u64 = 30_000;

pub const ENV_ADMIN_LIST_LIMIT_DEFAULT: &str = "AEGIS_ADMIN_LIST_LIMIT_DEFAULT";
/// Page size when a list request (`GET /v1/events`) gives no `limit`: a
/// session's recent history in one answer that still serialises in milliseconds.
pub const DEFAULT_ADMIN_LIST_LIMIT_DEFAULT: u32 = 100;

pub const ENV_ADMIN_LIST_LIMIT_MAX: &str = "AEGIS_ADMIN_LIST_LIMIT_MAX";
/// Largest page a client may ask for: bounds one response's size and the time
/// it holds a ledger read.
pub const DEFAULT_ADMIN_LIST_LIMIT_MAX: u32 = 1000;

// ---- ledger: the hash-chained SQLite ledger ---------------------------------

pub const ENV_LEDGER_PATH: &str = "AEGIS_LEDGER_PATH";
/// Next to wherever the sidecar runs (relative to the working directory), so a
/// laptop run needs no setup; a sidecar should point it at a volume.
pub const DEFAULT_LEDGER_PATH: &str = "aegis-ledger.db";

pub const ENV_LEDGER_SYNCHRONOUS: &str = "AEGIS_LEDGER_SYNCHRONOUS";
/// WAL + NORMAL survives a process crash at a fraction of FULL's fsync cost;
/// FULL (survives power loss) is one switch away.
pub const DEFAULT_LEDGER_SYNCHRONOUS: Synchronous = Synchronous::Normal;

pub const ENV_LEDGER_QUEUE_CAPACITY: &str = "AEGIS_LEDGER_QUEUE_CAPACITY";
/// The ledger's own default (`aegis_ledger`'s `DEFAULT_QUEUE_CAPACITY`, not
/// exported from the crate root yet): deep enough to fill large group commits,
/// small enough that a stalled disk pushes back within milliseconds. A unit test
/// keeps the two equal.
pub const DEFAULT_LEDGER_QUEUE_CAPACITY: usize = 4096;

pub const ENV_LEDGER_MAX_BATCH: &str = "AEGIS_LEDGER_MAX_BATCH";
/// The ledger's own default (`DEFAULT_MAX_BATCH`): bounds one transaction's
/// latency and memory. A unit test keeps the two equal.
pub const DEFAULT_LEDGER_MAX_BATCH: usize = 1024;

// ---- log ----------------------------------------------------------------------

pub const ENV_LOG_LEVEL: &str = "AEGIS_LOG_LEVEL";
/// Start-up, reloads and denials without per-request noise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

pub const ENV_LOG_FORMAT: &str = "AEGIS_LOG_FORMAT";
/// Readable in a terminal; log collectors should ask for `json`.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

// ---- manifest: the capability manifest, reloaded live ----------------------

/// The agent's capability manifest (JSON or YAML). No default: without one,
/// every decision fails closed with `MANIFEST_UNAVAILABLE`. The file (not
/// this setting) reloads live: the directory is watched, and SIGHUP and
/// `POST /v1/manifest/reload` reload it too.
pub const ENV_MANIFEST: &str = "AEGIS_MANIFEST";

// ---- ready_file ---------------------------------------------------------------

/// A file created once the sidecar is ready (no default: none is written), for
/// scripts and init containers that cannot poll `/readyz`.
pub const ENV_READY_FILE: &str = "AEGIS_READY_FILE";

// ---- the validated configuration ---------------------------------------------

/// The validated configuration the sidecar runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub admin: AdminConfig,
    pub ledger: LedgerSettings,
    pub log: LogConfig,
    /// The capability manifest file; `None` when none is configured.
    pub manifest: Option<PathBuf>,
    /// Created (empty) once the sidecar is ready to serve.
    pub ready_file: Option<PathBuf>,
    /// The config file these settings were read from, if any.
    pub source: Option<PathBuf>,
}

/// The admin/API server: `/healthz`, `/readyz`, `/metrics` and the `/v1` API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Largest request body read; larger ones are refused (413).
    pub max_body_bytes: usize,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Deadline for reading a request and answering it.
    pub request_timeout: Duration,
    /// Page size of list endpoints when the request gives none.
    pub list_limit_default: u32,
    /// Largest page size a request may ask for (larger asks are clamped).
    pub list_limit_max: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
            max_body_bytes: DEFAULT_ADMIN_MAX_BODY_BYTES,
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            request_timeout: Duration::from_millis(DEFAULT_ADMIN_REQUEST_TIMEOUT_MS),
            list_limit_default: DEFAULT_ADMIN_LIST_LIMIT_DEFAULT,
            list_limit_max: DEFAULT_ADMIN_LIST_LIMIT_MAX,
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
}

impl LedgerSettings {
    /// The settings in the form `aegis_ledger` opens a ledger with.
    pub fn to_ledger_config(&self) -> LedgerConfig {
        let mut config = LedgerConfig::new(self.path.clone());
        config.synchronous = self.synchronous;
        config.queue_capacity = self.queue_capacity;
        config.max_batch = self.max_batch;
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

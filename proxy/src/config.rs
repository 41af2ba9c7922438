//! Start-up configuration: what the sidecar listens on, which MCP servers it
//! proxies, where the ledger lives, how it logs.
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
//! file; see `aegis_policy::store`), and so do the admin token files'
//! (`admin.auth.tokens[].file`; see `crate::admin::tokens`).
//!
//! Each setting's environment variable (`ENV_*`) and default (`DEFAULT_*`) sit
//! together below, in the order of the example file `configs/aegis.yaml`.

mod auth;
mod env;
mod forward;
mod layers;
mod mcp;
mod raw;
#[cfg(test)]
mod tests;
mod tls;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use aegis_ledger::{LedgerConfig, Synchronous};

use crate::cli::RunFlags;
use crate::identity::{SanKind, SessionScope};

pub use auth::{AuthConfig, CertName, MtlsEntry, Role, TokenEntry, dev_mode_problem};
pub use env::{Env, ProcessEnv};
pub use forward::*;
pub use mcp::{ExtraHeader, McpConfig, SecretValue, UpstreamConfig};
pub use raw::{
    InlineValue, RawAdmin, RawAdminAuth, RawAdminMtls, RawAdminToken, RawConfig, RawForward,
    RawHeader, RawIdentity, RawJwt, RawJwtClaims, RawLedger, RawLog, RawManifest, RawMcp,
    RawMcpLimits, RawMtls, RawResults, RawUpstream,
};
pub use tls::{RawServerTls, RawUpstreamTls, ServerTls, UpstreamTls};

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

// admin.tls: TLS on the admin listener when a certificate and key are given
// (no default: plain HTTP on loopback); mTLS when a client CA is given too.
pub const ENV_ADMIN_TLS_CERT: &str = "AEGIS_ADMIN_TLS_CERT";
pub const ENV_ADMIN_TLS_KEY: &str = "AEGIS_ADMIN_TLS_KEY";
pub const ENV_ADMIN_TLS_CLIENT_CA: &str = "AEGIS_ADMIN_TLS_CLIENT_CA";

/// A second, plain-HTTP listener serving only `/healthz`, `/readyz` and
/// `/metrics` (every other path 404s there), for the kubelet and
/// Prometheus. No default: off, so nothing listens beyond `admin.listen`
/// unless asked.
pub const ENV_ADMIN_METRICS_LISTEN: &str = "AEGIS_ADMIN_METRICS_LISTEN";

/// For the commands that call a running sidecar's admin API (`conformance
/// run --server`): the file holding the token they send, when
/// `--token-file` is not given. No default: no token is sent.
pub const ENV_ADMIN_TOKEN_FILE: &str = "AEGIS_ADMIN_TOKEN_FILE";

// admin.auth: bearer tokens (one per file) and mTLS client certificates,
// each with a role (reader < ingest < operator) and optionally tenants. No
// default: without any, dev mode (loopback admin.listen only). File only:
// no environment variable or flag.

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

pub const ENV_LEDGER_CHECKPOINT_PAGES: &str = "AEGIS_LEDGER_CHECKPOINT_PAGES";
/// The ledger's own default (`DEFAULT_CHECKPOINT_PAGES`): a WAL of up to
/// 32 MiB, checkpointed by the commit that fills it. A unit test keeps the
/// two equal.
pub const DEFAULT_LEDGER_CHECKPOINT_PAGES: u32 = 8192;

pub const ENV_LEDGER_FAIL_OPEN: &str = "AEGIS_LEDGER_FAIL_OPEN";
pub const ENV_LEDGER_RESULT_COMMIT: &str = "AEGIS_LEDGER_RESULT_COMMIT";
/// Fail closed: a call the ledger cannot record is refused, since an
/// unrecorded call is exactly what the sidecar exists to prevent.
pub const DEFAULT_LEDGER_FAIL_OPEN: bool = false;
pub const DEFAULT_LEDGER_RESULT_COMMIT: crate::gate::ResultCommit =
    crate::gate::ResultCommit::AfterAnswer;

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

// ---- mcp: the MCP reverse proxy ---------------------------------------------

pub const ENV_MCP_LISTEN: &str = "AEGIS_MCP_LISTEN";
/// Next to the admin port and on loopback, so only the agent on the same host
/// or pod reaches it unless asked. Used only when an upstream is configured.
pub const DEFAULT_MCP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081));

pub const ENV_MCP_DEFAULT_UPSTREAM: &str = "AEGIS_MCP_DEFAULT_UPSTREAM";

pub const ENV_MCP_ENFORCE: &str = "AEGIS_MCP_ENFORCE";
/// Enforcing is the point of the sidecar; shadow mode (`false`) is the opt-in
/// way to watch what a manifest would do before trusting it.
pub const DEFAULT_MCP_ENFORCE: bool = true;

// mcp.tls: TLS on the MCP listener when a certificate and key are given (no
// default: plain HTTP on loopback); mTLS when a client CA is given too.
pub const ENV_MCP_TLS_CERT: &str = "AEGIS_MCP_TLS_CERT";
pub const ENV_MCP_TLS_KEY: &str = "AEGIS_MCP_TLS_KEY";
pub const ENV_MCP_TLS_CLIENT_CA: &str = "AEGIS_MCP_TLS_CLIENT_CA";

pub const ENV_MCP_SESSION_IDLE_MS: &str = "AEGIS_MCP_SESSION_IDLE_MS";
/// Long enough that an agent thinking between calls keeps its session warm,
/// short enough that abandoned sessions do not pile up in memory (they are
/// rebuilt from the ledger if they come back).
pub const DEFAULT_MCP_SESSION_IDLE_MS: u64 = 10 * 60 * 1000;

pub const ENV_SHUTDOWN_GRACE_MS: &str = "AEGIS_SHUTDOWN_GRACE_MS";
/// Lets a typical tool call finish after SIGTERM while staying well inside
/// Kubernetes' default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

/// `name=url` pairs separated by commas (so a URL here cannot hold a comma);
/// each replaces the file's upstream of the same name or adds one.
pub const ENV_MCP_UPSTREAMS: &str = "AEGIS_MCP_UPSTREAMS";
/// An upstream name is a URL path segment (`/mcp/{name}`) and a metric label:
/// a DNS label's length is plenty.
pub const MAX_UPSTREAM_NAME_LEN: usize = 63;
/// A tool server sends its response headers within seconds even when the
/// result streams for longer; a dead one frees the call within half a minute.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 30_000;
/// Headers the proxy sets or strips itself (hop-by-hop, framing, MCP's own
/// session and resumption headers), so `mcp.upstreams[].headers` may not name
/// them; nor any `proxy-*` header.
pub const PROXY_MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

// mcp.identity: who a request acts for (`crate::identity`), on the MCP
// listener and the egress proxy alike. The defaults below equal
// `IdentityConfig::default()`; a unit test keeps them so.

pub const ENV_TENANT_ID: &str = "AEGIS_TENANT_ID";
/// The tenant of every request unless a JWT claim or a trusted header names
/// one; a single-tenant laptop run needs no setting.
pub const DEFAULT_TENANT_ID: &str = "default";

pub const ENV_USER_ID: &str = "AEGIS_USER_ID";
/// No user unless configured: the ledger's `user_id` is optional.
pub const DEFAULT_USER_ID: &str = "";

pub const ENV_PRINCIPAL: &str = "AEGIS_PRINCIPAL";
/// The agent when neither mTLS nor a JWT names it: one agent per pod, so
/// every call of the process is one principal's (and, by default, one
/// session's, as the old default session was).
pub const DEFAULT_PRINCIPAL: &str = "default";

pub const ENV_SESSION_SCOPE: &str = "AEGIS_SESSION_SCOPE";
/// One session per principal: an agent cannot reset its own budget, taint
/// or loop history by naming a new session.
pub const DEFAULT_SESSION_SCOPE: SessionScope = SessionScope::Principal;

/// Names the session under `session_scope: client` only, before MCP's
/// `Mcp-Session-Id`. (No environment variable: the file only.)
pub const DEFAULT_MCP_SESSION_HEADER: &str = "x-aegis-session-id";
/// Read only when `mcp.identity.trust_headers` is true.
pub const DEFAULT_MCP_TENANT_HEADER: &str = "x-aegis-tenant-id";
/// Read only when `mcp.identity.trust_headers` is true.
pub const DEFAULT_MCP_USER_HEADER: &str = "x-aegis-user-id";

pub const ENV_MCP_TRUST_IDENTITY_HEADERS: &str = "AEGIS_MCP_TRUST_IDENTITY_HEADERS";
/// One agent per pod: tenant and user come from configuration, so an agent
/// cannot pick another tenant's budget by sending a header.
pub const DEFAULT_MCP_TRUST_IDENTITY_HEADERS: bool = false;

/// Removed with `mcp.identity.default_session` (the session is the
/// principal's now): still set, it is a start-up problem naming what
/// replaces it, rather than silently meaning nothing.
pub const REMOVED_ENV_MCP_DEFAULT_SESSION: &str = "AEGIS_MCP_DEFAULT_SESSION";

// mcp.identity.mtls and mcp.identity.jwt: file only, off by default.

/// A SPIFFE ID, the usual workload identity in a certificate, is a URI SAN.
pub const DEFAULT_MTLS_SAN: SanKind = SanKind::Uri;
/// Where MCP clients put a bearer token (RFC 6750 §2.1).
pub const DEFAULT_JWT_HEADER: &str = "authorization";
/// MCP forbids passing a client's token through to the server it calls.
pub const DEFAULT_JWT_FORWARD: bool = false;
/// Covers ordinary clock skew between the issuer and the pod.
pub const DEFAULT_JWT_LEEWAY_S: u64 = 60;
/// Beyond this the leeway stops being skew and becomes a longer token life.
pub const MAX_JWT_LEEWAY_S: u64 = 600;
/// The subject: what OIDC issuers and Kubernetes service-account tokens
/// name the workload with.
pub const DEFAULT_JWT_PRINCIPAL_CLAIM: &str = "sub";

// mcp.allowed_hosts / mcp.allowed_origins: the front door (DNS rebinding).

/// Comma-separated `host` or `host:port` entries; replaces the file's list.
pub const ENV_MCP_ALLOWED_HOSTS: &str = "AEGIS_MCP_ALLOWED_HOSTS";
/// Comma-separated origins (`scheme://host[:port]`); replaces the file's list.
pub const ENV_MCP_ALLOWED_ORIGINS: &str = "AEGIS_MCP_ALLOWED_ORIGINS";

// mcp.limits: bounds on what one agent can make the proxy hold.

pub const ENV_MCP_MAX_BODY_BYTES: &str = "AEGIS_MCP_MAX_BODY_BYTES";
/// Far above any real JSON-RPC request (tool arguments included); bodies are
/// read whole to be decided, so this bounds memory per request.
pub const DEFAULT_MCP_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound on `mcp.limits.max_body_bytes`: beyond it the limit stops
/// protecting memory.
pub const MAX_MCP_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub const ENV_MCP_MAX_CONNECTIONS: &str = "AEGIS_MCP_MAX_CONNECTIONS";
/// Several agents with SSE streams open each; bounds tasks and sockets if a
/// client leaks connections.
pub const DEFAULT_MCP_MAX_CONNECTIONS: usize = 1024;

pub const ENV_MCP_MAX_IN_FLIGHT: &str = "AEGIS_MCP_MAX_IN_FLIGHT";
/// Requests handled at once (more are answered 503): far above one agent's
/// parallel tool calls, low enough that held bodies stay bounded.
pub const DEFAULT_MCP_MAX_IN_FLIGHT: usize = 256;

pub const ENV_MCP_RESULT_CAPTURE_BYTES: &str = "AEGIS_MCP_RESULT_CAPTURE_BYTES";
/// How much of a tool result `TOOL_RESULT` keeps (its size and SHA-256 are
/// always of the whole): enough to read what a tool said without the ledger
/// growing by every file a tool returns.
pub const DEFAULT_MCP_RESULT_CAPTURE_BYTES: usize = 64 * 1024;

pub const ENV_MCP_MAX_RESPONSE_BYTES: &str = "AEGIS_MCP_MAX_RESPONSE_BYTES";
/// Largest single JSON answer or SSE event held to inspect (`tools/list`
/// filtering, tool results): big tool listings and results fit.
pub const DEFAULT_MCP_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Upper bound on `mcp.limits.max_response_bytes`, for memory's sake.
pub const MAX_MCP_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

// mcp.results: what TOOL_RESULT keeps of a result (`crate::results`).

pub const ENV_MCP_RESULTS_KEEP: &str = "AEGIS_MCP_RESULTS_KEEP";
/// `full`, as before the setting existed: an auditor reads what a tool said.
/// Deployments whose tools return secrets choose `hash` or `redact`, for
/// every tool or per tool (`mcp.results.tools`, the file only).
pub const DEFAULT_MCP_RESULTS_KEEP: crate::results::Keep = crate::results::Keep::Full;
// mcp.results.redact_patterns: the file only; the default is
// `crate::results::DEFAULT_REDACT_PATTERNS`.

// ---- ready_file ---------------------------------------------------------------

/// A file created once the sidecar is ready (no default: none is written), for
/// scripts and init containers that cannot poll `/readyz`.
pub const ENV_READY_FILE: &str = "AEGIS_READY_FILE";

// ---- the validated configuration ---------------------------------------------

/// The validated configuration the sidecar runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub admin: AdminConfig,
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

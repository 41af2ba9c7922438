//! The `aegis-proxy` command line: argument definitions only. The commands are
//! carried out elsewhere; `run`'s flags are validated together with the config
//! file and the environment in [`crate::config`], so they stay raw strings here
//! and every problem is reported at once.
//!
//! Usage errors exit with status 2 (clap's default).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The Aegis security sidecar.
///
/// aegis-proxy stands between an AI agent and its tools: it decides each tool
/// call against the agent's capability manifest and records every step in a
/// hash-chained ledger before anything is forwarded.
#[derive(Debug, Clone, Parser)]
#[command(name = "aegis-proxy", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing `RunFlags` would buy nothing"
)]
pub enum Command {
    /// Run the sidecar.
    ///
    /// Settings come from the config file, then `AEGIS_*` environment variables,
    /// then these flags, each overriding the one before; see configs/aegis.yaml.
    Run(RunFlags),
    /// Verify a ledger offline.
    ///
    /// Recomputes every envelope hash and checks each chain, for the whole
    /// ledger or only one tenant or session. Opens the file read-only (verify
    /// a copy: the stopped sidecar's file, or `ledger.db` with its `-wal`).
    /// Exit status: 0 every chain verifies; 1 a chain does not, or nothing
    /// matches --tenant/--session; 2 usage error or unreadable file.
    Verify(VerifyArgs),
    /// Work with the events recorded in a ledger.
    Events(EventsArgs),
    /// Work with capability manifests.
    Manifest(ManifestArgs),
    /// Decide one proposed tool call offline, as `POST /v1/policy/decide` would.
    ///
    /// Prints the Aegis answer `{outcome, reason, constraints}` as JSON.
    /// Exit status: 0 a decision was made (whatever it is); 2 an input file
    /// cannot be read or is invalid.
    Decide(DecideArgs),
    /// Run the Aegis conformance packs.
    Conformance(ConformanceArgs),
    /// See and decide the approvals a running sidecar holds calls for.
    ///
    /// Talks to the sidecar's admin API (`/v1/approvals`) with an operator
    /// token. Exit status: 0 done; 1 the sidecar refused (the approval is
    /// unknown, closed, or already has this identity's vote; the token
    /// lacks the role); 2 usage error or no answer.
    Approvals(ApprovalsArgs),
    /// See the sidecar enforce tool calls end to end, with nothing to install.
    ///
    /// Starts the demo MCP tool server and the sidecar in front of it (a
    /// SQLite ledger and the demo manifest in a fresh directory), has a
    /// scripted agent make allowed, undeclared, tainted and over-budget
    /// calls through it, and verifies the session's hash chain.
    /// Exit status: 0 everything went as the manifest says; 1 it did not.
    Demo(DemoArgs),
}

/// Arguments of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Directory for the ledger, manifest and tool sandbox
    /// [default: a new directory under the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Address of the sidecar's MCP listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Address of the admin/API server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub admin_listen: std::net::SocketAddr,
    /// Have the tool server answer in SSE streams instead of JSON.
    #[arg(long)]
    pub sse: bool,
    /// Keep everything running after the script, for your own MCP client.
    #[arg(long)]
    pub keep_running: bool,
}

/// Flags of `run`. Each overrides the config file and the environment; all are
/// checked when the configuration is loaded. Each is named, with the field it
/// reads, in its setting's declaration (`crate::config::settings`); a test
/// checks that every flag here is declared and that its help names the
/// setting's environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Config file (YAML) [env: AEGIS_CONFIG]; without one, only the environment,
    /// the flags and the built-in defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the admin/API server (/healthz, /readyz, /metrics, /v1)
    /// [env: AEGIS_ADMIN_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// aegisd's `--addr`: refused, naming `--admin-listen` (kept so the
    /// message can say so, rather than clap's "unexpected argument").
    #[arg(long, value_name = "ADDR", hide = true)]
    pub addr: Option<String>,
    /// Address of a second, plain-HTTP listener serving only /healthz,
    /// /readyz and /metrics, for the kubelet and Prometheus
    /// [env: AEGIS_ADMIN_METRICS_LISTEN] [default: none, no listener].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Ledger database file [env: AEGIS_LEDGER_PATH] [default: aegis-ledger.db].
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// How hard each ledger commit syncs: `normal` survives a process crash,
    /// `full` survives power loss [env: AEGIS_LEDGER_SYNCHRONOUS] [default: normal].
    #[arg(long, value_name = "normal|full")]
    pub ledger_synchronous: Option<String>,
    /// File to create once the sidecar is ready to serve [env: AEGIS_READY_FILE].
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Log filter, e.g. `info` or `info,aegis_proxy=debug`
    /// [env: AEGIS_LOG_LEVEL] [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log line format [env: AEGIS_LOG_FORMAT] [default: text].
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,
    /// Capability manifest (JSON or YAML), reloaded live when it changes
    /// [env: AEGIS_MANIFEST]; without one, decisions fail closed.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Address of the MCP listener [env: AEGIS_MCP_LISTEN] [default:
    /// 127.0.0.1:8081 when an upstream is configured; no listener without one].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// An MCP server to proxy, served at /mcp/NAME (repeatable); replaces a
    /// configured upstream of the same name whole
    /// [env: AEGIS_MCP_UPSTREAMS, as NAME=URL,NAME=URL].
    #[arg(long = "upstream", value_name = "NAME=URL")]
    pub upstream: Vec<String>,
    /// Upstream also served at /mcp [env: AEGIS_MCP_DEFAULT_UPSTREAM]
    /// [default: the only upstream, when there is exactly one].
    #[arg(long, value_name = "NAME")]
    pub default_upstream: Option<String>,
    /// `false` is shadow mode: decisions are recorded, calls are forwarded
    /// anyway [env: AEGIS_MCP_ENFORCE] [default: true].
    #[arg(long, value_name = "true|false")]
    pub enforce: Option<String>,
    /// Forward calls the ledger cannot record instead of refusing them
    /// [env: AEGIS_LEDGER_FAIL_OPEN].
    #[arg(long)]
    pub fail_open: bool,
    /// On SIGTERM, how long in-flight calls may finish, in milliseconds
    /// [env: AEGIS_SHUTDOWN_GRACE_MS] [default: 10000].
    #[arg(long, value_name = "MS")]
    pub shutdown_grace_ms: Option<String>,
    /// On SIGTERM, how long the MCP and forward listeners keep accepting
    /// before they stop, readiness already false; a second signal ends it
    /// [env: AEGIS_DRAIN_DELAY_MS] [default: 0].
    #[arg(long, value_name = "MS")]
    pub drain_delay_ms: Option<String>,
    /// Certificate chain (PEM, leaf first) the MCP listener serves TLS with;
    /// needs --tls-key [env: AEGIS_MCP_TLS_CERT] [default: plain HTTP].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert [env: AEGIS_MCP_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that MCP clients' certificates must chain to: mTLS
    /// [env: AEGIS_MCP_TLS_CLIENT_CA].
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Certificate chain (PEM) the admin listener serves TLS with; needs
    /// --admin-tls-key [env: AEGIS_ADMIN_TLS_CERT] [default: plain HTTP].
    #[arg(long, value_name = "FILE")]
    pub admin_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --admin-tls-cert [env: AEGIS_ADMIN_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    pub admin_tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that admin clients' certificates must chain to: mTLS
    /// [env: AEGIS_ADMIN_TLS_CLIENT_CA].
    #[arg(long, value_name = "FILE")]
    pub admin_tls_client_ca: Option<PathBuf>,
    /// Address of the egress forward proxy, for the agent's HTTP_PROXY and
    /// HTTPS_PROXY [env: AEGIS_FORWARD_LISTEN] [default: none, no listener].
    #[arg(long, value_name = "ADDR")]
    pub forward_listen: Option<String>,
}

/// Arguments of `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Ledger database file to verify.
    #[arg(long, value_name = "PATH")]
    pub ledger: PathBuf,
    /// Verify only this tenant's chains.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Verify only this session's chain (needs --tenant).
    #[arg(long, value_name = "SESSION", requires = "tenant")]
    pub session: Option<String>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Write one session's envelopes to stdout as NDJSON, in chain order, in
    /// the API's wire form (hashes as hex). Exit status 1 when the session has
    /// no envelopes, 2 when the ledger cannot be read.
    Export(ExportArgs),
}

/// Arguments of `events export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Ledger database file to read.
    #[arg(long, value_name = "PATH")]
    pub ledger: PathBuf,
    /// Tenant of the session.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,
    /// Session to export.
    #[arg(long, value_name = "SESSION")]
    pub session: String,
}

/// Arguments of `manifest`.
#[derive(Debug, Clone, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ManifestCommand {
    /// Check a manifest file (JSON or YAML) and report every problem, one
    /// `path: message` per line. Exit status: 0 valid; 1 invalid; 2 the file
    /// cannot be read.
    Validate(ValidateArgs),
}

/// Arguments of `manifest validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Manifest file (JSON or YAML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Arguments of `decide`.
#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// Capability manifest (JSON or YAML).
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The event, as JSON: `{event_type, payload}`.
    #[arg(long, value_name = "FILE")]
    pub event: PathBuf,
    /// The session snapshot, as JSON (`steps_consumed`, `is_tainted`...);
    /// without one, a fresh session.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
}

/// Arguments of `conformance`.
#[derive(Debug, Clone, Args)]
pub struct ConformanceArgs {
    #[command(subcommand)]
    pub command: ConformanceCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConformanceCommand {
    /// Run pack files against the in-process engine and print a table per
    /// pack. Exit status: 0 every test passes; 1 a test fails; 2 a pack cannot
    /// be read or parsed.
    Run(ConformanceRunArgs),
}

/// Arguments of `conformance run`.
#[derive(Debug, Clone, Args)]
pub struct ConformanceRunArgs {
    /// Pack YAML files, or directories whose `*.yaml` / `*.yml` files are
    /// packs (run in name order).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Print every result as one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Ask a running server's `POST /v1/policy/decide` instead of the
    /// in-process engine, e.g. `http://127.0.0.1:8080` (an aegis-proxy, or
    /// any server of the Aegis decide API).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// File holding the admin API token sent to --server (as
    /// `Authorization: Bearer`; one trailing newline dropped)
    /// [env: AEGIS_ADMIN_TOKEN_FILE]; needs a token of role ingest.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub token_file: Option<PathBuf>,
}

/// Arguments of `approvals`.
#[derive(Debug, Clone, Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub command: ApprovalsCommand,
    /// The sidecar's admin API [env: AEGIS_ADMIN_URL].
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// File holding an operator token (one trailing newline dropped)
    /// [env: AEGIS_ADMIN_TOKEN_FILE].
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals, oldest request first (every page).
    List {
        /// pending, approved, denied, expired or consumed (as recorded).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Needs --tenant.
        #[arg(long)]
        session: Option<String>,
    },
    /// Show one approval: the call, its arguments, the votes.
    Show { id: String },
    /// Approve: records your vote (your token's identity) in the session's chain.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deny: records your vote; the call is not run.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Print each new pending approval as it is requested, until stopped.
    Watch {
        #[arg(long)]
        tenant: Option<String>,
        /// How often to ask, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        interval_ms: u64,
        /// Stop after this many approvals were printed.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[cfg(test)]
mod tests;

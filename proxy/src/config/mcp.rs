//! The validated `mcp:` settings: the MCP reverse proxy's listener, the
//! upstream MCP servers it forwards to, identity, limits and enforcement.
//!
//! Upstream header values are secrets (tokens, API keys). They are read only
//! from the environment or a file, held as [`SecretValue`], and never printed:
//! `Debug` shows `<redacted>` and config problems never quote them.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::settings::{
    DEFAULT_DRAIN_DELAY_MS, DEFAULT_MCP_ENFORCE, DEFAULT_MCP_HEADER_TIMEOUT_MS,
    DEFAULT_MCP_MAX_BODY_BYTES, DEFAULT_MCP_MAX_CONNECTIONS, DEFAULT_MCP_MAX_IN_FLIGHT,
    DEFAULT_MCP_MAX_QUEUED_PER_SESSION, DEFAULT_MCP_MAX_RESPONSE_BYTES,
    DEFAULT_MCP_READY_CHECKS_UPSTREAMS, DEFAULT_MCP_RESULT_CAPTURE_BYTES,
    DEFAULT_MCP_SESSION_IDLE_MS, DEFAULT_SHUTDOWN_GRACE_MS,
};
use super::tls::{ServerTls, UpstreamTls};
use crate::identity::IdentityConfig;
use crate::results::ResultsConfig;

/// The MCP reverse proxy. Without upstreams its listener is off
/// (`listen: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// MCP listener address; None when no upstream is configured (listener off).
    pub listen: Option<SocketAddr>,
    /// TLS (and mTLS) on the listener; `None`: plain HTTP.
    pub tls: Option<ServerTls>,
    /// The MCP servers proxied, each served at `/mcp/{name}`; in configuration
    /// order, names unique.
    pub upstreams: Vec<UpstreamConfig>,
    /// Upstream also served at `/mcp`: mcp.default_upstream if set (must name a
    /// configured upstream), else the only upstream when there is exactly one,
    /// else None.
    pub default_upstream: Option<String>,
    /// How a request's tenant, user and session are read.
    pub identity: IdentityConfig,
    /// `Host` values the listener accepts (`host` or `host:port`); empty:
    /// loopback names on a loopback listener, anything otherwise
    /// (`crate::front_door`).
    pub allowed_hosts: Vec<String>,
    /// `Origin`s accepted, serialised (`scheme://host[:port]`); requests
    /// without one always pass.
    pub allowed_origins: Vec<String>,
    /// Largest request body read; larger ones are refused (413).
    pub max_body_bytes: usize,
    /// Connections served at once; at the cap, the oldest connection still
    /// waiting for its first request is closed to make room, else accepting
    /// waits.
    pub max_connections: usize,
    /// Each request head must arrive within this; the first is counted
    /// from the connection's accept.
    pub header_timeout: Duration,
    /// Requests handled at once; beyond, requests are answered 503.
    pub max_in_flight: usize,
    /// Calls of one session deciding or waiting to (MCP and egress);
    /// beyond, a call is refused at once (429).
    pub max_queued_per_session: usize,
    /// How much of a tool result the ledger's `TOOL_RESULT` keeps (its size and
    /// SHA-256 are always of the whole result); 0 keeps none.
    pub result_capture_bytes: usize,
    /// Largest single JSON answer or SSE event the proxy holds to inspect
    /// (`tools/list` filtering, tool results).
    pub max_response_bytes: usize,
    /// What `TOOL_RESULT` keeps of a result (full, hash, redacted), per tool.
    pub results: ResultsConfig,
    /// `false` is shadow mode: decisions are recorded, calls forwarded anyway.
    pub enforce: bool,
    /// Readiness also needs a TCP connection to every upstream.
    pub ready_checks_upstreams: bool,
    /// Sessions unused this long are evicted from memory and rebuilt from the
    /// ledger on next use.
    pub session_idle: Duration,
    /// On SIGTERM, how long in-flight calls may finish.
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long the listeners keep accepting first (readiness
    /// already false).
    pub drain_delay: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            listen: None,
            tls: None,
            upstreams: Vec::new(),
            default_upstream: None,
            identity: IdentityConfig::default(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MCP_MAX_BODY_BYTES,
            max_connections: DEFAULT_MCP_MAX_CONNECTIONS,
            header_timeout: Duration::from_millis(DEFAULT_MCP_HEADER_TIMEOUT_MS),
            max_in_flight: DEFAULT_MCP_MAX_IN_FLIGHT,
            max_queued_per_session: DEFAULT_MCP_MAX_QUEUED_PER_SESSION,
            result_capture_bytes: DEFAULT_MCP_RESULT_CAPTURE_BYTES,
            max_response_bytes: DEFAULT_MCP_MAX_RESPONSE_BYTES,
            results: ResultsConfig::default(),
            enforce: DEFAULT_MCP_ENFORCE,
            ready_checks_upstreams: DEFAULT_MCP_READY_CHECKS_UPSTREAMS,
            session_idle: Duration::from_millis(DEFAULT_MCP_SESSION_IDLE_MS),
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
            drain_delay: Duration::from_millis(DEFAULT_DRAIN_DELAY_MS),
        }
    }
}

impl McpConfig {
    /// The upstream called `name`, if configured.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|upstream| upstream.name == name)
    }
}

/// One MCP server the proxy forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// 1–63 characters of `[a-z0-9_-]`, starting with a letter or digit: a URL
    /// path segment (`/mcp/{name}`) and a metric label.
    pub name: String,
    /// Absolute `http://` or `https://` URL with a host; its path (e.g.
    /// `/mcp`) is kept.
    pub url: Uri,
    /// How TLS is spoken to it: `Some` exactly for `https://` URLs.
    pub tls: Option<UpstreamTls>,
    /// Upper bound on waiting for the upstream's response headers.
    pub timeout: Duration,
    /// Extra request headers sent to this upstream, in configuration order.
    pub headers: Vec<ExtraHeader>,
}

/// A request header added to every request to one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHeader {
    pub name: HeaderName,
    pub value: SecretValue,
}

/// A header value read from the environment or a file; Debug prints
/// `<redacted>`, it is never logged. [`SecretValue::value`] returns the value
/// marked sensitive ([`HeaderValue::set_sensitive`]), so HTTP/2 never indexes
/// it (HPACK) and `http`'s own `Debug` hides it too.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(HeaderValue);

impl SecretValue {
    /// Wraps `value`, marking it sensitive.
    pub fn new(mut value: HeaderValue) -> SecretValue {
        value.set_sensitive(true);
        SecretValue(value)
    }

    /// The value to send, marked sensitive.
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

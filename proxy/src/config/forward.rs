//! The validated `forward:` settings: the egress forward proxy the agent's
//! `HTTP_PROXY`/`HTTPS_PROXY` point at (`crate::egress`).
//!
//! Each setting's environment variable (`ENV_FORWARD_*`) and default
//! (`DEFAULT_FORWARD_*`) sit together below, in the order of the example
//! file `configs/aegis.yaml`. Tenant and user come from `mcp.identity`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Off unless set: an agent whose proxy variables point nowhere cannot
/// reach the network through the sidecar by accident.
pub const ENV_FORWARD_LISTEN: &str = "AEGIS_FORWARD_LISTEN";

/// Comma-separated ports, e.g. `80,443`.
pub const ENV_FORWARD_ALLOWED_PORTS: &str = "AEGIS_FORWARD_ALLOWED_PORTS";
/// Plain HTTP and HTTPS: what web APIs use. SSH, SMTP, databases and the
/// like need an explicit opt-in.
pub const DEFAULT_FORWARD_ALLOWED_PORTS: &[u16] = &[80, 443];

pub const ENV_FORWARD_IDLE_TIMEOUT_MS: &str = "AEGIS_FORWARD_IDLE_TIMEOUT_MS";
/// A tunnel with no byte in either direction this long is closed: longer
/// than a slow API's think time, short enough that abandoned tunnels free
/// their connection slot.
pub const DEFAULT_FORWARD_IDLE_TIMEOUT_MS: u64 = 60_000;

pub const ENV_FORWARD_CONNECT_TIMEOUT_MS: &str = "AEGIS_FORWARD_CONNECT_TIMEOUT_MS";
/// Longest wait for the TCP connection to a destination (and, for plain
/// HTTP, its response headers' connection): a live host answers within a
/// few round trips.
pub const DEFAULT_FORWARD_CONNECT_TIMEOUT_MS: u64 = 10_000;

pub const ENV_FORWARD_MAX_CONNECTIONS: &str = "AEGIS_FORWARD_MAX_CONNECTIONS";
/// Agent connections served at once (tunnels included); bounds tasks and
/// sockets if a client leaks connections.
pub const DEFAULT_FORWARD_MAX_CONNECTIONS: usize = 1024;

pub const ENV_FORWARD_RESULTS_TAINT: &str = "AEGIS_FORWARD_RESULTS_TAINT";
/// Whatever comes back from the network is untrusted input: it taints the
/// session, so high-risk sinks then need a sanitizer, as after any tool.
pub const DEFAULT_FORWARD_RESULTS_TAINT: bool = true;

/// The egress forward proxy; off when `listen` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Forward-proxy listener address; `None`: no listener.
    pub listen: Option<SocketAddr>,
    /// Destination ports a CONNECT or request may name; others are refused.
    pub allowed_ports: Vec<u16>,
    /// A tunnel idle this long in both directions is closed.
    pub idle_timeout: Duration,
    /// Upper bound on connecting to a destination.
    pub connect_timeout: Duration,
    /// Agent connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Whether an egress result (`TOOL_RESULT`) taints the session; when
    /// false the end is recorded as `TOOL_CALL_EXECUTED`, which does not.
    pub results_taint: bool,
    /// Host (normalised as the policy engine does: lower-case, punycode, no
    /// trailing dot) → the address used instead of DNS.
    pub dns_overrides: BTreeMap<String, IpAddr>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            listen: None,
            allowed_ports: DEFAULT_FORWARD_ALLOWED_PORTS.to_vec(),
            idle_timeout: Duration::from_millis(DEFAULT_FORWARD_IDLE_TIMEOUT_MS),
            connect_timeout: Duration::from_millis(DEFAULT_FORWARD_CONNECT_TIMEOUT_MS),
            max_connections: DEFAULT_FORWARD_MAX_CONNECTIONS,
            results_taint: DEFAULT_FORWARD_RESULTS_TAINT,
            dns_overrides: BTreeMap::new(),
        }
    }
}

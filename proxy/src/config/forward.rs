//! The validated `forward:` settings: the egress forward proxy the agent's
//! `HTTP_PROXY`/`HTTPS_PROXY` point at (`crate::egress`).
//!
//! Each setting's declaration, environment variable (`ENV_FORWARD_*`) and
//! default (`DEFAULT_FORWARD_*`) are in `settings/forward.rs`. Tenant and
//! user come from `mcp.identity`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::settings::{
    DEFAULT_FORWARD_ALLOWED_PORTS, DEFAULT_FORWARD_CONNECT_TIMEOUT_MS,
    DEFAULT_FORWARD_HEADER_TIMEOUT_MS, DEFAULT_FORWARD_IDLE_TIMEOUT_MS,
    DEFAULT_FORWARD_MAX_CONNECTIONS, DEFAULT_FORWARD_RESULTS_TAINT,
};

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
    /// Agent connections served at once; at the cap, the oldest connection
    /// still waiting for its first request is closed to make room, else
    /// accepting waits.
    pub max_connections: usize,
    /// Each request head must arrive within this; the first is counted
    /// from the connection's accept.
    pub header_timeout: Duration,
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
            header_timeout: Duration::from_millis(DEFAULT_FORWARD_HEADER_TIMEOUT_MS),
            results_taint: DEFAULT_FORWARD_RESULTS_TAINT,
            dns_overrides: BTreeMap::new(),
        }
    }
}

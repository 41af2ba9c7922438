//! `forward:`: the egress forward proxy the agent's `HTTP_PROXY` and
//! `HTTPS_PROXY` point at (`crate::egress`). Tenant and user come from
//! `mcp.identity`.

use super::{Kind, Setting, text};

/// Off unless set: an agent whose proxy variables point nowhere cannot
/// reach the network through the sidecar by accident.
pub const ENV_FORWARD_LISTEN: &str = "AEGIS_FORWARD_LISTEN";
pub const FORWARD_LISTEN: Setting = Setting::noted(
    "forward.listen",
    Kind::Text,
    "none (off)",
    "address of the egress forward proxy",
)
.env(ENV_FORWARD_LISTEN)
.flag("--forward-listen", |f| text(&f.forward_listen));

/// Comma-separated ports, e.g. `80,443`.
pub const ENV_FORWARD_ALLOWED_PORTS: &str = "AEGIS_FORWARD_ALLOWED_PORTS";
/// Plain HTTP and HTTPS: what web APIs use. SSH, SMTP, databases and the
/// like need an explicit opt-in.
pub const DEFAULT_FORWARD_ALLOWED_PORTS: &[u16] = &[80, 443];
pub const FORWARD_ALLOWED_PORTS: Setting = Setting::new(
    "forward.allowed_ports",
    Kind::Integers,
    "[80, 443]",
    "destination ports a CONNECT or request may name",
)
.env(ENV_FORWARD_ALLOWED_PORTS);

pub const ENV_FORWARD_IDLE_TIMEOUT_MS: &str = "AEGIS_FORWARD_IDLE_TIMEOUT_MS";
/// A tunnel with no byte in either direction this long is closed: longer
/// than a slow API's think time, short enough that abandoned tunnels free
/// their connection slot.
pub const DEFAULT_FORWARD_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const FORWARD_IDLE_TIMEOUT_MS: Setting = Setting::new(
    "forward.idle_timeout_ms",
    Kind::Integer,
    "60000",
    "a tunnel idle this long in both directions is closed",
)
.env(ENV_FORWARD_IDLE_TIMEOUT_MS);

pub const ENV_FORWARD_CONNECT_TIMEOUT_MS: &str = "AEGIS_FORWARD_CONNECT_TIMEOUT_MS";
/// Longest wait for the TCP connection to a destination (and, for plain
/// HTTP, its response headers' connection): a live host answers within a
/// few round trips.
pub const DEFAULT_FORWARD_CONNECT_TIMEOUT_MS: u64 = 10_000;
pub const FORWARD_CONNECT_TIMEOUT_MS: Setting = Setting::new(
    "forward.connect_timeout_ms",
    Kind::Integer,
    "10000",
    "upper bound on connecting to a destination",
)
.env(ENV_FORWARD_CONNECT_TIMEOUT_MS);

pub const ENV_FORWARD_MAX_CONNECTIONS: &str = "AEGIS_FORWARD_MAX_CONNECTIONS";
/// Agent connections served at once (tunnels included); bounds tasks and
/// sockets if a client leaks connections.
pub const DEFAULT_FORWARD_MAX_CONNECTIONS: usize = 1024;
pub const FORWARD_MAX_CONNECTIONS: Setting = Setting::new(
    "forward.max_connections",
    Kind::Integer,
    "1024",
    "agent connections served at once",
)
.env(ENV_FORWARD_MAX_CONNECTIONS);

pub const ENV_FORWARD_HEADER_TIMEOUT_MS: &str = "AEGIS_FORWARD_HEADER_TIMEOUT_MS";
/// An agent's HTTP client sends its request (or `CONNECT`) as soon as it
/// has connected; a connection silent this long only holds a slot.
pub const DEFAULT_FORWARD_HEADER_TIMEOUT_MS: u64 = 30_000;
pub const FORWARD_HEADER_TIMEOUT_MS: Setting = Setting::new(
    "forward.header_timeout_ms",
    Kind::Integer,
    "30000",
    "a connection must send each request head within this (the first counted from its accept)",
)
.env(ENV_FORWARD_HEADER_TIMEOUT_MS);

pub const ENV_FORWARD_RESULTS_TAINT: &str = "AEGIS_FORWARD_RESULTS_TAINT";
/// Whatever comes back from the network is untrusted input: it taints the
/// session, so high-risk sinks then need a sanitizer, as after any tool.
pub const DEFAULT_FORWARD_RESULTS_TAINT: bool = true;
pub const FORWARD_RESULTS_TAINT: Setting = Setting::new(
    "forward.results_taint",
    Kind::Bool,
    "true",
    "whether an egress result taints the session",
)
.env(ENV_FORWARD_RESULTS_TAINT);

/// File only; none by default: DNS decides.
pub const FORWARD_DNS_OVERRIDES: Setting = Setting::noted(
    "forward.dns_overrides",
    Kind::TextMap,
    "none",
    "host → IP used instead of DNS",
);

pub(super) const SETTINGS: &[Setting] = &[
    FORWARD_LISTEN,
    FORWARD_ALLOWED_PORTS,
    FORWARD_IDLE_TIMEOUT_MS,
    FORWARD_CONNECT_TIMEOUT_MS,
    FORWARD_MAX_CONNECTIONS,
    FORWARD_HEADER_TIMEOUT_MS,
    FORWARD_RESULTS_TAINT,
    FORWARD_DNS_OVERRIDES,
];

//! `mcp:` apart from `mcp.identity` (see `identity.rs`): the MCP reverse
//! proxy's listener, upstreams, limits and what the ledger keeps of results.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::{Field, Kind, Setting, path, text};

pub const ENV_MCP_LISTEN: &str = "AEGIS_MCP_LISTEN";
/// Next to the admin port and on loopback, so only the agent on the same host
/// or pod reaches it unless asked. Used only when an upstream is configured.
pub const DEFAULT_MCP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081));
pub const MCP_LISTEN: Setting = Setting::noted(
    "mcp.listen",
    Kind::Text,
    "127.0.0.1:8081 with an upstream; none without",
    "address of the MCP listener",
)
.env(ENV_MCP_LISTEN)
.flag("--listen", |f| text(&f.listen));

// mcp.tls: TLS on the MCP listener when a certificate and key are given (no
// default: plain HTTP on loopback); mTLS when a client CA is given too.
pub const ENV_MCP_TLS_CERT: &str = "AEGIS_MCP_TLS_CERT";
pub const MCP_TLS_CERT: Setting = Setting::noted(
    "mcp.tls.cert_file",
    Kind::Path,
    "none (plain HTTP)",
    "certificate chain (PEM) the MCP listener serves TLS with",
)
.env(ENV_MCP_TLS_CERT)
.flag("--tls-cert", |f| path(&f.tls_cert));
pub const ENV_MCP_TLS_KEY: &str = "AEGIS_MCP_TLS_KEY";
pub const MCP_TLS_KEY: Setting = Setting::noted(
    "mcp.tls.key_file",
    Kind::Path,
    "none (plain HTTP)",
    "private key (PEM) of mcp.tls.cert_file",
)
.env(ENV_MCP_TLS_KEY)
.flag("--tls-key", |f| path(&f.tls_key));
pub const ENV_MCP_TLS_CLIENT_CA: &str = "AEGIS_MCP_TLS_CLIENT_CA";
pub const MCP_TLS_CLIENT_CA: Setting = Setting::noted(
    "mcp.tls.client_ca_file",
    Kind::Path,
    "none",
    "CA bundle (PEM) MCP clients' certificates must chain to (mTLS)",
)
.env(ENV_MCP_TLS_CLIENT_CA)
.flag("--tls-client-ca", |f| path(&f.tls_client_ca));

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
/// The fields of one `mcp.upstreams` entry.
const UPSTREAM: &[Field] = &[
    Field::required("name", Kind::Text),
    Field::required("url", Kind::Text),
    Field::optional("timeout_ms", Kind::Integer),
    Field::optional(
        "headers",
        Kind::Entries(&[
            Field::required("name", Kind::Text),
            Field::optional("value_from_env", Kind::Text),
            Field::optional("value_from_file", Kind::Path),
            // Accepted only to be refused: secrets stay out of config files.
            Field::optional("value", Kind::Ignored),
        ]),
    ),
    Field::optional(
        "tls",
        Kind::Block(&[
            Field::optional("ca_file", Kind::Path),
            Field::optional("client_cert_file", Kind::Path),
            Field::optional("client_key_file", Kind::Path),
            Field::optional("server_name", Kind::Text),
        ]),
    ),
];
/// Merged by name across the layers (`layers/upstreams.rs`).
pub const MCP_UPSTREAMS: Setting = Setting::noted(
    "mcp.upstreams",
    Kind::Entries(UPSTREAM),
    "none",
    "the MCP servers proxied, each at /mcp/NAME",
)
.env(ENV_MCP_UPSTREAMS)
// Repeatable, so read whole by `layers/upstreams.rs`.
.flag("--upstream", |_| None);

pub const ENV_MCP_DEFAULT_UPSTREAM: &str = "AEGIS_MCP_DEFAULT_UPSTREAM";
pub const MCP_DEFAULT_UPSTREAM: Setting = Setting::noted(
    "mcp.default_upstream",
    Kind::Text,
    "the only upstream, if exactly one",
    "the upstream also served at /mcp",
)
.env(ENV_MCP_DEFAULT_UPSTREAM)
.flag("--default-upstream", |f| text(&f.default_upstream));

pub const ENV_MCP_ENFORCE: &str = "AEGIS_MCP_ENFORCE";
/// Enforcing is the point of the sidecar; shadow mode (`false`) is the opt-in
/// way to watch what a manifest would do before trusting it.
pub const DEFAULT_MCP_ENFORCE: bool = true;
pub const MCP_ENFORCE: Setting = Setting::new(
    "mcp.enforce",
    Kind::Bool,
    "true",
    "false is shadow mode: decisions recorded, calls forwarded anyway",
)
.env(ENV_MCP_ENFORCE)
.flag("--enforce", |f| text(&f.enforce));

pub const ENV_MCP_READY_CHECKS_UPSTREAMS: &str = "AEGIS_MCP_READY_CHECKS_UPSTREAMS";
/// Off: an unreachable tool server should answer the agent with a tool
/// error, not make Kubernetes take the sidecar (and, in the agent's pod, the
/// agent) out of service; a gateway in front of replicated tool servers may
/// want the Service to route around it.
pub const DEFAULT_MCP_READY_CHECKS_UPSTREAMS: bool = false;
pub const MCP_READY_CHECKS_UPSTREAMS: Setting = Setting::new(
    "mcp.ready_checks_upstreams",
    Kind::Bool,
    "false",
    "readiness also needs a TCP connection to every upstream (within 1 s)",
)
.env(ENV_MCP_READY_CHECKS_UPSTREAMS);

pub const ENV_MCP_SESSION_IDLE_MS: &str = "AEGIS_MCP_SESSION_IDLE_MS";
/// Long enough that an agent thinking between calls keeps its session warm,
/// short enough that abandoned sessions do not pile up in memory (they are
/// rebuilt from the ledger if they come back).
pub const DEFAULT_MCP_SESSION_IDLE_MS: u64 = 10 * 60 * 1000;
pub const MCP_SESSION_IDLE_MS: Setting = Setting::new(
    "mcp.session_idle_ms",
    Kind::Integer,
    "600000",
    "sessions unused this long leave memory",
)
.env(ENV_MCP_SESSION_IDLE_MS);

pub const ENV_SHUTDOWN_GRACE_MS: &str = "AEGIS_SHUTDOWN_GRACE_MS";
/// Lets a typical tool call finish after SIGTERM while staying well inside
/// Kubernetes' default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
pub const MCP_SHUTDOWN_GRACE_MS: Setting = Setting::new(
    "mcp.shutdown_grace_ms",
    Kind::Integer,
    "10000",
    "on SIGTERM, how long in-flight calls may finish",
)
.env(ENV_SHUTDOWN_GRACE_MS)
.flag("--shutdown-grace-ms", |f| text(&f.shutdown_grace_ms));

pub const ENV_DRAIN_DELAY_MS: &str = "AEGIS_DRAIN_DELAY_MS";
/// Off by default (a laptop's Ctrl-C stops at once); the Kubernetes
/// manifests set it, so that endpoints are gone before connections are
/// refused.
pub const DEFAULT_DRAIN_DELAY_MS: u64 = 0;
pub const MCP_DRAIN_DELAY_MS: Setting = Setting::new(
    "mcp.drain_delay_ms",
    Kind::Integer,
    "0",
    "on SIGTERM, how long the MCP and forward listeners keep accepting (readiness already false) before they stop; a second signal ends it",
)
.env(ENV_DRAIN_DELAY_MS)
.flag("--drain-delay-ms", |f| text(&f.drain_delay_ms));

// mcp.allowed_hosts / mcp.allowed_origins: the front door (DNS rebinding).

/// Comma-separated `host` or `host:port` entries; replaces the file's list.
pub const ENV_MCP_ALLOWED_HOSTS: &str = "AEGIS_MCP_ALLOWED_HOSTS";
pub const MCP_ALLOWED_HOSTS: Setting = Setting::noted(
    "mcp.allowed_hosts",
    Kind::Texts,
    "loopback names on a loopback listener; else unchecked",
    "Host values the MCP listener accepts",
)
.env(ENV_MCP_ALLOWED_HOSTS);
/// Comma-separated origins (`scheme://host[:port]`); replaces the file's list.
pub const ENV_MCP_ALLOWED_ORIGINS: &str = "AEGIS_MCP_ALLOWED_ORIGINS";
pub const MCP_ALLOWED_ORIGINS: Setting = Setting::noted(
    "mcp.allowed_origins",
    Kind::Texts,
    "none",
    "Origins the MCP listener accepts",
)
.env(ENV_MCP_ALLOWED_ORIGINS);

// mcp.limits: bounds on what one agent can make the proxy hold.

pub const ENV_MCP_MAX_BODY_BYTES: &str = "AEGIS_MCP_MAX_BODY_BYTES";
/// Far above any real JSON-RPC request (tool arguments included); bodies are
/// read whole to be decided, so this bounds memory per request.
pub const DEFAULT_MCP_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound on `mcp.limits.max_body_bytes`: beyond it the limit stops
/// protecting memory.
pub const MAX_MCP_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
pub const MCP_MAX_BODY_BYTES: Setting = Setting::new(
    "mcp.limits.max_body_bytes",
    Kind::Integer,
    "4194304",
    "largest request body read",
)
.env(ENV_MCP_MAX_BODY_BYTES);

pub const ENV_MCP_MAX_CONNECTIONS: &str = "AEGIS_MCP_MAX_CONNECTIONS";
/// Several agents with SSE streams open each; bounds tasks and sockets if a
/// client leaks connections.
pub const DEFAULT_MCP_MAX_CONNECTIONS: usize = 1024;
pub const MCP_MAX_CONNECTIONS: Setting = Setting::new(
    "mcp.limits.max_connections",
    Kind::Integer,
    "1024",
    "connections served at once",
)
.env(ENV_MCP_MAX_CONNECTIONS);

pub const ENV_MCP_HEADER_TIMEOUT_MS: &str = "AEGIS_MCP_HEADER_TIMEOUT_MS";
/// MCP clients send their request as soon as they have connected; a
/// connection silent this long only holds a slot.
pub const DEFAULT_MCP_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const MCP_HEADER_TIMEOUT_MS: Setting = Setting::new(
    "mcp.limits.header_timeout_ms",
    Kind::Integer,
    "10000",
    "a connection must send each request head within this (the first counted from its accept)",
)
.env(ENV_MCP_HEADER_TIMEOUT_MS);

pub const ENV_MCP_MAX_IN_FLIGHT: &str = "AEGIS_MCP_MAX_IN_FLIGHT";
/// Requests handled at once (more are answered 503): far above one agent's
/// parallel tool calls, low enough that held bodies stay bounded.
pub const DEFAULT_MCP_MAX_IN_FLIGHT: usize = 256;
pub const MCP_MAX_IN_FLIGHT: Setting = Setting::new(
    "mcp.limits.max_in_flight",
    Kind::Integer,
    "256",
    "requests handled at once",
)
.env(ENV_MCP_MAX_IN_FLIGHT);

pub const ENV_MCP_MAX_QUEUED_PER_SESSION: &str = "AEGIS_MCP_MAX_QUEUED_PER_SESSION";
/// Calls of one session holding or waiting for its turn (MCP `tools/call`
/// and egress attempts together): far above an agent's parallel calls, low
/// enough that one session flooding the sidecar cannot take every
/// in-flight slot from the others.
pub const DEFAULT_MCP_MAX_QUEUED_PER_SESSION: usize = 64;
pub const MCP_MAX_QUEUED_PER_SESSION: Setting = Setting::new(
    "mcp.limits.max_queued_per_session",
    Kind::Integer,
    "64",
    "calls of one session deciding or waiting to (more are refused at once)",
)
.env(ENV_MCP_MAX_QUEUED_PER_SESSION);

pub const ENV_MCP_RESULT_CAPTURE_BYTES: &str = "AEGIS_MCP_RESULT_CAPTURE_BYTES";
/// How much of a tool result `TOOL_RESULT` keeps (its size and SHA-256 are
/// always of the whole): enough to read what a tool said without the ledger
/// growing by every file a tool returns.
pub const DEFAULT_MCP_RESULT_CAPTURE_BYTES: usize = 64 * 1024;
pub const MCP_RESULT_CAPTURE_BYTES: Setting = Setting::new(
    "mcp.limits.result_capture_bytes",
    Kind::Integer,
    "65536",
    "bytes of a tool result kept in TOOL_RESULT",
)
.env(ENV_MCP_RESULT_CAPTURE_BYTES);

pub const ENV_MCP_MAX_RESPONSE_BYTES: &str = "AEGIS_MCP_MAX_RESPONSE_BYTES";
/// Largest single JSON answer or SSE event held to inspect (`tools/list`
/// filtering, tool results): big tool listings and results fit.
pub const DEFAULT_MCP_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Upper bound on `mcp.limits.max_response_bytes`, for memory's sake.
pub const MAX_MCP_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
pub const MCP_MAX_RESPONSE_BYTES: Setting = Setting::new(
    "mcp.limits.max_response_bytes",
    Kind::Integer,
    "16777216",
    "largest JSON answer or SSE event held to inspect",
)
.env(ENV_MCP_MAX_RESPONSE_BYTES);

// mcp.results: what TOOL_RESULT keeps of a result (`crate::results`).

pub const ENV_MCP_RESULTS_KEEP: &str = "AEGIS_MCP_RESULTS_KEEP";
/// `full`, as before the setting existed: an auditor reads what a tool said.
/// Deployments whose tools return secrets choose `hash` or `redact`, for
/// every tool or per tool (`mcp.results.tools`, the file only).
pub const DEFAULT_MCP_RESULTS_KEEP: crate::results::Keep = crate::results::Keep::Full;
pub const MCP_RESULTS_KEEP: Setting = Setting::new(
    "mcp.results.keep",
    Kind::Text,
    "full",
    "what TOOL_RESULT keeps of a result: full, hash or redact",
)
.env(ENV_MCP_RESULTS_KEEP);
pub const MCP_RESULTS_TOOLS: Setting = Setting::noted(
    "mcp.results.tools",
    Kind::TextMap,
    "none",
    "tool name → full, hash or redact, overriding keep",
);
/// The default is `crate::results::DEFAULT_REDACT_PATTERNS`.
pub const MCP_RESULTS_REDACT_PATTERNS: Setting = Setting::noted(
    "mcp.results.redact_patterns",
    Kind::Texts,
    "the built-in list",
    "regular expressions redact replaces",
);

pub(super) const SETTINGS: &[Setting] = &[
    MCP_LISTEN,
    MCP_TLS_CERT,
    MCP_TLS_KEY,
    MCP_TLS_CLIENT_CA,
    MCP_UPSTREAMS,
    MCP_DEFAULT_UPSTREAM,
    MCP_ENFORCE,
    MCP_READY_CHECKS_UPSTREAMS,
    MCP_SESSION_IDLE_MS,
    MCP_SHUTDOWN_GRACE_MS,
    MCP_DRAIN_DELAY_MS,
    MCP_ALLOWED_HOSTS,
    MCP_ALLOWED_ORIGINS,
];

pub(super) const LATER_SETTINGS: &[Setting] = &[
    MCP_MAX_BODY_BYTES,
    MCP_MAX_CONNECTIONS,
    MCP_HEADER_TIMEOUT_MS,
    MCP_MAX_QUEUED_PER_SESSION,
    MCP_MAX_IN_FLIGHT,
    MCP_RESULT_CAPTURE_BYTES,
    MCP_MAX_RESPONSE_BYTES,
    MCP_RESULTS_KEEP,
    MCP_RESULTS_TOOLS,
    MCP_RESULTS_REDACT_PATTERNS,
];

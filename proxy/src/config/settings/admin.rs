//! `admin:`: the admin/API server (`/healthz`, `/readyz`, `/metrics`, `/v1`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::{Field, Kind, Setting, path, text};

pub const ENV_ADMIN_LISTEN: &str = "AEGIS_ADMIN_LISTEN";
/// aegisd's default address, the one `AegisClient()` of the Aegis Python SDK
/// connects to; loopback, so the API is not exposed unless asked.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
pub const ADMIN_LISTEN: Setting = Setting::new(
    "admin.listen",
    Kind::Text,
    "127.0.0.1:8080",
    "address of the admin/API server",
)
.env(ENV_ADMIN_LISTEN)
.flag("--admin-listen", |f| text(&f.admin_listen));

pub const ENV_ADMIN_MAX_BODY_BYTES: &str = "AEGIS_ADMIN_MAX_BODY_BYTES";
/// Far above any real envelope or decide request, small enough that a full set
/// of connections cannot buffer more than a few hundred MiB.
pub const DEFAULT_ADMIN_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Upper bound on `admin.max_body_bytes`: bodies are read whole into memory,
/// so a larger limit is a memory-exhaustion setting, not a tuning one.
pub const MAX_ADMIN_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
pub const ADMIN_MAX_BODY_BYTES: Setting = Setting::new(
    "admin.max_body_bytes",
    Kind::Integer,
    "1048576",
    "largest request body read",
)
.env(ENV_ADMIN_MAX_BODY_BYTES);

pub const ENV_ADMIN_MAX_CONNECTIONS: &str = "AEGIS_ADMIN_MAX_CONNECTIONS";
/// Plenty for one agent, its SDK and a scraper; bounds tasks and memory if a
/// client leaks connections.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 256;
pub const ADMIN_MAX_CONNECTIONS: Setting = Setting::new(
    "admin.max_connections",
    Kind::Integer,
    "256",
    "connections served at once",
)
.env(ENV_ADMIN_MAX_CONNECTIONS);

pub const ENV_ADMIN_HEADER_TIMEOUT_MS: &str = "AEGIS_ADMIN_HEADER_TIMEOUT_MS";
/// Far longer than any real client takes to send a request head, short
/// enough that silent connections give their slot back before a probe
/// series fails.
pub const DEFAULT_ADMIN_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const ADMIN_HEADER_TIMEOUT_MS: Setting = Setting::new(
    "admin.header_timeout_ms",
    Kind::Integer,
    "10000",
    "a connection must send each request head within this (the first counted from its accept)",
)
.env(ENV_ADMIN_HEADER_TIMEOUT_MS);

pub const ENV_ADMIN_REQUEST_TIMEOUT_MS: &str = "AEGIS_ADMIN_REQUEST_TIMEOUT_MS";
/// Long enough for a ledger commit under heavy load, short enough that a stuck
/// client frees its connection slot.
pub const DEFAULT_ADMIN_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const ADMIN_REQUEST_TIMEOUT_MS: Setting = Setting::new(
    "admin.request_timeout_ms",
    Kind::Integer,
    "30000",
    "deadline for reading a request and answering it",
)
.env(ENV_ADMIN_REQUEST_TIMEOUT_MS);

pub const ENV_ADMIN_LIST_LIMIT_DEFAULT: &str = "AEGIS_ADMIN_LIST_LIMIT_DEFAULT";
/// Page size when a list request (`GET /v1/events`) gives no `limit`: a
/// session's recent history in one answer that still serialises in milliseconds.
pub const DEFAULT_ADMIN_LIST_LIMIT_DEFAULT: u32 = 100;
pub const ADMIN_LIST_LIMIT_DEFAULT: Setting = Setting::new(
    "admin.list_limit_default",
    Kind::Integer,
    "100",
    "page size of list endpoints when the request gives none",
)
.env(ENV_ADMIN_LIST_LIMIT_DEFAULT);

pub const ENV_ADMIN_LIST_LIMIT_MAX: &str = "AEGIS_ADMIN_LIST_LIMIT_MAX";
/// Largest page a client may ask for: bounds one response's size and the time
/// it holds a ledger read.
pub const DEFAULT_ADMIN_LIST_LIMIT_MAX: u32 = 1000;
pub const ADMIN_LIST_LIMIT_MAX: Setting = Setting::new(
    "admin.list_limit_max",
    Kind::Integer,
    "1000",
    "largest page size a request may ask for",
)
.env(ENV_ADMIN_LIST_LIMIT_MAX);

// admin.tls: TLS on the admin listener when a certificate and key are given
// (no default: plain HTTP on loopback); mTLS when a client CA is given too.
pub const ENV_ADMIN_TLS_CERT: &str = "AEGIS_ADMIN_TLS_CERT";
pub const ADMIN_TLS_CERT: Setting = Setting::noted(
    "admin.tls.cert_file",
    Kind::Path,
    "none (plain HTTP)",
    "certificate chain (PEM) the admin listener serves TLS with",
)
.env(ENV_ADMIN_TLS_CERT)
.flag("--admin-tls-cert", |f| path(&f.admin_tls_cert));
pub const ENV_ADMIN_TLS_KEY: &str = "AEGIS_ADMIN_TLS_KEY";
pub const ADMIN_TLS_KEY: Setting = Setting::noted(
    "admin.tls.key_file",
    Kind::Path,
    "none (plain HTTP)",
    "private key (PEM) of admin.tls.cert_file",
)
.env(ENV_ADMIN_TLS_KEY)
.flag("--admin-tls-key", |f| path(&f.admin_tls_key));
pub const ENV_ADMIN_TLS_CLIENT_CA: &str = "AEGIS_ADMIN_TLS_CLIENT_CA";
pub const ADMIN_TLS_CLIENT_CA: Setting = Setting::noted(
    "admin.tls.client_ca_file",
    Kind::Path,
    "none",
    "CA bundle (PEM) admin clients' certificates must chain to (mTLS)",
)
.env(ENV_ADMIN_TLS_CLIENT_CA)
.flag("--admin-tls-client-ca", |f| path(&f.admin_tls_client_ca));

/// A second, plain-HTTP listener serving only `/healthz`, `/readyz` and
/// `/metrics` (every other path 404s there), for the kubelet and
/// Prometheus. No default: off, so nothing listens beyond `admin.listen`
/// unless asked.
pub const ENV_ADMIN_METRICS_LISTEN: &str = "AEGIS_ADMIN_METRICS_LISTEN";
pub const ADMIN_METRICS_LISTEN: Setting = Setting::noted(
    "admin.metrics_listen",
    Kind::Text,
    "none (off)",
    "address of the probes-and-scrape listener",
)
.env(ENV_ADMIN_METRICS_LISTEN)
.flag("--metrics-listen", |f| text(&f.metrics_listen));

// admin.auth: bearer tokens (one per file) and mTLS client certificates,
// each with a role (reader < ingest < operator) and optionally tenants. No
// default: without any, dev mode (loopback admin.listen only). File only:
// no environment variable or flag.
const ROLE_AND_TENANTS: [Field; 2] = [
    Field::optional("role", Kind::Text),
    Field::optional("tenants", Kind::Texts),
];
pub const ADMIN_AUTH_TOKENS: Setting = Setting::noted(
    "admin.auth.tokens",
    Kind::Entries(&[
        Field::optional("file", Kind::Path),
        ROLE_AND_TENANTS[0],
        ROLE_AND_TENANTS[1],
    ]),
    "none",
    "bearer tokens, one per file, each with a role",
);
pub const ADMIN_AUTH_MTLS: Setting = Setting::noted(
    "admin.auth.mtls",
    Kind::Entries(&[
        Field::optional("uri_san", Kind::Text),
        Field::optional("dns_san", Kind::Text),
        Field::optional("subject", Kind::Text),
        ROLE_AND_TENANTS[0],
        ROLE_AND_TENANTS[1],
    ]),
    "none",
    "client certificates mapped to roles",
);

pub(super) const SETTINGS: &[Setting] = &[
    ADMIN_LISTEN,
    ADMIN_MAX_BODY_BYTES,
    ADMIN_MAX_CONNECTIONS,
    ADMIN_HEADER_TIMEOUT_MS,
    ADMIN_REQUEST_TIMEOUT_MS,
    ADMIN_LIST_LIMIT_DEFAULT,
    ADMIN_LIST_LIMIT_MAX,
    ADMIN_TLS_CERT,
    ADMIN_TLS_KEY,
    ADMIN_TLS_CLIENT_CA,
    ADMIN_METRICS_LISTEN,
    ADMIN_AUTH_TOKENS,
    ADMIN_AUTH_MTLS,
];

//! `mcp.identity`: who a request acts for (`crate::identity`), on the MCP
//! listener and the egress proxy alike. The defaults below equal
//! `IdentityConfig::default()`; a unit test keeps them so.

use crate::identity::{SanKind, SessionScope};

use super::{Kind, Setting};

pub const ENV_PRINCIPAL: &str = "AEGIS_PRINCIPAL";
/// The agent when neither mTLS nor a JWT names it: one agent per pod, so
/// every call of the process is one principal's (and, by default, one
/// session's, as the old default session was).
pub const DEFAULT_PRINCIPAL: &str = "default";
pub const MCP_PRINCIPAL: Setting = Setting::new(
    "mcp.identity.principal",
    Kind::Text,
    DEFAULT_PRINCIPAL,
    "the principal when neither mTLS nor a JWT names one",
)
.env(ENV_PRINCIPAL);

pub const ENV_SESSION_SCOPE: &str = "AEGIS_SESSION_SCOPE";
/// One session per principal: an agent cannot reset its own budget, taint
/// or loop history by naming a new session.
pub const DEFAULT_SESSION_SCOPE: SessionScope = SessionScope::Principal;
pub const MCP_SESSION_SCOPE: Setting = Setting::new(
    "mcp.identity.session_scope",
    Kind::Text,
    "principal",
    "principal: one session per principal; client: the client names it",
)
.env(ENV_SESSION_SCOPE);

/// Names the session under `session_scope: client` only, before MCP's
/// `Mcp-Session-Id`. (No environment variable: the file only.)
pub const DEFAULT_MCP_SESSION_HEADER: &str = "x-aegis-session-id";
pub const MCP_SESSION_HEADER: Setting = Setting::new(
    "mcp.identity.session_header",
    Kind::Text,
    DEFAULT_MCP_SESSION_HEADER,
    "the header naming the session under session_scope: client",
);
/// Read only when `mcp.identity.trust_headers` is true.
pub const DEFAULT_MCP_TENANT_HEADER: &str = "x-aegis-tenant-id";
pub const MCP_TENANT_HEADER: Setting = Setting::new(
    "mcp.identity.tenant_header",
    Kind::Text,
    DEFAULT_MCP_TENANT_HEADER,
    "the header naming the tenant, when trusted",
);
/// Read only when `mcp.identity.trust_headers` is true.
pub const DEFAULT_MCP_USER_HEADER: &str = "x-aegis-user-id";
pub const MCP_USER_HEADER: Setting = Setting::new(
    "mcp.identity.user_header",
    Kind::Text,
    DEFAULT_MCP_USER_HEADER,
    "the header naming the user, when trusted",
);

pub const ENV_MCP_TRUST_IDENTITY_HEADERS: &str = "AEGIS_MCP_TRUST_IDENTITY_HEADERS";
/// One agent per pod: tenant and user come from configuration, so an agent
/// cannot pick another tenant's budget by sending a header.
pub const DEFAULT_MCP_TRUST_IDENTITY_HEADERS: bool = false;
pub const MCP_TRUST_HEADERS: Setting = Setting::new(
    "mcp.identity.trust_headers",
    Kind::Bool,
    "false",
    "let requests name tenant and user by header",
)
.env(ENV_MCP_TRUST_IDENTITY_HEADERS);

pub const ENV_TENANT_ID: &str = "AEGIS_TENANT_ID";
/// The tenant of every request unless a JWT claim or a trusted header names
/// one; a single-tenant laptop run needs no setting.
pub const DEFAULT_TENANT_ID: &str = "default";
pub const MCP_TENANT: Setting = Setting::new(
    "mcp.identity.tenant",
    Kind::Text,
    DEFAULT_TENANT_ID,
    "the tenant of every request unless a claim or trusted header names one",
)
.env(ENV_TENANT_ID);

pub const ENV_USER_ID: &str = "AEGIS_USER_ID";
/// No user unless configured: the ledger's `user_id` is optional.
pub const DEFAULT_USER_ID: &str = "";
pub const MCP_USER: Setting = Setting::noted(
    "mcp.identity.user",
    Kind::Text,
    "none",
    "the user of every request unless a claim or trusted header names one",
)
.env(ENV_USER_ID);

/// Removed with `mcp.identity.default_session` (the session is the
/// principal's now): still set, it is a start-up problem naming what
/// replaces it, rather than silently meaning nothing.
pub const REMOVED_ENV_MCP_DEFAULT_SESSION: &str = "AEGIS_MCP_DEFAULT_SESSION";
/// Keys the file may still hold only to be refused with a pointer to what
/// replaced them (`layers/mcp/identity.rs`), rather than as unknown.
pub const REMOVED_KEYS: &[&str] = &["mcp.identity.default_session"];

// mcp.identity.mtls and mcp.identity.jwt: file only, off unless the block
// is present (`mtls: {}` for the defaults).

/// A SPIFFE ID, the usual workload identity in a certificate, is a URI SAN.
pub const DEFAULT_MTLS_SAN: SanKind = SanKind::Uri;
pub const MCP_MTLS_SAN: Setting = Setting::noted(
    "mcp.identity.mtls.san",
    Kind::Text,
    "uri (mTLS identity off without mcp.identity.mtls)",
    "which SAN of the verified client certificate names the principal",
);
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
const JWT_REQUIRED: &str = "none (required with mcp.identity.jwt)";
pub const MCP_JWT_JWKS_FILE: Setting = Setting::noted(
    "mcp.identity.jwt.jwks_file",
    Kind::Path,
    JWT_REQUIRED,
    "the JWK Set the tokens' signatures are verified with",
);
pub const MCP_JWT_ISSUER: Setting = Setting::noted(
    "mcp.identity.jwt.issuer",
    Kind::Text,
    JWT_REQUIRED,
    "the iss every token must carry",
);
pub const MCP_JWT_AUDIENCE: Setting = Setting::noted(
    "mcp.identity.jwt.audience",
    Kind::Text,
    JWT_REQUIRED,
    "an aud every token must carry",
);
pub const MCP_JWT_HEADER: Setting = Setting::new(
    "mcp.identity.jwt.header",
    Kind::Text,
    DEFAULT_JWT_HEADER,
    "the header carrying the token",
);
pub const MCP_JWT_FORWARD: Setting = Setting::new(
    "mcp.identity.jwt.forward",
    Kind::Bool,
    "false",
    "whether the token header is passed upstream",
);
pub const MCP_JWT_LEEWAY_S: Setting = Setting::new(
    "mcp.identity.jwt.leeway_s",
    Kind::Integer,
    "60",
    "clock skew allowed on exp and nbf, in seconds",
);
pub const MCP_JWT_CLAIM_PRINCIPAL: Setting = Setting::new(
    "mcp.identity.jwt.claims.principal",
    Kind::Text,
    DEFAULT_JWT_PRINCIPAL_CLAIM,
    "the claim naming the principal",
);
pub const MCP_JWT_CLAIM_TENANT: Setting = Setting::noted(
    "mcp.identity.jwt.claims.tenant",
    Kind::Text,
    "none",
    "the claim naming the tenant",
);
pub const MCP_JWT_CLAIM_USER: Setting = Setting::noted(
    "mcp.identity.jwt.claims.user",
    Kind::Text,
    "none",
    "the claim naming the user",
);

pub(super) const SETTINGS: &[Setting] = &[
    MCP_PRINCIPAL,
    MCP_SESSION_SCOPE,
    MCP_SESSION_HEADER,
    MCP_TENANT_HEADER,
    MCP_USER_HEADER,
    MCP_TRUST_HEADERS,
    MCP_TENANT,
    MCP_USER,
    MCP_MTLS_SAN,
    MCP_JWT_JWKS_FILE,
    MCP_JWT_ISSUER,
    MCP_JWT_AUDIENCE,
    MCP_JWT_HEADER,
    MCP_JWT_FORWARD,
    MCP_JWT_LEEWAY_S,
    MCP_JWT_CLAIM_PRINCIPAL,
    MCP_JWT_CLAIM_TENANT,
    MCP_JWT_CLAIM_USER,
];

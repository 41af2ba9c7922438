//! Who a request acts for, on every listener the agent reaches (the MCP
//! reverse proxy and the egress forward proxy): its **principal**, and from
//! it the ledger's `(tenant, session)` key that budgets, taint and loop
//! history hang on.
//!
//! The governed agent picks every header it sends, so nothing it names may
//! choose its session. The principal comes, in this order, from:
//!
//! 1. a JWT (`mcp.identity.jwt`): when configured, a valid one is required
//!    on every request, and its claim names the principal ([`jwt`], keys
//!    from a watched JWK Set file: [`jwks`]);
//! 2. the verified client certificate (`mcp.identity.mtls`): when
//!    configured, its first URI (or DNS) SAN is required, and names the
//!    principal unless a JWT does;
//! 3. configuration (`mcp.identity.principal`): one agent per pod, the
//!    pod's identity.
//!
//! Under `session_scope: principal` (the default) the session *is* the
//! principal: a new `x-aegis-session-id`, `Mcp-Session-Id` or proxy
//! username changes nothing. `session_scope: client` lets the client name
//! its session (and so reset its own budget and taint): for trusted clients
//! and tests only.
//!
//! Who touches it: [`Resolver::resolve`] runs once per request, on the
//! listener's task, from the listener adapters (`crate::mcp::identity`,
//! `crate::egress::identity`) that find the credential in their protocol's
//! headers. It never logs or keeps a token, and never fetches a key: keys
//! come only from the configured file.

pub mod alg;
pub mod jwks;
pub mod jwt;
mod resolve;
#[cfg(test)]
mod test_keys;

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;

pub use crate::watch::FileWatch;
pub use resolve::{Credential, Listener, Presented, Resolver};

/// Longest principal, tenant, user or session id: what the ledger accepts.
pub use aegis_ledger::append::MAX_ID_LEN;

/// The prefix of the sidecar's own headers, never forwarded unless
/// `trust_headers` says something in front of the sidecar sets them.
pub const OWN_HEADER_PREFIX: &str = "x-aegis-";

/// How identity is read from requests (`mcp.identity`, validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The principal when neither `mtls` nor `jwt` names one.
    pub principal: String,
    pub session_scope: SessionScope,
    /// Names the session under [`SessionScope::Client`] only.
    pub session_header: HeaderName,
    /// Headers naming tenant and user, honoured only when `trust_headers`.
    pub tenant_header: HeaderName,
    pub user_header: HeaderName,
    pub trust_headers: bool,
    pub default_tenant: String,
    pub default_user: String,
    pub mtls: Option<MtlsConfig>,
    pub jwt: Option<JwtConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            principal: "default".into(),
            session_scope: SessionScope::Principal,
            session_header: HeaderName::from_static("x-aegis-session-id"),
            tenant_header: HeaderName::from_static("x-aegis-tenant-id"),
            user_header: HeaderName::from_static("x-aegis-user-id"),
            trust_headers: false,
            default_tenant: "default".into(),
            default_user: String::new(),
            mtls: None,
            jwt: None,
        }
    }
}

impl IdentityConfig {
    /// Removes what an MCP upstream must not see: the sidecar's identity
    /// headers, every `x-aegis-*` header unless `trust_headers`, and the
    /// JWT's header when it was consumed here (`jwt.forward: false`; MCP
    /// forbids passing a client's token through).
    pub fn strip_for_mcp_upstream(&self, headers: &mut HeaderMap) {
        self.strip_own(headers);
        if let Some(jwt) = &self.jwt
            && !jwt.forward
        {
            headers.remove(&jwt.header);
        }
    }

    /// Removes what an egress destination must not see: the sidecar's
    /// identity headers and every `x-aegis-*` header unless
    /// `trust_headers`. (The JWT travels in `Proxy-Authorization`, a
    /// hop-by-hop header never forwarded.)
    pub fn strip_for_destination(&self, headers: &mut HeaderMap) {
        self.strip_own(headers);
    }

    fn strip_own(&self, headers: &mut HeaderMap) {
        headers.remove(&self.session_header);
        headers.remove(&self.tenant_header);
        headers.remove(&self.user_header);
        if self.trust_headers {
            return;
        }
        let own: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with(OWN_HEADER_PREFIX))
            .cloned()
            .collect();
        for name in own {
            headers.remove(name);
        }
    }
}

/// Whose session a request's calls count against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionScope {
    /// One session per principal, whatever ids the client sends.
    #[default]
    Principal,
    /// The client names its session (trusted clients and tests only).
    Client,
}

impl SessionScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionScope::Principal => "principal",
            SessionScope::Client => "client",
        }
    }
}

impl std::str::FromStr for SessionScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "principal" => Ok(SessionScope::Principal),
            "client" => Ok(SessionScope::Client),
            _ => Err(format!("expected \"principal\" or \"client\", got {s:?}")),
        }
    }
}

/// `mcp.identity.mtls`: the verified client certificate names the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsConfig {
    pub san: SanKind,
}

/// Which SAN of the client certificate is the principal (its first one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SanKind {
    /// `uniformResourceIdentifier` (a SPIFFE ID is one).
    #[default]
    Uri,
    Dns,
}

impl SanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SanKind::Uri => "uri",
            SanKind::Dns => "dns",
        }
    }
}

impl std::str::FromStr for SanKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uri" => Ok(SanKind::Uri),
            "dns" => Ok(SanKind::Dns),
            _ => Err(format!("expected \"uri\" or \"dns\", got {s:?}")),
        }
    }
}

/// `mcp.identity.jwt`: a JWT on every request names the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// An RFC 7517 JWK Set; re-read when it changes.
    pub jwks_file: PathBuf,
    /// Exact match of `iss`.
    pub issuer: String,
    /// Must be `aud`, or one of its members.
    pub audience: String,
    /// MCP: `<header>: Bearer <jwt>`. (Egress: `Proxy-Authorization`.)
    pub header: HeaderName,
    /// `true` forwards the header upstream; `false` strips it.
    pub forward: bool,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    pub claims: ClaimNames,
}

/// Which claims name the principal, tenant and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub principal: String,
    /// `None`: the tenant comes from configuration (or trusted headers).
    pub tenant: Option<String>,
    /// `None`: the user comes from configuration (or trusted headers).
    pub user: Option<String>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            principal: "sub".into(),
            tenant: None,
            user: None,
        }
    }
}

/// Where the session id came from (for logs; a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSource {
    /// The principal itself (`session_scope: principal`, or a client that
    /// named none).
    Principal,
    /// `session_scope: client`: the configured session header.
    Header,
    /// `session_scope: client`: MCP's `Mcp-Session-Id`.
    McpSessionId,
    /// `session_scope: client`: the egress proxy's basic-auth username.
    ProxyAuthorization,
    /// `session_scope: client`: the `agent_id` a decision API was sent
    /// (`crate::admin`).
    AgentId,
}

/// Where the principal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalSource {
    Config,
    Mtls,
    Jwt,
}

impl PrincipalSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalSource::Config => "config",
            PrincipalSource::Mtls => "mtls",
            PrincipalSource::Jwt => "jwt",
        }
    }
}

/// The identity a request acts under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub session_source: SessionSource,
    /// Who the agent is: recorded in every envelope's payload.
    pub principal: String,
    pub principal_source: PrincipalSource,
    /// MCP's `Mcp-Session-Id` as the request carried it (recorded, never
    /// the session key under `session_scope: principal`).
    pub mcp_session_id: Option<String>,
}

/// Why a request's identity was refused: a closed set, the `reason` label
/// of `aegis_identity_failures_total` and the `reason` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No credential where one is required.
    Missing,
    /// Not a compact JWS we accept (shape, encoding, size, alg, `crit`,
    /// duplicate members, header syntax).
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// No key of the JWK Set fits the token's `kid` and `alg`.
    UnknownKey,
    /// A claim the sidecar reads is missing, of the wrong type, or not a
    /// usable id (`exp`, the principal, tenant or user claim).
    BadClaim,
    /// mTLS: no verified certificate, or none with a usable SAN of the
    /// configured kind.
    NoSan,
}

impl Failure {
    pub const ALL: [Failure; 10] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::BadSignature,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::WrongIssuer,
        Failure::WrongAudience,
        Failure::UnknownKey,
        Failure::BadClaim,
        Failure::NoSan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::BadSignature => "bad_signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::UnknownKey => "unknown_key",
            Failure::BadClaim => "bad_claim",
            Failure::NoSan => "no_san",
        }
    }

    /// `true`: the credential (a JWT) is missing or bad — 401/407, try
    /// again with a good one. `false`: the connection's certificate does
    /// not name a principal — 403.
    pub fn is_authentication(self) -> bool {
        self != Failure::NoSan
    }
}

/// A refused identity: the reason, and plain words for the log (never a
/// token or a claim's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", failure.as_str())]
pub struct IdentityError {
    pub failure: Failure,
    pub detail: String,
}

impl IdentityError {
    pub fn new(failure: Failure, detail: impl Into<String>) -> IdentityError {
        IdentityError {
            failure,
            detail: detail.into(),
        }
    }
}

/// `value` when it is a usable id: 1..=[`MAX_ID_LEN`] bytes of visible ASCII.
pub fn usable_id(value: &[u8]) -> Option<String> {
    let usable =
        !value.is_empty() && value.len() <= MAX_ID_LEN && value.iter().all(u8::is_ascii_graphic);
    usable.then(|| String::from_utf8_lossy(value).into_owned())
}

/// The single value of header `name` when it is a usable id; a repeated
/// header is ambiguous and counts as absent.
pub fn header_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    usable_id(value.as_bytes())
}

#[cfg(test)]
mod tests;

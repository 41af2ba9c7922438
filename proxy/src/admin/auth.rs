//! Who may call the admin API, and what each caller may do.
//!
//! Every known `/v1` route needs a role ([`required`], the one route→role
//! table); `/healthz`, `/readyz`, `/metrics` and unknown paths need none.
//! Roles are ordered, `reader < ingest < operator`: each can do what the
//! ones before it can.
//!
//! A caller proves a role with a bearer token (`Authorization: Bearer <t>` or
//! `X-API-Key: <t>`, matched against `admin.auth.tokens` in constant time,
//! see [`super::tokens`]) or, on an mTLS admin listener, with its verified
//! client certificate (matched against `admin.auth.mtls`). A presented token
//! decides: an invalid one is refused even next to a good certificate.
//! A credential may be limited to some tenants; handlers check the request's
//! tenant with [`Access::tenant`] before anything is recorded.
//!
//! With no credential configured at all the sidecar is in dev mode (allowed
//! only on a loopback `admin.listen`, checked at start-up): every caller has
//! the `ingest` role, so the quick start works, and operator actions are
//! refused until `admin.auth` is configured.
//!
//! Never logs, formats or stores a presented token; only its SHA-256.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, header};

use super::Route;
pub use super::role::Role;
use super::tokens::{TokenDigest, TokenSet};
use crate::config::{AuthConfig, CertName, MtlsEntry};
use crate::peer::{Peer, PeerCert};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Anyone: probes, the scrape, and unknown paths (which answer 404).
    Open,
    Role(Role),
}

/// The route→role table. A method a route does not serve needs the route's
/// lowest role, so only a caller who may use the route learns its methods.
pub(super) fn required(route: Route, method: &Method) -> Need {
    match route {
        Route::Healthz
        | Route::Readyz
        | Route::Metrics
        | Route::ProposeHealth
        | Route::GovernanceHealth
        | Route::NotFound => Need::Open,
        Route::Events if method == Method::POST => Need::Role(Role::Ingest),
        Route::Events | Route::Snapshot | Route::Verify | Route::Manifest => {
            Need::Role(Role::Reader)
        }
        // The decision APIs: what the agent's own library calls.
        Route::Decide
        | Route::Decision
        | Route::DecisionBatch
        | Route::DecisionStatus
        | Route::Propose
        | Route::Evaluate
        | Route::SandboxEvaluate
        | Route::RiskCheck => Need::Role(Role::Ingest),
        // The governance client's own decisions, read back.
        Route::CustomerDecisions | Route::CustomerDecision | Route::CustomerUsage => {
            Need::Role(Role::Reader)
        }
        // Approvals: operators only, reading included (the arguments of a
        // held call are for the humans who decide it, not for the agent).
        Route::ManifestReload
        | Route::Sanitizers
        | Route::Approvals
        | Route::Approval
        | Route::ApprovalApprove
        | Route::ApprovalDeny => Need::Role(Role::Operator),
    }
}

/// Why a request was refused; `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential at all (401).
    #[error("{0}")]
    Missing(String),
    /// A credential that is malformed, unknown or unmapped (401).
    #[error("{0}")]
    Invalid(String),
    /// A valid credential without the role or the tenant (403).
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// `missing`, `invalid` or `forbidden`: the `reason` label of
    /// `aegis_api_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Forbidden(_) => "forbidden",
        }
    }

    pub const REASONS: [&'static str; 3] = ["missing", "invalid", "forbidden"];
}

/// Who the caller turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// `admin.auth.tokens[i]`.
    Token(usize),
    /// `admin.auth.mtls[i]`.
    Cert(usize),
    /// Dev mode: nobody is configured, so nobody is checked.
    Dev,
    /// An open route: nothing was checked and nothing may be.
    Open,
}

/// An authenticated caller: its role and the tenants it may act for.
#[derive(Debug, Clone)]
pub struct Access {
    who: Who,
    role: Role,
    /// `None`: every tenant.
    tenants: Option<Arc<[String]>>,
    /// Who acts, as the ledger records it (an approval's approver):
    /// `token:<file>` or `cert:<mapped name>`; empty when unauthenticated.
    identity: Arc<str>,
}

impl Access {
    /// For open routes, whose handlers never ask.
    pub(super) fn open() -> Access {
        Access {
            who: Who::Open,
            role: Role::Reader,
            tenants: Some(Arc::from(Vec::new())),
            identity: Arc::from(""),
        }
    }

    /// Who acts: `token:<file>` for a token of `admin.auth.tokens` (each
    /// entry has its own file), `cert:<name>` for a client certificate
    /// mapped in `admin.auth.mtls`; empty in dev mode and on open routes,
    /// which never reach an operator action.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this caller may act for every tenant.
    pub fn all_tenants(&self) -> bool {
        self.tenants.is_none()
    }

    /// The tenants this caller may act for (`None`: every tenant).
    pub fn tenants(&self) -> Option<&[String]> {
        self.tenants.as_deref()
    }

    /// Whether this caller may act for `tenant`; call it with the request's
    /// tenant before anything is appended or any bucket touched.
    pub fn tenant(&self, tenant: &str) -> Result<(), AuthError> {
        match &self.tenants {
            None => Ok(()),
            Some(allowed) if allowed.iter().any(|t| t == tenant) => Ok(()),
            Some(_) => Err(AuthError::Forbidden(format!(
                "{} may not act for tenant {tenant:?}",
                self.describe()
            ))),
        }
    }

    fn describe(&self) -> String {
        match self.who {
            Who::Token(i) => format!("the token of admin.auth.tokens[{i}]"),
            Who::Cert(i) => format!("the client certificate of admin.auth.mtls[{i}]"),
            Who::Dev | Who::Open => "this caller".to_owned(),
        }
    }
}

/// The credentials the admin server accepts: the token set (swapped whole
/// when a token file changes, [`super::tokens`]) and the certificate rules.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Arc<TokenSet>,
    mtls: Vec<MtlsEntry>,
    dev_mode: bool,
}

/// aegislib's header for the same token.
const API_KEY: &str = "x-api-key";

impl Authenticator {
    /// `tokens` is the live set built from `config.tokens`.
    pub fn new(config: &AuthConfig, tokens: Arc<TokenSet>) -> Authenticator {
        Authenticator {
            tokens,
            mtls: config.mtls.clone(),
            dev_mode: config.is_dev_mode(),
        }
    }

    /// Dev mode: no token and no mTLS entry is configured.
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    pub fn tokens(&self) -> &Arc<TokenSet> {
        &self.tokens
    }

    /// Checks a request to a route that needs `need`: who the caller is and
    /// whether its role suffices. The tenant is checked later, by the
    /// handler, with [`Access::tenant`].
    pub(super) fn authorize(
        &self,
        need: Need,
        headers: &HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Access, AuthError> {
        let Need::Role(role) = need else {
            return Ok(Access::open());
        };
        let access = self.authenticate(headers, peer, role)?;
        if access.role >= role {
            return Ok(access);
        }
        Err(AuthError::Forbidden(match access.who {
            Who::Dev => format!(
                "operator actions need a credential: configure admin.auth (tokens or mtls) \
                 and send a token of role {role}; without any (dev mode, loopback only) \
                 callers may only read and ingest"
            ),
            _ => format!(
                "this endpoint needs role {role} or higher; {} has role {}",
                access.describe(),
                access.role
            ),
        }))
    }

    fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&Peer>,
        role: Role,
    ) -> Result<Access, AuthError> {
        let presented = presented_token(headers);
        if self.dev_mode {
            // Nothing to check a credential against: a token sent anyway
            // (SDKs send placeholders like "dev-key") changes nothing.
            return Ok(Access {
                who: Who::Dev,
                role: Role::Ingest,
                tenants: None,
                identity: Arc::from(""),
            });
        }
        if let Some(token) = presented {
            let token = token.map_err(AuthError::Invalid)?;
            let digest = TokenDigest::of(token.as_bytes());
            return match self.tokens.find(&digest) {
                Some((index, entry)) => Ok(Access {
                    who: Who::Token(index),
                    role: entry.role,
                    tenants: entry.tenants.clone(),
                    identity: Arc::from(format!("token:{}", entry.file.display())),
                }),
                None => Err(AuthError::Invalid(
                    "the token is not valid (unknown, revoked or rotated)".to_owned(),
                )),
            };
        }
        match peer.and_then(|peer| peer.cert.as_ref()) {
            Some(cert) => match self.mtls.iter().position(|rule| matches(&rule.name, cert)) {
                Some(index) => {
                    let rule = &self.mtls[index];
                    Ok(Access {
                        who: Who::Cert(index),
                        role: rule.role,
                        tenants: rule.tenants.as_deref().map(Arc::from),
                        identity: Arc::from(format!("cert:{}", rule.name)),
                    })
                }
                None => Err(AuthError::Invalid(format!(
                    "the client certificate (subject {:?}) is not mapped to a role in \
                     admin.auth.mtls; or send a token of role {role} or higher",
                    cert.subject
                ))),
            },
            None => Err(AuthError::Missing(format!(
                "this endpoint needs a credential of role {role} or higher: send \
                 `Authorization: Bearer <token>` or `X-API-Key: <token>` \
                 (admin.auth.tokens), or a client certificate mapped in admin.auth.mtls"
            ))),
        }
    }
}

/// The token a request presents: `None` when it sends neither header;
/// `Some(Err)` when a header is repeated, malformed, or both are sent.
/// The error never contains the token.
fn presented_token(headers: &HeaderMap) -> Option<Result<&str, String>> {
    let bearer = one(headers, &header::AUTHORIZATION, "Authorization").map(|value| {
        let value = value?;
        let (scheme, token) = value.split_once(' ').ok_or_else(malformed_bearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(malformed_bearer());
        }
        let token = token.trim_start_matches(' ');
        if token.is_empty() || token.contains(' ') {
            return Err(malformed_bearer());
        }
        Ok(token)
    });
    let key = one(headers, &HeaderName::from_static(API_KEY), "X-API-Key").map(|value| {
        let value = value?;
        if value.is_empty() || value.contains(' ') {
            return Err("X-API-Key must hold the token alone".to_owned());
        }
        Ok(value)
    });
    match (bearer, key) {
        (None, None) => None,
        (Some(token), None) | (None, Some(token)) => Some(token),
        (Some(_), Some(_)) => Some(Err(
            "both Authorization and X-API-Key are sent; send the token in one".to_owned(),
        )),
    }
}

fn malformed_bearer() -> String {
    "Authorization must be `Bearer <token>`".to_owned()
}

/// The header's only value, as visible ASCII; `Some(Err)` when repeated or
/// not text.
fn one<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    shown: &str,
) -> Option<Result<&'h str, String>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(format!("the {shown} header is repeated; send it once")));
    }
    Some(
        first
            .to_str()
            .map(str::trim)
            .map_err(|_| format!("the {shown} header is not visible ASCII")),
    )
}

/// Whether a verified certificate carries the name a rule asks for (exact).
fn matches(name: &CertName, cert: &PeerCert) -> bool {
    match name {
        CertName::UriSan(uri) => cert.uri_sans.iter().any(|san| san == uri),
        CertName::DnsSan(dns) => cert.dns_sans.iter().any(|san| san == dns),
        CertName::Subject(subject) => cert.subject == *subject,
    }
}

#[cfg(test)]
mod tests;

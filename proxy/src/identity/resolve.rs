//! One request's identity, from what its listener found in it
//! ([`Presented`]) and the configuration: see the module page (`mod.rs`)
//! for the precedence. The live JWK Set is read once per request, without
//! a lock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::{Map, Value};

use super::jwks::{JwksReload, JwksStore};
use super::jwt::{self, Expected};
use super::{
    Failure, Identity, IdentityConfig, IdentityError, PrincipalSource, SanKind, SessionScope,
    SessionSource, header_id, usable_id,
};
use crate::metrics::IdentityMetrics;
use crate::peer::Peer;
use crate::watch::{self, FileWatch};

/// Which listener a request came to (a metric label, and whether the
/// connection can carry a verified client certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The MCP listener: TLS and mTLS when `mcp.tls` says so.
    Mcp,
    /// The egress forward proxy: plain TCP, so never a certificate; with
    /// `mtls` configured its principal comes from the JWT (configuration
    /// refuses `mtls` with a forward listener and no `jwt`).
    Forward,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Mcp => "mcp",
            Listener::Forward => "forward",
        }
    }
}

/// The token a listener found where its protocol carries one. `Debug`
/// never shows the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Nothing there.
    Absent,
    /// Something there, but not a token in a form the listener reads (a
    /// repeated header, another scheme, bad Basic encoding).
    Unreadable,
    Token(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Absent => f.write_str("Absent"),
            Credential::Unreadable => f.write_str("Unreadable"),
            Credential::Token(token) => write!(f, "Token(<redacted, {} bytes>)", token.len()),
        }
    }
}

/// What a listener read from one request. `Debug` shows neither the token
/// nor the headers (which carry it).
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    pub listener: Listener,
    pub headers: &'a HeaderMap,
    /// The connection (its verified client certificate, under mTLS).
    pub peer: Option<&'a Peer>,
    pub credential: Credential<'a>,
    /// The session the client names, in its listener's order of
    /// preference; used under `session_scope: client` only.
    pub client_session: Option<(&'a str, SessionSource)>,
    /// MCP's `Mcp-Session-Id`, when usable (recorded).
    pub mcp_session_id: Option<&'a str>,
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("listener", &self.listener)
            .field("headers", &format_args!("<{} headers>", self.headers.len()))
            .field("peer", &self.peer)
            .field("credential", &self.credential)
            .field("client_session", &self.client_session)
            .field("mcp_session_id", &self.mcp_session_id)
            .finish()
    }
}

/// Resolves identities: the configuration, and the live JWK Set when
/// `jwt` is configured. One per process, shared by both listeners.
#[derive(Debug)]
pub struct Resolver {
    config: IdentityConfig,
    keys: Option<Arc<JwksStore>>,
    metrics: IdentityMetrics,
}

impl Resolver {
    /// Reads the JWK Set when `jwt` is configured (blocking: run it off the
    /// runtime's workers). The error names the setting.
    pub fn open(config: IdentityConfig, metrics: IdentityMetrics) -> Result<Resolver, String> {
        let keys = match &config.jwt {
            Some(jwt) => Some(Arc::new(JwksStore::open(jwt.jwks_file.clone()).map_err(
                |why| {
                    format!(
                        "mcp.identity.jwt.jwks_file: {}: {why}",
                        jwt.jwks_file.display()
                    )
                },
            )?)),
            None => None,
        };
        Ok(Resolver {
            config,
            keys,
            metrics,
        })
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Re-reads the JWK Set when the file changes (ConfigMap swaps
    /// included); `None` when no JWT is configured. The watch stops when
    /// the guard is dropped.
    pub fn watch(&self) -> Result<Option<FileWatch>, String> {
        let Some(keys) = self.keys.clone() else {
            return Ok(None);
        };
        let metrics = self.metrics.clone();
        let path = keys.path().to_path_buf();
        let watch = watch::watch([path.as_path()], "aegis-jwks-watch", move || {
            report(&keys.reload(), &keys, &metrics);
        })
        .map_err(|why| format!("mcp.identity.jwt.jwks_file: {why}"))?;
        Ok(Some(watch))
    }

    /// Re-reads the JWK Set now (blocking); `None` without `jwt`.
    pub fn reload_jwks(&self) -> Option<JwksReload> {
        let keys = self.keys.as_ref()?;
        let outcome = keys.reload();
        report(&outcome, keys, &self.metrics);
        Some(outcome)
    }

    /// The identity of one request, or why it is refused (counted in
    /// `aegis_identity_failures_total` and logged, without the token).
    pub fn resolve(&self, presented: &Presented<'_>) -> Result<Identity, IdentityError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let result = self.resolve_at(presented, now);
        if let Err(e) = &result {
            let listener = presented.listener.as_str();
            self.metrics.failure(listener, e.failure);
            tracing::info!(
                listener,
                reason = e.failure.as_str(),
                detail = %e.detail,
                "request refused: identity"
            );
        }
        result
    }

    /// [`Resolver::resolve`] at `now_unix_s`, without counting.
    pub fn resolve_at(
        &self,
        p: &Presented<'_>,
        now_unix_s: u64,
    ) -> Result<Identity, IdentityError> {
        let config = &self.config;
        let mut principal = (config.principal.clone(), PrincipalSource::Config);
        if let Some(mtls) = &config.mtls
            && p.listener == Listener::Mcp
        {
            principal = (san(p.peer, mtls.san)?, PrincipalSource::Mtls);
        }
        let mut claims = None;
        if let Some(jwt) = &config.jwt {
            // `open` loads the keys whenever a JWT is configured; never let
            // their absence mean "no JWT needed".
            let Some(keys) = &self.keys else {
                return Err(IdentityError::new(
                    Failure::UnknownKey,
                    "no JWK Set is loaded for mcp.identity.jwt",
                ));
            };
            let token = match p.credential {
                Credential::Absent => {
                    return Err(IdentityError::new(Failure::Missing, "no bearer token"));
                }
                Credential::Unreadable => {
                    return Err(IdentityError::new(
                        Failure::Malformed,
                        "the credential is not a bearer token the listener reads",
                    ));
                }
                Credential::Token(token) => token,
            };
            let expected = Expected {
                issuer: &jwt.issuer,
                audience: &jwt.audience,
                leeway_s: jwt.leeway.as_secs(),
            };
            let verified = jwt::verify(token, &keys.current(), &expected, now_unix_s)?;
            principal = (
                claim_id(&verified, &jwt.claims.principal)?,
                PrincipalSource::Jwt,
            );
            claims = Some((verified, &jwt.claims));
        }
        let trusted = |name, default: &str| {
            config
                .trust_headers
                .then(|| header_id(p.headers, name))
                .flatten()
                .unwrap_or_else(|| default.to_owned())
        };
        let from_claim = |pick: fn(&super::ClaimNames) -> &Option<String>| match &claims {
            Some((verified, names)) => match pick(names) {
                Some(name) => claim_id(verified, name).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        };
        let tenant_id = match from_claim(|n| &n.tenant)? {
            Some(tenant) => tenant,
            None => trusted(&config.tenant_header, &config.default_tenant),
        };
        let user_id = match from_claim(|n| &n.user)? {
            Some(user) => user,
            None => trusted(&config.user_header, &config.default_user),
        };
        let (principal, principal_source) = principal;
        let (session_id, session_source) = match (config.session_scope, p.client_session) {
            (SessionScope::Client, Some((named, source))) => (named.to_owned(), source),
            _ => (principal.clone(), SessionSource::Principal),
        };
        Ok(Identity {
            tenant_id,
            user_id,
            session_id,
            session_source,
            principal,
            principal_source,
            mcp_session_id: p.mcp_session_id.map(str::to_owned),
        })
    }
}

/// Logs and counts one JWK Set reload.
fn report(outcome: &JwksReload, keys: &JwksStore, metrics: &IdentityMetrics) {
    metrics.jwks_reload(outcome);
    let path = keys.path().display();
    match outcome {
        JwksReload::Reloaded { keys } => tracing::info!(%path, keys, "JWK Set reloaded"),
        JwksReload::Unchanged => tracing::debug!(%path, "JWK Set unchanged"),
        JwksReload::Failed(why) => tracing::warn!(
            %path,
            error = %why,
            "JWK Set not reloaded; the last good set stays live"
        ),
    }
}

/// The principal named by the connection's verified certificate: its
/// first SAN of `kind`, when it is a usable id.
fn san(peer: Option<&Peer>, kind: SanKind) -> Result<String, IdentityError> {
    let Some(cert) = peer.and_then(|p| p.cert.as_ref()) else {
        return Err(IdentityError::new(
            Failure::NoSan,
            "the connection has no verified client certificate",
        ));
    };
    let sans = match kind {
        SanKind::Uri => &cert.uri_sans,
        SanKind::Dns => &cert.dns_sans,
    };
    let first = sans.first().ok_or_else(|| {
        IdentityError::new(
            Failure::NoSan,
            format!("the client certificate has no {} SAN", kind.as_str()),
        )
    })?;
    usable_id(first.as_bytes()).ok_or_else(|| {
        IdentityError::new(
            Failure::NoSan,
            format!(
                "the client certificate's first {} SAN is not a usable id",
                kind.as_str()
            ),
        )
    })
}

/// Claim `name` as an id: a string of 1..=512 visible ASCII bytes.
fn claim_id(claims: &Map<String, Value>, name: &str) -> Result<String, IdentityError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .and_then(|value| usable_id(value.as_bytes()))
        .ok_or_else(|| {
            IdentityError::new(
                Failure::BadClaim,
                format!("the claim {name:?} is missing or not a usable id"),
            )
        })
}

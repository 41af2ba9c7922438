//! `mcp.identity`: who a request acts for. File, environment or defaults
//! for the plain settings; `mtls` and `jwt` are on when their block is in
//! the file (`mtls: {}` for the defaults).

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::super::{Checker, boolean};
use crate::config::env;
use crate::config::settings::{self, Setting};
use crate::config::*;
use crate::identity::{ClaimNames, IdentityConfig, JwtConfig, MAX_ID_LEN, MtlsConfig};

pub(super) fn resolve(tls: Option<&ServerTls>, c: &mut Checker<'_>) -> IdentityConfig {
    let mut header = |setting: &Setting, default: &'static str| {
        c.get(setting, HeaderName::from_static(default), header_name)
    };
    let session_header = header(&settings::MCP_SESSION_HEADER, DEFAULT_MCP_SESSION_HEADER);
    let tenant_header = header(&settings::MCP_TENANT_HEADER, DEFAULT_MCP_TENANT_HEADER);
    let user_header = header(&settings::MCP_USER_HEADER, DEFAULT_MCP_USER_HEADER);
    let trust_headers = c.get(
        &settings::MCP_TRUST_HEADERS,
        DEFAULT_MCP_TRUST_IDENTITY_HEADERS,
        boolean,
    );
    let default_tenant = c.get(&settings::MCP_TENANT, DEFAULT_TENANT_ID.to_owned(), |id| {
        checked_id(id, false)
    });
    let default_user = c.get(&settings::MCP_USER, DEFAULT_USER_ID.to_owned(), |id| {
        checked_id(id, true)
    });
    let principal = c.get(
        &settings::MCP_PRINCIPAL,
        DEFAULT_PRINCIPAL.to_owned(),
        principal_id,
    );
    let session_scope = c.get(
        &settings::MCP_SESSION_SCOPE,
        DEFAULT_SESSION_SCOPE,
        |text: String| text.parse(),
    );
    let replaced = "the session is the principal's now: set mcp.identity.principal \
                    (AEGIS_PRINCIPAL), or session_scope: client for clients trusted to name \
                    their own sessions";
    if c.file.has("mcp.identity.default_session") {
        c.problems
            .push(format!("mcp.identity.default_session: removed; {replaced}"));
    }
    if env::string(c.env, REMOVED_ENV_MCP_DEFAULT_SESSION).is_some() {
        c.problems.push(format!(
            "{REMOVED_ENV_MCP_DEFAULT_SESSION}: removed; {replaced}"
        ));
    }

    let mtls = c.file.has("mcp.identity.mtls").then(|| MtlsConfig {
        san: c.get(&settings::MCP_MTLS_SAN, DEFAULT_MTLS_SAN, |text: String| {
            text.parse()
        }),
    });
    if mtls.is_some() && tls.and_then(|tls| tls.client_ca_file.as_ref()).is_none() {
        c.problems.push(
            "mcp.identity.mtls: needs mcp.tls.client_ca_file (the MCP listener must verify \
             client certificates for their SANs to name anyone)"
                .to_owned(),
        );
    }
    let jwt = if c.file.has("mcp.identity.jwt") {
        jwt(c)
    } else {
        None
    };

    IdentityConfig {
        principal,
        session_scope,
        session_header,
        tenant_header,
        user_header,
        trust_headers,
        default_tenant,
        default_user,
        mtls,
        jwt,
    }
}

/// `mcp.identity.jwt`; `None` (with the problems recorded) when a required
/// setting is missing.
fn jwt(c: &mut Checker<'_>) -> Option<JwtConfig> {
    let mut required = |setting: &Setting| -> Option<String> {
        let value: Option<String> = c.layer(setting).map(|layered| layered.value);
        let value = value.as_deref().map(str::trim).unwrap_or_default();
        if value.is_empty() {
            let path = setting.path;
            c.problems
                .push(format!("{path}: required when mcp.identity.jwt is set"));
            return None;
        }
        Some(value.to_owned())
    };
    let issuer = required(&settings::MCP_JWT_ISSUER);
    let audience = required(&settings::MCP_JWT_AUDIENCE);
    let jwks_file = required(&settings::MCP_JWT_JWKS_FILE);
    let header = c.get(
        &settings::MCP_JWT_HEADER,
        HeaderName::from_static(DEFAULT_JWT_HEADER),
        header_name,
    );
    let forward = c.get(&settings::MCP_JWT_FORWARD, DEFAULT_JWT_FORWARD, boolean);
    let leeway_s = c.get(&settings::MCP_JWT_LEEWAY_S, DEFAULT_JWT_LEEWAY_S, |s| {
        if s > MAX_JWT_LEEWAY_S {
            return Err(format!("must be at most {MAX_JWT_LEEWAY_S} s, got {s}"));
        }
        Ok(s)
    });
    let mut claim = |setting: &Setting| {
        c.get(setting, None, |name: String| {
            let name = name.trim();
            if name.is_empty() {
                return Err("must not be empty (leave it out for the default)".to_owned());
            }
            Ok(Some(name.to_owned()))
        })
    };
    let principal = claim(&settings::MCP_JWT_CLAIM_PRINCIPAL)
        .unwrap_or_else(|| DEFAULT_JWT_PRINCIPAL_CLAIM.to_owned());
    let tenant = claim(&settings::MCP_JWT_CLAIM_TENANT);
    let user = claim(&settings::MCP_JWT_CLAIM_USER);
    Some(JwtConfig {
        jwks_file: PathBuf::from(jwks_file?),
        issuer: issuer?,
        audience: audience?,
        header,
        forward,
        leeway: Duration::from_secs(leeway_s),
        claims: ClaimNames {
            principal,
            tenant,
            user,
        },
    })
}

/// A principal: 1..=[`MAX_ID_LEN`] bytes of visible ASCII (what mTLS SANs
/// and JWT claims must be too), surrounding spaces trimmed.
fn principal_id(text: String) -> Result<String, String> {
    let id = text.trim();
    crate::identity::usable_id(id.as_bytes()).ok_or_else(|| {
        format!("must be 1 to {MAX_ID_LEN} bytes of visible ASCII (no spaces), got {id:?}")
    })
}

fn header_name(text: String) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| format!("invalid header name {text:?}"))
}

/// An id that goes into ledger rows: at most [`MAX_ID_LEN`] bytes, no control
/// characters, surrounding spaces trimmed; empty only where `may_be_empty`.
fn checked_id(text: String, may_be_empty: bool) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() && !may_be_empty {
        return Err("must not be empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "must be at most {MAX_ID_LEN} bytes, got {}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("must not contain control characters, got {id:?}"));
    }
    Ok(id.to_owned())
}

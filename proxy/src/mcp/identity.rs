//! Who a request acts for: the sidecar's session key is `(tenant_id,
//! session_id)` (`README.md` beside this module, "Sessions"; what this does
//! not yet protect: `ARCHITECTURE.md`, "Trust boundaries").
//!
//! - `session_id`: the configured session header (default
//!   `x-aegis-session-id`), else MCP's `Mcp-Session-Id`, else the
//!   per-process default session.
//! - `tenant_id` and `user_id`: from configuration (one agent per pod), or
//!   from headers only when configuration says to trust them — an agent must
//!   not be able to pick another tenant's budget by sending a header.
//!
//! Header values that are empty, not visible ASCII, or over [`MAX_ID_LEN`]
//! bytes are ignored (the next source applies), so a malformed header can
//! neither break a session key nor smuggle control characters into logs.

use http::HeaderMap;
use http::header::HeaderName;

/// Longest id taken from a header: what the ledger accepts.
pub use aegis_ledger::append::MAX_ID_LEN;

/// MCP's own session header.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// How identity is read from requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Header naming the sidecar session (checked before `Mcp-Session-Id`).
    pub session_header: HeaderName,
    /// Headers naming tenant and user, honoured only when `trust_headers`.
    pub tenant_header: HeaderName,
    pub user_header: HeaderName,
    pub trust_headers: bool,
    pub default_tenant: String,
    pub default_user: String,
    pub default_session: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            session_header: HeaderName::from_static("x-aegis-session-id"),
            tenant_header: HeaderName::from_static("x-aegis-tenant-id"),
            user_header: HeaderName::from_static("x-aegis-user-id"),
            trust_headers: false,
            default_tenant: "default".into(),
            default_user: String::new(),
            default_session: "default".into(),
        }
    }
}

/// Where the session id came from (for logs; a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSource {
    Header,
    McpSessionId,
    /// The egress proxy's `Proxy-Authorization: Basic` username.
    ProxyAuthorization,
    Default,
}

/// The identity a request acts under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub session_source: SessionSource,
}

/// Resolves a request's identity from its headers.
pub fn resolve(headers: &HeaderMap, config: &IdentityConfig) -> Identity {
    let (session_id, session_source) = match header_id(headers, &config.session_header) {
        Some(id) => (id, SessionSource::Header),
        None => match header_id(headers, &MCP_SESSION_ID) {
            Some(id) => (id, SessionSource::McpSessionId),
            None => (config.default_session.clone(), SessionSource::Default),
        },
    };
    let trusted = |name: &HeaderName, default: &str| {
        config
            .trust_headers
            .then(|| header_id(headers, name))
            .flatten()
            .unwrap_or_else(|| default.to_owned())
    };
    Identity {
        tenant_id: trusted(&config.tenant_header, &config.default_tenant),
        user_id: trusted(&config.user_header, &config.default_user),
        session_id,
        session_source,
    }
}

/// The header's value when it is a usable id: one value, visible ASCII,
/// 1..=MAX_ID_LEN bytes.
fn header_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None; // repeated: ambiguous, ignored
    }
    let bytes = value.as_bytes();
    let usable = !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic());
    usable.then(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or(MCP_SESSION_ID),
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            );
        }
        map
    }

    #[test]
    fn session_from_our_header_then_mcp_then_default() {
        let config = IdentityConfig::default();
        let id = resolve(
            &headers(&[("x-aegis-session-id", "s1"), ("mcp-session-id", "m1")]),
            &config,
        );
        assert_eq!(
            (id.session_id.as_str(), id.session_source),
            ("s1", SessionSource::Header)
        );
        let id = resolve(&headers(&[("mcp-session-id", "m1")]), &config);
        assert_eq!(
            (id.session_id.as_str(), id.session_source),
            ("m1", SessionSource::McpSessionId)
        );
        let id = resolve(&headers(&[]), &config);
        assert_eq!(
            (id.session_id.as_str(), id.session_source),
            ("default", SessionSource::Default)
        );
    }

    #[test]
    fn tenant_and_user_headers_count_only_when_trusted() {
        let sent = headers(&[
            ("x-aegis-tenant-id", "other-tenant"),
            ("x-aegis-user-id", "mallory"),
        ]);
        let config = IdentityConfig {
            default_tenant: "acme".into(),
            default_user: "agent-7".into(),
            ..IdentityConfig::default()
        };
        let id = resolve(&sent, &config);
        assert_eq!(
            (id.tenant_id.as_str(), id.user_id.as_str()),
            ("acme", "agent-7")
        );
        let trusting = IdentityConfig {
            trust_headers: true,
            ..config
        };
        let id = resolve(&sent, &trusting);
        assert_eq!(
            (id.tenant_id.as_str(), id.user_id.as_str()),
            ("other-tenant", "mallory")
        );
    }

    #[test]
    fn unusable_header_values_fall_through() {
        let config = IdentityConfig::default();
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in [
            headers(&[("x-aegis-session-id", "")]),
            headers(&[("x-aegis-session-id", "has space")]),
            headers(&[("x-aegis-session-id", &long)]),
            headers(&[("x-aegis-session-id", "a"), ("x-aegis-session-id", "b")]),
        ] {
            let mut with_mcp = bad.clone();
            with_mcp.append(MCP_SESSION_ID, HeaderValue::from_static("m1"));
            assert_eq!(
                resolve(&with_mcp, &config).session_source,
                SessionSource::McpSessionId,
                "{bad:?}"
            );
        }
        let mut utf8 = HeaderMap::new();
        utf8.append(
            "x-aegis-session-id",
            HeaderValue::from_bytes("s\u{e9}".as_bytes()).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(
            resolve(&utf8, &config).session_source,
            SessionSource::Default
        );
        let exact = "y".repeat(MAX_ID_LEN);
        assert_eq!(
            resolve(&headers(&[("x-aegis-session-id", &exact)]), &config).session_id,
            exact
        );
    }
}

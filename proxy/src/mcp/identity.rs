//! Who an MCP request acts for: what this listener reads from a request
//! for [`crate::identity::Resolver`] (the rules are there; `README.md`
//! beside this module, "Sessions").
//!
//! - The JWT (`mcp.identity.jwt`): `<jwt.header>: Bearer <token>`, one
//!   such header.
//! - The session a client names, read only under `session_scope: client`:
//!   the configured session header (`x-aegis-session-id`), else
//!   `Mcp-Session-Id`.
//! - `Mcp-Session-Id` itself, recorded with every envelope.
//!
//! Header values that are empty, not visible ASCII, repeated or over
//! [`MAX_ID_LEN`] bytes are ignored (the next source applies), so a
//! malformed header can neither break a session key nor smuggle control
//! characters into logs.

use std::sync::Arc;

use http::HeaderMap;
use http::header::HeaderName;

use crate::identity::{Credential, Listener, Presented, Resolver, header_id};
pub use crate::identity::{
    Identity, IdentityConfig, IdentityError, MAX_ID_LEN, PrincipalSource, SessionSource,
};
use crate::peer::Peer;

/// MCP's own session header.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Resolves an MCP request's identity from its headers and connection.
pub fn resolve(
    resolver: &Resolver,
    headers: &HeaderMap,
    peer: Option<&Arc<Peer>>,
) -> Result<Identity, IdentityError> {
    let config = resolver.config();
    let named = header_id(headers, &config.session_header);
    let mcp_session_id = header_id(headers, &MCP_SESSION_ID);
    let client_session = match (&named, &mcp_session_id) {
        (Some(id), _) => Some((id.as_str(), SessionSource::Header)),
        (None, Some(id)) => Some((id.as_str(), SessionSource::McpSessionId)),
        (None, None) => None,
    };
    let credential = match &config.jwt {
        Some(jwt) => bearer(headers, &jwt.header),
        None => Credential::Absent,
    };
    resolver.resolve(&Presented {
        listener: Listener::Mcp,
        headers,
        peer: peer.map(AsRef::as_ref),
        credential,
        client_session,
        mcp_session_id: mcp_session_id.as_deref(),
    })
}

/// The token of the single `name: Bearer <token>` header.
fn bearer<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Credential<'a> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Credential::Absent;
    };
    if values.next().is_some() {
        return Credential::Unreadable;
    }
    let Ok(text) = value.to_str() else {
        return Credential::Unreadable;
    };
    match text.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Credential::Token(token.trim())
        }
        _ => Credential::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::HeaderValue;

    use super::*;
    use crate::identity::SessionScope;
    use crate::metrics::Metrics;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn resolver(config: IdentityConfig) -> Resolver {
        Resolver::open(config, Metrics::new().unwrap().identity).unwrap()
    }

    fn client_scope() -> IdentityConfig {
        IdentityConfig {
            session_scope: SessionScope::Client,
            ..IdentityConfig::default()
        }
    }

    fn session(r: &Resolver, h: &HeaderMap) -> (String, SessionSource) {
        let id = resolve(r, h, None).unwrap();
        (id.session_id, id.session_source)
    }

    #[test]
    fn by_default_the_session_is_the_principal_whatever_the_client_names() {
        let r = resolver(IdentityConfig::default());
        let sent = headers(&[("x-aegis-session-id", "s1"), ("mcp-session-id", "m1")]);
        let id = resolve(&r, &sent, None).unwrap();
        assert_eq!(
            (id.session_id.as_str(), id.session_source),
            ("default", SessionSource::Principal)
        );
        assert_eq!(
            (id.principal.as_str(), id.principal_source),
            ("default", PrincipalSource::Config)
        );
        assert_eq!(id.mcp_session_id.as_deref(), Some("m1"), "recorded");
    }

    #[test]
    fn client_scope_reads_our_header_then_mcp_then_the_principal() {
        let r = resolver(client_scope());
        let both = headers(&[("x-aegis-session-id", "s1"), ("mcp-session-id", "m1")]);
        assert_eq!(session(&r, &both), ("s1".into(), SessionSource::Header));
        let mcp = headers(&[("mcp-session-id", "m1")]);
        assert_eq!(
            session(&r, &mcp),
            ("m1".into(), SessionSource::McpSessionId)
        );
        assert_eq!(
            session(&r, &headers(&[])),
            ("default".into(), SessionSource::Principal)
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
        let id = resolve(&resolver(config.clone()), &sent, None).unwrap();
        assert_eq!(
            (id.tenant_id.as_str(), id.user_id.as_str()),
            ("acme", "agent-7")
        );
        let trusting = IdentityConfig {
            trust_headers: true,
            ..config
        };
        let id = resolve(&resolver(trusting), &sent, None).unwrap();
        assert_eq!(
            (id.tenant_id.as_str(), id.user_id.as_str()),
            ("other-tenant", "mallory")
        );
    }

    #[test]
    fn unusable_header_values_fall_through() {
        let r = resolver(client_scope());
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
                session(&r, &with_mcp).1,
                SessionSource::McpSessionId,
                "{bad:?}"
            );
        }
        let mut utf8 = HeaderMap::new();
        utf8.append(
            "x-aegis-session-id",
            HeaderValue::from_bytes("s\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(session(&r, &utf8).1, SessionSource::Principal);
        let exact = "y".repeat(MAX_ID_LEN);
        assert_eq!(
            session(&r, &headers(&[("x-aegis-session-id", &exact)])).0,
            exact
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_one_header() {
        let name = HeaderName::from_static("authorization");
        assert_eq!(bearer(&headers(&[]), &name), Credential::Absent);
        let h = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(bearer(&h, &name), Credential::Token("abc.def.ghi"));
        let h = headers(&[("authorization", "bearer  abc")]);
        assert_eq!(bearer(&h, &name), Credential::Token("abc"));
        for bad in [
            headers(&[("authorization", "Basic abc")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
        ] {
            assert_eq!(bearer(&bad, &name), Credential::Unreadable, "{bad:?}");
        }
    }
}

//! Who an egress request acts for: what this listener reads from a proxy
//! request for [`crate::identity::Resolver`] (the rules are there).
//!
//! - The JWT (`mcp.identity.jwt`): `Proxy-Authorization: Bearer <token>`,
//!   or `Proxy-Authorization: Basic` with the token as the password — what
//!   an `HTTP_PROXY` URL can carry (`http://agent:<jwt>@sidecar:3128`).
//! - The session a client names, read only under `session_scope: client`:
//!   the configured session header (`x-aegis-session-id`), else the
//!   `Proxy-Authorization: Basic` username.
//!
//! MCP's `Mcp-Session-Id` means nothing on a proxy request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;

use crate::identity::{
    Credential, Identity, IdentityError, Listener, Presented, Resolver, SessionSource, header_id,
    usable_id,
};

/// Resolves the identity of a proxy request from its headers.
pub fn resolve(resolver: &Resolver, headers: &HeaderMap) -> Result<Identity, IdentityError> {
    let config = resolver.config();
    let auth = ProxyAuth::read(headers);
    let named = header_id(headers, &config.session_header);
    let username = match &auth {
        ProxyAuth::Basic { user, .. } => usable_id(user),
        _ => None,
    };
    let client_session = match (&named, &username) {
        (Some(id), _) => Some((id.as_str(), SessionSource::Header)),
        (None, Some(user)) => Some((user.as_str(), SessionSource::ProxyAuthorization)),
        (None, None) => None,
    };
    let credential = match &auth {
        ProxyAuth::Absent => Credential::Absent,
        ProxyAuth::Unreadable => Credential::Unreadable,
        ProxyAuth::Bearer(token) => Credential::Token(token),
        ProxyAuth::Basic { password, .. } => match std::str::from_utf8(password) {
            Ok(token) if !token.is_empty() => Credential::Token(token),
            _ => Credential::Unreadable,
        },
    };
    resolver.resolve(&Presented {
        listener: Listener::Forward,
        headers,
        // The forward listener is plain TCP: no certificate to read.
        peer: None,
        credential,
        client_session,
        mcp_session_id: None,
    })
}

/// A request's single `Proxy-Authorization` header. `Debug` never shows
/// the token or password.
#[derive(PartialEq, Eq)]
enum ProxyAuth<'a> {
    Absent,
    /// Repeated, not text, another scheme, or Basic that does not decode.
    Unreadable,
    Bearer(&'a str),
    Basic {
        user: Vec<u8>,
        password: Vec<u8>,
    },
}

impl std::fmt::Debug for ProxyAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyAuth::Absent => f.write_str("Absent"),
            ProxyAuth::Unreadable => f.write_str("Unreadable"),
            ProxyAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            ProxyAuth::Basic { user, .. } => {
                write!(
                    f,
                    "Basic {{ user: {:?}, password: <redacted> }}",
                    String::from_utf8_lossy(user)
                )
            }
        }
    }
}

impl<'a> ProxyAuth<'a> {
    fn read(headers: &'a HeaderMap) -> ProxyAuth<'a> {
        let mut values = headers.get_all(PROXY_AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return ProxyAuth::Absent;
        };
        if values.next().is_some() {
            return ProxyAuth::Unreadable;
        }
        let Ok(text) = value.to_str() else {
            return ProxyAuth::Unreadable;
        };
        let Some((scheme, rest)) = text.trim().split_once(' ') else {
            return ProxyAuth::Unreadable;
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            return ProxyAuth::Bearer(rest.trim());
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return ProxyAuth::Unreadable;
        }
        let Ok(decoded) = STANDARD.decode(rest.trim()) else {
            return ProxyAuth::Unreadable;
        };
        match decoded.iter().position(|b| *b == b':') {
            Some(colon) => ProxyAuth::Basic {
                user: decoded[..colon].to_vec(),
                password: decoded[colon + 1..].to_vec(),
            },
            None => ProxyAuth::Basic {
                user: decoded,
                password: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;
    use crate::identity::{IdentityConfig, MAX_ID_LEN, SessionScope};
    use crate::metrics::Metrics;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    fn resolver(scope: SessionScope) -> Resolver {
        let config = IdentityConfig {
            session_scope: scope,
            ..IdentityConfig::default()
        };
        Resolver::open(config, Metrics::new().unwrap().identity).unwrap()
    }

    #[test]
    fn by_default_the_proxy_username_names_no_session() {
        let r = resolver(SessionScope::Principal);
        let auth = basic("s-basic:ignored");
        let sent = headers(&[
            ("x-aegis-session-id", "s-header"),
            ("proxy-authorization", &auth),
        ]);
        let id = resolve(&r, &sent).unwrap();
        assert_eq!(id.session_id, "default");
        assert_eq!(id.session_source, SessionSource::Principal);
    }

    #[test]
    fn client_scope_reads_the_header_then_the_basic_username() {
        let r = resolver(SessionScope::Client);
        let auth = basic("s-basic:ignored");
        let both = headers(&[
            ("x-aegis-session-id", "s-header"),
            ("proxy-authorization", &auth),
        ]);
        assert_eq!(resolve(&r, &both).unwrap().session_id, "s-header");
        let id = resolve(&r, &headers(&[("proxy-authorization", &auth)])).unwrap();
        assert_eq!(id.session_id, "s-basic");
        assert_eq!(id.session_source, SessionSource::ProxyAuthorization);
        let id = resolve(&r, &headers(&[("mcp-session-id", "m1")])).unwrap();
        assert_eq!(id.session_id, "default");
        assert_eq!(id.mcp_session_id, None);
        assert_eq!(id.tenant_id, "default");
    }

    #[test]
    fn unusable_basic_credentials_fall_back_to_the_principal() {
        let r = resolver(SessionScope::Client);
        for value in [
            "Bearer abc".to_owned(),
            "Basic !!!".to_owned(),
            basic(":only-password"),
            basic("has space:x"),
            basic(&"x".repeat(MAX_ID_LEN + 1)),
        ] {
            let id = resolve(&r, &headers(&[("proxy-authorization", &value)])).unwrap();
            assert_eq!(id.session_id, "default", "{value}");
        }
        let nopass = headers(&[("proxy-authorization", &basic("nopass"))]);
        assert_eq!(resolve(&r, &nopass).unwrap().session_id, "nopass");
    }

    #[test]
    fn the_token_is_a_bearer_or_the_basic_password() {
        let read = |value: &str| {
            let h = headers(&[("proxy-authorization", value)]);
            match ProxyAuth::read(&h) {
                ProxyAuth::Bearer(t) => format!("bearer {t}"),
                ProxyAuth::Basic { user, password } => format!(
                    "basic {} {}",
                    String::from_utf8_lossy(&user),
                    String::from_utf8_lossy(&password)
                ),
                other => format!("{other:?}"),
            }
        };
        assert_eq!(read("Bearer a.b.c"), "bearer a.b.c");
        assert_eq!(read(&basic("agent:a.b.c")), "basic agent a.b.c");
        assert_eq!(read("Digest x"), "Unreadable");
        assert_eq!(read("Basic !!!"), "Unreadable");
    }
}

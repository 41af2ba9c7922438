//! Who an egress request acts for. The tenant and user come from
//! `mcp.identity` (configuration, or trusted headers); the session from the
//! configured session header (`x-aegis-session-id`), else the username of
//! `Proxy-Authorization: Basic` (the one thing every HTTP client can set
//! through its proxy URL: `http://SESSION:x@sidecar:3128`), else the default
//! session.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;

use crate::mcp::identity::{self, Identity, IdentityConfig, MAX_ID_LEN, SessionSource};

/// Resolves the identity of a proxy request from its headers.
pub fn resolve(headers: &HeaderMap, config: &IdentityConfig) -> Identity {
    let mut identity = identity::resolve(headers, config);
    if identity.session_source == SessionSource::Header {
        return identity;
    }
    // MCP's own session header means nothing on a proxy request.
    match basic_username(headers) {
        Some(user) => {
            identity.session_id = user;
            identity.session_source = SessionSource::ProxyAuthorization;
        }
        None => {
            identity.session_id = config.default_session.clone();
            identity.session_source = SessionSource::Default;
        }
    }
    identity
}

/// The username of a single `Proxy-Authorization: Basic` header, when it is
/// a usable id (visible ASCII, 1..=MAX_ID_LEN bytes). The password is
/// ignored: the header names a session, it does not authenticate.
fn basic_username(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(PROXY_AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let user = match decoded.iter().position(|b| *b == b':') {
        Some(colon) => &decoded[..colon],
        None => &decoded[..],
    };
    let usable =
        !user.is_empty() && user.len() <= MAX_ID_LEN && user.iter().all(u8::is_ascii_graphic);
    usable.then(|| String::from_utf8_lossy(user).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;

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

    #[test]
    fn header_then_basic_username_then_default() {
        let config = IdentityConfig::default();
        let auth = basic("s-basic:ignored");
        let both = headers(&[
            ("x-aegis-session-id", "s-header"),
            ("proxy-authorization", &auth),
        ]);
        assert_eq!(resolve(&both, &config).session_id, "s-header");
        let id = resolve(&headers(&[("proxy-authorization", &auth)]), &config);
        assert_eq!(id.session_id, "s-basic");
        assert_eq!(id.session_source, SessionSource::ProxyAuthorization);
        let id = resolve(&headers(&[("mcp-session-id", "m1")]), &config);
        assert_eq!(id.session_id, "default");
        assert_eq!(id.tenant_id, "default");
    }

    #[test]
    fn unusable_basic_credentials_fall_back_to_the_default() {
        let config = IdentityConfig::default();
        for value in [
            "Bearer abc".to_owned(),
            "Basic !!!".to_owned(),
            basic(":only-password"),
            basic("has space:x"),
            basic(&"x".repeat(MAX_ID_LEN + 1)),
        ] {
            let id = resolve(&headers(&[("proxy-authorization", &value)]), &config);
            assert_eq!(id.session_id, "default", "{value}");
        }
        assert_eq!(
            resolve(
                &headers(&[("proxy-authorization", &basic("nopass"))]),
                &config
            )
            .session_id,
            "nopass"
        );
    }
}

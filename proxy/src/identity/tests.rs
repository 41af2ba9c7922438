#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::jwks::{JwksReload, JwksStore};
use super::test_keys::{TestKey, jwks};
use super::*;
use crate::metrics::Metrics;
use crate::peer::{Peer, PeerCert};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "iss": "https://issuer.example", "aud": "aegis-proxy",
        "sub": "spiffe://cluster/agent-7", "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// A JWT configuration over a JWK Set file holding `keys`.
fn with_jwt(dir: &tempfile::TempDir, keys: &[&TestKey], claims: ClaimNames) -> IdentityConfig {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    IdentityConfig {
        jwt: Some(JwtConfig {
            jwks_file: path,
            issuer: "https://issuer.example".into(),
            audience: "aegis-proxy".into(),
            header: http::header::AUTHORIZATION,
            forward: false,
            leeway: Duration::from_secs(60),
            claims,
        }),
        ..IdentityConfig::default()
    }
}

fn resolver(config: IdentityConfig) -> Resolver {
    Resolver::open(config, Metrics::new().unwrap().identity).unwrap()
}

fn presented<'a>(headers: &'a HeaderMap, credential: Credential<'a>) -> Presented<'a> {
    Presented {
        listener: Listener::Mcp,
        headers,
        peer: None,
        credential,
        client_session: Some(("client-named", SessionSource::Header)),
        mcp_session_id: Some("m-1"),
    }
}

fn peer(uri: &[&str], dns: &[&str]) -> Peer {
    Peer {
        addr: "127.0.0.1:1".parse().unwrap(),
        cert: Some(PeerCert {
            subject: "CN=agent".into(),
            uri_sans: uri.iter().map(|s| (*s).to_owned()).collect(),
            dns_sans: dns.iter().map(|s| (*s).to_owned()).collect(),
        }),
    }
}

#[test]
fn reason_codes_are_pinned() {
    let codes: Vec<&str> = Failure::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(
        codes,
        [
            "missing",
            "malformed",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "wrong_issuer",
            "wrong_audience",
            "unknown_key",
            "bad_claim",
            "no_san",
        ]
    );
    assert!(
        Failure::ALL
            .iter()
            .all(|f| f.is_authentication() != (*f == Failure::NoSan))
    );
}

#[test]
fn without_mtls_or_jwt_the_configured_principal_is_the_session() {
    let headers = HeaderMap::new();
    let r = resolver(IdentityConfig {
        principal: "pod-7".into(),
        ..IdentityConfig::default()
    });
    let id = r.resolve(&presented(&headers, Credential::Absent)).unwrap();
    assert_eq!(
        (id.principal.as_str(), id.principal_source),
        ("pod-7", PrincipalSource::Config)
    );
    assert_eq!(
        (id.session_id.as_str(), id.session_source),
        ("pod-7", SessionSource::Principal)
    );
    assert_eq!(id.mcp_session_id.as_deref(), Some("m-1"));
    // A token sent when none is configured is not read.
    let id = r
        .resolve(&presented(&headers, Credential::Token("x.y.z")))
        .unwrap();
    assert_eq!(id.principal, "pod-7");
}

#[test]
fn client_scope_takes_the_clients_session_under_the_same_principal() {
    let headers = HeaderMap::new();
    let r = resolver(IdentityConfig {
        session_scope: SessionScope::Client,
        ..IdentityConfig::default()
    });
    let id = r.resolve(&presented(&headers, Credential::Absent)).unwrap();
    assert_eq!(
        (id.session_id.as_str(), id.session_source),
        ("client-named", SessionSource::Header)
    );
    assert_eq!(id.principal, "default");
    let none = Presented {
        client_session: None,
        ..presented(&headers, Credential::Absent)
    };
    assert_eq!(r.resolve(&none).unwrap().session_id, "default");
}

#[test]
fn mtls_names_the_principal_by_its_first_san_of_the_kind() {
    let headers = HeaderMap::new();
    let r = resolver(IdentityConfig {
        mtls: Some(MtlsConfig { san: SanKind::Uri }),
        ..IdentityConfig::default()
    });
    let cert = peer(&["spiffe://c/a", "spiffe://c/b"], &["a.svc"]);
    let with = |peer| Presented {
        peer,
        ..presented(&headers, Credential::Absent)
    };
    let id = r.resolve(&with(Some(&cert))).unwrap();
    assert_eq!(
        (id.principal.as_str(), id.principal_source),
        ("spiffe://c/a", PrincipalSource::Mtls)
    );
    assert_eq!(id.session_id, "spiffe://c/a");
    let dns_only = peer(&[], &["a.svc"]);
    let spaced = peer(&["has space"], &[]);
    let no_cert = Peer {
        cert: None,
        ..cert.clone()
    };
    for bad in [None, Some(&dns_only), Some(&spaced), Some(&no_cert)] {
        assert_eq!(r.resolve(&with(bad)).unwrap_err().failure, Failure::NoSan);
    }
    let dns = resolver(IdentityConfig {
        mtls: Some(MtlsConfig { san: SanKind::Dns }),
        ..IdentityConfig::default()
    });
    assert_eq!(dns.resolve(&with(Some(&cert))).unwrap().principal, "a.svc");
    // The forward listener has no TLS: mTLS does not apply there.
    let forward = Presented {
        listener: Listener::Forward,
        ..with(None)
    };
    assert_eq!(r.resolve(&forward).unwrap().principal, "default");
}

#[test]
fn a_jwt_is_required_and_names_the_principal_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::es256("k1");
    let mut config = with_jwt(&dir, &[&key], ClaimNames::default());
    config.mtls = Some(MtlsConfig { san: SanKind::Uri });
    let r = resolver(config);
    let headers = HeaderMap::new();
    let cert = peer(&["spiffe://c/from-cert"], &[]);
    let token = key.token(&claims(json!({})));
    let with = |credential| Presented {
        peer: Some(&cert),
        ..presented(&headers, credential)
    };
    let id = r.resolve(&with(Credential::Token(&token))).unwrap();
    assert_eq!(
        (id.principal.as_str(), id.principal_source),
        ("spiffe://cluster/agent-7", PrincipalSource::Jwt)
    );
    assert_eq!(id.session_id, "spiffe://cluster/agent-7");
    assert_eq!(
        r.resolve(&with(Credential::Absent)).unwrap_err().failure,
        Failure::Missing
    );
    assert_eq!(
        r.resolve(&with(Credential::Unreadable))
            .unwrap_err()
            .failure,
        Failure::Malformed
    );
    // mTLS still applies: a valid token on a connection without a SAN is refused.
    let bare = Presented {
        peer: None,
        ..with(Credential::Token(&token))
    };
    assert_eq!(r.resolve(&bare).unwrap_err().failure, Failure::NoSan);
    // A principal claim that is no usable id.
    for sub in [
        json!(""),
        json!(7),
        json!("a b"),
        json!("x".repeat(MAX_ID_LEN + 1)),
    ] {
        let token = key.token(&claims(json!({"sub": sub})));
        let request = Presented {
            peer: Some(&cert),
            ..presented(&headers, Credential::Token(&token))
        };
        let e = r.resolve(&request).unwrap_err();
        assert_eq!(e.failure, Failure::BadClaim, "{sub}");
        assert!(!e.to_string().contains(&token), "never the token");
    }
}

#[test]
fn tenant_and_user_claims_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::ed25519("k1");
    let names = ClaimNames {
        principal: "agent".into(),
        tenant: Some("org".into()),
        user: Some("on_behalf_of".into()),
    };
    let r = resolver(IdentityConfig {
        trust_headers: true,
        ..with_jwt(&dir, &[&key], names)
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-aegis-tenant-id",
        HeaderValue::from_static("header-tenant"),
    );
    let token = key.token(&claims(
        json!({"agent": "a-1", "org": "acme", "on_behalf_of": "alice"}),
    ));
    let id = r
        .resolve(&presented(&headers, Credential::Token(&token)))
        .unwrap();
    assert_eq!(
        (
            id.principal.as_str(),
            id.tenant_id.as_str(),
            id.user_id.as_str()
        ),
        ("a-1", "acme", "alice")
    );
    let token = key.token(&claims(json!({"agent": "a-1", "org": "acme"})));
    let e = r
        .resolve(&presented(&headers, Credential::Token(&token)))
        .unwrap_err();
    assert_eq!(e.failure, Failure::BadClaim);
}

#[test]
fn the_key_set_reloads_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestKey::es256("old");
    let new = TestKey::es256("new");
    let config = with_jwt(&dir, &[&old], ClaimNames::default());
    let path = config.jwt.as_ref().unwrap().jwks_file.clone();
    let r = resolver(config);
    let headers = HeaderMap::new();
    let old_token = old.token(&claims(json!({})));
    let new_token = new.token(&claims(json!({})));
    let check = |token: &str| r.resolve(&presented(&headers, Credential::Token(token)));
    assert!(check(&old_token).is_ok());
    assert_eq!(check(&new_token).unwrap_err().failure, Failure::UnknownKey);
    assert_eq!(r.reload_jwks(), Some(JwksReload::Unchanged));

    std::fs::write(&path, jwks(&[&new])).unwrap();
    assert_eq!(r.reload_jwks(), Some(JwksReload::Reloaded { keys: 1 }));
    assert!(check(&new_token).is_ok());
    assert_eq!(check(&old_token).unwrap_err().failure, Failure::UnknownKey);

    std::fs::write(&path, "{\"keys\": [").unwrap();
    assert!(matches!(r.reload_jwks(), Some(JwksReload::Failed(_))));
    assert!(check(&new_token).is_ok(), "the last good set stays live");
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(r.reload_jwks(), Some(JwksReload::Failed(_))));
    assert!(check(&new_token).is_ok());
}

#[test]
fn an_unusable_key_set_at_start_up_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_jwt(&dir, &[], ClaimNames::default());
    let e = Resolver::open(config.clone(), Metrics::new().unwrap().identity).unwrap_err();
    assert!(e.starts_with("mcp.identity.jwt.jwks_file: "), "{e}");
    assert!(e.contains("no usable"), "{e}");
    config.jwt.as_mut().unwrap().jwks_file = dir.path().join("absent.json");
    assert!(JwksStore::open(dir.path().join("absent.json")).is_err());
    assert!(Resolver::open(config, Metrics::new().unwrap().identity).is_err());
}

#[test]
fn own_headers_are_stripped_unless_trusted() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-aegis-session-id", "s"),
        ("x-aegis-other", "o"),
        ("x-session", "named"),
        ("authorization", "Bearer t"),
        ("accept", "*/*"),
    ] {
        headers.insert(
            http::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let config = IdentityConfig {
        session_header: http::HeaderName::from_static("x-session"),
        ..IdentityConfig::default()
    };
    let mut out = headers.clone();
    config.strip_for_destination(&mut out);
    let mut left: Vec<&str> = out.keys().map(http::HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "authorization"]);
    let trusting = IdentityConfig {
        trust_headers: true,
        ..config
    };
    let mut out = headers;
    trusting.strip_for_destination(&mut out);
    assert!(out.contains_key("x-aegis-other") && out.contains_key("x-aegis-session-id"));
    assert!(!out.contains_key("x-session"));
}

#[test]
fn scopes_and_san_kinds_parse() {
    assert_eq!("Principal".parse(), Ok(SessionScope::Principal));
    assert_eq!(" client ".parse(), Ok(SessionScope::Client));
    assert!("session".parse::<SessionScope>().is_err());
    assert_eq!("URI".parse(), Ok(SanKind::Uri));
    assert_eq!("dns".parse(), Ok(SanKind::Dns));
    assert!("email".parse::<SanKind>().is_err());
}

#[test]
fn debug_output_never_shows_a_token() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer eyJ.secret.sig"),
    );
    let shown = format!(
        "{:?}",
        presented(&headers, Credential::Token("eyJ.secret.sig"))
    );
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

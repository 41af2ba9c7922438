#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use http::HeaderValue;
use prometheus::{IntCounterVec, Opts};

use super::*;
use crate::config::TokenEntry;

const READER: &str = "reader-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";
const ACME: &str = "acme-ingest-token-0123456789";

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Authenticator,
}

fn token(
    dir: &std::path::Path,
    name: &str,
    text: &str,
    role: Role,
    tenants: &[&str],
) -> TokenEntry {
    let file = dir.join(name);
    std::fs::write(&file, format!("{text}\n")).unwrap();
    TokenEntry {
        file,
        role,
        tenants: (!tenants.is_empty()).then(|| tenants.iter().map(|t| (*t).to_owned()).collect()),
    }
}

fn fixture(mtls: Vec<MtlsEntry>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = AuthConfig {
        tokens: vec![
            token(dir.path(), "r", READER, Role::Reader, &[]),
            token(dir.path(), "o", OPERATOR, Role::Operator, &[]),
            token(dir.path(), "a", ACME, Role::Ingest, &["acme"]),
        ],
        mtls,
    };
    let counters = IntCounterVec::new(Opts::new("t", "t"), &["result"]).unwrap();
    let tokens = Arc::new(TokenSet::load(&config.tokens, counters).unwrap());
    Fixture {
        _dir: dir,
        auth: Authenticator::new(&config, tokens),
    }
}

fn dev() -> Authenticator {
    let config = AuthConfig::default();
    let counters = IntCounterVec::new(Opts::new("t", "t"), &["result"]).unwrap();
    Authenticator::new(&config, Arc::new(TokenSet::load(&[], counters).unwrap()))
}

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

fn bearer(token: &str) -> HeaderMap {
    headers(&[("authorization", &format!("Bearer {token}"))])
}

fn peer(cert: Option<PeerCert>) -> Peer {
    Peer {
        addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        cert,
    }
}

fn cert(uri: &str, dns: &str, subject: &str) -> PeerCert {
    PeerCert {
        subject: subject.to_owned(),
        uri_sans: vec![uri.to_owned()],
        dns_sans: vec![dns.to_owned()],
    }
}

fn reason(result: Result<Access, AuthError>) -> &'static str {
    result.map(|_| "ok").unwrap_or_else(|e| e.reason())
}

#[test]
fn role_names_are_pinned_and_ordered() {
    assert_eq!(
        Role::ALL.map(Role::as_str),
        ["reader", "ingest", "operator"]
    );
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!(Role::Reader < Role::Ingest && Role::Ingest < Role::Operator);
    assert!(
        "admin"
            .parse::<Role>()
            .unwrap_err()
            .contains("reader, ingest or operator")
    );
    assert_eq!(AuthError::REASONS, ["missing", "invalid", "forbidden"]);
}

#[test]
fn every_route_needs_what_the_table_says() {
    use Method as M;
    let cases = [
        (Route::Healthz, M::GET, Need::Open),
        (Route::Readyz, M::GET, Need::Open),
        (Route::Metrics, M::GET, Need::Open),
        (Route::NotFound, M::POST, Need::Open),
        (Route::Events, M::GET, Need::Role(Role::Reader)),
        (Route::Events, M::POST, Need::Role(Role::Ingest)),
        (Route::Events, M::DELETE, Need::Role(Role::Reader)),
        (Route::Snapshot, M::GET, Need::Role(Role::Reader)),
        (Route::Verify, M::GET, Need::Role(Role::Reader)),
        (Route::Manifest, M::GET, Need::Role(Role::Reader)),
        (Route::Decide, M::POST, Need::Role(Role::Ingest)),
        (Route::ManifestReload, M::POST, Need::Role(Role::Operator)),
        (Route::Sanitizers, M::POST, Need::Role(Role::Operator)),
        (Route::Approvals, M::GET, Need::Role(Role::Operator)),
        (Route::Approval, M::GET, Need::Role(Role::Operator)),
        (Route::ApprovalApprove, M::POST, Need::Role(Role::Operator)),
        (Route::ApprovalDeny, M::POST, Need::Role(Role::Operator)),
        (Route::Decision, M::POST, Need::Role(Role::Ingest)),
        (Route::DecisionBatch, M::POST, Need::Role(Role::Ingest)),
        (Route::DecisionStatus, M::GET, Need::Role(Role::Ingest)),
        (Route::Propose, M::POST, Need::Role(Role::Ingest)),
        (Route::ProposeHealth, M::GET, Need::Open),
        (Route::Evaluate, M::POST, Need::Role(Role::Ingest)),
        (Route::SandboxEvaluate, M::POST, Need::Role(Role::Ingest)),
        (Route::RiskCheck, M::POST, Need::Role(Role::Ingest)),
        (Route::GovernanceHealth, M::GET, Need::Open),
        (Route::CustomerDecisions, M::GET, Need::Role(Role::Reader)),
        (Route::CustomerUsage, M::GET, Need::Role(Role::Reader)),
    ];
    for (route, method, need) in cases {
        assert_eq!(required(route, &method), need, "{route:?} {method}");
    }
}

#[test]
fn the_protected_routes_are_the_api_routes() {
    assert_eq!(
        super::super::protected_routes().collect::<Vec<_>>(),
        [
            "events",
            "snapshot",
            "verify",
            "sanitizers",
            "decide",
            "manifest",
            "manifest_reload",
            "approvals",
            "approval",
            "approval_approve",
            "approval_deny",
            "decision",
            "decision_batch",
            "decision_status",
            "propose",
            "evaluate",
            "sandbox_evaluate",
            "risk_check",
            "customer_decisions",
            "customer_decision",
            "customer_usage"
        ]
    );
}

#[test]
fn tokens_grant_their_role_and_no_more() {
    let f = fixture(Vec::new());
    let need = |role| Need::Role(role);
    let ok = |token: &str, role| reason(f.auth.authorize(need(role), &bearer(token), None));
    assert_eq!(ok(READER, Role::Reader), "ok");
    assert_eq!(ok(READER, Role::Ingest), "forbidden");
    assert_eq!(ok(READER, Role::Operator), "forbidden");
    assert_eq!(ok(ACME, Role::Ingest), "ok");
    assert_eq!(ok(ACME, Role::Operator), "forbidden");
    assert_eq!(ok(OPERATOR, Role::Operator), "ok");
    assert_eq!(ok(OPERATOR, Role::Reader), "ok");
    assert_eq!(ok("not-a-configured-token", Role::Reader), "invalid");
    assert_eq!(
        reason(
            f.auth
                .authorize(need(Role::Reader), &HeaderMap::new(), None)
        ),
        "missing"
    );
    let refused = f
        .auth
        .authorize(need(Role::Operator), &bearer(READER), None)
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs role operator"),
        "{refused}"
    );
    assert!(refused.to_string().contains("has role reader"), "{refused}");
    // Open routes need nothing, whatever is sent.
    assert_eq!(
        reason(f.auth.authorize(Need::Open, &bearer("x"), None)),
        "ok"
    );
}

#[test]
fn the_api_key_header_and_scheme_case_work_and_bad_headers_are_invalid() {
    let f = fixture(Vec::new());
    let check = |h: HeaderMap| reason(f.auth.authorize(Need::Role(Role::Reader), &h, None));
    assert_eq!(check(headers(&[("x-api-key", READER)])), "ok");
    assert_eq!(
        check(headers(&[("authorization", &format!("bearer {READER}"))])),
        "ok"
    );
    assert_eq!(
        check(headers(&[("authorization", &format!("Bearer   {READER}"))])),
        "ok"
    );
    for bad in [
        headers(&[("authorization", READER)]),
        headers(&[("authorization", &format!("Basic {READER}"))]),
        headers(&[("authorization", "Bearer")]),
        headers(&[("authorization", "Bearer ")]),
        headers(&[("authorization", &format!("Bearer {READER} {READER}"))]),
        headers(&[("x-api-key", "")]),
        headers(&[
            ("authorization", &format!("Bearer {READER}")),
            ("authorization", &format!("Bearer {READER}")),
        ]),
        headers(&[("x-api-key", READER), ("x-api-key", READER)]),
        headers(&[
            ("authorization", &format!("Bearer {READER}")),
            ("x-api-key", READER),
        ]),
    ] {
        assert_eq!(check(bad.clone()), "invalid", "{bad:?}");
    }
    let mut binary = HeaderMap::new();
    binary.insert("x-api-key", HeaderValue::from_bytes(b"\xffabc").unwrap());
    assert_eq!(check(binary), "invalid");
}

#[test]
fn refusals_never_echo_the_token() {
    let f = fixture(Vec::new());
    let secret = "a-secret-nobody-configured";
    for h in [
        bearer(secret),
        headers(&[("x-api-key", secret), ("x-api-key", secret)]),
        headers(&[("authorization", &format!("Basic {secret}"))]),
    ] {
        let e = f
            .auth
            .authorize(Need::Role(Role::Reader), &h, None)
            .unwrap_err();
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
}

#[test]
fn tenants_limit_a_credential() {
    let f = fixture(Vec::new());
    let acme = f
        .auth
        .authorize(Need::Role(Role::Reader), &bearer(ACME), None)
        .unwrap();
    assert!(acme.tenant("acme").is_ok());
    let refused = acme.tenant("globex").unwrap_err();
    assert_eq!(refused.reason(), "forbidden");
    assert!(refused.to_string().contains("\"globex\""), "{refused}");
    let any = f
        .auth
        .authorize(Need::Role(Role::Reader), &bearer(READER), None)
        .unwrap();
    assert!(any.tenant("globex").is_ok());
}

#[test]
fn certificates_map_by_exact_name_and_a_token_decides_over_them() {
    let rule = |name, role, tenants: Option<&[&str]>| MtlsEntry {
        name,
        role,
        tenants: tenants.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
    };
    let f = fixture(vec![
        rule(
            CertName::UriSan("spiffe://c/ns/audit/sa/auditor".into()),
            Role::Reader,
            Some(&["acme"]),
        ),
        rule(CertName::DnsSan("ops.example".into()), Role::Operator, None),
        rule(
            CertName::Subject("CN=deployer".into()),
            Role::Operator,
            None,
        ),
    ]);
    let op =
        |p: &Peer, h: &HeaderMap| reason(f.auth.authorize(Need::Role(Role::Operator), h, Some(p)));
    let none = HeaderMap::new();
    let auditor = peer(Some(cert("spiffe://c/ns/audit/sa/auditor", "x", "CN=x")));
    let access = f
        .auth
        .authorize(Need::Role(Role::Reader), &none, Some(&auditor))
        .unwrap();
    assert!(access.tenant("acme").is_ok() && access.tenant("globex").is_err());
    assert_eq!(op(&auditor, &none), "forbidden");
    assert_eq!(
        op(&peer(Some(cert("u", "ops.example", "CN=x"))), &none),
        "ok"
    );
    assert_eq!(op(&peer(Some(cert("u", "d", "CN=deployer"))), &none), "ok");
    // Exact matches only.
    assert_eq!(
        op(
            &peer(Some(cert("u", "ops.example.evil", "CN=deployer2"))),
            &none
        ),
        "invalid"
    );
    assert_eq!(
        op(
            &peer(Some(cert("spiffe://c/ns/audit/sa/auditor/x", "d", "CN=x"))),
            &none
        ),
        "invalid"
    );
    // No certificate, no token: missing.
    assert_eq!(op(&peer(None), &none), "missing");
    // A presented token decides, good certificate or not.
    let ops = peer(Some(cert("u", "ops.example", "CN=x")));
    assert_eq!(op(&ops, &bearer("wrong-token-0123456789")), "invalid");
    assert_eq!(op(&ops, &bearer(READER)), "forbidden");
    assert_eq!(op(&auditor, &bearer(OPERATOR)), "ok");
}

#[test]
fn dev_mode_ingests_and_refuses_operator_actions() {
    let auth = dev();
    assert!(auth.dev_mode());
    for h in [
        HeaderMap::new(),
        bearer("dev-key"),
        headers(&[("x-api-key", "placeholder")]),
    ] {
        let access = auth.authorize(Need::Role(Role::Ingest), &h, None).unwrap();
        assert!(access.tenant("anyone").is_ok());
        assert!(auth.authorize(Need::Role(Role::Reader), &h, None).is_ok());
        let refused = auth
            .authorize(Need::Role(Role::Operator), &h, None)
            .unwrap_err();
        assert_eq!(refused.reason(), "forbidden");
        let text = refused.to_string();
        assert!(
            text.contains("operator actions need a credential"),
            "{text}"
        );
        assert!(text.contains("admin.auth"), "{text}");
    }
}

#[test]
fn subjects_are_rendered_as_the_mtls_rule_compares_them() {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "auditor");
    dn.push(DnType::OrganizationName, "acme");
    params.distinguished_name = dn;
    let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let names = PeerCert::from_der(cert.der()).unwrap();
    assert_eq!(names.subject, "CN=auditor, O=acme");
}

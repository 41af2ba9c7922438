//! The admin API's credentials over real sockets: roles, tenant scopes,
//! token rotation, mTLS client certificates, dev mode, and the
//! probes-and-scrape listener.
//!
//! Each attack is tried, its status checked (401: no or a bad credential;
//! 403: a good one without the role or the tenant), and nothing it aimed
//! at may have changed: the session's event list and snapshot are the same
//! bytes before and after (its envelopes carry a far-future timestamp, so
//! the snapshot's `wall_time_ms` is 0 and stays 0), and a refused reload
//! leaves the manifest's generation and reload counts as they were.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_e2e::{Answer, HANG_GUARD, Http, Sidecar, run, token_entry, wait_for};
use aegis_proxy::app;
use aegis_proxy::cli::RunFlags;
use aegis_proxy::config::{CertName, Config, MtlsEntry, RawConfig, Role};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

const READER: &str = "reader-token-0123456789abcdef";
const INGEST: &str = "ingest-token-0123456789abcdef";
const OPERATOR: &str = "operator-token-0123456789abcdef";
/// Ingest, for tenant acme only.
const ACME: &str = "acme-ingest-token-0123456789abcdef";
const WRONG: &str = "not-a-configured-token-0123456789";

/// Later than any test run: a session whose envelopes carry it has
/// `wall_time_ms` 0 (the clock is before its first envelope).
const FAR_FUTURE_MS: i64 = 4_000_000_000_000;

/// The live manifest: `read_file` has a one-call bucket per session.
const MANIFEST: &str = r#"{
  "schema": "aegis.dev/manifest/v0.1", "name": "auth-test", "version": "1.0.0", "publisher": "acme",
  "permissions": {"tools": ["read_file", "write_file"], "budgets": {"max_tool_calls": 100}},
  "policy": {"rate_limits": {"read_file": {"per_second": 0.001, "burst": 1}}},
  "sandbox": {"required": false}, "integrity": {}
}"#;

/// A sidecar with four tokens (reader, ingest, operator for every tenant;
/// ingest for acme only) and the test manifest, and a client per token.
struct Fixture {
    sidecar: Sidecar,
    anon: Http,
    reader: Http,
    ingest: Http,
    operator: Http,
    acme: Http,
    wrong: Http,
}

async fn fixture(tune: impl FnOnce(&mut Config)) -> Fixture {
    let sidecar = Sidecar::start_with(|config| {
        let dir = config.ledger.path.parent().unwrap().to_owned();
        let manifest = dir.join("manifest.json");
        std::fs::write(&manifest, MANIFEST).unwrap();
        config.manifest = Some(manifest);
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        config.admin.auth.tokens = vec![
            token_entry(&tokens.join("reader"), READER, Role::Reader, &[]),
            token_entry(&tokens.join("ingest"), INGEST, Role::Ingest, &[]),
            token_entry(&tokens.join("operator"), OPERATOR, Role::Operator, &[]),
            token_entry(&tokens.join("acme"), ACME, Role::Ingest, &["acme"]),
        ];
        tune(config);
    })
    .await;
    let anon = sidecar.http.clone();
    Fixture {
        reader: anon.with_token(READER),
        ingest: anon.with_token(INGEST),
        operator: anon.with_token(OPERATOR),
        acme: anon.with_token(ACME),
        wrong: anon.with_token(WRONG),
        anon,
        sidecar,
    }
}

/// A `POST /v1/events` body sealed at the session's head.
fn event(tenant: &str, session: &str, event_type: &str, payload: Value) -> String {
    json!({
        "tenant_id": tenant, "user_id": "u1", "session_id": session,
        "ts_unix_ms": FAR_FUTURE_MS, "event_type": event_type, "payload": payload,
    })
    .to_string()
}

/// Three envelopes in `tenant`/`session`, appended with `http`.
async fn seed(http: &Http, tenant: &str, session: &str) {
    for (i, tool) in ["read_file", "write_file", "read_file"].iter().enumerate() {
        let body = event(
            tenant,
            session,
            "TOOL_CALL_PROPOSED",
            json!({"tool_name": tool, "call_id": format!("c{i}"), "args": {}}),
        );
        let answer = http.post_json("/v1/events", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    }
}

/// The session's event list and snapshot, as bytes, read with `http`.
async fn state(http: &Http, tenant: &str, session: &str) -> (Bytes, Bytes) {
    let list = http
        .get(&format!(
            "/v1/events?tenant_id={tenant}&session_id={session}&limit=1000"
        ))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let snapshot = http
        .get(&format!(
            "/v1/sessions/{session}/snapshot?tenant_id={tenant}"
        ))
        .await;
    assert!(
        snapshot.status == StatusCode::OK || snapshot.status == StatusCode::NOT_FOUND,
        "{}",
        snapshot.text()
    );
    (list.body, snapshot.body)
}

/// The forged envelopes an agent would like to slip into its own record.
fn forgeries(tenant: &str, session: &str) -> Vec<String> {
    vec![
        event(
            tenant,
            session,
            "TERMINATION",
            json!({"reason": "task_complete"}),
        ),
        event(
            tenant,
            session,
            "POLICY_DECISION",
            json!({"action": "register_sanitizer", "sanitizer_key": "html-stripped"}),
        ),
        event(
            tenant,
            session,
            "TOOL_CALL_DENIED",
            json!({"tool_name": "write_file", "call_id": "c1", "reason": "forged"}),
        ),
    ]
}

/// A 401 with the challenge, and a JSON error saying what is needed.
fn assert_unauthorized(answer: &Answer, needle: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    assert_eq!(
        answer.www_authenticate.as_deref(),
        Some("Bearer realm=\"aegis-proxy\""),
        "{answer:?}"
    );
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
}

fn assert_forbidden(answer: &Answer, needle: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert_eq!(answer.www_authenticate, None);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
}

#[test]
fn forged_events_need_an_ingest_token() {
    run(async {
        let f = fixture(|_| {}).await;
        seed(&f.ingest, "acme", "s1").await;
        let before = state(&f.operator, "acme", "s1").await;
        for body in forgeries("acme", "s1") {
            let answer = f.anon.post_json("/v1/events", body.clone()).await;
            assert_unauthorized(&answer, "needs a credential of role ingest");
            assert!(
                answer.text().contains("Authorization: Bearer"),
                "{}",
                answer.text()
            );
            let answer = f.wrong.post_json("/v1/events", body.clone()).await;
            assert_unauthorized(&answer, "not valid");
            assert!(!answer.text().contains(WRONG), "the token is never echoed");
            let answer = f.reader.post_json("/v1/events", body).await;
            assert_forbidden(&answer, "needs role ingest or higher");
        }
        assert_eq!(state(&f.operator, "acme", "s1").await, before);
        assert_eq!(
            f.anon
                .metric("aegis_api_auth_failures_total{reason=\"missing\",route=\"events\"}")
                .await,
            Some(3.0)
        );
        assert_eq!(
            f.anon
                .metric("aegis_api_auth_failures_total{reason=\"invalid\",route=\"events\"}")
                .await,
            Some(3.0)
        );
        assert_eq!(
            f.anon
                .metric("aegis_api_auth_failures_total{reason=\"forbidden\",route=\"events\"}")
                .await,
            Some(3.0)
        );
        // The same envelope with an ingest token goes in.
        let body = event("acme", "s1", "TERMINATION", json!({"reason": "done"}));
        assert_eq!(f.ingest.post_json("/v1/events", body).await.status, 201);
        f.sidecar.stop().await;
    });
}

#[test]
fn malformed_or_doubled_credentials_are_invalid_and_the_api_key_header_works() {
    run(async {
        let f = fixture(|_| {}).await;
        seed(&f.ingest, "acme", "s1").await;
        let before = state(&f.operator, "acme", "s1").await;
        let body = event("acme", "s1", "TERMINATION", json!({"reason": "x"}));
        let bearer = format!("Bearer {INGEST}");
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("authorization", &bearer), ("authorization", &bearer)],
            vec![("x-api-key", INGEST), ("x-api-key", INGEST)],
            vec![("authorization", &bearer), ("x-api-key", INGEST)],
            vec![("authorization", INGEST)],
            vec![("authorization", "Basic aW5nZXN0OnB3")],
            vec![("authorization", "Bearer")],
        ];
        for headers in &cases {
            let answer = f
                .anon
                .send_with(
                    Method::POST,
                    "/v1/events",
                    headers,
                    Some("application/json"),
                    body.clone(),
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{headers:?}: {}",
                answer.text()
            );
            assert!(!answer.text().contains(INGEST), "{}", answer.text());
        }
        assert_eq!(state(&f.operator, "acme", "s1").await, before);
        assert_eq!(
            f.anon
                .metric("aegis_api_auth_failures_total{reason=\"invalid\",route=\"events\"}")
                .await,
            Some(cases.len() as f64)
        );
        // aegislib's form.
        let answer = f
            .anon
            .send_with(
                Method::POST,
                "/v1/events",
                &[("x-api-key", INGEST)],
                Some("application/json"),
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        f.sidecar.stop().await;
    });
}

#[test]
fn readers_read_and_only_operators_register_sanitizers_or_reload() {
    run(async {
        let f = fixture(|_| {}).await;
        seed(&f.ingest, "acme", "s1").await;
        // A reader lists, snapshots and verifies.
        let list = f
            .reader
            .get("/v1/events?tenant_id=acme&session_id=s1")
            .await;
        assert_eq!(list.status, 200, "{}", list.text());
        assert_eq!(list.json()["Events"].as_array().unwrap().len(), 3);
        let snapshot = f
            .reader
            .get("/v1/sessions/s1/snapshot?tenant_id=acme")
            .await;
        assert_eq!(snapshot.status, 200, "{}", snapshot.text());
        assert_eq!(snapshot.json()["wall_time_ms"], 0);
        let verify = f.reader.get("/v1/sessions/s1/verify?tenant_id=acme").await;
        assert_eq!(verify.json()["valid"], true, "{}", verify.text());
        assert_eq!(f.reader.get("/v1/manifest").await.status, 200);
        // ...and nothing without a token.
        for path in [
            "/v1/events?tenant_id=acme&session_id=s1",
            "/v1/sessions/s1/snapshot?tenant_id=acme",
            "/v1/sessions/s1/verify?tenant_id=acme",
            "/v1/manifest",
        ] {
            assert_unauthorized(&f.anon.get(path).await, "role reader");
        }
        // Unknown paths stay 404, the open routes open.
        assert_eq!(f.anon.get("/v1/nothing").await.status, 404);
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(f.anon.get(path).await.status, 200, "{path}");
        }
        // Readiness without dev mode has no warnings.
        assert_eq!(f.anon.get("/readyz").await.json(), json!({"status": "ok"}));

        let before = state(&f.operator, "acme", "s1").await;
        let path = "/v1/sessions/s1/sanitizers?tenant_id=acme";
        let key = r#"{"sanitizer_key": "html-stripped"}"#;
        assert_unauthorized(&f.anon.post_json(path, key).await, "role operator");
        assert_unauthorized(&f.wrong.post_json(path, key).await, "not valid");
        assert_forbidden(&f.reader.post_json(path, key).await, "needs role operator");
        assert_forbidden(&f.ingest.post_json(path, key).await, "has role ingest");
        assert_eq!(state(&f.operator, "acme", "s1").await, before);

        let manifest = f.reader.get("/v1/manifest").await.json();
        assert_eq!(manifest["generation"], 1);
        let reload = "/v1/manifest/reload";
        assert_unauthorized(&f.anon.post_json(reload, "{}").await, "role operator");
        assert_forbidden(
            &f.reader.post_json(reload, "{}").await,
            "needs role operator",
        );
        assert_forbidden(
            &f.ingest.post_json(reload, "{}").await,
            "needs role operator",
        );
        assert_eq!(
            f.reader.get("/v1/manifest").await.json(),
            manifest,
            "refused reloads change nothing, not even the counts"
        );
        assert_eq!(
            f.anon
                .metric(
                    "aegis_api_auth_failures_total{reason=\"forbidden\",route=\"manifest_reload\"}"
                )
                .await,
            Some(2.0)
        );

        // An operator does both.
        let answer = f.operator.post_json(reload, "{}").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json()["result"], "unchanged");
        assert_eq!(
            answer.json()["reloads_unchanged"],
            manifest["reloads_unchanged"].as_u64().unwrap() + 1
        );
        let answer = f.operator.post_json(path, key).await;
        assert_eq!(answer.status, 201, "{}", answer.text());
        let snapshot = f
            .reader
            .get("/v1/sessions/s1/snapshot?tenant_id=acme")
            .await;
        assert_eq!(snapshot.json()["sanitized_keys"], json!(["html-stripped"]));
        f.sidecar.stop().await;
    });
}

#[test]
fn a_tenant_scoped_token_acts_for_its_tenant_only() {
    run(async {
        let f = fixture(|_| {}).await;
        seed(&f.ingest, "acme", "a1").await;
        seed(&f.ingest, "globex", "g1").await;
        let globex = state(&f.operator, "globex", "g1").await;

        let own = f.acme.get("/v1/events?tenant_id=acme&session_id=a1").await;
        assert_eq!(own.status, 200, "{}", own.text());
        assert_eq!(own.json()["Events"].as_array().unwrap().len(), 3);
        for path in [
            "/v1/events?tenant_id=globex&session_id=g1",
            "/v1/events?tenant_id=globex",
            "/v1/sessions/g1/snapshot?tenant_id=globex",
            "/v1/sessions/g1/verify?tenant_id=globex",
        ] {
            assert_forbidden(&f.acme.get(path).await, "tenant \"globex\"");
        }
        for body in forgeries("globex", "g1") {
            assert_forbidden(
                &f.acme.post_json("/v1/events", body).await,
                "tenant \"globex\"",
            );
        }
        assert_eq!(state(&f.operator, "globex", "g1").await, globex);

        // A decision on globex's session is refused before its bucket (one
        // read_file) is touched: the next asker still gets it.
        let ask = json!({
            "event": {"event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "read_file", "call_id": "d", "args": {}}},
            "tenant_id": "globex", "session_id": "g1",
        })
        .to_string();
        assert_forbidden(
            &f.acme.post_json("/v1/policy/decide", ask.clone()).await,
            "tenant \"globex\"",
        );
        let first = f.ingest.post_json("/v1/policy/decide", ask.clone()).await;
        assert_eq!(first.json()["reason"], "OK", "{}", first.text());
        let second = f.ingest.post_json("/v1/policy/decide", ask).await;
        assert_eq!(second.json()["reason"], "RATE_LIMITED", "{}", second.text());
        // A stateless decision names no tenant: allowed.
        let stateless = json!({
            "event": {"event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "write_file", "call_id": "d", "args": {}}},
            "snapshot": {},
        });
        let answer = f
            .acme
            .post_json("/v1/policy/decide", stateless.to_string())
            .await;
        assert_eq!(answer.json()["outcome"], "allow", "{}", answer.text());
        // Its own tenant, it may append to.
        let body = event(
            "acme",
            "a1",
            "TOOL_RESULT",
            json!({"call_id": "c0", "ok": true}),
        );
        assert_eq!(f.acme.post_json("/v1/events", body).await.status, 201);
        f.sidecar.stop().await;
    });
}

/// Polls `/v1/manifest` with `token` until it answers `status`.
async fn until_status(http: &Http, token: &str, status: StatusCode, what: &str) {
    let http = http.with_token(token);
    wait_for(what, || {
        let http = http.clone();
        async move { (http.get("/v1/manifest").await.status == status).then_some(()) }
    })
    .await;
}

#[test]
fn rotated_token_files_take_effect_and_a_bad_file_disables_only_its_entry() {
    run(async {
        let f = fixture(|_| {}).await;
        let path = f.sidecar.config.admin.auth.tokens[2].file.clone();
        let anon = &f.anon;

        // In place.
        let first = "rotated-in-place-0123456789abcdef";
        std::fs::write(&path, format!("{first}\n")).unwrap();
        until_status(anon, first, StatusCode::OK, "the in-place token").await;
        assert_eq!(f.operator.get("/v1/manifest").await.status, 401);
        assert_eq!(
            anon.with_token(first)
                .post_json("/v1/manifest/reload", "{}")
                .await
                .status,
            200,
            "the new token has the entry's role"
        );

        // Rename-over.
        let second = "rotated-by-rename-0123456789abcdef";
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, second).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        until_status(anon, second, StatusCode::OK, "the renamed-over token").await;
        assert_eq!(anon.with_token(first).get("/v1/manifest").await.status, 401);

        // Emptied: that entry is off, the others stay.
        std::fs::write(&path, "").unwrap();
        until_status(anon, second, StatusCode::UNAUTHORIZED, "the emptied entry").await;
        assert_eq!(f.reader.get("/v1/manifest").await.status, 200);
        assert!(
            anon.metric("aegis_api_token_reloads_total{result=\"failed\"}")
                .await
                .unwrap()
                >= 1.0
        );
        // Fixed again.
        std::fs::write(&path, format!("{second}\n")).unwrap();
        until_status(anon, second, StatusCode::OK, "the restored token").await;
        assert!(
            anon.metric("aegis_api_token_reloads_total{result=\"reloaded\"}")
                .await
                .unwrap()
                >= 3.0
        );
        f.sidecar.stop().await;
    });
}

/// A Kubernetes Secret volume: `dir/..data -> ..<stamp>`,
/// `dir/token -> ..data/token`.
fn secret_swap(dir: &Path, n: u32, token: &str) {
    let stamp = format!("..2026_12_02_00_00_{n:02}");
    std::fs::create_dir(dir.join(&stamp)).unwrap();
    std::fs::write(dir.join(&stamp).join("token"), token).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[test]
fn a_secret_symlink_swap_rotates_the_token() {
    run(async {
        let mut secret = PathBuf::new();
        let f = fixture(|config| {
            secret = config.ledger.path.parent().unwrap().join("secret");
            std::fs::create_dir(&secret).unwrap();
            secret_swap(&secret, 1, OPERATOR);
            std::os::unix::fs::symlink("..data/token", secret.join("token")).unwrap();
            config.admin.auth.tokens[2].file = secret.join("token");
        })
        .await;
        assert_eq!(f.operator.get("/v1/manifest").await.status, 200);
        let next = "swapped-secret-token-0123456789abcdef";
        secret_swap(&secret, 2, next);
        until_status(&f.anon, next, StatusCode::OK, "the swapped Secret").await;
        assert_eq!(f.operator.get("/v1/manifest").await.status, 401);
        f.sidecar.stop().await;
    });
}

#[test]
fn sighup_rereads_a_token_file_the_watch_cannot_see() {
    run(async {
        // The configured path is a symlink into a directory nobody
        // watches, so only a reload (SIGHUP) can notice the change.
        let mut target = PathBuf::new();
        let f = fixture(|config| {
            let dir = config.ledger.path.parent().unwrap().to_owned();
            std::fs::create_dir(dir.join("elsewhere")).unwrap();
            target = dir.join("elsewhere/operator");
            std::fs::write(&target, OPERATOR).unwrap();
            let link = dir.join("tokens/operator-link");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            config.admin.auth.tokens[2].file = link;
        })
        .await;
        let next = "after-sighup-token-0123456789abcdef";
        std::fs::write(&target, next).unwrap();
        assert_eq!(
            f.operator.get("/v1/manifest").await.status,
            200,
            "not seen yet"
        );
        // What main does on SIGHUP.
        let _ = f.sidecar.running.reload_manifest().await;
        assert_eq!(f.operator.get("/v1/manifest").await.status, 401);
        assert_eq!(
            f.anon.with_token(next).get("/v1/manifest").await.status,
            200
        );
        f.sidecar.stop().await;
    });
}

#[test]
fn dev_mode_runs_the_quick_start_and_refuses_operator_actions() {
    run(async {
        let sidecar = Sidecar::start().await;
        let http = &sidecar.http;
        let ready = http.get("/readyz").await;
        assert_eq!(ready.status, 200);
        let warning = ready.json()["warnings"][0].as_str().unwrap().to_owned();
        assert!(warning.starts_with("dev mode"), "{warning}");

        // aegisd's quick start, as documented.
        let first = json!({
            "tenant_id": "acme", "session_id": "sess-001", "seq": 0, "ts_unix_ms": FAR_FUTURE_MS,
            "event_type": "TOOL_CALL_PROPOSED",
            "payload": {"tool_name": "read_file", "call_id": "c1", "args": {"path": "/workspace/data.csv"}},
        });
        let answer = http.post_json("/v1/events", first.to_string()).await;
        assert_eq!(answer.status, 201, "{}", answer.text());
        assert_eq!(answer.json()["seq"], 0);
        let decide = json!({
            "event": {"event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "read_file", "call_id": "c1", "args": {}}},
            "snapshot": {"steps_consumed": 3, "tool_calls_consumed": 2, "wall_time_ms": 5000},
            "manifest": {
                "schema": "aegis.dev/manifest/v0.1", "name": "my-skill", "version": "0.1.0", "publisher": "acme",
                "permissions": {"tools": ["read_file"], "budgets": {"max_steps": 24, "max_tool_calls": 12, "max_wall_time_ms": 120000}},
                "sandbox": {"required": false}, "integrity": {},
            },
        });
        let answer = http
            .post_json("/v1/policy/decide", decide.to_string())
            .await;
        assert_eq!(
            (answer.status, answer.json()["outcome"].clone()),
            (StatusCode::OK, json!("allow")),
            "{}",
            answer.text()
        );
        let list = http
            .get("/v1/events?tenant_id=acme&session_id=sess-001")
            .await;
        assert_eq!(list.json()["Events"].as_array().unwrap().len(), 1);
        let verify = http
            .get("/v1/sessions/sess-001/verify?tenant_id=acme")
            .await;
        assert_eq!(
            verify.json(),
            json!({"valid": true, "first_bad_seq": 0, "error": "", "envelopes": 1})
        );
        // An SDK's placeholder key changes nothing in dev mode.
        let placeholder = http.with_token("dev-key");
        let body = event("acme", "sess-001", "TOOL_RESULT", json!({"call_id": "c1"}));
        assert_eq!(placeholder.post_json("/v1/events", body).await.status, 201);

        // Operator actions need a credential.
        let before = state(http, "acme", "sess-001").await;
        let generation = http.get("/v1/manifest").await.json();
        for (path, body) in [
            ("/v1/manifest/reload", "{}"),
            (
                "/v1/sessions/sess-001/sanitizers?tenant_id=acme",
                r#"{"sanitizer_key": "k"}"#,
            ),
        ] {
            for client in [http.clone(), placeholder.clone()] {
                let answer = client.post_json(path, body).await;
                assert_forbidden(&answer, "operator actions need a credential");
                assert!(answer.text().contains("admin.auth"), "{}", answer.text());
            }
        }
        assert_eq!(state(http, "acme", "sess-001").await, before);
        assert_eq!(http.get("/v1/manifest").await.json(), generation);
        sidecar.stop().await;
    });
}

#[test]
fn a_non_loopback_admin_listen_needs_credentials() {
    run(async {
        let raw = RawConfig::from_yaml("admin:\n  listen: 0.0.0.0:8080\n").unwrap();
        let problems = Config::from_layers(raw, None, &HashMap::new(), &RunFlags::default())
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("admin.listen: 0.0.0.0:8080"),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("admin.auth"), "{}", problems[0]);

        // A configuration built in code is checked at start-up too, before
        // anything is opened.
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.admin.listen = "0.0.0.0:0".parse().unwrap();
        config.ledger.path = dir.path().join("ledger.db");
        let error = app::start(config.clone()).await.unwrap_err().to_string();
        assert!(
            error.contains("admin.listen") && error.contains("admin.auth"),
            "{error}"
        );
        assert!(!config.ledger.path.exists(), "no ledger was created");

        // The probes listener may be public in dev mode: it serves no /v1.
        let raw = RawConfig::from_yaml("admin:\n  metrics_listen: 0.0.0.0:9090\n").unwrap();
        let config = Config::from_layers(raw, None, &HashMap::new(), &RunFlags::default()).unwrap();
        assert!(config.admin.auth.is_dev_mode());
    });
}

#[test]
fn the_metrics_listener_serves_only_probes_and_the_scrape() {
    run(async {
        let f = fixture(|config| {
            config.admin.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
        let addr = f.sidecar.running.metrics_addr().unwrap();
        assert_ne!(addr, f.sidecar.running.admin_addr());
        let probes = Http::new(addr);
        assert_eq!(probes.get("/healthz").await.json(), json!({"status": "ok"}));
        assert_eq!(probes.get("/readyz").await.json(), json!({"status": "ok"}));
        let scrape = probes.get("/metrics").await;
        assert_eq!(scrape.status, 200);
        // Every protected route's refusals are exported from the start.
        assert!(
            scrape.text().contains(
                "aegis_api_auth_failures_total{reason=\"missing\",route=\"manifest_reload\"} 0"
            ),
            "{}",
            scrape.text()
        );

        let with_token = probes.with_token(OPERATOR);
        for path in [
            "/v1/events?tenant_id=acme&session_id=s1",
            "/v1/manifest",
            "/v1/sessions/s1/verify?tenant_id=acme",
        ] {
            assert_eq!(with_token.get(path).await.status, 404, "{path}");
            assert_eq!(probes.get(path).await.status, 404, "{path}");
        }
        let body = event("acme", "s1", "TERMINATION", json!({"reason": "x"}));
        assert_eq!(with_token.post_json("/v1/events", body).await.status, 404);
        assert_eq!(
            with_token
                .post_json("/v1/manifest/reload", "{}")
                .await
                .status,
            404
        );
        let list = f
            .reader
            .get("/v1/events?tenant_id=acme&session_id=s1")
            .await;
        assert_eq!(list.json()["Events"], json!([]), "nothing was appended");
        f.sidecar.stop().await;
    });
}

/// A CA for the mTLS test and leaves with URI SANs.
struct Ca {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            dir: tempfile::tempdir().unwrap(),
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A leaf for `sans`, written as `{name}.crt` / `{name}.key`.
    fn leaf(
        &self,
        name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            self.file(&format!("{name}.crt"), &cert.pem()),
            self.file(&format!("{name}.key"), &key.serialize_pem()),
        )
    }

    fn client(&self, leaf: &(PathBuf, PathBuf)) -> MtlsClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&leaf.0)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(&leaf.1).unwrap())
        .unwrap();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        MtlsClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

struct MtlsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl MtlsClient {
    /// `method path` to the sidecar at `addr`, with `token` if given.
    async fn send(&self, addr: SocketAddr, method: Method, path: &str, token: Option<&str>) -> u16 {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("https://{addr}{path}"))
            .header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
        let response = tokio::time::timeout(HANG_GUARD, self.client.request(req))
            .await
            .expect("no answer over mTLS")
            .expect("mTLS request failed");
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        status
    }
}

#[test]
fn mtls_client_certificates_map_to_roles() {
    run(async {
        let ca = Ca::new();
        let server = ca.leaf(
            "admin",
            vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let deployer = "spiffe://cluster.local/ns/ops/sa/deployer";
        let auditor = "spiffe://cluster.local/ns/audit/sa/auditor";
        let operator_cert = ca.leaf(
            "deployer",
            vec![uri(deployer)],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let reader_cert = ca.leaf(
            "auditor",
            vec![uri(auditor)],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let stranger_cert = ca.leaf(
            "stranger",
            vec![uri("spiffe://cluster.local/ns/agents/sa/agent-7")],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let yaml = format!(
            "admin:\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
            server.0.display(),
            server.1.display(),
            ca.file("ca.pem", &ca.issuer.pem()).display()
        );
        let raw = RawConfig::from_yaml(&yaml).unwrap();
        let loaded = Config::from_layers(raw, None, &HashMap::new(), &RunFlags::default()).unwrap();
        let f = fixture(move |config| {
            config.admin.tls = loaded.admin.tls;
            config.admin.auth.mtls = vec![
                MtlsEntry {
                    name: CertName::UriSan(deployer.to_owned()),
                    role: Role::Operator,
                    tenants: None,
                },
                MtlsEntry {
                    name: CertName::UriSan(auditor.to_owned()),
                    role: Role::Reader,
                    tenants: Some(vec!["acme".to_owned()]),
                },
            ];
        })
        .await;
        let addr = f.sidecar.running.admin_addr();
        let (operator, reader, stranger) = (
            ca.client(&operator_cert),
            ca.client(&reader_cert),
            ca.client(&stranger_cert),
        );
        let reload = "/v1/manifest/reload";
        assert_eq!(operator.send(addr, Method::POST, reload, None).await, 200);
        assert_eq!(reader.send(addr, Method::POST, reload, None).await, 403);
        assert_eq!(stranger.send(addr, Method::POST, reload, None).await, 401);
        // A token, when sent, decides: a bad one is refused with a good
        // certificate; a good one works with an unmapped certificate.
        assert_eq!(
            operator.send(addr, Method::POST, reload, Some(WRONG)).await,
            401
        );
        assert_eq!(
            operator
                .send(addr, Method::POST, reload, Some(READER))
                .await,
            403
        );
        assert_eq!(
            stranger
                .send(addr, Method::POST, reload, Some(OPERATOR))
                .await,
            200
        );
        // The reader certificate is scoped to acme.
        let path = |tenant: &str| format!("/v1/events?tenant_id={tenant}");
        assert_eq!(
            reader.send(addr, Method::GET, &path("acme"), None).await,
            200
        );
        assert_eq!(
            reader.send(addr, Method::GET, &path("globex"), None).await,
            403
        );
        assert_eq!(
            stranger.send(addr, Method::GET, &path("acme"), None).await,
            401
        );
        assert_eq!(
            f.sidecar
                .running
                .metrics()
                .tls_handshake_failures
                .with_label_values(&["admin"])
                .get(),
            0
        );
        f.sidecar.stop().await;
    });
}

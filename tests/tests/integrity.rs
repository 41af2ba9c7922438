//! Chains under load and under attack, checked through the HTTP API.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use aegis_e2e::{Sidecar, run};
use aegis_ledger::testing::{Tamper, tamper};
use http::StatusCode;
use serde_json::json;

/// Each kind of damage to a stored envelope is reported by
/// `GET /v1/sessions/{id}/verify` with the damaged seq; other sessions stay valid.
#[test]
fn http_verify_finds_every_kind_of_damage_at_the_right_seq() {
    run(async {
        for &how in Tamper::ALL {
            let sidecar = Sidecar::start().await;
            for n in 0..6 {
                for session in ["s", "other"] {
                    let body = json!({"tenant_id": "t", "user_id": "u1", "session_id": session,
                                      "event_type": "TOOL_CALL_PROPOSED",
                                      "payload": {"tool_name": "read_file", "call_id": format!("c{n}")}});
                    assert_eq!(
                        sidecar
                            .http
                            .post_json("/v1/events", body.to_string())
                            .await
                            .status,
                        StatusCode::CREATED
                    );
                }
            }
            let stopped = sidecar.stop().await;
            let bad_seq = tamper(&stopped.ledger_path(), "t", "s", 3, how).unwrap();

            let sidecar = stopped.start().await;
            let verdict = sidecar.http.get("/v1/sessions/s/verify?tenant_id=t").await;
            assert_eq!(verdict.status, StatusCode::OK);
            let verdict = verdict.json();
            assert_eq!(verdict["valid"], false, "{how:?} went unnoticed");
            assert_eq!(
                verdict["first_bad_seq"], bad_seq,
                "{how:?}: {}",
                verdict["error"]
            );
            assert!(!verdict["error"].as_str().unwrap().is_empty());
            let other = sidecar
                .http
                .get("/v1/sessions/other/verify?tenant_id=t")
                .await
                .json();
            assert_eq!(
                other["valid"], true,
                "{how:?} must not taint other sessions"
            );
            sidecar.stop().await;
        }
    });
}

/// Many clients appending to many sessions at once over HTTP: every append
/// acknowledged exactly once, in one gap-free chain per session.
#[test]
fn concurrent_http_appends_lose_nothing() {
    run(async {
        let sidecar = Sidecar::start().await;
        const CLIENTS: usize = 24;
        const SESSIONS: usize = 6;
        const EACH: usize = 25;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let http = sidecar.http.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..EACH {
                    let session = format!("s{}", (client + n) % SESSIONS);
                    let body = json!({"tenant_id": "acme", "session_id": session, "event_type": "TOOL_RESULT",
                                      "payload": {"client": client, "n": n}});
                    let answer = http.post_json("/v1/events", body.to_string()).await;
                    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
                    let answer = answer.json();
                    acked.push((session, answer["seq"].as_u64().unwrap(), answer["hash"].as_str().unwrap().to_owned()));
                }
                acked
            }));
        }
        let mut acked: HashMap<String, HashMap<u64, String>> = HashMap::new();
        for task in tasks {
            for (session, seq, hash) in task.await.unwrap() {
                assert!(
                    acked
                        .entry(session)
                        .or_default()
                        .insert(seq, hash)
                        .is_none(),
                    "a seq was handed out twice"
                );
            }
        }
        let mut total = 0;
        for (session, seqs) in &acked {
            let events = sidecar.http.session_events("acme", session).await;
            assert_eq!(events.len(), seqs.len(), "{session}");
            for event in &events {
                let seq = event["seq"].as_u64().unwrap();
                assert_eq!(
                    event["hash"].as_str().unwrap(),
                    seqs[&seq],
                    "{session} seq {seq}"
                );
            }
            let verdict = sidecar
                .http
                .get(&format!("/v1/sessions/{session}/verify?tenant_id=acme"))
                .await
                .json();
            assert_eq!(verdict["valid"], true, "{session}: {verdict}");
            total += events.len();
        }
        assert_eq!(total, CLIENTS * EACH);
        sidecar.stop().await;
    });
}

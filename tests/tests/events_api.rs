//! The Aegis `/v1` event API over real sockets: the SDK's exact wire bodies,
//! listing, snapshots, verification, bad input, and what `/metrics` says.

#![allow(clippy::unwrap_used)]

use aegis_e2e::{Sidecar, python_dumps, run};
use aegis_ledger::{Digest, EventType, Payload, Preimage};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// The Aegis Python SDK's body for seq 1 of `spec/envelope.md`, verbatim.
const SPEC_SDK_SEQ1: &str = r#"{"tenant_id": "acme", "user_id": "u1", "session_id": "sess-001", "seq": 1, "ts_unix_ms": 1700000000001, "event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "read_file", "call_id": "t1", "args": {"path": "/workspace/data.csv"}}, "prev_hash": [26, 27, 108, 168, 131, 226, 120, 78, 50, 180, 54, 243, 116, 148, 54, 27, 99, 4, 125, 225, 21, 72, 27, 48, 9, 225, 89, 63, 135, 151, 75, 107], "hash": [144, 69, 81, 134, 255, 137, 48, 44, 153, 34, 232, 228, 48, 28, 45, 151, 179, 78, 45, 222, 162, 177, 166, 225, 193, 226, 116, 83, 191, 11, 3, 253]}"#;

/// What `aegis_sdk` sends for one sealed envelope: `json.dumps(envelope.to_dict())`,
/// members in the SDK's order, hashes as integer arrays, no `prev_hash` at seq 0.
fn sdk_body(
    session: &str,
    seq: u64,
    ts: i64,
    event_type: EventType,
    payload: &Value,
    prev: Option<Digest>,
) -> (String, Digest) {
    let canonical = Payload::from_value(payload.clone());
    let hash = Preimage {
        tenant_id: "acme",
        user_id: "user-42",
        session_id: session,
        seq,
        ts_unix_ms: ts,
        event_type: event_type.as_str(),
        payload: canonical.canonical(),
        prev_hash: prev.as_ref(),
    }
    .hash();
    let bytes = |d: Digest| python_dumps(&json!(d.0.to_vec()));
    let mut body = format!(
        "{{\"tenant_id\": \"acme\", \"user_id\": \"user-42\", \"session_id\": {}, \"seq\": {seq}, \"ts_unix_ms\": {ts}, \"event_type\": \"{}\", \"payload\": {}",
        python_dumps(&json!(session)),
        event_type.as_str(),
        python_dumps(payload),
    );
    if let Some(prev) = prev {
        body.push_str(&format!(", \"prev_hash\": {}", bytes(prev)));
    }
    body.push_str(&format!(", \"hash\": {}}}", bytes(hash)));
    (body, hash)
}

#[test]
fn sdk_wire_bodies_for_seq_0_to_n_are_accepted_and_verify() {
    run(async {
        let sidecar = Sidecar::start().await;
        let http = &sidecar.http;
        let steps: Vec<(EventType, Value)> = vec![
            (
                EventType::ModelCallStarted,
                json!({"model_id": "gpt-4o", "call_id": "m1"}),
            ),
            (
                EventType::ToolCallProposed,
                json!({"tool_name": "read_file", "call_id": "t1", "args": {"path": "/workspace/report.txt"}}),
            ),
            (
                EventType::ToolResult,
                json!({"call_id": "t1", "result": "caf\u{e9} \u{1f600} \"quoted\"\n\u{7f}"}),
            ),
            (
                EventType::MemoryWrite,
                json!({"key": "k", "value": [1, 2.5, -3, null, true]}),
            ),
            (
                EventType::ToolCallProposed,
                json!({"tool_name": "net.get", "call_id": "t2", "args": {"url": "https://example.org/?q=\u{2028}"}}),
            ),
            (EventType::Termination, json!({"reason": "task_complete"})),
        ];
        let mut prev = None;
        for (seq, (event_type, payload)) in steps.iter().enumerate() {
            let (body, hash) = sdk_body(
                "sess-sdk",
                seq as u64,
                1_700_000_000_000 + seq as i64,
                *event_type,
                payload,
                prev,
            );
            assert!(body.is_ascii(), "json.dumps output is ASCII");
            let answer = http.post_json("/v1/events", body.clone()).await;
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "seq {seq}: {}\n{body}",
                answer.text()
            );
            assert_eq!(answer.json(), json!({"seq": seq, "hash": hash.to_hex()}));
            prev = Some(hash);
        }
        let verify = http
            .get("/v1/sessions/sess-sdk/verify?tenant_id=acme")
            .await
            .json();
        assert_eq!(
            verify,
            json!({"valid": true, "first_bad_seq": 0, "error": "", "envelopes": 6})
        );

        // Listing returns the SDK's payloads (text kept) with hex hashes.
        let events = http.session_events("acme", "sess-sdk").await;
        assert_eq!(events.len(), 6);
        assert_eq!(events[2]["payload"], steps[2].1);
        assert_eq!(events[0].get("prev_hash"), None);
        assert_eq!(events[1]["prev_hash"], events[0]["hash"]);

        // The snapshot the SDK's get_snapshot reads.
        let snapshot = http
            .get("/v1/sessions/sess-sdk/snapshot?tenant_id=acme")
            .await
            .json();
        assert_eq!(
            snapshot["steps_consumed"], 4,
            "model call, two proposals, memory write"
        );
        assert_eq!(snapshot["tool_calls_consumed"], 2);
        assert_eq!(
            snapshot["is_tainted"], false,
            "TERMINATION cleared the taint"
        );
        assert_eq!(snapshot["loop_violation"], "");
        sidecar.stop().await;
    });
}

#[test]
fn the_spec_sdk_body_is_accepted_verbatim() {
    run(async {
        let sidecar = Sidecar::start().await;
        let seq0 = r#"{"tenant_id": "acme", "user_id": "u1", "session_id": "sess-001", "seq": 0, "ts_unix_ms": 1700000000000, "event_type": "MODEL_CALL_STARTED", "payload": {"model_id": "gpt-4o", "call_id": "m1"}, "hash": [26, 27, 108, 168, 131, 226, 120, 78, 50, 180, 54, 243, 116, 148, 54, 27, 99, 4, 125, 225, 21, 72, 27, 48, 9, 225, 89, 63, 135, 151, 75, 107]}"#;
        for (seq, body) in [seq0, SPEC_SDK_SEQ1].into_iter().enumerate() {
            let answer = sidecar.http.post_json("/v1/events", body).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
            assert_eq!(answer.json()["seq"], seq);
        }
        let answer = sidecar
            .http
            .get("/v1/events?tenant_id=acme&session_id=sess-001")
            .await
            .json();
        assert_eq!(
            answer["Events"][1]["hash"],
            "90455186ff89302c9922e8e4301c2d97b34e2ddea2b1a6e1c1e27453bf0b03fd"
        );
        sidecar.stop().await;
    });
}

#[test]
fn chain_errors_are_400_or_409_with_what_the_client_needs() {
    run(async {
        let sidecar = Sidecar::start().await;
        let http = &sidecar.http;
        let first = http
            .post_json(
                "/v1/events",
                r#"{"tenant_id":"t","session_id":"s","event_type":"MODEL_CALL_STARTED"}"#,
            )
            .await;
        assert_eq!(first.status, StatusCode::CREATED);
        let head_hash = first.json()["hash"].as_str().unwrap().to_owned();

        // Wrong seq: 409 with the head so the client can resume.
        let conflict = http
            .post_json(
                "/v1/events",
                r#"{"tenant_id":"t","session_id":"s","seq":5,"event_type":"TERMINATION"}"#,
            )
            .await;
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        let body = conflict.json();
        assert_eq!(
            (
                body["head_seq"].clone(),
                body["head_hash"].clone(),
                body["next_seq"].clone()
            ),
            (json!(0), json!(head_hash), json!(1))
        );

        // A client hash that is not the hash of the fields: 400 naming both.
        let (good, hash) = sdk_body("s2", 0, 1, EventType::Termination, &json!(null), None);
        let tampered = good.replace("\"ts_unix_ms\": 1,", "\"ts_unix_ms\": 2,");
        let answer = http.post_json("/v1/events", tampered).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let body = answer.json();
        assert_eq!(body["received_hash"], hash.to_hex());
        assert_ne!(body["expected_hash"], hash.to_hex());
        assert!(body["error"].as_str().unwrap().contains(&hash.to_hex()));

        // None of that left anything behind.
        assert_eq!(http.session_events("t", "s").await.len(), 1);
        assert_eq!(
            http.get("/v1/events?tenant_id=acme&session_id=s2")
                .await
                .json()["Events"],
            json!([])
        );
        assert_eq!(
            http.metric("aegis_ledger_append_errors_total{kind=\"conflict\"}")
                .await,
            Some(1.0)
        );
        assert_eq!(
            http.metric("aegis_ledger_append_errors_total{kind=\"hash_mismatch\"}")
                .await,
            Some(1.0)
        );
        sidecar.stop().await;
    });
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    run(async {
        let sidecar = Sidecar::start_with(|c| c.admin.max_body_bytes = 4096).await;
        let http = &sidecar.http;
        // (method, path, content type, body, status, what the error must say)
        type Case<'a> = (
            Method,
            &'a str,
            Option<&'a str>,
            String,
            StatusCode,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                Method::POST,
                "/v1/events",
                Some("application/json"),
                "{not json".into(),
                StatusCode::BAD_REQUEST,
                "not a valid JSON object",
            ),
            (
                Method::POST,
                "/v1/events",
                Some("application/json"),
                r#"{"session_id":"s","event_type":"TERMINATION"}"#.into(),
                StatusCode::BAD_REQUEST,
                "tenant_id is required",
            ),
            (
                Method::POST,
                "/v1/events",
                Some("application/json"),
                r#"{"tenant_id":"t","event_type":"TERMINATION"}"#.into(),
                StatusCode::BAD_REQUEST,
                "session_id is required",
            ),
            (
                Method::POST,
                "/v1/events",
                Some("application/json"),
                r#"{"tenant_id":"t","session_id":"s","event_type":"TOOL_CALL"}"#.into(),
                StatusCode::BAD_REQUEST,
                "unknown event type",
            ),
            (
                Method::POST,
                "/v1/events",
                Some("application/json"),
                r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","seq":"0"}"#.into(),
                StatusCode::BAD_REQUEST,
                "seq: expected a non-negative integer, got a string",
            ),
            (
                Method::POST,
                "/v1/events",
                Some("text/plain"),
                "{}".into(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ),
            (
                Method::POST,
                "/v1/events",
                None,
                "{}".into(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ),
            (
                Method::POST,
                "/v1/events",
                Some("application/json"),
                format!(
                    r#"{{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","payload":"{}"}}"#,
                    "x".repeat(5000)
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
                "4096-byte limit",
            ),
            (
                Method::PUT,
                "/v1/events",
                Some("application/json"),
                "{}".into(),
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET, POST",
            ),
            (
                Method::GET,
                "/v1/events",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "tenant_id is required",
            ),
            (
                Method::GET,
                "/v1/events?tenant_id=t&limit=0",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "limit must be a positive integer",
            ),
            (
                Method::GET,
                "/v1/events?tenant_id=t&limit=ten",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "limit must be a positive integer",
            ),
            (
                Method::GET,
                "/v1/events?tenant_id=t&event_type=NOPE",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "unknown event type",
            ),
            (
                Method::GET,
                "/v1/events?tenant_id=t&page_token=zzz",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "page_token",
            ),
            (
                Method::GET,
                "/v1/events?tenant=t",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "unknown query parameter",
            ),
            (
                Method::GET,
                "/v1/sessions/s/verify",
                None,
                String::new(),
                StatusCode::BAD_REQUEST,
                "tenant_id is required",
            ),
            (
                Method::GET,
                "/v2/anything",
                None,
                String::new(),
                StatusCode::NOT_FOUND,
                "no such endpoint",
            ),
        ];
        for (method, path, ct, body, status, needle) in cases {
            let answer = http.send(method.clone(), path, ct, body).await;
            assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
            assert_eq!(answer.content_type, "application/json");
            let error = answer.json()["error"].as_str().unwrap().to_owned();
            assert!(
                error.contains(needle),
                "{method} {path}: {error:?} should mention {needle:?}"
            );
        }
        // Nothing was recorded by any of it.
        assert_eq!(
            http.get("/v1/events?tenant_id=t").await.json()["Events"],
            json!([])
        );
        assert_eq!(
            http.metric("aegis_api_requests_total{code=\"415\",route=\"events\"}")
                .await,
            Some(2.0)
        );
        sidecar.stop().await;
    });
}

#[test]
fn listing_pages_across_sessions_and_caps_the_limit() {
    run(async {
        let sidecar = Sidecar::start_with(|c| c.admin.list_limit_max = 4).await;
        let http = &sidecar.http;
        for n in 0..9 {
            let body = json!({"tenant_id": "acme", "session_id": format!("s{}", n % 3), "event_type": "TOOL_CALL_PROPOSED",
                              "payload": {"tool_name": if n % 2 == 0 { "read_file" } else { "write_file" }, "call_id": n}});
            assert_eq!(
                http.post_json("/v1/events", body.to_string()).await.status,
                StatusCode::CREATED
            );
        }
        // limit=100 is capped at 4: three pages cover the nine envelopes, in order, once.
        let mut seen = Vec::new();
        let mut path = "/v1/events?tenant_id=acme&limit=100".to_owned();
        loop {
            let page = http.get(&path).await.json();
            let events = page["Events"].as_array().unwrap();
            assert!(events.len() <= 4);
            seen.extend(
                events
                    .iter()
                    .map(|e| e["payload"]["call_id"].as_u64().unwrap()),
            );
            let token = page["NextToken"].as_str().unwrap();
            if token.is_empty() {
                break;
            }
            path = format!("/v1/events?tenant_id=acme&limit=100&page_token={token}");
        }
        assert_eq!(seen, (0..9).collect::<Vec<_>>());

        let by_tool = http
            .get("/v1/events?tenant_id=acme&tool_name=write_file")
            .await
            .json();
        assert_eq!(by_tool["Events"].as_array().unwrap().len(), 4);
        let by_type = http
            .get("/v1/events?tenant_id=acme&session_id=s1&event_type=TOOL_CALL_PROPOSED")
            .await
            .json();
        assert_eq!(by_type["Events"].as_array().unwrap().len(), 3);
        assert_eq!(
            http.get("/v1/events?tenant_id=other").await.json()["Events"],
            json!([])
        );
        sidecar.stop().await;
    });
}

#[test]
fn health_readiness_and_metrics() {
    run(async {
        let sidecar = Sidecar::start().await;
        let http = &sidecar.http;
        assert_eq!(http.get("/healthz").await.json(), json!({"status": "ok"}));
        // Ready, in dev mode (no admin.auth), which readiness says.
        let ready = http.get("/readyz").await.json();
        assert_eq!(ready["status"], "ok", "{ready}");
        assert!(
            ready["warnings"][0]
                .as_str()
                .unwrap()
                .starts_with("dev mode"),
            "{ready}"
        );
        for _ in 0..3 {
            let body = r#"{"tenant_id":"t","session_id":"s","event_type":"TOOL_RESULT","payload":{"ok":true}}"#;
            assert_eq!(
                http.post_json("/v1/events", body).await.status,
                StatusCode::CREATED
            );
        }
        let metrics = http.get("/metrics").await;
        assert!(metrics.content_type.starts_with("text/plain"));
        assert_eq!(
            http.metric("aegis_ledger_appends_total{event_type=\"TOOL_RESULT\"}")
                .await,
            Some(3.0)
        );
        assert_eq!(
            http.metric("aegis_ledger_commit_batch_envelopes_sum").await,
            Some(3.0)
        );
        assert_eq!(http.metric("aegis_ledger_queue_depth").await, Some(0.0));
        assert_eq!(
            http.metric("aegis_ledger_sessions_in_memory").await,
            Some(1.0)
        );
        assert_eq!(
            http.metric("aegis_api_requests_total{code=\"201\",route=\"events\"}")
                .await,
            Some(3.0)
        );
        assert!(
            http.metric("aegis_ledger_commit_duration_seconds_count")
                .await
                .unwrap()
                >= 1.0
        );
        sidecar.stop().await;
    });
}

#[test]
fn snapshots_survive_a_restart() {
    run(async {
        let sidecar = Sidecar::start().await;
        for event in [
            "MODEL_CALL_STARTED",
            "TOOL_CALL_PROPOSED",
            "TOOL_CALL_ALLOWED",
            "TOOL_RESULT",
            "TOOL_CALL_PROPOSED",
            "TOOL_CALL_DENIED",
        ] {
            let body = json!({"tenant_id": "t", "session_id": "a/b c", "event_type": event, "payload": {"tool_name": "x"}});
            assert_eq!(
                sidecar
                    .http
                    .post_json("/v1/events", body.to_string())
                    .await
                    .status,
                StatusCode::CREATED
            );
        }
        let path = "/v1/sessions/a%2Fb%20c/snapshot?tenant_id=t";
        let before = sidecar.http.get(path).await.json();
        assert_eq!(
            (
                before["steps_consumed"].clone(),
                before["tool_calls_consumed"].clone(),
                before["is_tainted"].clone()
            ),
            (json!(3), json!(1), json!(true))
        );

        let sidecar = sidecar.stop().await.start().await;
        let after = sidecar.http.get(path).await.json();
        for field in [
            "steps_consumed",
            "tool_calls_consumed",
            "is_tainted",
            "sanitized_keys",
            "loop_violation",
        ] {
            assert_eq!(after[field], before[field], "{field}");
        }
        assert!(after["wall_time_ms"].as_u64() >= before["wall_time_ms"].as_u64());
        sidecar.stop().await;
    });
}

/// A session nothing was recorded in answers as aegisd does: its chain is
/// empty and valid, its snapshot all zero (`kind` `"none"`), not 404.
#[test]
fn a_session_with_no_envelopes_verifies_valid_and_snapshots_empty() {
    aegis_e2e::run(async {
        let sidecar = Sidecar::start().await;
        let verify = sidecar
            .http
            .get("/v1/sessions/nope/verify?tenant_id=t")
            .await;
        assert_eq!(verify.status, StatusCode::OK, "{}", verify.text());
        assert_eq!(
            verify.json(),
            serde_json::json!({"valid": true, "first_bad_seq": 0, "error": "", "envelopes": 0})
        );
        let snapshot = sidecar
            .http
            .get("/v1/sessions/nope/snapshot?tenant_id=t")
            .await;
        assert_eq!(snapshot.status, StatusCode::OK, "{}", snapshot.text());
        assert_eq!(
            snapshot.json(),
            serde_json::json!({"steps_consumed": 0, "tool_calls_consumed": 0, "wall_time_ms": 0,
                "is_tainted": false, "sanitized_keys": [], "loop_violation": "", "kind": "none"})
        );
        sidecar.stop().await;
    });
}

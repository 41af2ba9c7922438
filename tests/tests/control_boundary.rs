//! The governed agent tries to switch its own enforcement off through the
//! admin API on `localhost`: forged history into the session the sidecar
//! enforces (to clear its taint, whitelist a write, refund its budget),
//! decisions that drain the session's rate tokens, a session pre-made under
//! the id the sidecar will use. Each attempt must fail, leave the session's
//! record and state byte for byte as they were, and the tool server must see
//! nothing it would not have seen anyway.
//!
//! Most tests run with no credential configured (dev mode on loopback): the
//! weakest setting, in which an unauthenticated caller may ingest. The last
//! one configures a token per role and tries each.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, Stack, is_error, result_text};
use aegis_e2e::{Http, run, test_token, token_entry};
use aegis_proxy::admin::Role;
use http::StatusCode;
use serde_json::{Value, json};

const TENANT: &str = "default";
/// The session every call of this agent goes to: its principal's (the
/// default configuration's), whatever session ids the client sends.
const SESSION: &str = "default";

/// The stack, its client naming [`SESSION`] outright too (so these tests
/// hold under either session scope).
async fn stack(manifest: &str, tune: impl FnOnce(&mut aegis_proxy::config::Config)) -> Stack {
    let mut stack = Stack::start(manifest, AnswerMode::Json, tune).await;
    stack.client = stack
        .client
        .clone()
        .with_header("x-aegis-session-id", SESSION);
    stack
}

/// The session's record and state: what no refused attempt may change.
async fn record(http: &Http) -> (Vec<Value>, Value) {
    let events = http.session_events(TENANT, SESSION).await;
    let snapshot = http
        .get(&format!(
            "/v1/sessions/{SESSION}/snapshot?tenant_id={TENANT}"
        ))
        .await;
    assert_eq!(snapshot.status, StatusCode::OK, "{}", snapshot.text());
    let mut snapshot = snapshot.json();
    // Wall time moves on by itself.
    snapshot["wall_time_ms"] = json!(0);
    (events, snapshot)
}

fn forged(event_type: &str, payload: Value) -> Value {
    json!({
        "tenant_id": TENANT, "user_id": "", "session_id": SESSION,
        "event_type": event_type, "payload": payload,
    })
}

/// What an agent appends to clear taint, whitelist a write, or refund calls.
fn forgeries() -> Vec<Value> {
    vec![
        forged("TERMINATION", json!({"reason": "task_complete"})),
        forged(
            "POLICY_DECISION",
            json!({"action": "register_sanitizer", "sanitizer_key": "k"}),
        ),
        forged(
            "TOOL_CALL_DENIED",
            json!({"tool_name": "echo", "reason": "PERMISSION_UNDECLARED"}),
        ),
        forged(
            "TOOL_CALL_DENIED",
            json!({"tool_name": "read_file", "reason": "BUDGET_EXCEEDED"}),
        ),
    ]
}

/// Every forgery, at the head and at the exact next seq with the right
/// `prev_hash` (as a client that read the chain would), answered 409 with
/// the session's kind.
async fn try_forgeries(http: &Http) {
    let events = http.session_events(TENANT, SESSION).await;
    let head = events.last().unwrap();
    let next = head["seq"].as_u64().unwrap() + 1;
    for mut body in forgeries() {
        for placed in [false, true] {
            if placed {
                body["seq"] = json!(next);
                body["prev_hash"] = head["hash"].clone();
            }
            let answer = http.post_json("/v1/events", body.to_string()).await;
            assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text());
            let v = answer.json();
            assert_eq!(v["session_kind"], "sidecar", "{v}");
            assert!(
                v["error"].as_str().unwrap().contains("sidecar-owned"),
                "{v}"
            );
        }
    }
}

fn call_with_key(id: i64, tool: &str, args: Value, key: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": args, "_meta": {"aegis/sanitizer_key": key}}})
}

#[test]
fn forged_history_clears_no_taint_and_whitelists_no_write() {
    run(async {
        let mut stack = stack(MANIFEST, |_| {}).await;
        stack.client.initialize().await;
        // A file's contents taint the session.
        let read = stack
            .client
            .call(1, "read_file", json!({"path": "notes.txt"}))
            .await;
        assert!(!is_error(&read), "{read}");
        let http = &stack.sidecar.http;
        let before = record(http).await;
        assert_eq!(before.1["is_tainted"], true);
        assert_eq!(before.1["kind"], "sidecar");

        try_forgeries(http).await;
        assert_eq!(record(http).await, before);

        // The tainted session's write is still refused, sanitizer key or not.
        for (id, message) in [
            (
                2,
                aegis_e2e::mcp::call(2, "write_file", json!({"path": "x", "content": "y"})),
            ),
            (
                3,
                call_with_key(3, "write_file", json!({"path": "x", "content": "y"}), "k"),
            ),
        ] {
            let reply = stack.client.post(&message).await.answer(&json!(id));
            assert!(is_error(&reply), "{reply}");
            assert!(
                result_text(&reply).contains("TAINTED_TO_HIGH_RISK"),
                "{reply}"
            );
        }
        assert_eq!(stack.upstream.stats().tool_calls("write_file"), 0);
    });
}

#[test]
fn forged_refunds_do_not_extend_a_budget() {
    run(async {
        let manifest = MANIFEST.replace("max_tool_calls: 1000", "max_tool_calls: 3");
        let mut stack = stack(&manifest, |_| {}).await;
        stack.client.initialize().await;
        for id in 1..=3 {
            let reply = stack.client.call(id, "echo", json!({"text": "hi"})).await;
            assert!(!is_error(&reply), "{reply}");
        }
        let http = &stack.sidecar.http;
        let before = record(http).await;
        assert_eq!(before.1["tool_calls_consumed"], 3);

        for _ in 0..3 {
            try_forgeries(http).await;
        }
        assert_eq!(record(http).await, before);

        let reply = stack.client.call(4, "echo", json!({"text": "hi"})).await;
        assert!(result_text(&reply).contains("BUDGET_EXCEEDED"), "{reply}");
        assert_eq!(stack.upstream.stats().tool_calls("echo"), 3);
    });
}

#[test]
fn decisions_through_the_api_take_none_of_an_enforced_sessions_rate_tokens() {
    run(async {
        let manifest = MANIFEST.replace(
            "policy:\n",
            "policy:\n  rate_limits:\n    echo: {per_second: 0.001, burst: 2}\n",
        );
        let mut stack = stack(&manifest, |_| {}).await;
        stack.client.initialize().await;
        let reply = stack.client.call(1, "echo", json!({"text": "hi"})).await;
        assert!(!is_error(&reply), "{reply}");
        let http = &stack.sidecar.http;
        let before = record(http).await;

        let ask = json!({
            "event": {"event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "echo", "args": {}}},
            "tenant_id": TENANT, "session_id": SESSION,
        });
        for _ in 0..5 {
            let answer = http.post_json("/v1/policy/decide", ask.to_string()).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
            assert_eq!(answer.json()["outcome"], "allow", "{}", answer.text());
        }
        assert_eq!(record(http).await, before);
        // The bucket still holds the second of its two tokens, and no third.
        let reply = stack.client.call(2, "echo", json!({"text": "hi"})).await;
        assert!(!is_error(&reply), "{reply}");
        let reply = stack.client.call(3, "echo", json!({"text": "hi"})).await;
        assert!(result_text(&reply).contains("RATE_LIMITED"), "{reply}");
        assert_eq!(stack.upstream.stats().tool_calls("echo"), 2);
    });
}

#[test]
fn a_session_pre_made_through_the_api_is_never_enforced_into_nor_bypassed() {
    for fail_open in [false, true] {
        run(async move {
            let mut stack = stack(MANIFEST, |config| {
                config.ledger.fail_open = fail_open;
            })
            .await;
            let http = &stack.sidecar.http;
            // The agent records a clean-looking session under the id its
            // calls will go to, before making any.
            let answer = http
                .post_json(
                    "/v1/events",
                    forged("TERMINATION", json!({"reason": "fresh start"})).to_string(),
                )
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
            let before = record(http).await;
            assert_eq!(before.1["kind"], "client");

            stack.client.initialize().await;
            let reply = stack
                .client
                .call(1, "echo", json!({"text": "unrecorded?"}))
                .await;
            // Refused, even with fail_open: it could not be recorded where
            // the sidecar may write, so it is not run at all.
            assert_eq!(
                reply["error"]["data"]["reason"], "client_recorded_session",
                "{reply}"
            );
            assert_eq!(stack.upstream.stats().total_tool_calls(), 0);
            assert_eq!(record(http).await, before);
        });
    }
}

#[test]
fn with_credentials_no_role_rewrites_an_enforced_session_and_only_an_operator_whitelists() {
    run(async {
        let mut stack = stack(MANIFEST, |config| {
            let dir = config.ledger.path.parent().unwrap().to_owned();
            for role in [Role::Reader, Role::Ingest, Role::Operator] {
                let path = dir.join(format!("{role}.token"));
                let entry = token_entry(&path, &test_token(role), role, &[]);
                config.admin.auth.tokens.push(entry);
            }
        })
        .await;
        stack.client.initialize().await;
        let read = stack
            .client
            .call(1, "read_file", json!({"path": "notes.txt"}))
            .await;
        assert!(!is_error(&read), "{read}");
        let anonymous = stack.sidecar.http.without_token();
        let as_role = |role: Role| anonymous.with_token(&test_token(role));
        let reader = as_role(Role::Reader);
        let before = record(&reader).await;
        assert_eq!(before.1["is_tainted"], true);

        let sanitizer = format!("/v1/sessions/{SESSION}/sanitizers?tenant_id={TENANT}");
        for (caller, events_status, sanitizer_status) in [
            (
                anonymous.clone(),
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
            ),
            (reader.clone(), StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
            (
                as_role(Role::Ingest),
                StatusCode::CONFLICT,
                StatusCode::FORBIDDEN,
            ),
        ] {
            for body in forgeries() {
                let answer = caller.post_json("/v1/events", body.to_string()).await;
                assert_eq!(answer.status, events_status, "{}", answer.text());
            }
            let answer = caller
                .post_json(&sanitizer, r#"{"sanitizer_key": "k"}"#)
                .await;
            assert_eq!(answer.status, sanitizer_status, "{}", answer.text());
            assert_eq!(record(&reader).await, before);
        }
        // An operator's credential does not make an append the sidecar's.
        let operator = as_role(Role::Operator);
        for body in forgeries() {
            let answer = operator.post_json("/v1/events", body.to_string()).await;
            assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text());
        }
        assert_eq!(record(&reader).await, before);
        let keyed = call_with_key(2, "write_file", json!({"path": "x", "content": "y"}), "k");
        let reply = stack.client.post(&keyed).await.answer(&json!(2));
        assert!(
            result_text(&reply).contains("TAINTED_TO_HIGH_RISK"),
            "{reply}"
        );
        assert_eq!(stack.upstream.stats().tool_calls("write_file"), 0);

        // The one way in: an operator registers the key, in the chain.
        let answer = operator
            .post_json(&sanitizer, r#"{"sanitizer_key": "k"}"#)
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        let events = reader.session_events(TENANT, SESSION).await;
        let registered = events.last().unwrap();
        assert_eq!(registered["event_type"], "POLICY_DECISION");
        let keyed = call_with_key(3, "write_file", json!({"path": "x", "content": "y"}), "k");
        let reply = stack.client.post(&keyed).await.answer(&json!(3));
        assert!(!is_error(&reply), "{reply}");
        assert_eq!(stack.upstream.stats().tool_calls("write_file"), 1);
    });
}

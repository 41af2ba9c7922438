//! `policy.sanitize` inline: the tool server receives the rewritten
//! arguments (the demo's `echo` answers with the text it was given), in a
//! single call and inside a batch (`echo` refuses arguments it does not
//! know, so a dropped field that reached it would fail the call); arguments that cannot be rewritten are
//! refused `SANITIZE_REFUSED` before the tool server sees anything; the
//! ledger holds the agent's arguments and the digests of both.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, Stack, is_error, result_text};
use aegis_e2e::run;
use serde_json::{Value, json};

const SESSION: &str = "default";

fn sanitizing_manifest() -> String {
    let manifest = format!(
        "{MANIFEST}  sanitize:\n    echo:\n      - field: text\n        redact: '\\d{{4}}-?\\d{{4}}-?\\d{{4}}-?\\d{{4}}'\n        replacement: '[card]'\n        reason: card numbers never leave the agent\n      - field: copies\n        clamp: {{min: 1, max: 3}}\n      - field: debug\n        drop: true\n"
    );
    assert!(
        manifest.contains("sanitize:"),
        "the manifest layout changed"
    );
    manifest
}

async fn stack(answer: AnswerMode) -> Stack {
    let mut stack = Stack::start(&sanitizing_manifest(), answer, |_| {}).await;
    stack.client.initialize().await;
    stack
}

#[test]
fn the_tool_server_receives_the_sanitized_arguments() {
    for answer in [AnswerMode::Json, AnswerMode::Sse] {
        run(async move {
            let stack = stack(answer).await;
            let reply = stack
                .client
                .call(
                    1,
                    "echo",
                    json!({"text": "pay with 4111-1111-1111-1111 now", "debug": true}),
                )
                .await;
            // `echo` refuses unknown fields: `debug` was dropped before it.
            assert!(!is_error(&reply), "{reply}");
            assert_eq!(result_text(&reply), "pay with [card] now");
            // Unchanged arguments go as they came.
            let reply = stack.client.call(2, "echo", json!({"text": "plain"})).await;
            assert_eq!(result_text(&reply), "plain");
            assert_eq!(stack.upstream.stats().tool_calls("echo"), 2);

            let events = stack.sidecar.http.session_events("default", SESSION).await;
            let payloads: Vec<&Value> = events.iter().map(|e| &e["payload"]).collect();
            let proposed = payloads
                .iter()
                .find(|p| p["args"]["debug"] == true)
                .expect("the proposal keeps the agent's arguments");
            assert_eq!(proposed["args"]["text"], "pay with 4111-1111-1111-1111 now");
            let allowed = &events
                .iter()
                .find(|e| e["event_type"] == "TOOL_CALL_ALLOWED")
                .unwrap()["payload"];
            let sanitized = &allowed["sanitized"];
            assert_eq!(sanitized["changed"], json!(["text redact", "debug drop"]));
            assert_eq!(sanitized["message"], "card numbers never leave the agent");
            assert_ne!(sanitized["args_sha256"], sanitized["sanitized_args_sha256"]);
            // The recorded result is the tool server's answer to the rewrite.
            let result = &events
                .iter()
                .find(|e| e["event_type"] == "TOOL_RESULT")
                .unwrap()["payload"];
            assert_eq!(
                result["result"]["content"][0]["text"],
                "pay with [card] now"
            );
            let verify = stack
                .sidecar
                .http
                .get(&format!("/v1/sessions/{SESSION}/verify?tenant_id=default"))
                .await
                .json();
            assert_eq!(verify["valid"], true, "{verify}");
        });
    }
}

#[test]
fn a_batch_forwards_each_call_as_decided() {
    run(async {
        let stack = stack(AnswerMode::Json).await;
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "echo", "arguments": {"text": "a 4111111111111111"}}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "echo", "arguments": {"text": "b", "copies": "many"}}},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "echo", "arguments": {"text": "c"}}},
        ]);
        let answer = stack.client.post(&batch).await;
        let mut replies = answer.messages();
        replies.sort_by_key(|r| r["id"].as_i64());
        assert_eq!(replies.len(), 3, "{replies:?}");
        assert_eq!(result_text(&replies[0]), "a [card]");
        assert!(is_error(&replies[1]));
        assert!(
            result_text(&replies[1]).starts_with("Denied by policy (SANITIZE_REFUSED)"),
            "{}",
            replies[1]
        );
        assert_eq!(result_text(&replies[2]), "c");
        // The refused call never reached the tool server.
        assert_eq!(stack.upstream.stats().tool_calls("echo"), 2);
    });
}

#[test]
fn arguments_that_cannot_be_sanitized_are_refused_before_the_tool_server() {
    run(async {
        let stack = stack(AnswerMode::Json).await;
        for (id, args) in (1..).zip([
            json!({"text": "x", "copies": "100000"}),
            json!({"text": "x", "copies": [1]}),
            json!({"text": "x", "copies": null}),
        ]) {
            let reply = stack.client.call(id, "echo", args.clone()).await;
            assert!(is_error(&reply), "{args}: {reply}");
            assert_eq!(
                reply["result"]["_meta"]["aegis/decision"]["reason"], "SANITIZE_REFUSED",
                "{args}: {reply}"
            );
        }
        assert_eq!(stack.upstream.stats().total_tool_calls(), 0);
    });
}

//! What the agent gets when a call is not forwarded: the model-readable
//! tool-error result of a denial (HTTP 200, the request's own id — never an
//! HTTP error for a per-call denial, so the session stays usable), and
//! JSON-RPC errors for what is not a decision (malformed input, upstream
//! failures).

use aegis_policy::Decision;
use serde_json::{Value, json};

use super::jsonrpc::Id;

/// Where a decision came from, for the `_meta` the agent's client may show.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRecord<'a> {
    /// The ledger seq of the decision's envelope.
    pub seq: u64,
    pub manifest_sha256: &'a str,
}

/// The JSON-RPC response to a `tools/call` that was not forwarded:
/// `{"content":[{"type":"text","text":"Denied by policy (<REASON>): <why>"}],
/// "isError":true,"resultType":"complete","_meta":{"aegis/decision":{...}}}`
/// (no `structuredContent`). For `require_approval` the text says approval
/// is pending.
pub fn not_forwarded(
    id: &Id,
    decision: &Decision,
    record: DecisionRecord<'_>,
    approval_id: Option<&str>,
) -> Value {
    let text = match decision.outcome {
        aegis_policy::Outcome::RequireApproval => format!(
            "Approval pending ({}): {}; the call was not run and waits for a person's approval.",
            decision.reason,
            decision.explanation()
        ),
        _ => format!(
            "Denied by policy ({}): {}.",
            decision.reason,
            decision.explanation()
        ),
    };
    let mut meta = json!({
        "outcome": decision.outcome.as_str(),
        "reason": decision.reason.as_str(),
        "seq": record.seq,
        "manifest_sha256": record.manifest_sha256,
    });
    if let Some(approval_id) = approval_id {
        meta["approval_id"] = json!(approval_id);
    }
    json!({
        "jsonrpc": "2.0",
        "id": id.to_value(),
        "result": {
            "content": [{"type": "text", "text": text}],
            "isError": true,
            "resultType": "complete",
            "_meta": {"aegis/decision": meta}
        }
    })
}

/// A tool-error result the sidecar puts in place of a forwarded call's
/// answer (timed out, or over `max_output_bytes`): the model reads `text`.
pub fn tool_error(id: &Id, text: String, meta: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.to_value(),
        "result": {
            "content": [{"type": "text", "text": text}],
            "isError": true,
            "resultType": "complete",
            "_meta": {"aegis/decision": meta},
        }
    })
}

/// One SSE event carrying `message`, in the shape MCP servers send.
pub fn sse_event(message: &Value) -> bytes::Bytes {
    let mut out = b"event: message\ndata: ".to_vec();
    // A Value always serialises; its JSON never holds a raw newline.
    out.extend_from_slice(&serde_json::to_vec(message).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// A JSON-RPC error response; `id` is `null` when the request's id is unknown
/// (a body that did not parse).
pub fn error(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({
        "jsonrpc": "2.0",
        "id": id.map_or(Value::Null, Id::to_value),
        "error": error,
    })
}

#[cfg(test)]
mod tests {
    use aegis_policy::{Outcome, Reason};

    use super::*;

    #[test]
    fn a_denial_is_a_tool_error_result_with_the_requests_id() {
        let decision = Decision {
            outcome: Outcome::Deny,
            reason: Reason::EgressDeny,
            constraints: None,
        };
        let answer = not_forwarded(
            &Id::String("call-9".into()),
            &decision,
            DecisionRecord {
                seq: 12,
                manifest_sha256: "ab",
            },
            None,
        );
        assert_eq!(
            answer,
            json!({"jsonrpc": "2.0", "id": "call-9", "result": {
                "content": [{"type": "text", "text": "Denied by policy (EGRESS_DENY): the destination is not in the manifest's network allowlist."}],
                "isError": true, "resultType": "complete",
                "_meta": {"aegis/decision": {"outcome": "deny", "reason": "EGRESS_DENY", "seq": 12, "manifest_sha256": "ab"}}
            }})
        );
        assert!(answer["result"].get("structuredContent").is_none());
    }

    #[test]
    fn approval_pending_says_so() {
        let decision = Decision {
            outcome: Outcome::RequireApproval,
            reason: Reason::ApprovalRequired,
            constraints: None,
        };
        let answer = not_forwarded(
            &Id::Number(3.into()),
            &decision,
            DecisionRecord {
                seq: 1,
                manifest_sha256: "",
            },
            Some("appr-0123"),
        );
        assert_eq!(
            answer["result"]["_meta"]["aegis/decision"]["approval_id"],
            "appr-0123"
        );
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.starts_with("Approval pending (APPROVAL_REQUIRED)"),
            "{text}"
        );
        assert_eq!(
            answer["result"]["_meta"]["aegis/decision"]["outcome"],
            "require_approval"
        );
        assert_eq!(answer["id"], 3);
    }

    #[test]
    fn errors_carry_code_message_data_and_null_id_when_unknown() {
        assert_eq!(
            error(None, -32700, "the body is not JSON", None),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "the body is not JSON"}})
        );
        let e = error(
            Some(&Id::Number(4.into())),
            -32603,
            "upstream refused",
            Some(json!({"upstream": "tools"})),
        );
        assert_eq!(e["error"]["data"]["upstream"], "tools");
        assert_eq!(e["id"], 4);
    }
}

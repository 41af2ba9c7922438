//! What the agent gets when a call is not forwarded: the model-readable
//! tool-error result of a denial (HTTP 200, the request's own id — never an
//! HTTP error for a per-call denial, so the session stays usable), and
//! JSON-RPC errors for what is not a decision (malformed input, upstream
//! failures).
//!
//! An answer is built as its final text ([`Outgoing`]) so that the request's
//! id is echoed byte for byte ([`Id::raw`]): a parsed number id would lose
//! digits past a double's precision.

use aegis_policy::Decision;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::jsonrpc::Id;
use crate::gate::ApprovalLink;

/// One JSON-RPC message the sidecar sends the agent, as its JSON text.
pub type Outgoing = Box<RawValue>;

/// The envelope of every answer: the id goes out as the text it came in.
#[derive(Serialize)]
struct Reply<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

fn reply(id: Option<&Id>, result: Option<Value>, error: Option<Value>) -> Outgoing {
    let reply = Reply {
        jsonrpc: "2.0",
        id: id.map_or(RawValue::NULL, Id::raw),
        result,
        error,
    };
    // Values and raw JSON always serialise.
    serde_json::value::to_raw_value(&reply).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// A message the sidecar parsed (an upstream's answer it changed, or one
/// next to it), as text. When its id is one of `sent` (the agent's own
/// requests), the id goes out as the agent sent it.
pub fn from_value(message: &Value, sent: &[Id]) -> Outgoing {
    let known = message
        .as_object()
        .zip(message.get("id").and_then(Id::from_value))
        .and_then(|(members, id)| Some((members, sent.iter().find(|s| **s == id)?)));
    let out = match known {
        Some((members, id)) => serde_json::value::to_raw_value(&WithId { members, id }),
        None => serde_json::value::to_raw_value(message),
    };
    out.unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// A message whose `id` member is written as `id`'s exact text.
struct WithId<'a> {
    members: &'a serde_json::Map<String, Value>,
    id: &'a Id,
}

impl Serialize for WithId<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.members.len()))?;
        for (name, value) in self.members {
            if name == "id" {
                map.serialize_entry(name, self.id.raw())?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// Answers as one body: an array for a batch (or several), else the one.
pub fn body(mut answers: Vec<Outgoing>, batch: bool) -> bytes::Bytes {
    let text = if batch || answers.len() != 1 {
        serde_json::to_vec(&answers).unwrap_or_default()
    } else {
        answers
            .pop()
            .map(|a| a.get().as_bytes().to_vec())
            .unwrap_or_default()
    };
    text.into()
}

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
    approval: Option<&ApprovalLink>,
) -> Outgoing {
    let text = match (decision.outcome, approval) {
        (
            aegis_policy::Outcome::RequireApproval,
            Some(ApprovalLink::Requested {
                id,
                approvals_required,
                ..
            }),
        ) => format!(
            "Approval pending ({}): {}; the call was not run. Ask a person to approve \
             {id} ({approvals_required} approver{} needed; `aegis-proxy approvals approve {id}`), \
             then make the same call again with the same arguments: it runs once.",
            decision.reason,
            decision.explanation(),
            if *approvals_required == 1 { "" } else { "s" },
        ),
        (aegis_policy::Outcome::RequireApproval, _) => format!(
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
    let result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "resultType": "complete",
        "_meta": {"aegis/decision": decision_meta(decision, record, approval)}
    });
    reply(Some(id), Some(result), None)
}

/// The `_meta["aegis/decision"]` of a call the sidecar answered: the
/// decision, its envelope, the manifest, and the approval it waits for.
pub fn decision_meta(
    decision: &Decision,
    record: DecisionRecord<'_>,
    approval: Option<&ApprovalLink>,
) -> Value {
    let mut meta = json!({
        "outcome": decision.outcome.as_str(),
        "reason": decision.reason.as_str(),
        "seq": record.seq,
        "manifest_sha256": record.manifest_sha256,
    });
    if let Some(ApprovalLink::Requested {
        id,
        expires_unix_ms,
        approvals_required,
        mode,
        ..
    }) = approval
    {
        meta["approval_id"] = json!(id);
        meta["approvals_required"] = json!(approvals_required);
        meta["expires_unix_ms"] = json!(expires_unix_ms);
        meta["approval_mode"] = json!(mode.as_str());
    }
    meta
}

/// A tool-error result the sidecar puts in place of a forwarded call's
/// answer (timed out, or over `max_output_bytes`): the model reads `text`.
pub fn tool_error(id: &Id, text: String, meta: Value) -> Outgoing {
    let result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "resultType": "complete",
        "_meta": {"aegis/decision": meta},
    });
    reply(Some(id), Some(result), None)
}

/// One SSE event carrying `message`, in the shape MCP servers send.
pub fn sse_event(message: &RawValue) -> bytes::Bytes {
    let mut out = b"event: message\ndata: ".to_vec();
    // An answer's JSON is compact: it never holds a raw newline.
    out.extend_from_slice(message.get().as_bytes());
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// `body` (JSON text) as the whole answer, with `status` (200 for an
/// answer; a failure's own status from `error.rs`).
pub fn json_response(
    status: http::StatusCode,
    body: bytes::Bytes,
) -> http::Response<super::body::ProxyBody> {
    let mut response = http::Response::new(super::body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `202 Accepted`, no body: only notifications or responses were sent.
pub fn accepted() -> http::Response<super::body::ProxyBody> {
    let mut response = http::Response::new(super::body::empty());
    *response.status_mut() = http::StatusCode::ACCEPTED;
    response
}

/// A JSON-RPC error response; `id` is `null` when the request's id is unknown
/// (a body that did not parse).
pub fn error(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> Outgoing {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    reply(id, None, Some(error))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use aegis_policy::{Outcome, Reason};

    use super::*;

    fn id(v: Value) -> Id {
        Id::from_value(&v).unwrap()
    }

    fn parsed(answer: &Outgoing) -> Value {
        serde_json::from_str(answer.get()).unwrap()
    }

    #[test]
    fn ids_are_echoed_byte_for_byte() {
        let sent = br#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"tools/call","params":{"name":"a"}}"#;
        let super::super::jsonrpc::Body::Single(m) = super::super::jsonrpc::parse(sent).unwrap()
        else {
            panic!()
        };
        let call = m.tool_call().unwrap().unwrap();
        let e = error(Some(call.id), -32603, "x", None);
        assert!(
            e.get()
                .starts_with(r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"#),
            "{}",
            e.get()
        );
        let t = tool_error(call.id, "t".into(), json!({}));
        assert!(t.get().contains(r#""id":123456789012345678901234567890,"#));
        assert_eq!(
            error(None, 1, "m", None).get(),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#
        );
        assert_eq!(&body(vec![e.clone()], false)[..], e.get().as_bytes());
        assert_eq!(parsed(&from_value(&json!([1]), &[])), json!([1]));
        // An upstream's answer to that call, parsed (its id rounded) and
        // written again: the agent's id text comes back.
        let upstream: Value = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":{"tools":[]}}"#,
        )
        .unwrap();
        let again = from_value(&upstream, std::slice::from_ref(call.id));
        assert!(
            again
                .get()
                .contains(r#""id":123456789012345678901234567890,"#),
            "{}",
            again.get()
        );
        assert!(!from_value(&upstream, &[]).get().contains("567890,"));
        let two = body(vec![e.clone(), t.clone()], false);
        assert_eq!(&two[..], format!("[{},{}]", e.get(), t.get()).as_bytes());
        assert_eq!(
            &body(vec![e.clone()], true)[..],
            format!("[{}]", e.get()).as_bytes()
        );
        assert_eq!(
            &sse_event(&e)[..],
            format!("event: message\ndata: {}\n\n", e.get()).as_bytes()
        );
    }

    #[test]
    fn a_denial_is_a_tool_error_result_with_the_requests_id() {
        let decision = Decision {
            outcome: Outcome::Deny,
            reason: Reason::EgressDeny,
            constraints: None,
        };
        let answer = not_forwarded(
            &id(json!("call-9")),
            &decision,
            DecisionRecord {
                seq: 12,
                manifest_sha256: "ab",
            },
            None,
        );
        let answer = parsed(&answer);
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
            &id(json!(3)),
            &decision,
            DecisionRecord {
                seq: 1,
                manifest_sha256: "",
            },
            Some(&ApprovalLink::Requested {
                id: "appr-0123".into(),
                fresh: true,
                args_digest: "ab".repeat(32),
                expires_unix_ms: 9,
                approvals_required: 2,
                mode: aegis_policy::ApprovalMode::Retry,
            }),
        );
        let answer = parsed(&answer);
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
        assert!(text.contains("appr-0123 (2 approvers needed"), "{text}");
        assert!(text.contains("same call again"), "{text}");
        assert_eq!(
            answer["result"]["_meta"]["aegis/decision"]["approvals_required"],
            2
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
            parsed(&error(None, -32700, "the body is not JSON", None)),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "the body is not JSON"}})
        );
        let e = error(
            Some(&id(json!(4))),
            -32603,
            "upstream refused",
            Some(json!({"upstream": "tools"})),
        );
        let e = parsed(&e);
        assert_eq!(e["error"]["data"]["upstream"], "tools");
        assert_eq!(e["id"], 4);
    }
}

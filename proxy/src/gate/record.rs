//! Every envelope payload the sidecar writes, in one place (the field
//! reference is `proxy/src/mcp/README.md`, "What the ledger records").

use aegis_ledger::session::RESULT_NOT_RECORDED;
use aegis_ledger::{
    AppendRequest, Digest, EventType, NewEvent, Origin, Payload, Seal, now_unix_ms,
};
use aegis_policy::Decision;
use aegis_policy::store::LoadedManifest;
use serde_json::{Value, json};

use super::approval::ApprovalLink;
use super::{CallRequest, DECISION_API_UPSTREAM, EGRESS_UPSTREAM, Veto};
use crate::identity::Identity;
use aegis_policy::sanitize::Rewrite;

/// Every envelope the sidecar writes is built here: its session key, and
/// in its payload who the agent is (`principal`) and, when the request
/// carried one, MCP's `mcp_session_id`.
pub fn event(identity: &Identity, event_type: EventType, mut payload: Value) -> NewEvent {
    if let Value::Object(members) = &mut payload {
        members.insert("principal".into(), json!(identity.principal));
        if let Some(id) = &identity.mcp_session_id {
            members.insert("mcp_session_id".into(), json!(id));
        }
    }
    NewEvent {
        tenant_id: identity.tenant_id.clone(),
        user_id: identity.user_id.clone(),
        session_id: identity.session_id.clone(),
        ts_unix_ms: now_unix_ms(),
        event_type,
        payload: Payload::from_value(payload),
    }
}

/// `TOOL_CALL_PROPOSED` at `seq` (after `prev_hash`) and the decision right
/// after it, as one group. The decision names the proposal's hash as its
/// predecessor, so it can only land right after this very proposal: if the
/// proposal is refused (the head moved), so is the decision.
pub fn proposal_and_decision(
    call: &CallRequest<'_>,
    decision: &Decision,
    (seq, prev_hash): (u64, Option<Digest>),
    manifest: Option<&LoadedManifest>,
    approval: Option<&ApprovalLink>,
    veto: Option<Veto<'_>>,
    sanitized: Option<&Rewrite>,
) -> Vec<AppendRequest> {
    let event_type = match decision.outcome {
        aegis_policy::Outcome::Allow => EventType::ToolCallAllowed,
        aegis_policy::Outcome::Deny => EventType::ToolCallDenied,
        aegis_policy::Outcome::RequireApproval => EventType::ApprovalRequested,
    };
    let mut payload = decision_payload(call, decision, seq, manifest, approval);
    if let Some(veto) = veto {
        payload["detail"] = json!(veto.detail);
        // A veto applies in shadow mode too: the call does not run.
        payload["enforced"] = json!(true);
    } else if let Some(rewrite) = sanitized {
        // What was decided on and is forwarded, beside what was proposed.
        payload["sanitized"] = json!({
            "changed": rewrite.changed,
            "message": rewrite.message,
            "args_sha256": super::approval::args_digest(call.args),
            "sanitized_args_sha256": super::approval::args_digest(&rewrite.args),
        });
    }
    if call.upstream == DECISION_API_UPSTREAM && decision.outcome == aegis_policy::Outcome::Allow {
        // The client runs the tool; no result will come to settle it.
        payload[aegis_ledger::session::DELEGATED] = json!(true);
    }
    let proposed = AppendRequest {
        event: event(
            call.identity,
            EventType::ToolCallProposed,
            proposal_payload(call),
        ),
        seal: Seal::Expect { seq, prev_hash },
        origin: Origin::Sidecar,
    };
    let proposal_hash = proposed.preimage(seq, prev_hash.as_ref()).hash();
    vec![
        proposed,
        AppendRequest {
            event: event(call.identity, event_type, payload),
            seal: Seal::Expect {
                seq: seq + 1,
                prev_hash: Some(proposal_hash),
            },
            origin: Origin::Sidecar,
        },
    ]
}

/// `TOOL_CALL_PROPOSED`: what the agent asked for.
pub fn proposal_payload(call: &CallRequest<'_>) -> Value {
    let mut payload = json!({
        "tool_name": call.tool_name,
        "call_id": call.call_id,
        "args": call.args,
        "transport": match call.upstream {
            EGRESS_UPSTREAM => "egress",
            DECISION_API_UPSTREAM => "decision_api",
            _ => "mcp",
        },
        "upstream": call.upstream,
    });
    if let Some(key) = call.sanitizer_key {
        payload["sanitizer_key"] = json!(key);
    }
    if let Some(text) = call.call_id_text {
        payload["call_id_text"] = json!(text);
    }
    if let Some(context) = call.context {
        payload["client_context"] = context.clone();
    }
    payload
}

/// `TOOL_CALL_ALLOWED` / `TOOL_CALL_DENIED` / `APPROVAL_REQUESTED`: the
/// decision, with the manifest that made it.
pub fn decision_payload(
    call: &CallRequest<'_>,
    decision: &Decision,
    proposal_seq: u64,
    manifest: Option<&LoadedManifest>,
    approval: Option<&ApprovalLink>,
) -> Value {
    let mut payload = json!({
        "tool_name": call.tool_name,
        "call_id": call.call_id,
        "proposal_seq": proposal_seq,
        "outcome": decision.outcome.as_str(),
        "reason": decision.reason.as_str(),
        "explanation": decision.explanation(),
        "enforced": call.enforce,
        "manifest_sha256": manifest.map(|m| m.sha256.as_str()),
        "manifest_generation": manifest.map(|m| m.generation),
    });
    if let Some(c) = decision.constraints {
        payload["constraints"] = json!({
            "max_output_bytes": c.max_output_bytes,
            "timeout_ms": c.timeout_ms,
        });
    }
    if let Some(text) = call.call_id_text {
        payload["call_id_text"] = json!(text);
    }
    use aegis_ledger::approval::field;
    match approval {
        Some(ApprovalLink::Requested {
            id,
            args_digest,
            expires_unix_ms,
            approvals_required,
            mode,
            ..
        }) => {
            payload[field::APPROVAL_ID] = json!(id);
            payload[field::ARGS_DIGEST] = json!(args_digest);
            payload[field::EXPIRES_UNIX_MS] = json!(expires_unix_ms);
            payload[field::APPROVALS_REQUIRED] = json!(approvals_required);
            payload["approval_mode"] = json!(mode.as_str());
        }
        Some(ApprovalLink::Released { id, approvers }) => {
            payload[field::APPROVAL_ID] = json!(id);
            payload["approved_by"] = json!(approvers);
        }
        None => {}
    }
    payload
}

/// Who a forwarded MCP request was, for the record of its end.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub call_id: &'a Value,
    pub call_id_text: Option<&'a str>,
    pub upstream: &'a str,
    pub duration_ms: u64,
}

/// The start of a forwarded `tools/call`'s `TOOL_RESULT` / `ERROR_RAISED`
/// (`mcp/settle.rs` adds what the ending was).
pub fn call_result(answered: Answered<'_>, tool_name: &str, proposal_seq: Option<u64>) -> Value {
    let mut payload = json!({
        "tool_name": tool_name,
        "call_id": answered.call_id,
        "proposal_seq": proposal_seq,
        "upstream": answered.upstream,
        "duration_ms": answered.duration_ms,
    });
    if let Some(text) = answered.call_id_text {
        payload["call_id_text"] = json!(text);
    }
    payload
}

/// The start of a `resources/read` / `prompts/get` answer's `TOOL_RESULT`
/// (`mcp/inputs.rs` adds its source and trust).
pub fn read_result(answered: Answered<'_>, is_error: bool, size: usize, sha256: &str) -> Value {
    let mut payload = json!({
        "call_id": answered.call_id,
        "upstream": answered.upstream,
        "is_error": is_error,
        "size_bytes": size,
        "sha256": sha256,
        "duration_ms": answered.duration_ms,
    });
    if let Some(text) = answered.call_id_text {
        payload["call_id_text"] = json!(text);
    }
    payload
}

/// How an egress attempt ended (`TOOL_RESULT` or `TOOL_CALL_EXECUTED`).
#[derive(Debug, Clone, Copy)]
pub struct EgressEnd<'a> {
    pub tool_name: &'a str,
    pub call_id: &'a str,
    pub proposal_seq: u64,
    pub status: &'a str,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    pub http_status: Option<u16>,
    /// What of the content was kept (always nothing, today).
    pub kept: &'a str,
}

pub fn egress_result(end: EgressEnd<'_>) -> Value {
    let mut payload = json!({
        "tool_name": end.tool_name,
        "call_id": end.call_id,
        "proposal_seq": end.proposal_seq,
        "transport": "egress",
        "status": end.status,
        "bytes_up": end.bytes_up,
        "bytes_down": end.bytes_down,
        "duration_ms": end.duration_ms,
        "kept": end.kept,
    });
    if let Some(code) = end.http_status {
        payload["http_status"] = json!(code);
    }
    payload
}

/// `ERROR_RAISED` for a call that ran and whose result never reached the
/// ledger (a restart, or a failed commit); it taints the session.
pub fn result_not_recorded(proposal_seq: u64, tool_name: &str) -> Value {
    json!({
        "tool_name": tool_name,
        "proposal_seq": proposal_seq,
        "error": RESULT_NOT_RECORDED,
        "message": "result not recorded: restart or ledger failure after the call ran; the session is treated as tainted",
    })
}

#[cfg(test)]
mod tests {
    use aegis_policy::{Outcome, Reason};

    use super::*;
    use crate::gate::tests::identity_in;

    #[test]
    fn payloads_name_the_call_and_the_policy_that_decided() {
        let id = identity_in("s");
        let call_id = json!(7);
        let args = json!({"path": "a.txt"});
        let call = CallRequest {
            identity: &id,
            upstream: "tools",
            call_id: &call_id,
            call_id_text: None,
            tool_name: "read_file",
            args: &args,
            sanitizer_key: Some("k1"),
            enforce: false,
            context: None,
        };
        assert_eq!(
            proposal_payload(&call),
            json!({"tool_name": "read_file", "call_id": 7, "args": {"path": "a.txt"},
                   "transport": "mcp", "upstream": "tools", "sanitizer_key": "k1"})
        );
        let decision = Decision {
            outcome: Outcome::Deny,
            reason: Reason::BudgetExceeded,
            constraints: None,
        };
        let payload = decision_payload(&call, &decision, 4, None, None);
        assert_eq!(payload["outcome"], "deny");
        assert_eq!(payload["reason"], "BUDGET_EXCEEDED");
        assert_eq!(payload["proposal_seq"], 4);
        assert_eq!(payload["enforced"], false);
        assert_eq!(payload["manifest_sha256"], Value::Null);
        assert!(payload.get("constraints").is_none());
    }

    #[test]
    fn a_veto_is_enforced_even_in_shadow_mode() {
        let id = identity_in("s");
        let (call_id, args) = (json!("egress-1"), json!({}));
        let call = CallRequest {
            identity: &id,
            upstream: EGRESS_UPSTREAM,
            call_id: &call_id,
            call_id_text: None,
            tool_name: "net.connect",
            args: &args,
            sanitizer_key: None,
            enforce: false,
            context: None,
        };
        let decision = Decision {
            outcome: Outcome::Deny,
            reason: Reason::EgressDeny,
            constraints: None,
        };
        let veto = Veto {
            reason: Reason::EgressDeny,
            detail: "private address",
            before_policy: false,
        };
        let group =
            proposal_and_decision(&call, &decision, (0, None), None, None, Some(veto), None);
        let decided = group[1].event.payload.value();
        assert_eq!(decided["enforced"], true);
        assert_eq!(decided["detail"], "private address");
    }

    #[test]
    fn a_lost_result_is_recorded_as_tainting() {
        let payload = result_not_recorded(3, "fetch");
        assert_eq!(payload["error"], RESULT_NOT_RECORDED);
        assert_eq!(payload["proposal_seq"], 3);
    }
}

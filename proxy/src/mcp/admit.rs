//! Admitting one message of a POST: a `tools/call` is decided and recorded
//! by the gate before anything is forwarded; a refused one gets its answer
//! from the sidecar (a tool-error result naming the decision), and so does
//! a malformed one or one the ledger could not record. `tools/list`,
//! `resources/read` and `prompts/get` are noted so their answers are
//! filtered or recorded. Everything else passes.

use aegis_policy::Outcome;
use bytes::Bytes;
use serde_json::Value;

use super::McpState;
use super::answers::{self, DecisionRecord};
use super::error::Failure;
use super::exchange::{Call, Exchange};
use super::held::Held;
use super::inputs::Read;
use super::jsonrpc::{Id, Kind, Message};
use crate::gate::{CallRequest, GateError};

/// `_meta` key under which a call may carry the sanitizer key of its input.
pub const SANITIZER_META_KEY: &str = "aegis/sanitizer_key";

/// Decides one message of a POST: `true` to forward it; otherwise its
/// answer is kept in `exchange` (a denial, a malformed call, a call the
/// ledger could not record), or, for a call held for approval
/// ([`super::hold`]), `exchange.held` is set.
pub async fn admit(state: &McpState, exchange: &mut Exchange, message: &Message) -> bool {
    if message.method() == Some("tools/list")
        && let Kind::Request { id, .. } = &message.kind
    {
        exchange.tools_list.push(id.clone());
    }
    if let Some(read) = Read::of(message) {
        exchange.reads.push(read);
        return true;
    }
    let Some(call) = message.tool_call() else {
        return true;
    };
    let call = match call {
        Ok(call) => call,
        Err(e) => {
            let answer = Failure::InvalidCall(e.message).answer(request_id(message));
            exchange.local.push(answer);
            return false;
        }
    };
    let enforce = state.config.enforce;
    let sanitizer_key = message
        .value
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(SANITIZER_META_KEY))
        .and_then(Value::as_str);
    let call_id = call.id.to_value();
    let request = CallRequest {
        identity: &exchange.identity,
        upstream: &exchange.upstream.name,
        call_id: &call_id,
        call_id_text: call.id.inexact_text(),
        tool_name: call.name,
        args: call.arguments,
        sanitizer_key,
        enforce,
        context: None,
    };
    let manifest = state.manifests.current();
    let verdict = match state.gate.decide_and_record(request, manifest).await {
        Ok(verdict) => verdict,
        Err(e @ GateError::Busy(_)) => {
            // The agent's own flood, not a ledger fault: counted, logged
            // quietly (an error line per call would let it flood the logs).
            let failure = Failure::NotRecorded(e);
            state
                .metrics
                .mcp
                .refused_requests
                .with_label_values(&[failure.label()])
                .inc();
            tracing::debug!(tool = call.name, session = %exchange.identity.session_id, "tool call refused: its session has too many calls queued");
            exchange.local.push(failure.answer(Some(call.id)));
            return false;
        }
        Err(e) => {
            let fail_open = state.fail_open && e.may_fail_open();
            let mode = if fail_open {
                "fail_open"
            } else {
                "fail_closed"
            };
            state
                .metrics
                .mcp
                .ledger_failures
                .with_label_values(&[mode])
                .inc();
            if e.may_fail_open() {
                // The store failed: the operator has to act.
                tracing::error!(tool = call.name, error = %e, mode, "tool call could not be recorded");
            } else {
                // Something the agent can bring about (a session it
                // recorded itself, a chain it keeps moving): a line per
                // call at error level would let it flood the logs.
                tracing::debug!(tool = call.name, error = %e, mode, "tool call could not be recorded");
            }
            if fail_open {
                exchange
                    .calls
                    .push(Call::unrecorded(call.id.clone(), call.name));
                return true;
            }
            exchange
                .local
                .push(Failure::NotRecorded(e).answer(Some(call.id)));
            return false;
        }
    };
    let decision = verdict.decision;
    state
        .metrics
        .record_decision(decision.outcome, decision.reason, verdict.decide_time);
    state
        .metrics
        .mcp
        .tool_calls
        .with_label_values(&[
            exchange.upstream.name.as_str(),
            decision.outcome.as_str(),
            decision.reason.as_str(),
            if enforce { "true" } else { "false" },
        ])
        .inc();
    if let Some(crate::gate::ApprovalLink::Released { .. }) = &verdict.approval {
        state.metrics.approvals.released.inc();
    }
    if verdict.forwards(enforce) {
        if decision.outcome != Outcome::Allow {
            tracing::info!(
                tool = call.name,
                outcome = decision.outcome.as_str(),
                reason = decision.reason.as_str(),
                seq = verdict.decision_seq,
                "shadow mode: tool call would be refused; forwarded"
            );
        }
        if enforce && let Some(rewrite) = &verdict.sanitized {
            match rewritten(message, &rewrite.args) {
                Some(text) => exchange.rewrites.push((message.span.start, text)),
                None => {
                    // Never forward what was not decided on.
                    exchange.local.push(
                        Failure::InvalidCall("params is not an object, so policy.sanitize's rewrite cannot be forwarded".into())
                            .answer(Some(call.id)),
                    );
                    return false;
                }
            }
            tracing::info!(
                tool = call.name,
                seq = verdict.decision_seq,
                changed = %rewrite.changed.join(", "),
                "tool call arguments rewritten by policy.sanitize"
            );
        }
        exchange
            .calls
            .push(Call::new(call.id.clone(), call.name, &verdict));
        return true;
    }
    let record = DecisionRecord {
        seq: verdict.decision_seq,
        manifest_sha256: verdict.manifest_sha256(),
    };
    let approval = verdict.approval.as_ref();
    if let Some(held) = Held::of(
        message,
        call.id,
        &decision,
        record,
        approval,
        exchange.batch,
    ) {
        tracing::info!(
            tool = call.name,
            seq = verdict.decision_seq,
            approval_id = verdict.approval_id(),
            "tool call held for approval"
        );
        exchange.held = Some(held);
        return false;
    }
    tracing::info!(
        tool = call.name,
        outcome = decision.outcome.as_str(),
        reason = decision.reason.as_str(),
        seq = verdict.decision_seq,
        approval_id = verdict.approval_id(),
        latency_us = u64::try_from(exchange.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "tool call refused"
    );
    exchange
        .local
        .push(answers::not_forwarded(call.id, &decision, record, approval));
    false
}

/// The message with `params.arguments` replaced, as JSON text.
fn rewritten(message: &Message, args: &Value) -> Option<Bytes> {
    let mut value = message.value.clone();
    *value
        .get_mut("params")?
        .as_object_mut()?
        .entry("arguments")
        .or_insert(Value::Null) = args.clone();
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// What goes upstream of a POST whose `body` held `total` messages and
/// `forward` were admitted: the body byte for byte when all were and none
/// was rewritten; otherwise each admitted message's own text (or its
/// `policy.sanitize` rewrite), as a batch when the POST was one.
pub fn upstream_body(
    body: Bytes,
    forward: &[Message],
    total: usize,
    batch: bool,
    rewrites: &[(usize, Bytes)],
) -> Bytes {
    if forward.len() == total && rewrites.is_empty() {
        return body;
    }
    let text = |message: &Message| -> &[u8] {
        match rewrites
            .iter()
            .find(|(start, _)| *start == message.span.start)
        {
            Some((_, text)) => text,
            None => body.get(message.span.clone()).unwrap_or_default(),
        }
    };
    if !batch && let [message] = forward {
        return Bytes::copy_from_slice(text(message));
    }
    let len = forward.iter().map(|m| text(m).len() + 1).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, message) in forward.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(text(message));
    }
    out.push(b']');
    out.into()
}

pub fn request_id(message: &Message) -> Option<&Id> {
    match &message.kind {
        Kind::Request { id, .. } => Some(id),
        _ => None,
    }
}

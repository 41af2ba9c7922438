//! A call held for its approval (`approval.mode: hold`), as the admit
//! stage marks it; [`super::hold`] does the holding.

use aegis_policy::{ApprovalMode, Decision, Outcome};
use serde_json::Value;

use super::answers::{self, DecisionRecord, Outgoing};
use super::jsonrpc::{Id, Message};
use crate::gate::ApprovalLink;

/// A call held for its approval.
#[derive(Debug)]
pub struct Held {
    pub call_id: Id,
    pub approval_id: String,
    pub approvals_required: u32,
    /// `params._meta.progressToken`, when the call carried one.
    pub progress_token: Option<Value>,
    /// The decision's `_meta["aegis/decision"]`, for the answers.
    pub meta: Value,
    /// The `retry` answer: sent when the hold ends with the approval
    /// still pending.
    pub pending: Outgoing,
    /// Keep-alives sent so far (a progress notification's `progress`).
    pub sent: u64,
}

impl Held {
    /// The hold for a call refused pending approval in `hold` mode; `None`
    /// for anything else (in a batch, `retry`).
    pub fn of(
        message: &Message,
        call_id: &Id,
        decision: &Decision,
        record: DecisionRecord<'_>,
        approval: Option<&ApprovalLink>,
        batch: bool,
    ) -> Option<Held> {
        let Some(ApprovalLink::Requested {
            id,
            approvals_required,
            mode: ApprovalMode::Hold,
            ..
        }) = approval
        else {
            return None;
        };
        if batch || decision.outcome != Outcome::RequireApproval {
            return None;
        }
        let progress_token = message
            .value
            .get("params")
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_number())
            .cloned();
        Some(Held {
            call_id: call_id.clone(),
            approval_id: id.clone(),
            approvals_required: *approvals_required,
            progress_token,
            meta: answers::decision_meta(decision, record, approval),
            pending: answers::not_forwarded(call_id, decision, record, approval),
            sent: 1,
        })
    }
}

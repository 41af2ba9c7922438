//! Calls the policy holds for a human (`require_approval`): what the
//! approvals store says about one, decided under the session's turn
//! (`README.md`, "Approvals").
//!
//! - An approved, unexpired, unused approval of the same session, tool and
//!   arguments (SHA-256 of their canonical JSON), with at least as many
//!   distinct approvers as the live manifest asks for the tool, **releases**
//!   the call: it is recorded `TOOL_CALL_ALLOWED` naming the approval, which
//!   the ledger's writer consumes in the same commit (and refuses, with the
//!   proposal, if anything raced it). The call was decided again under the
//!   live manifest and session state first: a manifest change that denies
//!   it, a budget spent, taint, a loop — anything but the approval rule —
//!   still refuses it; a manifest that now wants more approvers than the
//!   approval has asks for a new approval.
//! - Otherwise the call **waits**: on the approval of the same call already
//!   waiting (asking again joins it), or on a new one with an unguessable
//!   id, unless the session already has `approval.max_pending_per_session`
//!   waiting, or all sessions `approval.max_pending` (then it is denied
//!   `APPROVAL_LIMIT`).

use aegis_ledger::{Approval, ApprovalState, now_unix_ms};
use aegis_policy::{ApprovalMode, Decision, Outcome, Reason};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{Gate, GateError};
use crate::identity::Identity;

pub mod waiters;
pub use waiters::{Waiters, Waiting};

/// `approval:` (`README.md`, "Approvals"); its defaults are the config's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalConfig {
    /// How a call waits when its manifest's `policy.approvals` does not say.
    pub mode: ApprovalMode,
    /// An approval expires this long after it was requested.
    pub ttl: std::time::Duration,
    /// In `hold` mode, how long a call is held open for its approval.
    pub hold_timeout: std::time::Duration,
    /// Approvals one session may have waiting at once.
    pub max_pending_per_session: u64,
    /// Approvals all sessions together may have waiting at once.
    pub max_pending: u64,
    /// Where requests and decisions are POSTed, if anywhere.
    pub webhook_url: Option<http::Uri>,
}

/// What a decision's envelope says about its approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalLink {
    /// The call waits for this approval (new, or already waiting).
    Requested {
        id: String,
        /// Asked for by this call (not one already waiting).
        fresh: bool,
        args_digest: String,
        expires_unix_ms: i64,
        approvals_required: u32,
        mode: ApprovalMode,
    },
    /// The call runs on this approval, which the commit consumes.
    Released { id: String, approvers: Vec<String> },
}

impl ApprovalLink {
    pub fn id(&self) -> &str {
        match self {
            ApprovalLink::Requested { id, .. } | ApprovalLink::Released { id, .. } => id,
        }
    }
}

/// SHA-256 of the canonical arguments, hex: what an approval binds.
pub fn args_digest(args: &Value) -> String {
    hex::encode(Sha256::digest(aegis_ledger::canon::to_vec(args)))
}

/// A new approval id: 128 random bits, so that nobody can name an approval
/// they were not shown.
fn new_id() -> Result<String, GateError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| GateError::State("no randomness for an approval id".into()))?;
    Ok(format!("appr-{}", hex::encode(bytes)))
}

impl Gate {
    /// The decision and approval link for a call the policy holds for
    /// approval (`decision`), from the approvals store; `required` and
    /// `mode` are the live manifest's rule for the tool.
    pub(super) async fn consult_approvals(
        &self,
        identity: &Identity,
        tool: &str,
        digest: &str,
        (required, mode): (u32, ApprovalMode),
        decision: Decision,
        allow: Decision,
    ) -> Result<(Decision, Option<ApprovalLink>), GateError> {
        let reader = self.reader.clone();
        let (tenant, session) = (identity.tenant_id.clone(), identity.session_id.clone());
        let (tool_owned, digest_owned) = (tool.to_owned(), digest.to_owned());
        let config = (
            self.approvals.max_pending_per_session,
            self.approvals.max_pending,
        );
        let ttl = self.approvals.ttl;
        let now = now_unix_ms();
        let found = tokio::task::spawn_blocking(move || {
            let key = (tenant.as_str(), session.as_str());
            let find =
                |state| reader.approval_for_call(key, &tool_owned, &digest_owned, state, now);
            let releasing = find(ApprovalState::Approved)?;
            if let Some(approval) = releasing.filter(|a| a.approvals() >= required) {
                return Ok::<_, aegis_ledger::StoreError>(Found::Release(approval));
            }
            if let Some(waiting) = find(ApprovalState::Pending)? {
                return Ok(Found::Waiting(waiting));
            }
            let full = reader.pending_approvals(Some(key), now)? >= config.0
                || reader.pending_approvals(None, now)? >= config.1;
            Ok(if full { Found::Limit } else { Found::Nothing })
        })
        .await
        .map_err(|e| GateError::State(e.to_string()))?
        .map_err(|e| GateError::State(e.to_string()))?;
        Ok(match found {
            Found::Release(approval) => (
                allow,
                Some(ApprovalLink::Released {
                    approvers: approval
                        .votes
                        .iter()
                        .filter(|v| v.decision == aegis_ledger::VoteKind::Approve)
                        .map(|v| v.approver.clone())
                        .collect(),
                    id: approval.id,
                }),
            ),
            Found::Waiting(approval) => (
                decision,
                Some(ApprovalLink::Requested {
                    id: approval.id,
                    fresh: false,
                    args_digest: approval.args_digest,
                    expires_unix_ms: approval.expires_unix_ms,
                    approvals_required: approval.approvals_required,
                    mode,
                }),
            ),
            Found::Limit => (
                Decision {
                    outcome: Outcome::Deny,
                    reason: Reason::ApprovalLimit,
                    constraints: None,
                },
                None,
            ),
            Found::Nothing => {
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                (
                    decision,
                    Some(ApprovalLink::Requested {
                        id: new_id()?,
                        fresh: true,
                        args_digest: digest.to_owned(),
                        expires_unix_ms: now.saturating_add(ttl_ms),
                        approvals_required: required,
                        mode,
                    }),
                )
            }
        })
    }
}

/// An approval as the API shows it: `state` as of now (an expiry not yet
/// recorded already reads expired), the arguments as JSON unless cut.
pub fn to_json(a: &Approval, now_unix_ms: i64) -> Value {
    let args = match a.args_truncated {
        false => serde_json::from_str(&a.args).unwrap_or_else(|_| json!(a.args)),
        true => json!(a.args),
    };
    json!({
        "id": a.id,
        "tenant_id": a.tenant_id,
        "session_id": a.session_id,
        "tool_name": a.tool_name,
        "args": args,
        "args_truncated": a.args_truncated,
        "args_digest": a.args_digest,
        "manifest_sha256": a.manifest_sha256,
        "approvals_required": a.approvals_required,
        "approvals": a.approvals(),
        "state": a.state_at(now_unix_ms).as_str(),
        "recorded_state": a.state.as_str(),
        "proposal_seq": a.proposal_seq,
        "requested_seq": a.requested_seq,
        "requested_unix_ms": a.requested_unix_ms,
        "expires_unix_ms": a.expires_unix_ms,
        "votes": a.votes,
        "decided_unix_ms": a.decided_unix_ms,
        "consumed_seq": a.consumed_seq,
    })
}

enum Found {
    Release(Approval),
    Waiting(Approval),
    Limit,
    Nothing,
}

#[cfg(test)]
mod tests;

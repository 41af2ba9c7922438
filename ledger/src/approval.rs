//! Human approvals as the ledger keeps them (`README.md`, "Approvals").
//!
//! An approval lives in its session's chain and, for finding it, in the
//! `approvals` table, which the writer changes in the transaction of the
//! envelope that changes it, so the two never disagree:
//! - `APPROVAL_REQUESTED` recorded by the sidecar with a new `approval_id`
//!   adds a pending approval (the call's arguments from its proposal);
//! - `APPROVAL_DECIDED` recorded by an operator adds one vote (`approve` or
//!   `deny`) and the state it leads to; recorded by the sidecar, it expires
//!   the approval;
//! - `TOOL_CALL_ALLOWED` recorded by the sidecar naming an `approval_id`
//!   consumes it.
//!
//! Envelopes a client records (`POST /v1/events`) never change an approval:
//! the agent being governed cannot request, decide or consume one. Which
//! votes may be cast and what they lead to is [`Approval::vote`]; the
//! caller checks it under the session's turn, before recording.

use serde::Serialize;
use serde_json::Value;

use crate::append::Origin;
use crate::event::EventType;

/// Bytes of a call's canonical arguments kept for the approver to see; a
/// longer text is cut (and says so: `args_truncated`). The digest always
/// covers the whole.
pub const MAX_ARGS_SHOWN: usize = 16 * 1024;

/// Longest approval id, approver identity and reason accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;
pub const MAX_REASON_LEN: usize = 1024;

/// Payload members of the approval envelopes.
pub mod field {
    pub const APPROVAL_ID: &str = "approval_id";
    pub const ARGS_DIGEST: &str = "args_digest";
    pub const EXPIRES_UNIX_MS: &str = "expires_unix_ms";
    pub const APPROVALS_REQUIRED: &str = "approvals_required";
    pub const DECISION: &str = "decision";
    pub const APPROVER: &str = "approver";
    pub const REASON: &str = "reason";
    pub const STATE: &str = "state";
    pub const PROPOSAL_SEQ: &str = "proposal_seq";
    pub const MANIFEST_SHA256: &str = "manifest_sha256";
    pub const TOOL_NAME: &str = "tool_name";
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for votes.
    Pending,
    /// Enough distinct approvers approved: the call it names may run, once.
    Approved,
    /// An approver denied it.
    Denied,
    /// Nobody decided (or the approved call was not made) before it expired.
    Expired,
    /// The call it approved ran.
    Consumed,
}

impl ApprovalState {
    pub const ALL: [ApprovalState; 5] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Denied,
        ApprovalState::Expired,
        ApprovalState::Consumed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Consumed => "consumed",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalState> {
        ApprovalState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing can change it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ApprovalState::Denied | ApprovalState::Expired | ApprovalState::Consumed
        )
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approver's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    Approve,
    Deny,
}

impl VoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VoteKind::Approve => "approve",
            VoteKind::Deny => "deny",
        }
    }

    pub fn parse(text: &str) -> Option<VoteKind> {
        match text {
            "approve" => Some(VoteKind::Approve),
            "deny" => Some(VoteKind::Deny),
            _ => None,
        }
    }
}

/// A vote as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    /// The authenticated identity that cast it.
    pub approver: String,
    pub decision: VoteKind,
    pub reason: String,
    pub at_unix_ms: i64,
    /// The seq of its `APPROVAL_DECIDED`.
    pub seq: u64,
}

/// An approval, as the `approvals` table holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub tool_name: String,
    /// SHA-256 of the call's canonical arguments, hex.
    pub args_digest: String,
    /// The arguments' canonical JSON text, cut at [`MAX_ARGS_SHOWN`] bytes.
    pub args: String,
    pub args_truncated: bool,
    /// The manifest that required it.
    pub manifest_sha256: String,
    /// Distinct approvers needed.
    pub approvals_required: u32,
    /// The seq of the `TOOL_CALL_PROPOSED` that asked, and of its
    /// `APPROVAL_REQUESTED`.
    pub proposal_seq: u64,
    pub requested_seq: u64,
    pub requested_unix_ms: i64,
    pub expires_unix_ms: i64,
    /// As recorded; see [`Approval::state_at`] for the state now.
    pub state: ApprovalState,
    pub votes: Vec<Vote>,
    /// When it became approved, denied or expired.
    pub decided_unix_ms: Option<i64>,
    /// The seq of the `TOOL_CALL_ALLOWED` that used it.
    pub consumed_seq: Option<u64>,
}

/// Why a vote cannot be cast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteRefused {
    #[error("approval {id} is {state}: it takes no more votes")]
    Closed { id: String, state: ApprovalState },
    #[error("{approver} already voted on approval {id}: one identity counts once")]
    AlreadyVoted { id: String, approver: String },
}

impl Approval {
    /// The state at `now_unix_ms`: pending or approved past its expiry
    /// reads expired (whether or not the expiry is recorded yet).
    pub fn state_at(&self, now_unix_ms: i64) -> ApprovalState {
        match self.state {
            ApprovalState::Pending | ApprovalState::Approved
                if now_unix_ms >= self.expires_unix_ms =>
            {
                ApprovalState::Expired
            }
            state => state,
        }
    }

    /// Distinct approvers that approved.
    pub fn approvals(&self) -> u32 {
        let approve = self
            .votes
            .iter()
            .filter(|v| v.decision == VoteKind::Approve);
        u32::try_from(approve.count()).unwrap_or(u32::MAX)
    }

    /// The state `approver`'s vote would lead to: one deny ends it; it is
    /// approved once `approvals_required` distinct identities approved. Only
    /// a pending approval takes votes, and each identity counts once.
    pub fn vote(
        &self,
        approver: &str,
        decision: VoteKind,
        now_unix_ms: i64,
    ) -> Result<ApprovalState, VoteRefused> {
        let state = self.state_at(now_unix_ms);
        if state != ApprovalState::Pending {
            return Err(VoteRefused::Closed {
                id: self.id.clone(),
                state,
            });
        }
        if self.votes.iter().any(|v| v.approver == approver) {
            return Err(VoteRefused::AlreadyVoted {
                id: self.id.clone(),
                approver: approver.to_owned(),
            });
        }
        Ok(match decision {
            VoteKind::Deny => ApprovalState::Denied,
            VoteKind::Approve if self.approvals() + 1 >= self.approvals_required => {
                ApprovalState::Approved
            }
            VoteKind::Approve => ApprovalState::Pending,
        })
    }
}

/// What one envelope does to the `approvals` table, read from its payload
/// on the caller's thread (the writer applies it in the envelope's
/// transaction).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// A new pending approval (an id already known changes nothing: the
    /// same call asked again while it waits).
    Requested {
        id: String,
        tool_name: String,
        args_digest: String,
        manifest_sha256: String,
        approvals_required: u32,
        proposal_seq: u64,
        expires_unix_ms: i64,
    },
    /// An operator's vote and the state it leads to.
    Voted {
        id: String,
        approver: String,
        decision: VoteKind,
        reason: String,
        state: ApprovalState,
    },
    /// The sidecar found it past its expiry.
    Expired { id: String },
    /// The call it approved was allowed.
    Consumed { id: String },
}

impl Change {
    /// The change an envelope makes, if any; `None` for every envelope a
    /// client records, and for payloads without the members it needs.
    pub(crate) fn of(origin: Origin, event_type: EventType, payload: &Value) -> Option<Change> {
        let text = |name: &str, max: usize| {
            payload
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| s.len() <= max)
                .map(str::to_owned)
        };
        let id = text(field::APPROVAL_ID, MAX_ID_LEN).filter(|id| !id.is_empty())?;
        match (origin, event_type) {
            (Origin::Sidecar, EventType::ApprovalRequested) => Some(Change::Requested {
                tool_name: text(field::TOOL_NAME, usize::MAX)?,
                args_digest: text(field::ARGS_DIGEST, 64)?,
                manifest_sha256: text(field::MANIFEST_SHA256, 64).unwrap_or_default(),
                approvals_required: payload
                    .get(field::APPROVALS_REQUIRED)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n >= 1)?,
                proposal_seq: payload.get(field::PROPOSAL_SEQ).and_then(Value::as_u64)?,
                expires_unix_ms: payload
                    .get(field::EXPIRES_UNIX_MS)
                    .and_then(Value::as_i64)?,
                id,
            }),
            (Origin::Operator, EventType::ApprovalDecided) => Some(Change::Voted {
                approver: text(field::APPROVER, MAX_ID_LEN).filter(|a| !a.is_empty())?,
                decision: VoteKind::parse(&text(field::DECISION, 16)?)?,
                reason: text(field::REASON, MAX_REASON_LEN).unwrap_or_default(),
                state: ApprovalState::parse(&text(field::STATE, 16)?).filter(|s| {
                    matches!(
                        s,
                        ApprovalState::Pending | ApprovalState::Approved | ApprovalState::Denied
                    )
                })?,
                id,
            }),
            (Origin::Sidecar, EventType::ApprovalDecided) => (text(field::STATE, 16)?
                == ApprovalState::Expired.as_str())
            .then_some(Change::Expired { id }),
            (Origin::Sidecar, EventType::ToolCallAllowed) => Some(Change::Consumed { id }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

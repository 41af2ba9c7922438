//! The gate every tool call passes, MCP and egress alike: read the session's
//! state, decide, and make `TOOL_CALL_PROPOSED` plus the decision durable in
//! one commit (never a proposal without its decision) before the call may
//! run; later, record how it ended.
//!
//! - [`sequencer`]: one call of a session decided at a time (the twelfth and
//!   thirteenth call of a twelve-call budget cannot both be allowed), and
//!   never before the session's earlier results are durable.
//! - [`decide`]: the policy on the session's facts, and the rate-limit
//!   token a decision takes (given back unless the decision commits and the
//!   call runs).
//! - [`record`]: every envelope payload the sidecar writes.
//!
//! As a second line (other writers, such as `POST /v1/events`, may append
//! to the session too), the proposal is appended only at the successor of
//! the head the decision was made on (`Seal::Expect`); if the head moved,
//! the decision is made again.
//!
//! Results (`TOOL_RESULT`, `ERROR_RAISED`) go to the ledger after the agent
//! has its answer by default ([`ResultCommit::AfterAnswer`]): the agent's
//! wait holds one commit, not two. The session's next decision waits until
//! they are durable ([`sequencer`]), so taint still always applies to the
//! next call. A call that ran and whose result never reached the ledger (a
//! crash, a failed commit) is recorded as `ERROR_RAISED` `{error:
//! "result_not_recorded"}` before the session's next decision, and that
//! taints: no crash can un-taint a session.

pub mod approval;
pub mod decide;
pub mod record;
pub mod sequencer;

use std::sync::Arc;
use std::time::Instant;

use aegis_ledger::session::ToolCall as HistoryCall;
use aegis_ledger::{
    AppendError, AppendRequest, Appended, EventType, LedgerHandle, LedgerReader, Origin,
    SessionEntry,
};
use aegis_policy::sanitize::Rewrite;
use aegis_policy::store::LoadedManifest;
use aegis_policy::{Decision, Outcome, Reason};
use serde_json::Value;

use crate::identity::Identity;
use crate::limits::SessionLimiters;
pub use approval::{ApprovalConfig, ApprovalLink};
pub use sequencer::Sequencers;

/// How often a decision is retried when another writer moved the session's
/// chain head between reading the state and recording (calls through the
/// sidecar are sequenced and never do); past it the call is refused with an
/// error, never allowed on stale state.
const MAX_ATTEMPTS: usize = 8;

/// The `upstream` of calls from the egress forward proxy (`crate::egress`);
/// their proposals say `"transport": "egress"`.
pub const EGRESS_UPSTREAM: &str = "egress";

/// The `upstream` of calls decided for a client that runs the tool itself
/// (the decision APIs, `crate::admin`); their proposals say `"transport":
/// "decision_api"` and their allowed decisions `"delegated": true`: the
/// sidecar never sees their results, so they never stay open.
pub const DECISION_API_UPSTREAM: &str = "decision_api";

/// Why a decision-API call that `policy.sanitize` rewrites is refused
/// where the policy would hold it for approval.
const HELD_REWRITE: &str = "policy.sanitize rewrites this call's arguments and it needs an approval: \
     a decision-API client runs an approved call with the arguments it proposed, so it is refused";

/// When a call's result is committed relative to the agent's answer
/// (`ledger.result_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultCommit {
    /// The agent gets its answer as soon as it has streamed; the result is
    /// committed meanwhile and the session's next decision waits for it.
    #[default]
    AfterAnswer,
    /// The result is in the ledger before the agent sees the answer (one
    /// more commit on the agent's wait).
    BeforeAnswer,
}

impl ResultCommit {
    pub const ALL: [ResultCommit; 2] = [ResultCommit::AfterAnswer, ResultCommit::BeforeAnswer];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultCommit::AfterAnswer => "after_answer",
            ResultCommit::BeforeAnswer => "before_answer",
        }
    }

    pub fn parse(text: &str) -> Option<ResultCommit> {
        ResultCommit::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// What the gate needs, shared by every request.
#[derive(Debug, Clone)]
pub struct Gate {
    pub ledger: LedgerHandle,
    pub reader: LedgerReader,
    pub limiters: Arc<SessionLimiters>,
    pub sequencers: Sequencers,
    pub result_commit: ResultCommit,
    /// When this process started (ms): a call decided before it and still
    /// open was left by an earlier process.
    pub started_unix_ms: i64,
    /// How calls held for approval wait, and for how long.
    pub approvals: ApprovalConfig,
    /// Where new approvals are announced.
    pub webhook: crate::webhook::Webhook,
    /// Calls held open for their approval (`approval.mode: hold`).
    pub waiters: approval::Waiters,
}

/// One call to decide.
#[derive(Debug, Clone, Copy)]
pub struct CallRequest<'a> {
    pub identity: &'a Identity,
    pub upstream: &'a str,
    /// The JSON-RPC id, parsed.
    pub call_id: &'a Value,
    /// The id's exact text when the parsed value rounds it (a long number).
    pub call_id_text: Option<&'a str>,
    pub tool_name: &'a str,
    /// `params.arguments` (`null` when absent).
    pub args: &'a Value,
    pub sanitizer_key: Option<&'a str>,
    /// Shadow mode when false: the decision is recorded, not applied.
    pub enforce: bool,
    /// What the client said about itself beside the call (the decision
    /// API's `agent_id` and `session`): recorded in the proposal as
    /// `client_context`, never used as an identity.
    pub context: Option<&'a Value>,
}

/// A refusal the caller found itself, recorded as the call's decision (a
/// `TOOL_CALL_DENIED` like a policy denial, with `detail` saying why): the
/// egress proxy's port and SSRF guards.
#[derive(Debug, Clone, Copy)]
pub struct Veto<'a> {
    pub reason: Reason,
    /// Plain words for the ledger and the agent.
    pub detail: &'a str,
    /// `true`: refused without asking the policy (a port never connected
    /// to); `false`: applies only when the policy allows or would hold the
    /// call for approval (a destination address the sidecar will not
    /// connect to); a policy denial stands.
    pub before_policy: bool,
}

/// A recorded decision.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    /// The seq of the call's `TOOL_CALL_PROPOSED`.
    pub proposal_seq: u64,
    /// The seq of the decision's envelope.
    pub decision_seq: u64,
    /// `None` when no manifest was loaded.
    pub manifest: Option<Arc<LoadedManifest>>,
    /// The approval the call waits for (`require_approval`), or runs on.
    pub approval: Option<ApprovalLink>,
    /// Time spent deciding (policy only, not the ledger).
    pub decide_time: std::time::Duration,
    /// The caller's [`Veto`] made the decision, not the policy.
    pub vetoed: bool,
    /// The arguments `policy.sanitize` rewrote, decided on, and to be
    /// forwarded instead of the agent's; `None` when no rule changed them.
    pub sanitized: Option<Rewrite>,
}

impl Verdict {
    /// Whether the call goes upstream: allowed, or any decision in shadow mode.
    pub fn forwards(&self, enforce: bool) -> bool {
        !enforce || self.decision.outcome == Outcome::Allow
    }

    pub fn manifest_sha256(&self) -> &str {
        self.manifest.as_deref().map_or("", |m| m.sha256.as_str())
    }

    pub fn approval_id(&self) -> Option<&str> {
        self.approval.as_ref().map(ApprovalLink::id)
    }
}

/// Why a call could not be decided and recorded.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The ledger did not record the proposal or decision.
    #[error("the ledger could not record the call: {0}")]
    Ledger(#[from] AppendError),
    /// The session's history could not be read.
    #[error("the session's state could not be read from the ledger: {0}")]
    State(String),
    /// Other writers kept moving the session's chain head.
    #[error("the session's chain kept moving under other writers; retry")]
    Contended,
    /// The session already had its most calls queued; nothing recorded.
    #[error("{0}")]
    Busy(#[from] sequencer::Busy),
}

impl GateError {
    /// Whether `ledger.fail_open` may forward the call anyway: only when the
    /// store itself failed. A session the sidecar may not write (client-
    /// recorded), or one whose chain others keep moving, is something an
    /// agent can bring about, so it never opens the gate.
    pub fn may_fail_open(&self) -> bool {
        matches!(
            self,
            GateError::Ledger(AppendError::Storage(_) | AppendError::Closed) | GateError::State(_)
        )
    }

    /// A closed set, for metrics and `ERROR_RAISED`.
    pub fn kind(&self) -> &'static str {
        match self {
            GateError::Ledger(AppendError::WrongKind { .. }) => "client_recorded_session",
            GateError::Ledger(_) => "ledger_unavailable",
            GateError::State(_) => "ledger_unreadable",
            GateError::Contended => "session_contended",
            GateError::Busy(_) => "session_busy",
        }
    }
}

impl Gate {
    /// Decides `call` on its session's state and the live manifest, and
    /// commits `TOOL_CALL_PROPOSED` and the decision's envelope.
    pub async fn decide_and_record(
        &self,
        call: CallRequest<'_>,
        manifest: Option<Arc<LoadedManifest>>,
    ) -> Result<Verdict, GateError> {
        self.decide_with_veto(call, manifest, None).await
    }

    /// [`Gate::decide_and_record`], with a refusal of the caller's own that
    /// replaces the policy's decision when it applies (see [`Veto`]), in
    /// the same commit and under the same session turn.
    pub async fn decide_with_veto(
        &self,
        call: CallRequest<'_>,
        manifest: Option<Arc<LoadedManifest>>,
        veto: Option<Veto<'_>>,
    ) -> Result<Verdict, GateError> {
        let args_digest = HistoryCall::digest_args(call.args);
        let (sanitized, refusal) = sanitize(&call, manifest.as_deref());
        let veto = match (&refusal, veto) {
            (Some(detail), v) if v.is_none_or(|v| !v.before_policy) => Some(Veto {
                reason: Reason::SanitizeRefused,
                detail,
                before_policy: true,
            }),
            (_, v) => v,
        };
        // Decided on what is forwarded: the rewritten arguments.
        let decide_args = sanitized.as_ref().map_or(call.args, |r| &r.args);
        let turn = self.sequencers.turn(call.identity).await?;
        let mut lost = turn.take_lost();
        for _ in 0..MAX_ATTEMPTS {
            let entry = self.session(call.identity).await?;
            if let Some(entry) = &entry {
                self.add_unsettled(entry, &mut lost);
            }
            if !lost.is_empty() {
                // Recorded first, then decided on the state they taint.
                self.record_lost(&turn, call.identity, std::mem::take(&mut lost))
                    .await?;
                continue;
            }
            let started = Instant::now();
            let mut decided = decide::Decided::new(
                &call,
                decide_args,
                args_digest,
                entry.as_ref(),
                manifest.as_deref(),
                &self.limiters,
                veto,
            );
            if call.upstream == DECISION_API_UPSTREAM
                && call.enforce
                && sanitized.is_some()
                && decided.decision.outcome == Outcome::RequireApproval
            {
                // aegislib runs an approved call with the arguments it
                // proposed: an approval would release the unrewritten call.
                decided.veto_now(Veto {
                    reason: Reason::SanitizeRefused,
                    detail: HELD_REWRITE,
                    before_policy: false,
                });
            }
            let decide_time = started.elapsed();
            // The proposal goes at the successor of the head the decision was
            // made on, its decision right after it, both in one commit.
            let (seq, prev_hash) = match &entry {
                Some(entry) => (entry.head.seq + 1, Some(entry.head.hash)),
                None => (0, None),
            };
            let mut decision = decided.decision;
            let mut approval = None;
            // Shadow mode records the decision and runs the call: nothing
            // for a human to approve.
            if decision.outcome == Outcome::RequireApproval
                && call.enforce
                && let Some(live) = manifest.as_deref()
            {
                let rule = live.manifest.approval_rule(call.tool_name);
                // A decision-API client polls for its approval: nothing is
                // held open for it.
                let mode = match call.upstream {
                    DECISION_API_UPSTREAM => aegis_policy::ApprovalMode::Retry,
                    _ => rule.mode.unwrap_or(self.approvals.mode),
                };
                (decision, approval) = self
                    .consult_approvals(
                        call.identity,
                        call.tool_name,
                        &approval::args_digest(call.args),
                        (rule.approvers, mode),
                        decision,
                        live.compiled.allow(),
                    )
                    .await?;
            }
            let group = record::proposal_and_decision(
                &call,
                &decision,
                (seq, prev_hash),
                manifest.as_deref(),
                approval.as_ref(),
                decided.veto,
                sanitized.as_ref(),
            );
            let mut results = self.ledger.append_group(group).await.into_iter();
            let proposal = match results.next() {
                Some(Ok(appended)) => appended,
                // Another writer moved the head, or the approval this call
                // was to run on was used or closed meanwhile: decide again
                // on the new state.
                Some(Err(AppendError::Conflict { .. } | AppendError::Approval(_))) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(AppendError::Closed.into()),
            };
            let recorded = match results.next() {
                Some(result) => result?,
                None => return Err(AppendError::Closed.into()),
            };
            let vetoed = decided.veto.is_some();
            decided.committed(decision.outcome);
            if let Some(ApprovalLink::Requested {
                id, fresh: true, ..
            }) = &approval
            {
                self.webhook.send(crate::webhook::Event::Requested, id);
            }
            return Ok(Verdict {
                decision,
                proposal_seq: proposal.seq,
                decision_seq: recorded.seq,
                manifest,
                approval,
                decide_time,
                vetoed,
                sanitized: sanitized.filter(|_| !vetoed),
            });
        }
        Err(GateError::Contended)
    }

    /// Records how a call that ran ended (`TOOL_RESULT`, `ERROR_RAISED`,
    /// `TOOL_CALL_EXECUTED`). With [`ResultCommit::AfterAnswer`] the commit
    /// is sent now and completes on its own: the caller may answer the agent
    /// at once, and the session's next decision waits for it. Returns the
    /// envelope's seq when it was committed before returning.
    pub async fn record_result(
        &self,
        identity: &Identity,
        proposal_seq: u64,
        tool_name: &str,
        event_type: EventType,
        payload: Value,
    ) -> Option<u64> {
        let request = AppendRequest::at_head(record::event(identity, event_type, payload))
            .by(Origin::Sidecar);
        let pending = self.sequencers.pending(identity, proposal_seq, tool_name);
        // Sent to the writer now, before the agent may see the answer: a
        // ledger read after the answer (`/v1/events` waits on a ping sent
        // after it) finds the result.
        let queued = match self.ledger.enqueue(request).await {
            Ok(queued) => queued,
            Err(e) => {
                // `pending` dropped uncommitted: the next decision of the
                // session records the loss, which taints.
                tracing::error!(error = %e, tool = tool_name, "the call's result could not be recorded");
                return None;
            }
        };
        let tool = tool_name.to_owned();
        let commit = async move {
            match queued.committed().await {
                Ok(appended) => {
                    pending.committed();
                    Some(appended.seq)
                }
                Err(e) => {
                    tracing::error!(error = %e, %tool, "the call's result could not be recorded");
                    None
                }
            }
        };
        match self.result_commit {
            ResultCommit::BeforeAnswer => commit.await,
            ResultCommit::AfterAnswer => {
                tokio::spawn(commit);
                None
            }
        }
    }

    /// Appends the envelopes `build` makes, given the seq the first will
    /// have, one after the other at the session's head in one commit, under
    /// the session's turn (no call of the session is decided between them).
    /// Made again on the new head when another writer moved it. For records
    /// that are not a gate decision but may ask or use an approval (the
    /// governance API's evaluations).
    pub async fn record_chain(
        &self,
        identity: &Identity,
        build: impl Fn(u64) -> Vec<(EventType, Value)>,
    ) -> Result<Vec<Appended>, GateError> {
        let _turn = self.sequencers.turn(identity).await?;
        for _ in 0..MAX_ATTEMPTS {
            let entry = self.session(identity).await?;
            let (mut seq, mut prev_hash) = match &entry {
                Some(entry) => (entry.head.seq + 1, Some(entry.head.hash)),
                None => (0, None),
            };
            let mut group = Vec::new();
            for (event_type, payload) in build(seq) {
                let request = AppendRequest {
                    event: record::event(identity, event_type, payload),
                    seal: aegis_ledger::Seal::Expect { seq, prev_hash },
                    origin: Origin::Sidecar,
                };
                prev_hash = Some(request.preimage(seq, prev_hash.as_ref()).hash());
                seq += 1;
                group.push(request);
            }
            let mut results = self.ledger.append_group(group).await.into_iter();
            let first = match results.next() {
                Some(Ok(appended)) => appended,
                // Another writer moved the head (nothing of the group
                // landed): made again on the new one.
                Some(Err(AppendError::Conflict { .. })) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(AppendError::Closed.into()),
            };
            let mut appended = vec![first];
            for result in results {
                appended.push(result?);
            }
            return Ok(appended);
        }
        Err(GateError::Contended)
    }

    /// Records an envelope at the session's head now (what does not settle
    /// a call: a content read's `TOOL_RESULT`).
    pub async fn record(
        &self,
        identity: &Identity,
        event_type: EventType,
        payload: Value,
    ) -> Result<Appended, AppendError> {
        self.ledger
            .append(
                AppendRequest::at_head(record::event(identity, event_type, payload))
                    .by(Origin::Sidecar),
            )
            .await
    }

    /// Adds to `lost` the session's calls left open by an earlier process
    /// (decided before this one started, never settled).
    fn add_unsettled(&self, entry: &SessionEntry, lost: &mut Vec<sequencer::Lost>) {
        for open in entry.state.open_calls() {
            let earlier_process = open.decided_unix_ms < self.started_unix_ms;
            if earlier_process && !lost.iter().any(|l| l.proposal_seq == open.proposal_seq) {
                lost.push(sequencer::Lost {
                    proposal_seq: open.proposal_seq,
                    tool_name: open.tool_name.to_string(),
                });
            }
        }
    }

    /// Records each call that ran and has no recorded end — its result
    /// commit failed in this process, or it was open when an earlier
    /// process stopped — as `ERROR_RAISED` `result_not_recorded`, which
    /// taints the session. What cannot be recorded stays for the next
    /// decision.
    async fn record_lost(
        &self,
        turn: &sequencer::Turn,
        identity: &Identity,
        lost: Vec<sequencer::Lost>,
    ) -> Result<(), GateError> {
        for (i, call) in lost.iter().enumerate() {
            let payload = record::result_not_recorded(call.proposal_seq, &call.tool_name);
            if let Err(e) = self.record(identity, EventType::ErrorRaised, payload).await {
                turn.restore_lost(lost[i..].to_vec());
                return Err(e.into());
            }
            tracing::warn!(
                session = %identity.session_id,
                tool = %call.tool_name,
                proposal_seq = call.proposal_seq,
                "a call ran but its result was never recorded; recorded as result_not_recorded (the session is tainted)"
            );
        }
        Ok(())
    }

    /// The session's head and state: from memory, else rebuilt from the
    /// ledger (after a restart or an idle eviction); `None` for a session
    /// with no envelopes yet.
    async fn session(&self, identity: &Identity) -> Result<Option<SessionEntry>, GateError> {
        let table = self.ledger.sessions();
        if let Some(entry) = table.entry(&identity.tenant_id, &identity.session_id) {
            return Ok(Some(entry));
        }
        let reader = self.reader.clone();
        let tenant = identity.tenant_id.clone();
        let session = identity.session_id.clone();
        tokio::task::spawn_blocking(move || reader.load_session(&tenant, &session))
            .await
            .map_err(|e| GateError::State(format!("session load task failed: {e}")))?
            .map_err(|e| GateError::State(e.to_string()))
    }
}

/// `policy.sanitize` on the call: its rewrite, or why it cannot be made (a
/// refusal). The egress proxy forwards the agent's own bytes, so a rewrite
/// of an egress call is a refusal too: never decide on one thing and
/// forward another.
fn sanitize(
    call: &CallRequest<'_>,
    manifest: Option<&LoadedManifest>,
) -> (Option<Rewrite>, Option<String>) {
    let Some(sanitizer) = manifest.and_then(|m| m.compiled.sanitizer(call.tool_name)) else {
        return (None, None);
    };
    match sanitizer.apply(call.args) {
        Ok(None) => (None, None),
        Ok(Some(_)) if call.upstream == EGRESS_UPSTREAM => (
            None,
            Some(
                "policy.sanitize rewrites this call's arguments, and the egress proxy forwards requests unchanged"
                    .to_owned(),
            ),
        ),
        Ok(Some(rewrite)) => (Some(rewrite), None),
        Err(refusal) => (None, Some(refusal.0)),
    }
}

#[cfg(test)]
mod tests;

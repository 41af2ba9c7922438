//! The inline decision on one `tools/call`: read the session's state, decide,
//! and make `TOOL_CALL_PROPOSED` plus the decision durable, in one commit
//! (never a proposal without its decision) — all before the call may be
//! forwarded. Then, later, the call's `TOOL_RESULT` or `ERROR_RAISED`.
//!
//! Concurrency: calls of one session may race (an agent running tools in
//! parallel). Each session has a sequencer (a FIFO async mutex, held only
//! by that session's calls, from reading its state until its decision is
//! committed), so no two calls of a session are decided on the same budget:
//! the twelfth and thirteenth call of a twelve-call budget cannot both be
//! allowed, and a decision always directly follows its proposal in the
//! chain. Other sessions are not held up. As a second line (other writers,
//! such as `POST /v1/events`, may append to the session too), the proposal
//! is appended only at the successor of the head the decision was made on
//! (`Seal::Expect`); if the head moved, the decision is made again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use aegis_ledger::session::ToolCall as HistoryCall;
use aegis_ledger::{
    AppendError, AppendRequest, Appended, EventType, LedgerHandle, LedgerReader, NewEvent, Origin,
    Payload, Seal, SessionEntry, now_unix_ms,
};
use aegis_policy::loops::CallKey;
use aegis_policy::store::LoadedManifest;
use aegis_policy::{Decision, Outcome, Proposal, Reason, SessionFacts, decide};
use serde_json::{Value, json};
use std::sync::Arc;

use super::identity::Identity;
use crate::limits::SessionLimiters;

/// How often a decision is retried when another writer moved the session's
/// chain head between reading the state and recording (calls through the
/// sidecar are sequenced and never do); past it the call is refused with an
/// error, never allowed on stale state.
const MAX_ATTEMPTS: usize = 8;

/// `_meta` key under which a call may carry the sanitizer key of its input.
pub const SANITIZER_META_KEY: &str = "aegis/sanitizer_key";

/// The `upstream` of calls from the egress forward proxy (`crate::egress`);
/// their proposals say `"transport": "egress"`.
pub const EGRESS_UPSTREAM: &str = "egress";

/// What the gate needs, shared by every request.
#[derive(Debug, Clone)]
pub struct Gate {
    pub ledger: LedgerHandle,
    pub reader: LedgerReader,
    pub limiters: Arc<SessionLimiters>,
    pub sequencers: Sequencers,
}

type SessionKey = (String, String);

/// One FIFO async mutex per session with a call being decided. Who touches
/// it: every `tools/call`, for a map lookup under a short `std` mutex
/// section; the per-session async mutex is what a call waits on (held
/// across the ledger commits of its proposal and decision — that is its
/// purpose). An entry lives while some call holds or waits for it, so the
/// map is bounded by the calls in flight.
#[derive(Debug, Default, Clone)]
pub struct Sequencers {
    sessions: Arc<Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A session's turn; the next call of the session goes when it is dropped.
struct Turn {
    sequencers: Sequencers,
    key: SessionKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Sequencers {
    async fn turn(&self, identity: &Identity) -> Turn {
        let key = (identity.tenant_id.clone(), identity.session_id.clone());
        let slot = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = slot.lock_owned().await;
        Turn {
            sequencers: self.clone(),
            key,
            guard: Some(guard),
        }
    }

    /// Sessions with a call being decided or waiting.
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut sessions = self
            .sequencers
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(guard) = self.guard.take() else {
            return;
        };
        // The map's and ours: nobody else holds or waits for this session.
        if Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&guard)) == 2 {
            sessions.remove(&self.key);
        }
        drop(guard);
    }
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
    /// to); `false`: applies only when the policy allows (a destination
    /// address the sidecar will not connect to); a policy denial stands.
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
    /// Set for `require_approval`.
    pub approval_id: Option<String>,
    /// Time spent deciding (policy only, not the ledger).
    pub decide_time: std::time::Duration,
    /// The caller's [`Veto`] made the decision, not the policy.
    pub vetoed: bool,
}

impl Verdict {
    /// Whether the call goes upstream: allowed, or any decision in shadow mode.
    pub fn forwards(&self, enforce: bool) -> bool {
        !enforce || self.decision.outcome == Outcome::Allow
    }

    pub fn manifest_sha256(&self) -> &str {
        self.manifest.as_deref().map_or("", |m| m.sha256.as_str())
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
        let _turn = self.sequencers.turn(call.identity).await;
        for _ in 0..MAX_ATTEMPTS {
            let entry = self.session(call.identity).await?;
            let started = Instant::now();
            // A token the decision takes goes back unless the decision
            // commits and lets the call run (see `Token`).
            let mut token = None;
            let decision = match veto {
                Some(v) if v.before_policy => None,
                _ => Some(decide_on(
                    &call,
                    args_digest,
                    entry.as_ref(),
                    manifest.as_deref(),
                    self,
                    &mut token,
                )),
            };
            let veto = veto.filter(|_| decision.is_none_or(|d| d.outcome == Outcome::Allow));
            let decision = match (veto, decision) {
                (None, Some(decision)) => decision,
                (veto, _) => Decision {
                    outcome: Outcome::Deny,
                    reason: veto.map_or(Reason::EgressDeny, |v| v.reason),
                    constraints: None,
                },
            };
            let decide_time = started.elapsed();
            // The proposal goes at the successor of the head the decision was
            // made on, its decision right after it, both in one commit.
            let (seq, prev_hash) = match &entry {
                Some(entry) => (entry.head.seq + 1, Some(entry.head.hash)),
                None => (0, None),
            };
            let approval_id = (decision.outcome == Outcome::RequireApproval)
                .then(|| approval_id(call.identity, seq));
            let event_type = match decision.outcome {
                Outcome::Allow => EventType::ToolCallAllowed,
                Outcome::Deny => EventType::ToolCallDenied,
                Outcome::RequireApproval => EventType::ApprovalRequested,
            };
            let mut payload = decision_payload(
                &call,
                &decision,
                seq,
                manifest.as_deref(),
                approval_id.as_deref(),
            );
            if let Some(veto) = veto {
                payload["detail"] = json!(veto.detail);
            }
            let proposed = AppendRequest {
                event: event(
                    call.identity,
                    EventType::ToolCallProposed,
                    proposal_payload(&call),
                ),
                seal: Seal::Expect { seq, prev_hash },
                origin: Origin::Sidecar,
            };
            // The decision names the proposal's hash as its predecessor, so
            // it can only land right after this very proposal: if the
            // proposal is refused (the head moved, e.g. a concurrent
            // TOOL_RESULT), so is the decision.
            let proposal_hash = proposed.preimage(seq, prev_hash.as_ref()).hash();
            let group = vec![
                proposed,
                AppendRequest {
                    event: event(call.identity, event_type, payload),
                    seal: Seal::Expect {
                        seq: seq + 1,
                        prev_hash: Some(proposal_hash),
                    },
                    origin: Origin::Sidecar,
                },
            ];
            let mut results = self.ledger.append_group(group).await.into_iter();
            let proposal = match results.next() {
                Some(Ok(appended)) => appended,
                // Another writer moved the head: decide again on the new state.
                Some(Err(AppendError::Conflict { .. })) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(AppendError::Closed.into()),
            };
            let recorded = match results.next() {
                Some(result) => result?,
                None => return Err(AppendError::Closed.into()),
            };
            // Committed: the token is spent if the call runs (allowed, or
            // held for approval — it runs once approved), given back if a
            // veto refused it.
            if let Some(token) = token.take()
                && veto.is_none()
            {
                token.spend();
            }
            return Ok(Verdict {
                decision,
                proposal_seq: proposal.seq,
                decision_seq: recorded.seq,
                manifest,
                approval_id,
                decide_time,
                vetoed: veto.is_some(),
            });
        }
        Err(GateError::Contended)
    }

    /// Records how a forwarded call ended.
    pub async fn record(
        &self,
        identity: &Identity,
        event_type: EventType,
        payload: Value,
    ) -> Result<Appended, AppendError> {
        self.ledger
            .append(
                AppendRequest::at_head(event(identity, event_type, payload)).by(Origin::Sidecar),
            )
            .await
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

/// The decision on `call` given the session's state (`None`: a fresh
/// session) and the live manifest (`None`: fail closed).
fn decide_on(
    call: &CallRequest<'_>,
    args_digest: [u8; 16],
    entry: Option<&SessionEntry>,
    manifest: Option<&LoadedManifest>,
    gate: &Gate,
    token: &mut Option<Token>,
) -> Decision {
    let Some(manifest) = manifest else {
        return Decision {
            outcome: Outcome::Deny,
            reason: Reason::ManifestUnavailable,
            constraints: None,
        };
    };
    let proposal = Proposal {
        tool_name: call.tool_name,
        args: call.args,
        sanitizer_key: call.sanitizer_key,
        args_digest: Some(args_digest),
    };
    let limiter = gate.limiters.get(
        &call.identity.tenant_id,
        &call.identity.session_id,
        manifest,
    );
    let rate = limiter.as_deref().map(|l| (l, Instant::now()));
    let Some(entry) = entry else {
        let facts = SessionFacts {
            rate,
            ..SessionFacts::default()
        };
        let decision = decide(&proposal, &facts, &manifest.compiled);
        *token = Token::taken(limiter, call.tool_name, &decision);
        return decision;
    };
    let state = &entry.state;
    let snapshot = state.snapshot(now_unix_ms());
    let history: Vec<CallKey<'_>> = state
        .history()
        .iter()
        .map(|c| CallKey {
            seq: c.seq,
            tool_name: &c.tool_name,
            args_digest: c.args_digest,
        })
        .collect();
    let facts = SessionFacts {
        steps_consumed: snapshot.steps_consumed,
        tool_calls_consumed: snapshot.tool_calls_consumed,
        wall_time_ms: snapshot.wall_time_ms,
        is_tainted: snapshot.is_tainted,
        sanitized_keys: &snapshot.sanitized_keys,
        loop_violation: (!snapshot.loop_violation.is_empty())
            .then_some(snapshot.loop_violation.as_str()),
        history: &history,
        rate,
    };
    let decision = decide(&proposal, &facts, &manifest.compiled);
    *token = Token::taken(limiter, call.tool_name, &decision);
    decision
}

/// A rate-limit token a decision took: given back when dropped unless
/// [`Token::spend`] says the decision committed and the call runs. So a
/// decision made again (another writer moved the session's head), one whose
/// record failed, and one a veto overrode cost nothing: only a call that
/// would otherwise run takes a token.
struct Token {
    limiter: Arc<aegis_policy::rate::RateLimiter>,
    tool: String,
    spent: bool,
}

impl Token {
    /// The token `decision` took, if it took one: the tool is limited and
    /// the decision got past the rate rule (it allows, or holds for
    /// approval, the only rule after it).
    fn taken(
        limiter: Option<Arc<aegis_policy::rate::RateLimiter>>,
        tool: &str,
        decision: &Decision,
    ) -> Option<Token> {
        let limiter = limiter.filter(|l| l.is_limited(tool))?;
        matches!(decision.outcome, Outcome::Allow | Outcome::RequireApproval).then(|| Token {
            limiter,
            tool: tool.to_owned(),
            spent: false,
        })
    }

    fn spend(mut self) {
        self.spent = true;
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if !self.spent {
            self.limiter.refund(&self.tool);
        }
    }
}

/// Every envelope the sidecar writes is built here: its session key, and
/// in its payload who the agent is (`principal`) and, when the request
/// carried one, MCP's `mcp_session_id`.
fn event(identity: &Identity, event_type: EventType, mut payload: Value) -> NewEvent {
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

/// An approval's id: derived from where its proposal sits (tenant, session,
/// seq), so it is unique and leads straight to the call in the ledger.
fn approval_id(identity: &Identity, proposal_seq: u64) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    for part in [
        identity.tenant_id.as_bytes(),
        identity.session_id.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(proposal_seq.to_be_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("appr-{hex}")
}

/// `TOOL_CALL_PROPOSED`: what the agent asked for.
pub fn proposal_payload(call: &CallRequest<'_>) -> Value {
    let mut payload = json!({
        "tool_name": call.tool_name,
        "call_id": call.call_id,
        "args": call.args,
        "transport": if call.upstream == EGRESS_UPSTREAM { "egress" } else { "mcp" },
        "upstream": call.upstream,
    });
    if let Some(key) = call.sanitizer_key {
        payload["sanitizer_key"] = json!(key);
    }
    if let Some(text) = call.call_id_text {
        payload["call_id_text"] = json!(text);
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
    approval_id: Option<&str>,
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
    if let Some(id) = approval_id {
        payload["approval_id"] = json!(id);
    }
    payload
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mcp::identity::{PrincipalSource, SessionSource};

    fn identity() -> Identity {
        Identity {
            tenant_id: "t".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            session_source: SessionSource::Header,
            principal: "p".into(),
            principal_source: PrincipalSource::Config,
            mcp_session_id: None,
        }
    }

    /// The bound on each wait below: a hang guard only.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_session_is_decided_one_call_at_a_time_and_forgotten_after() {
        let sequencers = Sequencers::default();
        let id = identity();
        let first = sequencers.turn(&id).await;
        assert_eq!(sequencers.len(), 1);
        // A second call of the same session waits for the first...
        let waiting = tokio::spawn({
            let sequencers = sequencers.clone();
            let id = id.clone();
            async move {
                let _turn = sequencers.turn(&id).await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...another session does not.
        let other = Identity {
            session_id: "other".into(),
            ..identity()
        };
        let other_turn = tokio::time::timeout(HANG_GUARD, sequencers.turn(&other))
            .await
            .expect("another session is not held up");
        drop(other_turn);
        drop(first);
        tokio::time::timeout(HANG_GUARD, waiting)
            .await
            .expect("the waiting call goes next")
            .expect("no panic");
        assert!(sequencers.is_empty());
    }

    #[test]
    fn payloads_name_the_call_and_the_policy_that_decided() {
        let id = identity();
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
}

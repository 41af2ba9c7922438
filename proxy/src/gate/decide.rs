//! One decision: the policy on the session's facts and the live manifest,
//! a caller's veto over it, and the rate-limit token it took.

use std::sync::Arc;
use std::time::Instant;

use aegis_ledger::{SessionEntry, now_unix_ms};
use aegis_policy::loops::CallKey;
use aegis_policy::rate::RateLimiter;
use aegis_policy::store::LoadedManifest;
use aegis_policy::{Decision, Outcome, Proposal, Reason, SessionFacts, decide};
use serde_json::Value;

use super::{CallRequest, Veto};
use crate::limits::SessionLimiters;

/// A decision not yet committed. Dropped without [`Decided::committed`]
/// (the head moved and the call is decided again, or the record failed),
/// its rate-limit token goes back.
#[derive(Debug)]
pub struct Decided<'a> {
    pub decision: Decision,
    /// The veto that made the decision, if one did.
    pub veto: Option<Veto<'a>>,
    token: Option<Token>,
}

impl<'a> Decided<'a> {
    /// Decides `call` given the session's state (`None`: a fresh session),
    /// the live manifest (`None`: fail closed) and the caller's veto.
    /// `args` are what is decided on (the call's, or `policy.sanitize`'s
    /// rewrite of them); `args_digest` is the proposal's, for loops.
    pub fn new(
        call: &CallRequest<'_>,
        args: &Value,
        args_digest: [u8; 16],
        entry: Option<&SessionEntry>,
        manifest: Option<&LoadedManifest>,
        limiters: &SessionLimiters,
        veto: Option<Veto<'a>>,
    ) -> Decided<'a> {
        let mut token = None;
        let policy = match veto {
            Some(v) if v.before_policy => None,
            _ => Some(on_policy(
                call,
                args,
                args_digest,
                entry,
                manifest,
                limiters,
                &mut token,
            )),
        };
        // A veto applies unless the policy already refused: also over a
        // call the policy would hold for approval, so that no person is
        // asked to approve what the sidecar will not do anyway.
        let veto = veto.filter(|_| policy.is_none_or(|d| d.outcome != Outcome::Deny));
        let decision = match (veto, policy) {
            (None, Some(decision)) => decision,
            (veto, _) => Decision {
                outcome: Outcome::Deny,
                reason: veto.map_or(Reason::EgressDeny, |v| v.reason),
                constraints: None,
            },
        };
        Decided {
            decision,
            veto,
            token,
        }
    }

    /// Replaces the decision with `veto`'s refusal (a refusal the caller
    /// could only find after the policy decided); its token goes back.
    pub fn veto_now(&mut self, veto: Veto<'a>) {
        self.decision = Decision {
            outcome: Outcome::Deny,
            reason: veto.reason,
            constraints: None,
        };
        self.veto = Some(veto);
    }

    /// The decision is durable, with `outcome` (the policy's, or what the
    /// approvals store made of it): its token is spent if the call runs
    /// (allowed, or held for approval — it runs once approved), given back
    /// if a veto or the approvals store refused it.
    pub fn committed(mut self, outcome: Outcome) {
        if let Some(token) = self.token.take()
            && self.veto.is_none()
            && outcome != Outcome::Deny
        {
            token.spend();
        }
    }
}

fn on_policy(
    call: &CallRequest<'_>,
    args: &Value,
    args_digest: [u8; 16],
    entry: Option<&SessionEntry>,
    manifest: Option<&LoadedManifest>,
    limiters: &SessionLimiters,
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
        args,
        sanitizer_key: call.sanitizer_key,
        args_digest: Some(args_digest),
    };
    let limiter = limiters.get(
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
#[derive(Debug)]
struct Token {
    limiter: Arc<RateLimiter>,
    tool: String,
    spent: bool,
}

impl Token {
    /// The token `decision` took, if it took one: the tool is limited and
    /// the decision got past the rate rule (it allows, or holds for
    /// approval, the only rule after it).
    fn taken(limiter: Option<Arc<RateLimiter>>, tool: &str, decision: &Decision) -> Option<Token> {
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

//! The AEGIS governance API for `aegis-governance` 1.4.2 (PyPI, `import
//! aegis`: `Aegis.evaluate`, `@aegis_gate`, its `aegis-mcp-server`):
//! `POST /evaluate` and `POST /sandbox/evaluate`, `POST /risk-check`,
//! `GET /health`, `GET /customer/decisions[/{id}]` and
//! `GET /customer/usage[/{month}]`.
//!
//! An evaluation runs the six gates of seed 003 ([`aegis_policy::governance`],
//! frozen defaults) and KL drift over the session's earlier evaluations, and
//! is recorded in the session's chain as a `POLICY_DECISION` (`action:
//! "governance_evaluate"`, with the request and the whole answer) before it
//! is answered. The session is chosen as for the other decision APIs
//! ([`super::delegated`]): the principal's, whatever `agent_id` or
//! `session_id` the body names, unless `session_scope: client`.
//!
//! Status, from the gates (the README's "Governance gates" has the table):
//! the complexity floor failed → `halt`, never overridable; the risk gate
//! failed → `halt`; another gate failed, or drift is critical → `pause`;
//! every gate passed but the request asks for a person (`requires_human_
//! approval`, `estimated_impact` high or critical, `reversible: false`) →
//! `escalate`; else `proceed`. An overridable `halt` and an `escalate` ask
//! the approvals store for a two-key override (`override_requires`, two
//! distinct approvers): the same evaluation made again once both approved is
//! `proceed`, once. Shadow mode evaluates and records, answers
//! `shadow_mode: true` with the computed status, and asks for no override.
//!
//! `Idempotency-Key` (the client sends one on every evaluation): the same
//! key and body within 24 h answer the recorded decision again, byte for
//! byte, recording nothing; the same key with another body is a `422`
//! ("Idempotency-Key reused with a different request body"); the same key
//! while the first is still being decided is a `409`. Keys are per
//! credential, in memory (at most [`IDEMPOTENCY_KEYS`]; a restart forgets
//! them).

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aegis_ledger::{ApprovalState, EventType, ListQuery, now_unix_ms};
use aegis_policy::governance::{
    self, DriftStatus, Gate, GateResult, Params, Proposal, UtilityInput,
};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::delegated;
use super::error::{json_bytes_response, json_response};
use super::request::{json_body, json_object, path_segment, query};
use super::{Access, AdminState, ApiError};
use crate::gate::approval::args_digest;
use crate::gate::{DECISION_API_UPSTREAM, GateError};
use crate::identity::Identity;

/// The `tool_name` of an evaluation's `POLICY_DECISION` (indexed, so the
/// decision listing reads only those).
pub const EVALUATE_TOOL: &str = "aegis.governance.evaluate";
/// The `tool_name` of a risk check's `POLICY_DECISION`.
pub const RISK_CHECK_TOOL: &str = "aegis.governance.risk_check";
/// The tool an override approval is for.
pub const OVERRIDE_TOOL: &str = "aegis.governance.override";
/// Who must approve an override: two distinct approvers.
pub const OVERRIDE_REQUIRES: [&str; 2] = ["risk_lead", "security_lead"];

/// Idempotency keys kept at most, and for how long.
pub const IDEMPOTENCY_KEYS: usize = 10_000;
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Observations in each drift window (baseline: the session's first;
/// current: its latest).
pub const DRIFT_WINDOW: usize = 30;
/// Sessions whose drift series are kept in memory (rebuilt from the ledger
/// when evicted).
const DRIFT_SESSIONS: usize = 4096;
/// Longest `proposal_summary`, as the client checks it.
const MAX_SUMMARY: usize = 10_000;
const MAX_SUBSCORES: usize = 64;

const EVALUATE_MEMBERS: &[&str] = &[
    "proposal_summary",
    "estimated_impact",
    "risk_baseline",
    "risk_proposed",
    "profit_baseline",
    "profit_proposed",
    "novelty_score",
    "complexity_score",
    "quality_score",
    "quality_subscores",
    "utility_result",
    "agent_id",
    "session_id",
    "phase",
    "change_type",
    "shadow_mode",
    "requires_human_approval",
    "reversible",
    "time_sensitive",
    "metadata",
];

/// What the governance routes keep between requests.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    idempotency: Arc<Mutex<Idempotency>>,
    drift: Arc<Mutex<HashMap<(String, String), Series>>>,
}

#[derive(Debug, Default)]
struct Idempotency {
    slots: HashMap<(String, String), Slot>,
    order: VecDeque<((String, String), Instant)>,
}

#[derive(Debug)]
enum Slot {
    InFlight([u8; 32]),
    Done {
        body: [u8; 32],
        answer: Bytes,
        request_id: String,
    },
}

enum Begin {
    Fresh(Claim),
    Replay(Bytes, String),
}

/// An idempotency key being decided: given up when dropped unfinished.
struct Claim {
    memory: Memory,
    key: Option<(String, String)>,
}

impl Claim {
    fn finish(mut self, body: [u8; 32], answer: &Bytes, request_id: &str) {
        if let Some(key) = self.key.take() {
            let mut idem = self.memory.lock_idempotency();
            // Kept from now: the order entry made when it was claimed may
            // have been passed over while it was in flight.
            idem.order.push_back((key.clone(), Instant::now()));
            idem.slots.insert(
                key,
                Slot::Done {
                    body,
                    answer: answer.clone(),
                    request_id: request_id.to_owned(),
                },
            );
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.memory.lock_idempotency().slots.remove(&key);
        }
    }
}

impl Memory {
    fn lock_idempotency(&self) -> std::sync::MutexGuard<'_, Idempotency> {
        self.idempotency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(&self, key: Option<(String, String)>, body: [u8; 32]) -> Result<Begin, ApiError> {
        let Some(key) = key else {
            return Ok(Begin::Fresh(Claim {
                memory: self.clone(),
                key: None,
            }));
        };
        let mut idem = self.lock_idempotency();
        let now = Instant::now();
        while let Some((old, at)) = idem.order.front() {
            if now.duration_since(*at) < IDEMPOTENCY_TTL && idem.order.len() < IDEMPOTENCY_KEYS {
                break;
            }
            let old = old.clone();
            idem.order.pop_front();
            // An in-flight one is left to its request.
            if matches!(idem.slots.get(&old), Some(Slot::Done { .. })) {
                idem.slots.remove(&old);
            }
        }
        let reused = || {
            ApiError::Unprocessable("Idempotency-Key reused with a different request body".into())
        };
        match idem.slots.get(&key) {
            Some(Slot::Done {
                body: seen,
                answer,
                request_id,
            }) if *seen == body => return Ok(Begin::Replay(answer.clone(), request_id.clone())),
            Some(Slot::InFlight(seen)) if *seen == body => {
                return Err(ApiError::Conflict(
                    "a request with this Idempotency-Key is still being decided; retry".into(),
                ));
            }
            Some(_) => return Err(reused()),
            None => {}
        }
        idem.slots.insert(key.clone(), Slot::InFlight(body));
        idem.order.push_back((key.clone(), now));
        Ok(Begin::Fresh(Claim {
            memory: self.clone(),
            key: Some(key),
        }))
    }
}

/// A session's risk deltas, for drift.
#[derive(Debug, Clone, Default)]
struct Series {
    baseline: Vec<f64>,
    recent: VecDeque<f64>,
}

impl Series {
    fn push(&mut self, x: f64) {
        if self.baseline.len() < DRIFT_WINDOW {
            self.baseline.push(x);
            return;
        }
        if self.recent.len() == DRIFT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(x);
    }

    fn drift(&self, params: &Params) -> Value {
        if self.baseline.len() < DRIFT_WINDOW || self.recent.len() < DRIFT_WINDOW {
            return json!({
                "status": "normal",
                "kl_divergence": 0.0,
                "action": "none",
                "message": format!(
                    "collecting observations: {} of {DRIFT_WINDOW} for the baseline, {} of {DRIFT_WINDOW} recent",
                    self.baseline.len(),
                    self.recent.len()
                ),
            });
        }
        let recent: Vec<f64> = self.recent.iter().copied().collect();
        let kl = governance::kl_divergence(&self.baseline, &recent);
        let status = governance::drift_status(kl, params);
        let (action, message) = match status {
            DriftStatus::Normal => ("none", "the risk deltas match the baseline"),
            DriftStatus::Warning => ("monitor", "the risk deltas are drifting from the baseline"),
            DriftStatus::Critical => (
                "pause",
                "the risk deltas have drifted far from the baseline: review before proceeding",
            ),
        };
        json!({"status": status.as_str(), "kl_divergence": kl, "action": action, "message": message})
    }
}

/// One evaluation request, checked.
#[derive(Debug, Clone)]
struct Evaluation {
    impact: String,
    proposal: Proposal,
    agent_id: Option<String>,
    session_id: Option<String>,
    shadow: bool,
    requires_human_approval: bool,
    reversible: bool,
    /// The request as decided on, defaults filled in: what an override
    /// approval binds (shadow mode aside).
    normalized: Value,
}

/// `POST /evaluate` (and `/sandbox/evaluate`, the client's path without
/// an API key: the same, answered with `sandbox: true`).
pub async fn evaluate(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
    sandbox: bool,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                    )
                })
        })
        .transpose()?;
    // The raw bytes too: an idempotency key binds the exact body.
    let body = json_body(req, state.config.max_body_bytes).await?;
    let fields = crate::json::object(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not a JSON object: {e}")))?;
    let evaluation = parse_evaluation(&fields)?;
    let claimed = evaluation
        .session_id
        .as_deref()
        .or(evaluation.agent_id.as_deref())
        .unwrap_or("anonymous");
    let identity = delegated::identity(state, access, claimed)?;
    let body_digest: [u8; 32] = Sha256::digest(&body).into();
    let scope = format!("{}|{}", access.identity(), identity.tenant_id);
    let claim = match state
        .governance
        .begin(idempotency_key.map(|k| (scope, k)), body_digest)?
    {
        Begin::Replay(answer, request_id) => return Ok(with_request_id(answer, &request_id)),
        Begin::Fresh(claim) => claim,
    };
    let request_id = delegated::new_id("req-")?;
    let answer = decide(state, &identity, &evaluation, &request_id, sandbox).await?;
    let bytes = Bytes::from(answer.to_string());
    claim.finish(body_digest, &bytes, &request_id);
    Ok(with_request_id(bytes, &request_id))
}

fn with_request_id(answer: Bytes, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = json_bytes_response(StatusCode::OK, answer);
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-aegis-request-id", value);
    }
    response
}

/// The decision for `evaluation`, recorded.
async fn decide(
    state: &AdminState,
    identity: &Identity,
    evaluation: &Evaluation,
    request_id: &str,
    sandbox: bool,
) -> Result<Value, ApiError> {
    let params = Params::FROZEN;
    let gates = governance::evaluate(&evaluation.proposal, &params);
    let series = series(state, identity).await?;
    let drift = series.drift(&params);
    let mut outcome = status(
        &gates,
        evaluation,
        drift["status"].as_str() == Some("critical"),
    );
    let digest = args_digest(&evaluation.normalized);
    let decision_id = uuid()?;
    let now = now_unix_ms();
    // The override: used when two approvers approved this very evaluation,
    // asked for when none waits.
    let mut approval = Override::None;
    if outcome.override_eligible && !evaluation.shadow {
        approval = find_override(state, identity, &digest, now).await?;
        if let Override::Released { .. } = &approval {
            outcome = Outcome {
                status: "proceed",
                override_eligible: false,
                rationale: format!(
                    "{} Overridden: two approvers approved this evaluation.",
                    outcome.rationale
                ),
                next_steps: vec!["proceed; the override is used".into()],
                ..outcome
            };
        }
    }
    let ask_id = match &approval {
        Override::Ask => Some(delegated::new_id("appr-")?),
        _ => None,
    };
    if let Override::Limit = &approval {
        outcome
            .constraints
            .push("override unavailable: as many approvals are waiting as allowed".into());
    }
    let mut answer = answer_json(&gates, &outcome, &drift, &decision_id, now);
    match (&approval, &ask_id) {
        (Override::Waiting(id) | Override::Released { id, .. }, _) | (_, Some(id)) => {
            answer["approval_id"] = json!(id);
            answer["approvals_required"] = json!(OVERRIDE_REQUIRES.len());
        }
        _ => {}
    }
    if sandbox {
        answer["sandbox"] = json!(true);
    }
    if evaluation.shadow {
        answer["shadow_mode"] = json!(true);
        answer["shadow_result"] = json!({
            "shadow_only": true,
            "drift_result": drift,
            "observation_values": [risk_delta(&evaluation.proposal), profit_delta(&evaluation.proposal)],
            "baseline_hash": baseline_hash(&series),
        });
    }
    let call_id = json!(request_id);
    let record = json!({
        "action": "governance_evaluate",
        "tool_name": EVALUATE_TOOL,
        "decision_id": decision_id,
        "request_id": request_id,
        "timestamp": delegated::rfc3339(now),
        "status": outcome.status,
        "enforced": !evaluation.shadow,
        "risk_delta": risk_delta(&evaluation.proposal),
        "args": evaluation.normalized,
        "answer": answer,
    });
    let ttl_ms = i64::try_from(state.gate.approvals.ttl.as_millis()).unwrap_or(i64::MAX);
    let args = &evaluation.normalized;
    let build = |seq: u64| {
        let mut events = vec![(EventType::PolicyDecision, record.clone())];
        let proposal = json!({
            "tool_name": OVERRIDE_TOOL, "call_id": call_id, "args": args,
            "transport": "decision_api", "upstream": DECISION_API_UPSTREAM,
        });
        match (&approval, &ask_id) {
            (Override::Released { id, approvers }, _) => {
                events.push((EventType::ToolCallProposed, proposal));
                events.push((
                    EventType::ToolCallAllowed,
                    json!({
                        "tool_name": OVERRIDE_TOOL, "call_id": call_id, "proposal_seq": seq + 1,
                        "outcome": "allow", "reason": "OK", "enforced": true,
                        "approval_id": id, "approved_by": approvers,
                        aegis_ledger::session::DELEGATED: true,
                        "explanation": "a two-key override of a governance evaluation",
                    }),
                ));
            }
            (Override::Ask, Some(id)) => {
                events.push((EventType::ToolCallProposed, proposal));
                events.push((
                    EventType::ApprovalRequested,
                    json!({
                        "tool_name": OVERRIDE_TOOL, "call_id": call_id, "proposal_seq": seq + 1,
                        "outcome": "require_approval", "reason": "APPROVAL_REQUIRED",
                        "enforced": true, "approval_id": id, "args_digest": digest,
                        "expires_unix_ms": now.saturating_add(ttl_ms),
                        "approvals_required": OVERRIDE_REQUIRES.len(), "approval_mode": "retry",
                        "explanation": format!("a two-key override of a governance {} decision", outcome.status),
                    }),
                ));
            }
            _ => {}
        }
        events
    };
    match state.gate.record_chain(identity, build).await {
        Ok(_) => {}
        Err(e @ GateError::Busy(_)) => return Err(ApiError::Unavailable(e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "a governance evaluation could not be recorded");
            return Err(ApiError::Unavailable(format!(
                "the evaluation could not be recorded, so it is not answered: {e}"
            )));
        }
    }
    if let Some(id) = &ask_id {
        state.webhook.send(crate::webhook::Event::Requested, id);
    }
    remember(state, identity, series, risk_delta(&evaluation.proposal));
    state
        .metrics
        .decision_api
        .with_label_values(&["governance", outcome.status])
        .inc();
    Ok(answer)
}

/// What the approvals store says about an evaluation's override.
#[derive(Debug)]
enum Override {
    /// Not asked for (not eligible, or shadow mode).
    None,
    /// None waits: ask for one.
    Ask,
    /// One waits for its votes.
    Waiting(String),
    /// Approved by enough approvers: this evaluation uses it.
    Released { id: String, approvers: Vec<String> },
    /// The session, or all sessions, have as many approvals waiting as
    /// allowed (`approval.max_pending_per_session`, `approval.max_pending`).
    Limit,
}

async fn find_override(
    state: &AdminState,
    identity: &Identity,
    digest: &str,
    now: i64,
) -> Result<Override, ApiError> {
    let reader = state.reader.clone();
    let (tenant, session) = (identity.tenant_id.clone(), identity.session_id.clone());
    let digest = digest.to_owned();
    let limits = (
        state.gate.approvals.max_pending_per_session,
        state.gate.approvals.max_pending,
    );
    let found = tokio::task::spawn_blocking(move || {
        let key = (tenant.as_str(), session.as_str());
        let find = |s| reader.approval_for_call(key, OVERRIDE_TOOL, &digest, s, now);
        if let Some(a) = find(ApprovalState::Approved)? {
            let required = u32::try_from(OVERRIDE_REQUIRES.len()).unwrap_or(u32::MAX);
            if a.approvals() >= required {
                let approvers = a
                    .votes
                    .iter()
                    .filter(|v| v.decision == aegis_ledger::VoteKind::Approve)
                    .map(|v| v.approver.clone())
                    .collect();
                return Ok::<_, aegis_ledger::StoreError>(Override::Released {
                    id: a.id,
                    approvers,
                });
            }
        }
        if let Some(a) = find(ApprovalState::Pending)? {
            return Ok(Override::Waiting(a.id));
        }
        if reader.pending_approvals(Some(key), now)? >= limits.0
            || reader.pending_approvals(None, now)? >= limits.1
        {
            return Ok(Override::Limit);
        }
        Ok(Override::Ask)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("approval lookup failed: {e}")))??;
    Ok(found)
}

/// The status and what goes with it.
#[derive(Debug, Clone)]
struct Outcome {
    status: &'static str,
    override_eligible: bool,
    rationale: String,
    next_steps: Vec<String>,
    constraints: Vec<String>,
}

/// The status rules (module documentation).
fn status(gates: &[GateResult], e: &Evaluation, drift_critical: bool) -> Outcome {
    let failed: Vec<&GateResult> = gates.iter().filter(|g| !g.passed).collect();
    let names = || {
        failed
            .iter()
            .map(|g| format!("{} ({})", g.gate, g.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut constraints = Vec::new();
    if drift_critical {
        constraints.push("drift: critical".to_owned());
    }
    if !e.reversible {
        constraints.push("irreversible".to_owned());
    }
    let person = e.requires_human_approval
        || matches!(e.impact.as_str(), "high" | "critical")
        || !e.reversible;
    let has = |gate| failed.iter().any(|g| g.gate == gate);
    if has(Gate::Complexity) {
        return Outcome {
            status: "halt",
            override_eligible: false,
            rationale: format!(
                "The complexity floor is a hard floor and failed; no override lifts it. Failed: {}.",
                names()
            ),
            next_steps: vec![
                "simplify the proposal (raise complexity_score to 0.5 or more) and evaluate again"
                    .into(),
            ],
            constraints,
        };
    }
    if has(Gate::Risk) {
        return Outcome {
            status: "halt",
            override_eligible: true,
            rationale: format!("The risk gate failed. Failed: {}.", names()),
            next_steps: vec![
                "reduce the proposed risk and evaluate again".into(),
                "or ask for a two-key override (risk_lead and security_lead approve it)".into(),
            ],
            constraints,
        };
    }
    if !failed.is_empty() || drift_critical {
        let why = if failed.is_empty() {
            "The risk deltas have drifted critically from the session's baseline.".to_owned()
        } else {
            format!("Gates failed: {}.", names())
        };
        return Outcome {
            status: "pause",
            override_eligible: false,
            rationale: why,
            next_steps: vec![
                "review the failed gates, improve the proposal and evaluate again".into(),
            ],
            constraints,
        };
    }
    if person {
        return Outcome {
            status: "escalate",
            override_eligible: true,
            rationale: "Every gate passed, but the proposal asks for a person (human approval required, high or critical impact, or irreversible).".into(),
            next_steps: vec!["two approvers (risk_lead and security_lead) approve it; then evaluate again".into()],
            constraints,
        };
    }
    Outcome {
        status: "proceed",
        override_eligible: false,
        rationale: "Every evaluated gate passed.".into(),
        next_steps: vec!["proceed".into()],
        constraints,
    }
}

fn answer_json(
    gates: &[GateResult],
    outcome: &Outcome,
    drift: &Value,
    decision_id: &str,
    now: i64,
) -> Value {
    let evaluated: Vec<&GateResult> = gates.iter().filter(|g| g.evaluated).collect();
    let confidence = evaluated
        .iter()
        .map(|g| g.confidence)
        .fold(1.0f64, f64::min);
    let mut constraints = outcome.constraints.clone();
    if drift["status"] == "warning" {
        constraints.push("drift: warning".into());
    }
    let gate_map: Map<String, Value> = gates
        .iter()
        .map(|g| {
            (
                g.gate.as_str().to_owned(),
                json!({
                    "passed": g.passed,
                    "evaluated": g.evaluated,
                    "value": finite(g.value),
                    "threshold": finite(g.threshold),
                    "confidence": finite(g.confidence),
                    "message": g.message,
                }),
            )
        })
        .collect();
    json!({
        "status": outcome.status,
        "confidence": finite(confidence),
        "gates_passed": evaluated.iter().filter(|g| g.passed).count(),
        "gates_failed": evaluated.iter().filter(|g| !g.passed).count(),
        "failing_gates": evaluated.iter().filter(|g| !g.passed).map(|g| g.gate.as_str()).collect::<Vec<_>>(),
        "rationale": outcome.rationale,
        "next_steps": outcome.next_steps,
        "constraints": constraints,
        "decision_id": decision_id,
        "timestamp": delegated::rfc3339(now),
        "override_eligible": outcome.override_eligible,
        "override_requires": if outcome.override_eligible { json!(OVERRIDE_REQUIRES) } else { json!([]) },
        "gates": gate_map,
        "drift": drift,
    })
}

/// JSON has no infinities or NaN: they are written as `null`.
fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn risk_delta(p: &Proposal) -> f64 {
    p.risk_proposed - p.risk_baseline
}

fn profit_delta(p: &Proposal) -> f64 {
    p.profit_proposed - p.profit_baseline
}

fn baseline_hash(series: &Series) -> Option<String> {
    (series.baseline.len() == DRIFT_WINDOW).then(|| {
        let text = serde_json::to_string(&series.baseline).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    })
}

/// The session's drift series: from memory, else rebuilt from its recorded
/// evaluations.
async fn series(state: &AdminState, identity: &Identity) -> Result<Series, ApiError> {
    let key = (identity.tenant_id.clone(), identity.session_id.clone());
    if let Some(series) = state
        .governance
        .drift
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(series.clone());
    }
    let reader = state.reader.clone();
    let (tenant, session) = key;
    tokio::task::spawn_blocking(move || {
        let mut series = Series::default();
        reader.for_each_in_session(&tenant, &session, |envelope| {
            if envelope.event_type == EventType::PolicyDecision.as_str()
                && envelope.tool_name.as_deref() == Some(EVALUATE_TOOL)
                && let Ok(payload) = serde_json::from_str::<Value>(&envelope.payload)
                && let Some(delta) = payload["risk_delta"].as_f64()
            {
                series.push(delta);
            }
            ControlFlow::Continue(())
        })?;
        Ok::<_, aegis_ledger::StoreError>(series)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("drift rebuild failed: {e}")))?
    .map_err(ApiError::from)
}

fn remember(state: &AdminState, identity: &Identity, mut series: Series, delta: f64) {
    series.push(delta);
    let mut book = state
        .governance
        .drift
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if book.len() >= DRIFT_SESSIONS
        && let Some(evict) = book.keys().next().cloned()
    {
        book.remove(&evict);
    }
    book.insert(
        (identity.tenant_id.clone(), identity.session_id.clone()),
        series,
    );
}

fn uuid() -> Result<String, ApiError> {
    let raw = delegated::new_id("")?;
    let mut b = hex::decode(&raw).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Version 4, RFC 9562 variant.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn parse_evaluation(fields: &Map<String, Value>) -> Result<Evaluation, ApiError> {
    delegated::only_members(fields, EVALUATE_MEMBERS, "")?;
    let summary = match fields.get("proposal_summary") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_SUMMARY => {
            s.trim().to_owned()
        }
        Some(Value::String(s)) if s.len() > MAX_SUMMARY => {
            return Err(ApiError::BadRequest(format!(
                "proposal_summary exceeds {MAX_SUMMARY} characters"
            )));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "proposal_summary is required and must be a non-empty string".into(),
            ));
        }
    };
    let impact = match fields.get("estimated_impact") {
        None | Some(Value::Null) => "medium".to_owned(),
        Some(Value::String(s)) if ["low", "medium", "high", "critical"].contains(&s.as_str()) => {
            s.clone()
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "estimated_impact must be low, medium, high or critical, got {other}"
            )));
        }
    };
    let unit = |name: &str, default: f64| number(fields, name, default, Some(1.0));
    let positive = |name: &str, default: f64| number(fields, name, default, None);
    let quality_subscores = match fields.get("quality_subscores") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_SUBSCORES => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_f64() {
                Some(x) if !v.is_boolean() && (0.0..=1.0).contains(&x) => Ok(x),
                _ => Err(ApiError::BadRequest(format!(
                    "quality_subscores[{i}] must be a number from 0.0 to 1.0"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "quality_subscores must be an array of at most {MAX_SUBSCORES} numbers"
            )));
        }
    };
    let utility = match delegated::object_member(fields, "utility_result", "")? {
        None => None,
        Some(u) => {
            delegated::only_members(u, &["gain", "gain_sd"], "utility_result.")?;
            let gain = match u.get("gain").and_then(Value::as_f64) {
                Some(g) if g.is_finite() => g,
                _ => {
                    return Err(ApiError::BadRequest(
                        "utility_result.gain must be a number".into(),
                    ));
                }
            };
            Some(UtilityInput {
                gain,
                gain_sd: number(u, "gain_sd", 0.0, None)?,
            })
        }
    };
    let proposal = Proposal {
        risk_baseline: unit("risk_baseline", 0.02)?,
        risk_proposed: unit("risk_proposed", 0.05)?,
        profit_baseline: positive("profit_baseline", 0.98)?,
        profit_proposed: positive("profit_proposed", 0.98)?,
        novelty_score: unit("novelty_score", 0.75)?,
        complexity_score: unit("complexity_score", 0.8)?,
        quality_score: unit("quality_score", 0.85)?,
        quality_subscores,
        utility,
    };
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= crate::identity::MAX_ID_LEN => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(ApiError::BadRequest(format!(
                "{name} must be a non-empty string of at most {} bytes",
                crate::identity::MAX_ID_LEN
            ))),
        }
    };
    let flag = |name: &str, default: bool| match fields.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{name} must be true or false"
        ))),
    };
    let (phase, change_type) = (text("phase")?, text("change_type")?);
    let metadata = delegated::object_member(fields, "metadata", "")?.cloned();
    let evaluation = Evaluation {
        normalized: json!({
            "proposal_summary": summary,
            "estimated_impact": impact,
            "risk_baseline": proposal.risk_baseline,
            "risk_proposed": proposal.risk_proposed,
            "profit_baseline": proposal.profit_baseline,
            "profit_proposed": proposal.profit_proposed,
            "novelty_score": proposal.novelty_score,
            "complexity_score": proposal.complexity_score,
            "quality_score": proposal.quality_score,
            "quality_subscores": proposal.quality_subscores,
            "utility_result": proposal.utility.map(|u| json!({"gain": u.gain, "gain_sd": u.gain_sd})),
            "agent_id": text("agent_id")?,
            "session_id": text("session_id")?,
            "phase": phase,
            "change_type": change_type,
            "requires_human_approval": flag("requires_human_approval", false)?,
            "reversible": flag("reversible", true)?,
            "time_sensitive": flag("time_sensitive", false)?,
            "metadata": metadata,
        }),
        impact,
        proposal,
        agent_id: text("agent_id")?,
        session_id: text("session_id")?,
        shadow: flag("shadow_mode", false)?,
        requires_human_approval: flag("requires_human_approval", false)?,
        reversible: flag("reversible", true)?,
    };
    Ok(evaluation)
}

/// A finite number member, at least 0 (and at most `max`), or `default`.
fn number(
    fields: &Map<String, Value>,
    name: &str,
    default: f64,
    max: Option<f64>,
) -> Result<f64, ApiError> {
    let value = match fields.get(name) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Bool(_)) => None,
        Some(v) => v.as_f64(),
    };
    match (value, max) {
        (Some(x), Some(max)) if x.is_finite() && (0.0..=max).contains(&x) => Ok(x),
        (Some(x), None) if x.is_finite() && x >= 0.0 => Ok(x),
        (_, Some(max)) => Err(ApiError::BadRequest(format!(
            "{name} must be a number from 0.0 to {max:.1}"
        ))),
        (_, None) => Err(ApiError::BadRequest(format!(
            "{name} must be a non-negative number"
        ))),
    }
}

/// `POST /risk-check`: `risk_score < threshold`, recorded.
pub async fn risk_check(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let fields = json_object(req, state.config.max_body_bytes).await?;
    delegated::only_members(
        &fields,
        &["risk_score", "threshold", "action_description", "agent_id"],
        "",
    )?;
    if !fields.contains_key("risk_score") {
        return Err(ApiError::BadRequest("risk_score is required".into()));
    }
    let risk = number(&fields, "risk_score", 0.0, Some(1.0))?;
    let threshold = number(&fields, "threshold", 0.3, Some(1.0))?;
    let action = match fields.get("action_description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= MAX_SUMMARY => s.clone(),
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "action_description must be a string of at most {MAX_SUMMARY} characters"
            )));
        }
    };
    let agent = match fields.get("agent_id") {
        None | Some(Value::Null) => "anonymous",
        Some(_) => delegated::id_member(&fields, "agent_id", "")?,
    };
    let identity = delegated::identity(state, access, agent)?;
    let safe = risk < threshold;
    let rationale = format!(
        "risk {risk} is {} the threshold {threshold} (a plain comparison, not a Bayesian evaluation)",
        if safe { "below" } else { "not below" }
    );
    let request_id = delegated::new_id("req-")?;
    let answer =
        json!({"safe": safe, "risk_score": risk, "threshold": threshold, "rationale": rationale});
    let record = json!({
        "action": "governance_risk_check", "tool_name": RISK_CHECK_TOOL,
        "request_id": request_id, "timestamp": delegated::now_rfc3339(), "args": {"risk_score": risk, "threshold": threshold,
        "action_description": action, "agent_id": agent}, "answer": answer,
    });
    state
        .gate
        .record_chain(&identity, |_| {
            vec![(EventType::PolicyDecision, record.clone())]
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("the risk check could not be recorded: {e}")))?;
    Ok(with_request_id(
        Bytes::from(answer.to_string()),
        &request_id,
    ))
}

/// `GET /health`.
pub fn health(state: &AdminState) -> Response<Full<Bytes>> {
    let manifest = state.manifests.current().is_some();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "stage": "aegis-proxy",
            "checks": {"gate_engine": "ok", "manifest_loaded": manifest},
        }),
    )
}

/// The payloads of the tenant's `POLICY_DECISION`s of `tool`, in commit
/// order (after the writer's pending commits); `visit` may stop early.
async fn scan(
    state: &AdminState,
    tenant: String,
    tool: &'static str,
    mut visit: impl FnMut(Value) -> ControlFlow<()> + Send + 'static,
) -> Result<(), ApiError> {
    super::settled(state).await;
    let reader = state.reader.clone();
    tokio::task::spawn_blocking(move || {
        let mut token = None;
        loop {
            let page = reader.list(&ListQuery {
                tenant_id: tenant.clone(),
                session_id: None,
                event_type: Some(EventType::PolicyDecision.as_str().to_owned()),
                tool_name: Some(tool.to_owned()),
                limit: 1000,
                page_token: token.take(),
            })?;
            for envelope in page.envelopes {
                if let Ok(payload) = serde_json::from_str::<Value>(&envelope.payload)
                    && visit(payload).is_break()
                {
                    return Ok(());
                }
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok::<_, aegis_ledger::StoreError>(()),
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("decision scan failed: {e}")))?
    .map_err(ApiError::from)
}

/// The caller's tenant for the customer routes.
fn tenant(state: &AdminState, access: &Access) -> Result<String, ApiError> {
    let tenant = match access.tenants() {
        Some([only]) => only.clone(),
        _ => state.identity.config().default_tenant.clone(),
    };
    access.tenant(&tenant)?;
    Ok(tenant)
}

fn month_param<B>(
    req: &Request<B>,
    path_month: Option<&str>,
) -> Result<(Option<String>, usize), ApiError> {
    let params = query(req, &["month", "limit"])?;
    let month = match (path_month, params.get("month")) {
        (Some(m), _) => Some(m.to_owned()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    };
    if let Some(m) = &month {
        let ok = m.len() == 7
            && m.as_bytes()[4] == b'-'
            && m[..4].bytes().all(|b| b.is_ascii_digit())
            && matches!(m[5..].parse::<u8>(), Ok(1..=12));
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "month must be in YYYY-MM format, got {m:?}"
            )));
        }
    }
    let limit = match params.get("limit") {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=1000) => n,
            _ => {
                return Err(ApiError::BadRequest(
                    "limit must be an integer from 1 to 1000".into(),
                ));
            }
        },
    };
    Ok((month, limit))
}

/// `GET /customer/decisions?month=&limit=`: the newest first.
pub async fn decisions<B>(
    state: &AdminState,
    access: &Access,
    req: &Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (month, limit) = month_param(req, None)?;
    let tenant = tenant(state, access)?;
    let kept = Arc::new(Mutex::new(VecDeque::new()));
    let sink = Arc::clone(&kept);
    scan(state, tenant, EVALUATE_TOOL, move |payload| {
        let answer = payload["answer"].clone();
        let in_month = month.as_deref().is_none_or(|m| {
            answer["timestamp"]
                .as_str()
                .is_some_and(|t| t.starts_with(m))
        });
        if in_month {
            let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(answer);
        }
        ControlFlow::Continue(())
    })
    .await?;
    let decisions: Vec<Value> = kept
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .rev()
        .cloned()
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"decisions": decisions}),
    ))
}

/// `GET /customer/decisions/{id}`.
pub async fn decision(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let id = path_segment(raw_id)?;
    let tenant = tenant(state, access)?;
    let found = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&found);
    let wanted = id.clone();
    scan(state, tenant, EVALUATE_TOOL, move |payload| {
        if payload["decision_id"] == wanted.as_str() {
            *sink.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload["answer"].clone());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .await?;
    let found = found.lock().unwrap_or_else(PoisonError::into_inner).take();
    match found {
        Some(answer) => Ok(json_response(StatusCode::OK, &json!({"decision": answer}))),
        None => Err(ApiError::NotFound(format!("no decision {id:?}"))),
    }
}

/// `GET /customer/usage[/{month}]`: evaluations and risk checks recorded
/// in the month (default: this one). There is no quota.
pub async fn usage<B>(
    state: &AdminState,
    access: &Access,
    req: &Request<B>,
    raw_month: Option<&str>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path_month = raw_month.map(path_segment).transpose()?;
    let (month, _) = month_param(req, path_month.as_deref())?;
    let month = month.unwrap_or_else(|| delegated::now_rfc3339()[..7].to_owned());
    let tenant = tenant(state, access)?;
    let mut counts = [0u64; 2];
    for (i, tool) in [EVALUATE_TOOL, RISK_CHECK_TOOL].into_iter().enumerate() {
        let n = Arc::new(Mutex::new(0u64));
        let sink = Arc::clone(&n);
        let m = month.clone();
        scan(state, tenant.clone(), tool, move |payload| {
            if payload["timestamp"]
                .as_str()
                .is_some_and(|t| t.starts_with(&m))
            {
                *sink.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            }
            ControlFlow::Continue(())
        })
        .await?;
        counts[i] = *n.lock().unwrap_or_else(PoisonError::into_inner);
    }
    let total = counts[0] + counts[1];
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "customer_id": tenant, "month": month,
            "total_evaluations": counts[0], "total_risk_checks": counts[1],
            "total_calls": total, "channels": {"api": total},
            "quota": 0, "quota_remaining": 0, "quota_percent": 0.0,
        }),
    ))
}

#[cfg(test)]
mod tests;

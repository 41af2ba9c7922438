//! aegislib's decision API (PyPI `aegislib` 0.2.3, `import aegis`):
//! `POST /v1/decision`, `POST /v1/decision/batch` and
//! `GET /v1/decision/{id}/status`, answered in its shapes and decided by the
//! gate ([`super::delegated`]: which session, what is recorded).
//!
//! The client runs the tool itself, and under its `fail_mode=open` any
//! error answer — a 4xx or a 5xx — runs it too. So every call that reaches
//! the gate is answered 200 with a decision: a policy denial, and also a
//! call the ledger could not record (`deny`, `LEDGER_UNAVAILABLE`, unless
//! `ledger.fail_open` says to let it run, as the inline path does). Only a
//! request that is not a call at all (bad JSON, a missing `tool.name`) or a
//! refused credential gets a 4xx.
//!
//! | our decision | `final_decision.effect` |
//! |---|---|
//! | allow | `allow` |
//! | allow, arguments rewritten by `policy.sanitize` | `sanitize`: `sanitize.params` holds each top-level parameter that changed, a dropped one as `null` (the client merges them over its own) |
//! | deny | `deny`: `reason` is our reason code, `violations` says why |
//! | require_approval | `approval_needed`: `decision_id` and `approval_id` are the approval's id |
//!
//! **Approvals.** The status of an `approval_needed` decision is its
//! approval's, in the approvals store: pending → `PENDING`; denied, expired
//! → `OK`/`deny`; approved → the first poll that finds it decides the call
//! again through the gate, which consumes the approval and records the
//! allowed decision (`OK`/`allow`: the client's poller then runs the tool).
//! A later poll of a consumed approval answers `allow` only when it was
//! consumed by that very call's release. A decision that needed no approval
//! has no status (404).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use aegis_ledger::{Approval, ApprovalState, StoredEnvelope, now_unix_ms};
use aegis_policy::Outcome;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::delegated::{self, Answered, Ask};
use super::error::json_response;
use super::request::{json_object, path_segment};
use super::{Access, AdminState, ApiError};
use crate::gate::{ApprovalLink, DECISION_API_UPSTREAM, Verdict};
use crate::identity::{Identity, PrincipalSource, SessionSource};

/// The members of one decision request.
const REQUEST_MEMBERS: &[&str] = &["agent_id", "tool", "session"];
const TOOL_MEMBERS: &[&str] = &["name", "params"];

/// Approvals being released by a status poll now: a second poll of the
/// same one meanwhile answers `PENDING` instead of deciding the call twice.
#[derive(Debug, Default, Clone)]
pub struct Releasing(Arc<Mutex<HashSet<String>>>);

impl Releasing {
    fn start(&self, id: &str) -> Option<ReleaseGuard> {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ids.insert(id.to_owned()).then(|| ReleaseGuard {
            set: self.clone(),
            id: id.to_owned(),
        })
    }
}

struct ReleaseGuard {
    set: Releasing,
    id: String,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let mut ids = self.set.0.lock().unwrap_or_else(PoisonError::into_inner);
        ids.remove(&self.id);
    }
}

/// One request, checked.
#[derive(Debug)]
struct Asked {
    agent_id: String,
    tool: String,
    params: Value,
    /// What is recorded as the proposal's `client_context`.
    context: Value,
}

/// `POST /v1/decision`.
pub async fn decide(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let fields = json_object(req, state.config.max_body_bytes).await?;
    let asked = parse(&Value::Object(fields), "")?;
    let answer = decide_one(state, access, &asked).await?;
    Ok(json_response(StatusCode::OK, &answer))
}

/// `POST /v1/decision/batch`: `{"requests": [...]}` → `{"decisions":
/// [...]}`, in order. Every request is checked before any is decided; each
/// is then decided in turn (a session's calls are decided one at a time).
pub async fn decide_batch(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let fields = json_object(req, state.config.max_body_bytes).await?;
    delegated::only_members(&fields, &["requests"], "")?;
    let Some(Value::Array(requests)) = fields.get("requests") else {
        return Err(ApiError::BadRequest(
            "requests is required and must be an array".into(),
        ));
    };
    if requests.len() > delegated::MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "a batch holds at most {} requests, this one {}",
            delegated::MAX_BATCH,
            requests.len()
        )));
    }
    let asked = requests
        .iter()
        .enumerate()
        .map(|(i, r)| parse(r, &format!("requests[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut decisions = Vec::with_capacity(asked.len());
    for one in &asked {
        decisions.push(decide_one(state, access, one).await?);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "decisions": decisions }),
    ))
}

fn parse(value: &Value, at: &str) -> Result<Asked, ApiError> {
    let Some(fields) = value.as_object() else {
        return Err(ApiError::BadRequest(format!(
            "{} must be an object",
            if at.is_empty() {
                "the body"
            } else {
                at.trim_end_matches('.')
            }
        )));
    };
    delegated::only_members(fields, REQUEST_MEMBERS, at)?;
    let agent_id = delegated::id_member(fields, "agent_id", at)?;
    let tool_at = format!("{at}tool.");
    let tool = delegated::object_member(fields, "tool", at)?
        .ok_or_else(|| ApiError::BadRequest(format!("{at}tool is required")))?;
    delegated::only_members(tool, TOOL_MEMBERS, &tool_at)?;
    let name = delegated::id_member(tool, "name", &tool_at)?;
    let params = delegated::object_member(tool, "params", &tool_at)?
        .cloned()
        .unwrap_or_default();
    let session = delegated::object_member(fields, "session", at)?;
    Ok(Asked {
        agent_id: agent_id.to_owned(),
        tool: name.to_owned(),
        params: Value::Object(params),
        context: json!({
            "api": "aegislib",
            "agent_id": agent_id,
            "session": session,
        }),
    })
}

async fn decide_one(state: &AdminState, access: &Access, asked: &Asked) -> Result<Value, ApiError> {
    let started = Instant::now();
    let identity = delegated::identity(state, access, &asked.agent_id)?;
    let request_id = delegated::new_id("req-")?;
    let call_id = json!(request_id);
    let answered = delegated::decide(
        state,
        Ask {
            identity: &identity,
            call_id: &call_id,
            tool: &asked.tool,
            args: &asked.params,
            context: &asked.context,
        },
    )
    .await;
    let (final_decision, evaluations, decision_id) = match &answered {
        Answered::Decided(verdict) => {
            let decision_id = match &verdict.approval {
                Some(ApprovalLink::Requested { id, .. })
                    if verdict.decision.outcome == Outcome::RequireApproval =>
                {
                    id.clone()
                }
                _ => delegated::new_id("d-")?,
            };
            (
                final_decision(verdict, &asked.params, state.enforce),
                evaluations(verdict),
                decision_id,
            )
        }
        Answered::Unrecorded { error, fail_open } => {
            let reason = Answered::unrecorded_reason(error);
            let effect = if *fail_open { "allow" } else { "deny" };
            let mut decision = json!({
                "effect": effect,
                "reason": reason,
                "violations": [],
            });
            if !fail_open {
                decision["violations"] = json!([violation(&reason, &error.to_string())]);
            }
            (decision, json!([]), delegated::new_id("d-")?)
        }
    };
    let effect = final_decision["effect"].as_str().unwrap_or("deny");
    state
        .metrics
        .decision_api
        .with_label_values(&["aegislib", effect])
        .inc();
    Ok(json!({
        "request_id": request_id,
        "tenant_id": identity.tenant_id,
        "agent_id": asked.agent_id,
        "decision_id": decision_id,
        "tool": asked.tool,
        "final_decision": final_decision,
        "policy_evaluations": evaluations,
        "latency_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// `final_decision` for a recorded verdict.
fn final_decision(verdict: &Verdict, params: &Value, enforce: bool) -> Value {
    let decision = &verdict.decision;
    let reason = decision.reason.as_str();
    if verdict.forwards(enforce) {
        return match (&verdict.sanitized, enforce) {
            (Some(rewrite), true) => json!({
                "effect": "sanitize",
                "reason": reason,
                "violations": [],
                "sanitize": {
                    "message": rewrite.message,
                    "params": changed_params(params, &rewrite.args),
                },
            }),
            _ => json!({"effect": "allow", "reason": reason, "violations": []}),
        };
    }
    match decision.outcome {
        Outcome::RequireApproval => json!({
            "effect": "approval_needed",
            "reason": reason,
            "violations": [],
            "approval_id": verdict.approval_id(),
        }),
        Outcome::Deny | Outcome::Allow => json!({
            "effect": "deny",
            "reason": reason,
            "violations": [violation(reason, decision.explanation())],
        }),
    }
}

fn violation(reason: &str, message: &str) -> Value {
    json!({"type": "policy", "condition": reason, "message": message})
}

/// What decided: the live manifest, as `policy_evaluations`.
fn evaluations(verdict: &Verdict) -> Value {
    match &verdict.manifest {
        Some(live) => json!([{
            "policy_id": format!("manifest:{}", live.sha256),
            "manifest_generation": live.generation,
            "outcome": verdict.decision.outcome.as_str(),
            "reason": verdict.decision.reason.as_str(),
        }]),
        None => json!([]),
    }
}

/// The top-level parameters `rewritten` changed: each changed or added
/// one with its new value, each removed one as `null` (aegislib merges
/// this map over the parameters it proposed).
fn changed_params(original: &Value, rewritten: &Value) -> Value {
    let empty = Map::new();
    let before = original.as_object().unwrap_or(&empty);
    let after = rewritten.as_object().unwrap_or(&empty);
    let mut changed = Map::new();
    for (name, value) in before {
        match after.get(name) {
            None => {
                changed.insert(name.clone(), Value::Null);
            }
            Some(new) if new != value => {
                changed.insert(name.clone(), new.clone());
            }
            Some(_) => {}
        }
    }
    for (name, value) in after {
        if !before.contains_key(name) {
            changed.insert(name.clone(), value.clone());
        }
    }
    Value::Object(changed)
}

/// What the status route found for a decision id.
struct Found {
    approval: Approval,
    proposal: Option<StoredEnvelope>,
    /// The envelope that consumed the approval, when it was.
    consumed_by: Option<StoredEnvelope>,
}

/// `GET /v1/decision/{id}/status`.
pub async fn status(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let id = path_segment(raw_id)?;
    let unknown = || {
        ApiError::NotFound(format!(
            "no decision {id:?} to poll (only a decision that needed an approval has a status)"
        ))
    };
    let reader = state.reader.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || {
        let Some(approval) = reader.approval(&lookup)? else {
            return Ok::<_, aegis_ledger::StoreError>(None);
        };
        let (tenant, session) = (&approval.tenant_id, &approval.session_id);
        let proposal = reader.envelope(tenant, session, approval.proposal_seq)?;
        let consumed_by = match approval.consumed_seq {
            Some(seq) => reader.envelope(tenant, session, seq)?,
            None => None,
        };
        Ok(Some(Found {
            approval,
            proposal,
            consumed_by,
        }))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("approval lookup failed: {e}")))??;
    let Some(found) = found else {
        return Err(unknown());
    };
    // Another tenant's approval is unknown to this caller.
    if access.tenant(&found.approval.tenant_id).is_err() {
        return Err(unknown());
    }
    let Some(call) = found.proposal.as_ref().and_then(Proposed::of) else {
        // An inline call's approval: released by that call made again.
        return Err(unknown());
    };
    let (status, effect) = match found.approval.state_at(now_unix_ms()) {
        ApprovalState::Pending => ("PENDING", "approval_needed"),
        ApprovalState::Denied | ApprovalState::Expired => ("OK", "deny"),
        ApprovalState::Consumed => {
            let by_this_call = found
                .consumed_by
                .as_ref()
                .and_then(|e| serde_json::from_str::<Value>(&e.payload).ok())
                .is_some_and(|p| {
                    p[aegis_ledger::session::DELEGATED] == json!(true)
                        && p["call_id"] == call.call_id
                });
            ("OK", if by_this_call { "allow" } else { "deny" })
        }
        ApprovalState::Approved => release(state, &found.approval, &call).await,
    };
    state
        .metrics
        .decision_api
        .with_label_values(&["aegislib_status", effect])
        .inc();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "decision_id": id,
            "status": status,
            "effect": effect,
            "request_id": call.call_id,
        }),
    ))
}

/// The call a decision-API proposal recorded.
struct Proposed {
    user_id: String,
    principal: String,
    call_id: Value,
    tool: String,
    args: Value,
    context: Value,
}

impl Proposed {
    /// `None` unless `envelope` is a decision-API `TOOL_CALL_PROPOSED`.
    fn of(envelope: &StoredEnvelope) -> Option<Proposed> {
        if envelope.event_type != aegis_ledger::EventType::ToolCallProposed.as_str() {
            return None;
        }
        let payload: Value = serde_json::from_str(&envelope.payload).ok()?;
        if payload["transport"] != DECISION_API_UPSTREAM {
            return None;
        }
        Some(Proposed {
            user_id: envelope.user_id.clone(),
            principal: payload["principal"].as_str()?.to_owned(),
            call_id: payload["call_id"].clone(),
            tool: payload["tool_name"].as_str()?.to_owned(),
            args: payload["args"].clone(),
            context: payload["client_context"].clone(),
        })
    }
}

/// Releases an approved call: decided again through the gate (which
/// consumes the approval in the same commit). `(status, effect)`.
async fn release(
    state: &AdminState,
    approval: &Approval,
    call: &Proposed,
) -> (&'static str, &'static str) {
    let Some(_guard) = state.releasing.start(&approval.id) else {
        // Another poll is releasing it now.
        return ("PENDING", "approval_needed");
    };
    let identity = Identity {
        tenant_id: approval.tenant_id.clone(),
        user_id: call.user_id.clone(),
        session_id: approval.session_id.clone(),
        session_source: SessionSource::AgentId,
        principal: call.principal.clone(),
        principal_source: PrincipalSource::Config,
        mcp_session_id: None,
    };
    let answered = delegated::decide(
        state,
        Ask {
            identity: &identity,
            call_id: &call.call_id,
            tool: &call.tool,
            args: &call.args,
            context: &call.context,
        },
    )
    .await;
    match answered {
        Answered::Decided(verdict) => match verdict.decision.outcome {
            // The client runs the arguments it proposed: a rewrite the
            // manifest now asks for cannot reach them.
            Outcome::Allow if verdict.sanitized.is_some() => {
                tracing::warn!(approval = %approval.id, tool = %call.tool, "an approved decision-API call is now rewritten by policy.sanitize; answered deny");
                ("OK", "deny")
            }
            Outcome::Allow => ("OK", "allow"),
            Outcome::Deny => ("OK", "deny"),
            // Waiting on another approval (the manifest now asks for more
            // approvers): its release answers this poll later.
            Outcome::RequireApproval => ("PENDING", "approval_needed"),
        },
        // Not recorded: nothing consumed; the client polls again.
        Answered::Unrecorded { .. } => ("PENDING", "approval_needed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_params_name_what_changed_and_null_what_was_dropped() {
        let before = json!({"a": 1, "b": "card 4111", "c": {"x": 1}, "d": true});
        let after = json!({"a": 1, "b": "card [REDACTED]", "c": {"x": 2}, "e": 5});
        assert_eq!(
            changed_params(&before, &after),
            json!({"b": "card [REDACTED]", "c": {"x": 2}, "d": null, "e": 5})
        );
        assert_eq!(changed_params(&before, &before), json!({}));
    }

    #[test]
    fn requests_are_checked_with_their_paths() {
        let err = |v: Value| match parse(&v, "requests[2].") {
            Err(e) => e.to_string(),
            Ok(_) => String::from("accepted"),
        };
        assert!(err(json!({"tool": {"name": "t"}})).contains("requests[2].agent_id is required"));
        assert!(err(json!({"agent_id": "a"})).contains("requests[2].tool is required"));
        assert!(
            err(json!({"agent_id": "a", "tool": {"name": ""}}))
                .contains("requests[2].tool.name must be a non-empty string")
        );
        assert!(
            err(json!({"agent_id": "a", "tool": {"name": "t", "params": [1]}}))
                .contains("requests[2].tool.params must be an object")
        );
        assert!(
            err(json!({"agent_id": "a", "tool": {"name": "t"}, "sesion": {}}))
                .contains("unknown member requests[2].sesion")
        );
        assert!(
            err(json!({"agent_id": "a", "tool": {"name": "t"}, "session": 3}))
                .contains("requests[2].session must be an object")
        );
        assert_eq!(err(json!([])), "requests[2] must be an object");
        let ok = parse(
            &json!({"agent_id": "a", "tool": {"name": "t"}, "session": null}),
            "",
        );
        assert!(matches!(ok, Ok(a) if a.params == json!({}) && a.context["session"].is_null()));
    }
}

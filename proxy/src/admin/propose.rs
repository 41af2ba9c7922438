//! The AEGIS platform's `propose` API (seed 001): `POST
//! /api/v1/governance/propose` and `GET /api/v1/health`, decided by the
//! gate ([`super::delegated`]: which session, what is recorded).
//!
//! The body is either the historical client's `{"capability", "resource",
//! "parameters"}` or the SDK documentation's `{"actor": {"id", "type"},
//! "action": {"capability", "parameters"}, "context"}`. The capability is
//! the tool, the parameters its arguments; a `resource` is decided on as the
//! argument `resource` (it may not contradict `parameters.resource`).
//!
//! | our decision | `verdict` |
//! |---|---|
//! | allow (also: released by an approval) | `ALLOW` |
//! | deny | `DENY` (`reason`: our reason code and why) |
//! | require_approval, one approver | `REQUIRE_CONFIRMATION` |
//! | require_approval, two or more approvers | `ESCALATE` |
//!
//! A call that waits for its approval is proposed again, unchanged, once a
//! person approved it (`aegis-proxy approvals approve <audit_id's approval>`):
//! then it is `ALLOW`. Like aegislib's, a call the ledger could not record
//! is answered 200 `DENY` (`LEDGER_UNAVAILABLE`), or `ALLOW` under
//! `ledger.fail_open`. There is no risk model: `risk_score` is 0 for an
//! allowed call, 0.5 for one that waits for a person, 1 for a refused one.

use aegis_policy::Outcome;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::delegated::{self, Answered, Ask};
use super::error::json_response;
use super::request::json_object;
use super::{Access, AdminState, ApiError};
use crate::gate::{ApprovalLink, Verdict};

/// One proposal, checked.
#[derive(Debug)]
struct Proposal {
    agent_id: String,
    capability: String,
    args: Value,
    context: Value,
}

/// `POST /api/v1/governance/propose`.
pub async fn propose(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let fields = json_object(req, state.config.max_body_bytes).await?;
    let proposal = parse(&fields)?;
    let identity = delegated::identity(state, access, &proposal.agent_id)?;
    let audit_id = delegated::new_id("prop-")?;
    let call_id = json!(audit_id);
    let answered = delegated::decide(
        state,
        Ask {
            identity: &identity,
            call_id: &call_id,
            tool: &proposal.capability,
            args: &proposal.args,
            context: &proposal.context,
        },
    )
    .await;
    let (verdict, reason, policy_ids, approval) = match &answered {
        Answered::Decided(v) => {
            let (verdict, reason) = verdict_of(v, state.enforce);
            let policy_ids = match &v.manifest {
                Some(live) => json!([format!("manifest:{}", live.sha256)]),
                None => json!([]),
            };
            (verdict, reason, policy_ids, v.approval.as_ref())
        }
        Answered::Unrecorded { error, fail_open } => {
            let code = Answered::unrecorded_reason(error);
            let verdict = if *fail_open { "ALLOW" } else { "DENY" };
            (verdict, format!("{code}: {error}"), json!([]), None)
        }
    };
    state
        .metrics
        .decision_api
        .with_label_values(&["propose", &verdict.to_ascii_lowercase()])
        .inc();
    let risk_score = match verdict {
        "ALLOW" => 0.0,
        "DENY" => 1.0,
        _ => 0.5,
    };
    let mut answer = json!({
        "verdict": verdict,
        "outcome": verdict,
        "decision_id": audit_id,
        "audit_id": audit_id,
        "audit_ref": format!("{}/{}", identity.tenant_id, identity.session_id),
        "reason": reason,
        "policy_ids": policy_ids,
        "risk_score": risk_score,
        "constraints": {},
        "timestamp": delegated::now_rfc3339(),
    });
    if let Some(ApprovalLink::Requested {
        id,
        approvals_required,
        ..
    }) = approval
    {
        answer["approval_id"] = json!(id);
        answer["approvals_required"] = json!(approvals_required);
    }
    Ok(json_response(StatusCode::OK, &answer))
}

/// `GET /api/v1/health`: the sidecar answers (readiness is `/readyz`).
pub fn health() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "service": "aegis-proxy", "version": env!("CARGO_PKG_VERSION")}),
    )
}

/// The verdict and its reason for a recorded decision.
fn verdict_of(verdict: &Verdict, enforce: bool) -> (&'static str, String) {
    let decision = &verdict.decision;
    let why = format!("{}: {}", decision.reason.as_str(), decision.explanation());
    if verdict.forwards(enforce) {
        // The client runs what it proposed: a rewrite cannot reach it.
        if verdict.sanitized.is_some() && enforce {
            return (
                "DENY",
                "SANITIZE_REFUSED: policy.sanitize rewrites this call's arguments, \
                 and propose has no way to hand the rewrite back"
                    .to_owned(),
            );
        }
        return ("ALLOW", why);
    }
    match (&verdict.approval, decision.outcome) {
        (
            Some(ApprovalLink::Requested {
                approvals_required, ..
            }),
            Outcome::RequireApproval,
        ) => (
            if *approvals_required >= 2 {
                "ESCALATE"
            } else {
                "REQUIRE_CONFIRMATION"
            },
            why,
        ),
        _ => ("DENY", why),
    }
}

fn parse(fields: &Map<String, Value>) -> Result<Proposal, ApiError> {
    if fields.contains_key("action") {
        delegated::only_members(fields, &["actor", "action", "context"], "")?;
        let actor = delegated::object_member(fields, "actor", "")?;
        let agent_id = match actor {
            Some(actor) => delegated::id_member(actor, "id", "actor.")?.to_owned(),
            None => String::from("anonymous"),
        };
        let action = delegated::object_member(fields, "action", "")?
            .ok_or_else(|| ApiError::BadRequest("action must be an object".into()))?;
        delegated::only_members(action, &["capability", "parameters", "resource"], "action.")?;
        let capability = delegated::id_member(action, "capability", "action.")?;
        let args = arguments(action, "action.")?;
        let context = delegated::object_member(fields, "context", "")?;
        return Ok(Proposal {
            agent_id: agent_id.clone(),
            capability: capability.to_owned(),
            args,
            context: json!({
                "api": "propose",
                "actor": actor,
                "context": context,
            }),
        });
    }
    delegated::only_members(
        fields,
        &["capability", "resource", "parameters", "agent_id"],
        "",
    )?;
    let capability = delegated::id_member(fields, "capability", "")?;
    let agent_id = match fields.get("agent_id") {
        None | Some(Value::Null) => "anonymous",
        Some(_) => delegated::id_member(fields, "agent_id", "")?,
    };
    Ok(Proposal {
        agent_id: agent_id.to_owned(),
        capability: capability.to_owned(),
        args: arguments(fields, "")?,
        context: json!({"api": "propose", "agent_id": agent_id}),
    })
}

/// `parameters` (an object, default `{}`), with `resource` as the member
/// `resource` when given.
fn arguments(fields: &Map<String, Value>, at: &str) -> Result<Value, ApiError> {
    let mut args = delegated::object_member(fields, "parameters", at)?
        .cloned()
        .unwrap_or_default();
    match fields.get("resource") {
        None | Some(Value::Null) => {}
        Some(resource) => match args.get("resource") {
            Some(same) if same == resource => {}
            Some(_) => {
                return Err(ApiError::BadRequest(format!(
                    "{at}resource and {at}parameters.resource differ: which one would run?"
                )));
            }
            None => {
                args.insert("resource".into(), resource.clone());
            }
        },
    }
    Ok(Value::Object(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: Value) -> Result<Proposal, String> {
        match v {
            Value::Object(map) => parse(&map).map_err(|e| e.to_string()),
            _ => Err("not an object".into()),
        }
    }

    #[test]
    fn both_shapes_parse_to_a_tool_and_its_arguments() {
        let flat =
            parsed(json!({"capability": "db.query", "resource": "users", "parameters": {"q": 1}}));
        assert!(matches!(&flat, Ok(p) if p.capability == "db.query"
            && p.args == json!({"q": 1, "resource": "users"}) && p.agent_id == "anonymous"));
        let nested = parsed(json!({
            "actor": {"id": "agent-001", "type": "ai-agent"},
            "action": {"capability": "database.query", "parameters": {"query": "SELECT 1"}},
            "context": {"session_id": "sess_abc123"},
        }));
        assert!(matches!(&nested, Ok(p) if p.agent_id == "agent-001"
            && p.args == json!({"query": "SELECT 1"})
            && p.context["context"]["session_id"] == "sess_abc123"));
    }

    #[test]
    fn bad_proposals_are_refused_with_their_paths() {
        let err = |v| parsed(v).err().unwrap_or_default();
        assert!(err(json!({"parameters": {}})).contains("capability is required"));
        assert!(
            err(json!({"capability": "t", "parameters": []}))
                .contains("parameters must be an object")
        );
        assert!(
            err(json!({"capability": "t", "resource": "a", "parameters": {"resource": "b"}}))
                .contains("differ")
        );
        assert!(err(json!({"capability": "t", "extra": 1})).contains("unknown member extra"));
        assert!(
            err(json!({"action": {"parameters": {}}})).contains("action.capability is required")
        );
        assert!(
            err(json!({"actor": {"id": 3}, "action": {"capability": "t"}}))
                .contains("actor.id must be")
        );
    }
}

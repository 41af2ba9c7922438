//! `POST /v1/policy/decide` — the Aegis decide API.
//!
//! Body: `{event, snapshot?, manifest?, tenant_id?, session_id?}`. The
//! decision is made here, by the sidecar's engine: with `snapshot` absent but
//! `tenant_id` and `session_id` given, on that session's live state (a session
//! with no envelopes has consumed nothing). Without a `manifest`, on the live
//! manifest (the answer then also carries `manifest_sha256` and
//! `manifest_generation`, which Aegis clients ignore); with none loaded, a
//! fail-closed `deny`/`MANIFEST_UNAVAILABLE`. Decisions on the live manifest
//! for a named client-recorded session take tokens from that session's
//! buckets (`policy.rate_limits`, [`crate::limits`]); a sidecar-owned
//! session's buckets are the inline proxy's, and a decision on one here
//! only reads its state.

use std::time::Instant;

use aegis_ledger::{SessionEntry, SessionKind, now_unix_ms};
use aegis_policy::conformance::{evaluate, evaluate_with};
use aegis_policy::{Decision, Outcome, Reason};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::error::json_response;
use super::request::json_body;
use super::{Access, AdminState, ApiError};

pub async fn decide(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = json_body(req, state.config.max_body_bytes).await?;
    let mut request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let Some(fields) = request.as_object_mut() else {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    };
    if !fields.get("event").is_some_and(Value::is_object) {
        return Err(ApiError::BadRequest(
            "event is required and must be an object".into(),
        ));
    }
    let session = match (text(fields, "tenant_id")?, text(fields, "session_id")?) {
        (Some(tenant), Some(session)) => Some((tenant, session)),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "tenant_id and session_id go together (to decide on that session's live state)"
                    .into(),
            ));
        }
    };
    if let Some((tenant, _)) = &session {
        access.tenant(tenant)?;
    }
    // A sidecar-owned session's rate-limit tokens are the inline proxy's to
    // take: deciding on one here is a read.
    let mut takes_tokens = session.is_some();
    if !fields.contains_key("snapshot") {
        let snapshot = match &session {
            Some((tenant, id)) => {
                let (snapshot, kind) = live_snapshot(state, tenant.clone(), id.clone()).await?;
                takes_tokens = kind != Some(SessionKind::Sidecar);
                snapshot
            }
            None => Value::Object(Default::default()),
        };
        fields.insert("snapshot".into(), snapshot);
    } else if let Some((tenant, id)) = &session {
        takes_tokens =
            session_kind(state, tenant.clone(), id.clone()).await? != Some(SessionKind::Sidecar);
    }
    let started = Instant::now();
    let mut live = None;
    let decision = if fields.contains_key("manifest") {
        evaluate(&request).map_err(ApiError::BadRequest)?
    } else if let Some(loaded) = state.manifests.current() {
        // A named session's calls count against its rate limits.
        let limiter = session
            .as_ref()
            .filter(|_| takes_tokens)
            .and_then(|(tenant, id)| state.limiters.get(tenant, id, &loaded));
        let rate = limiter.as_deref().map(|l| (l, Instant::now()));
        let decision =
            evaluate_with(&request, &loaded.compiled, rate).map_err(ApiError::BadRequest)?;
        live = Some(loaded);
        decision
    } else {
        Decision {
            outcome: Outcome::Deny,
            reason: Reason::ManifestUnavailable,
            constraints: None,
        }
    };
    state
        .metrics
        .record_decision(decision.outcome, decision.reason, started.elapsed());
    let constraints = match decision.constraints {
        Some(c) => json!({"max_output_bytes": c.max_output_bytes, "timeout_ms": c.timeout_ms}),
        None => json!({}),
    };
    let mut answer = json!({
        "outcome": decision.outcome.as_str(),
        "reason": decision.reason.as_str(),
        "constraints": constraints,
    });
    if let Some(live) = live {
        answer["manifest_sha256"] = json!(live.sha256);
        answer["manifest_generation"] = json!(live.generation);
    }
    Ok(json_response(StatusCode::OK, &answer))
}

fn text(fields: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{name} must be a non-empty string"
        ))),
    }
}

/// The session's snapshot and kind, from memory, else rebuilt from the
/// ledger; a session with no envelopes yet is fresh and of no kind.
async fn live_snapshot(
    state: &AdminState,
    tenant: String,
    session: String,
) -> Result<(Value, Option<SessionKind>), ApiError> {
    let now = now_unix_ms();
    let entry = session_entry(state, tenant, session).await?;
    let kind = entry.as_ref().map(|e| e.kind);
    let snapshot = entry
        .map(|entry| entry.state.snapshot(now))
        .unwrap_or_default();
    let snapshot = serde_json::to_value(snapshot).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((snapshot, kind))
}

/// The session's kind; `None` for a session with no envelopes.
async fn session_kind(
    state: &AdminState,
    tenant: String,
    session: String,
) -> Result<Option<SessionKind>, ApiError> {
    Ok(session_entry(state, tenant, session).await?.map(|e| e.kind))
}

async fn session_entry(
    state: &AdminState,
    tenant: String,
    session: String,
) -> Result<Option<SessionEntry>, ApiError> {
    if let Some(entry) = state.ledger.sessions().entry(&tenant, &session) {
        return Ok(Some(entry));
    }
    let reader = state.reader.clone();
    Ok(
        tokio::task::spawn_blocking(move || reader.load_session(&tenant, &session))
            .await
            .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))??,
    )
}

//! `GET /v1/sessions/{id}/snapshot`, `GET /v1/sessions/{id}/verify` and
//! `POST /v1/sessions/{id}/sanitizers`.

use aegis_ledger::session::REGISTER_SANITIZER_ACTION;
use aegis_ledger::{AppendRequest, EventType, NewEvent, Origin, Payload, now_unix_ms};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::error::json_response;
use super::request::{json_body, path_segment, query, required};
use super::{Access, AdminState, ApiError};

/// The session named by the path and the `tenant_id` query parameter.
fn session_of<B>(raw_id: &str, req: &Request<B>) -> Result<(String, String), ApiError> {
    let session = path_segment(raw_id)?;
    let tenant = required(&query(req, &["tenant_id"])?, "tenant_id")?;
    Ok((tenant, session))
}

/// The session's Aegis snapshot, from memory, else rebuilt from the ledger,
/// with one key more than Aegis's: `kind`, `"sidecar"` (enforced inline,
/// written only by the sidecar) or `"client"` (recorded through
/// `/v1/events`). A session with no envelopes answers as aegisd does (its
/// state folded over nothing: all zero, untainted), with `kind` `"none"`.
pub async fn snapshot<B>(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
    req: &Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (tenant, session) = session_of(raw_id, req)?;
    access.tenant(&tenant)?;
    super::settled(state).await;
    let now = now_unix_ms();
    let entry = match state.ledger.sessions().entry(&tenant, &session) {
        Some(entry) => Some(entry),
        None => {
            let reader = state.reader.clone();
            let (t, s) = (tenant.clone(), session.clone());
            tokio::task::spawn_blocking(move || reader.load_session(&t, &s))
                .await
                .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))??
        }
    };
    let (snapshot, kind) = match &entry {
        Some(entry) => (entry.state.snapshot(now), entry.kind.as_str()),
        None => (aegis_ledger::session::Snapshot::default(), "none"),
    };
    let mut body = serde_json::to_value(snapshot).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["kind"] = json!(kind);
    Ok(json_response(StatusCode::OK, &body))
}

/// Recomputes the session's chain: `{"valid", "first_bad_seq", "error", "envelopes"}`
/// (Aegis's shape: `first_bad_seq` 0 and `error` "" when valid). A session
/// with no envelopes is an empty chain, valid, as aegisd answers it
/// (`envelopes` 0 says there was nothing to check).
pub async fn verify<B>(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
    req: &Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (tenant, session) = session_of(raw_id, req)?;
    access.tenant(&tenant)?;
    super::settled(state).await;
    let reader = state.reader.clone();
    let (t, s) = (tenant.clone(), session.clone());
    let report = tokio::task::spawn_blocking(move || reader.verify_session(&t, &s))
        .await
        .map_err(|e| ApiError::Internal(format!("verify task failed: {e}")))??;
    let Some(report) = report else {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"valid": true, "first_bad_seq": 0, "error": "", "envelopes": 0}),
        ));
    };
    let (first_bad_seq, error) = report
        .failure
        .as_ref()
        .map_or((0, String::new()), |f| (f.seq, f.reason.clone()));
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "valid": report.is_valid(),
            "first_bad_seq": first_bad_seq,
            "error": error,
            "envelopes": report.envelopes,
        }),
    ))
}

/// Registers a sanitizer key for the session: appends the `POLICY_DECISION`
/// envelope the session reducer understands
/// (`{"action": "register_sanitizer", "sanitizer_key": k}`), so the
/// registration is recorded in the chain like everything else. A tainted
/// session's call to a high-risk sink that carries this key then passes the
/// taint rule. An operator action: into an existing session of either kind
/// (404 for a session with no envelopes). Answers `201 {"seq", "hash"}` once
/// committed.
pub async fn register_sanitizer(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (tenant, session) = session_of(raw_id, &req)?;
    access.tenant(&tenant)?;
    let body = json_body(req, state.config.max_body_bytes).await?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let key = match body.get("sanitizer_key") {
        Some(Value::String(key)) if !key.is_empty() => key.clone(),
        _ => {
            return Err(ApiError::BadRequest(
                "sanitizer_key is required and must be a non-empty string".into(),
            ));
        }
    };
    let user_id = match body.get("user_id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(user)) => user.clone(),
        Some(_) => return Err(ApiError::BadRequest("user_id must be a string".into())),
    };
    let payload = json!({"action": REGISTER_SANITIZER_ACTION, "sanitizer_key": key});
    let appended = state
        .ledger
        .append(
            AppendRequest::at_head(NewEvent {
                tenant_id: tenant,
                user_id,
                session_id: session,
                ts_unix_ms: now_unix_ms(),
                event_type: EventType::PolicyDecision,
                payload: Payload::from_value(payload),
            })
            .by(Origin::Operator),
        )
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"seq": appended.seq, "hash": appended.hash.to_hex()}),
    ))
}

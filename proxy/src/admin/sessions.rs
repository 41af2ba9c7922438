//! `GET /v1/sessions/{id}/snapshot` and `GET /v1/sessions/{id}/verify`.

use aegis_ledger::now_unix_ms;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::error::json_response;
use super::request::{path_segment, query, required};
use super::{AdminState, ApiError};

/// The session named by the path and the `tenant_id` query parameter.
fn session_of<B>(raw_id: &str, req: &Request<B>) -> Result<(String, String), ApiError> {
    let session = path_segment(raw_id)?;
    let tenant = required(&query(req, &["tenant_id"])?, "tenant_id")?;
    Ok((tenant, session))
}

fn unknown(tenant: &str, session: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no envelopes for tenant {tenant:?} session {session:?}"
    ))
}

/// The session's Aegis snapshot, from memory, else rebuilt from the ledger.
pub async fn snapshot<B>(
    state: &AdminState,
    raw_id: &str,
    req: &Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (tenant, session) = session_of(raw_id, req)?;
    let now = now_unix_ms();
    let snapshot = match state.ledger.sessions().snapshot(&tenant, &session, now) {
        Some(snapshot) => snapshot,
        None => {
            let reader = state.reader.clone();
            let (t, s) = (tenant.clone(), session.clone());
            tokio::task::spawn_blocking(move || reader.load_session(&t, &s))
                .await
                .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))??
                .ok_or_else(|| unknown(&tenant, &session))?
                .state
                .snapshot(now)
        }
    };
    let body = serde_json::to_value(&snapshot).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &body))
}

/// Recomputes the session's chain: `{"valid", "first_bad_seq", "error", "envelopes"}`
/// (Aegis's shape: `first_bad_seq` 0 and `error` "" when valid).
pub async fn verify<B>(
    state: &AdminState,
    raw_id: &str,
    req: &Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (tenant, session) = session_of(raw_id, req)?;
    let reader = state.reader.clone();
    let (t, s) = (tenant.clone(), session.clone());
    let report = tokio::task::spawn_blocking(move || reader.verify_session(&t, &s))
        .await
        .map_err(|e| ApiError::Internal(format!("verify task failed: {e}")))??
        .ok_or_else(|| unknown(&tenant, &session))?;
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

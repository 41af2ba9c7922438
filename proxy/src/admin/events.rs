//! `POST /v1/events` and `GET /v1/events` — the Aegis event API.

use aegis_ledger::{ListQuery, wire};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::error::{json_bytes_response, json_response};
use super::request::{json_body, query, required};
use super::{Access, AdminState, ApiError};

/// Appends one envelope; answers `201 {"seq", "hash"}` once it is committed.
pub async fn append(
    state: &AdminState,
    access: &Access,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = json_body(req, state.config.max_body_bytes).await?;
    let request = wire::parse_append(&body).map_err(|e| ApiError::BadRequest(e.0))?;
    access.tenant(&request.event.tenant_id)?;
    let appended = state.ledger.append(request).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"seq": appended.seq, "hash": appended.hash.to_hex()}),
    ))
}

const LIST_PARAMS: &[&str] = &[
    "tenant_id",
    "session_id",
    "event_type",
    "tool_name",
    "limit",
    "page_token",
];

/// One page of envelopes in wire form: `{"Events": [...], "NextToken": "..."}`
/// (the keys the Aegis SDK reads; `NextToken` is `""` on the last page).
pub async fn list<B>(
    state: &AdminState,
    access: &Access,
    req: &Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let params = query(req, LIST_PARAMS)?;
    let tenant_id = required(&params, "tenant_id")?;
    access.tenant(&tenant_id)?;
    let limit = match params.get("limit") {
        None => state.config.list_limit_default,
        Some(raw) => match raw.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a positive integer, got {raw:?}"
                )));
            }
            // Larger pages are capped, not refused: the caller pages on.
            Ok(n) => n.min(state.config.list_limit_max),
        },
    };
    let query = ListQuery {
        tenant_id,
        session_id: params.get("session_id").filter(|s| !s.is_empty()).cloned(),
        event_type: params.get("event_type").filter(|s| !s.is_empty()).cloned(),
        tool_name: params.get("tool_name").filter(|s| !s.is_empty()).cloned(),
        limit,
        page_token: params.get("page_token").filter(|s| !s.is_empty()).cloned(),
    };
    super::settled(state).await;
    let reader = state.reader.clone();
    let page = tokio::task::spawn_blocking(move || reader.list(&query))
        .await
        .map_err(|e| ApiError::Internal(format!("listing task failed: {e}")))??;

    let mut out = Vec::with_capacity(64 + page.envelopes.len() * 512);
    out.extend_from_slice(b"{\"Events\":[");
    for (i, envelope) in page.envelopes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(envelope.to_wire_json().get().as_bytes());
    }
    out.extend_from_slice(b"],\"NextToken\":");
    out.extend_from_slice(
        json!(page.next_page_token.unwrap_or_default())
            .to_string()
            .as_bytes(),
    );
    out.push(b'}');
    Ok(json_bytes_response(StatusCode::OK, Bytes::from(out)))
}

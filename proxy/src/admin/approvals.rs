//! `/v1/approvals`: the humans' side of approvals (`README.md`,
//! "Approvals"). Every route needs the `operator` role, so the governed
//! agent — whose credential, if it has one, is at most `ingest` — can never
//! see, approve or deny a call of its own.
//!
//! - `GET /v1/approvals?state=&tenant_id=&session_id=&limit=&page_token=`
//! - `GET /v1/approvals/{id}`
//! - `POST /v1/approvals/{id}/approve` and `/deny`, body `{"reason": "..."}`
//!   (optional): records the caller's vote as `APPROVAL_DECIDED` in the
//!   approval's session, with the caller's identity as the approver. The
//!   ledger's writer checks the vote against the approval's rules in the
//!   vote's own commit (one vote per identity, only while pending); a vote
//!   that raced another is made again on the new state.

use aegis_ledger::approval::{MAX_REASON_LEN, field};
use aegis_ledger::{
    AppendError, AppendRequest, Approval, ApprovalQuery, ApprovalState, EventType, NewEvent,
    Origin, Payload, VoteKind, now_unix_ms,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::error::json_response;
use super::request::{json_body, query};
use super::{Access, AdminState, ApiError};
pub use crate::gate::approval::to_json;

/// Votes made again when another vote or the expiry raced them.
const VOTE_ATTEMPTS: usize = 3;

/// `GET /v1/approvals`.
pub async fn list(
    state: &AdminState,
    access: &Access,
    req: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let params = query(
        req,
        &["state", "tenant_id", "session_id", "limit", "page_token"],
    )?;
    let state_filter = match params.get("state") {
        None => None,
        Some(text) => Some(ApprovalState::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state must be one of pending, approved, denied, expired, consumed; got {text:?}"
            ))
        })?),
    };
    let tenant_id = match (params.get("tenant_id"), access.tenants()) {
        (Some(tenant), _) => {
            access.tenant(tenant)?;
            Some(tenant.clone())
        }
        (None, None) => None,
        (None, Some([only])) => Some(only.clone()),
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(
                "tenant_id is required: this credential may act for some tenants only".into(),
            ));
        }
    };
    let session_id = params.get("session_id").cloned();
    if session_id.is_some() && tenant_id.is_none() {
        return Err(ApiError::BadRequest(
            "session_id needs tenant_id (session ids are per tenant)".into(),
        ));
    }
    let limit = match params.get("limit") {
        None => state.config.list_limit_default,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be a positive integer, got {text:?}"))
            })?
            .min(state.config.list_limit_max),
    };
    let after = match params.get("page_token") {
        None => None,
        Some(text) => Some(text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "page_token {text:?} is not one this endpoint returned"
            ))
        })?),
    };
    let query = ApprovalQuery {
        state: state_filter,
        tenant_id,
        session_id,
        after,
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
    };
    let reader = state.reader.clone();
    let (page, next) = tokio::task::spawn_blocking(move || reader.approvals(&query))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let now = now_unix_ms();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "approvals": page.iter().map(|a| to_json(a, now)).collect::<Vec<_>>(),
            "next_page_token": next.map(|n| n.to_string()),
        }),
    ))
}

/// `GET /v1/approvals/{id}`.
pub async fn show(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let approval = find(state, access, raw_id).await?;
    Ok(json_response(
        StatusCode::OK,
        &to_json(&approval, now_unix_ms()),
    ))
}

/// `POST /v1/approvals/{id}/approve` or `/deny`.
pub async fn vote(
    state: &AdminState,
    access: &Access,
    raw_id: &str,
    decision: VoteKind,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let approver = access.identity().to_owned();
    if approver.is_empty() {
        return Err(ApiError::Auth(super::AuthError::Forbidden(
            "deciding an approval needs an identified operator credential".into(),
        )));
    }
    let reason = reason(&json_body(req, state.config.max_body_bytes).await?)?;
    let mut last = None;
    for _ in 0..VOTE_ATTEMPTS {
        let approval = find(state, access, raw_id).await?;
        let now = now_unix_ms();
        let leads_to = approval
            .vote(&approver, decision, now)
            .map_err(|e| ApiError::Append(AppendError::Approval(e.to_string())))?;
        let approvals = approval.approvals() + u32::from(decision == VoteKind::Approve);
        let payload = json!({
            field::APPROVAL_ID: approval.id,
            field::DECISION: decision.as_str(),
            field::APPROVER: approver,
            field::REASON: reason,
            field::STATE: leads_to.as_str(),
            field::TOOL_NAME: approval.tool_name,
            field::PROPOSAL_SEQ: approval.proposal_seq,
            "approvals": approvals,
            field::APPROVALS_REQUIRED: approval.approvals_required,
        });
        let appended = state
            .ledger
            .append(
                AppendRequest::at_head(NewEvent {
                    tenant_id: approval.tenant_id.clone(),
                    user_id: String::new(),
                    session_id: approval.session_id.clone(),
                    ts_unix_ms: now,
                    event_type: EventType::ApprovalDecided,
                    payload: Payload::from_value(payload),
                })
                .by(Origin::Operator),
            )
            .await;
        match appended {
            Ok(appended) => {
                // A held call looks again (its progress names the votes).
                state.waiters.wake(&approval.id);
                if leads_to != ApprovalState::Pending {
                    state
                        .webhook
                        .send(crate::webhook::Event::Decided, &approval.id);
                    let m = &state.metrics.approvals;
                    m.decided.with_label_values(&[leads_to.as_str()]).inc();
                    let waited_ms = now.saturating_sub(approval.requested_unix_ms).max(0);
                    m.decision_seconds.observe(waited_ms as f64 / 1000.0);
                }
                tracing::info!(
                    approval_id = %approval.id,
                    tenant = %approval.tenant_id,
                    session = %approval.session_id,
                    tool = %approval.tool_name,
                    approver = %approver,
                    vote = decision.as_str(),
                    state = leads_to.as_str(),
                    "approval vote recorded"
                );
                let updated = find(state, access, raw_id).await?;
                let mut body = to_json(&updated, now_unix_ms());
                body["seq"] = json!(appended.seq);
                return Ok(json_response(StatusCode::OK, &body));
            }
            // Another vote, or the expiry, got there first: look again.
            Err(e @ AppendError::Approval(_)) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(
        || ApiError::Internal("no vote attempt was made".into()),
        ApiError::Append,
    ))
}

/// The approval `raw_id` names, if this caller may see it.
async fn find(state: &AdminState, access: &Access, raw_id: &str) -> Result<Approval, ApiError> {
    let id = approval_id(raw_id)?;
    let reader = state.reader.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || reader.approval(&lookup))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let approval = found.ok_or_else(|| ApiError::NotFound(format!("no approval {id}")))?;
    access.tenant(&approval.tenant_id)?;
    Ok(approval)
}

fn approval_id(raw: &str) -> Result<String, ApiError> {
    let valid = !raw.is_empty()
        && raw.len() <= aegis_ledger::approval::MAX_ID_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "{raw:?} is not an approval id (letters, digits, - and _, at most {} bytes)",
            aegis_ledger::approval::MAX_ID_LEN
        )))
    }
}

/// The vote's reason: `{}` or `{"reason": "..."}` (at most
/// `MAX_REASON_LEN` bytes); anything else is refused.
fn reason(body: &[u8]) -> Result<String, ApiError> {
    if body.is_empty() {
        return Ok(String::new());
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;
    let value = aegis_ledger::canon::parse(text)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(members) = value else {
        return Err(ApiError::BadRequest(
            "the body must be an object: {\"reason\": \"...\"}".into(),
        ));
    };
    let mut reason = String::new();
    for (name, value) in members {
        match (name.as_str(), value) {
            ("reason", Value::String(text)) if text.len() <= MAX_REASON_LEN => reason = text,
            ("reason", Value::String(_)) => {
                return Err(ApiError::BadRequest(format!(
                    "reason is longer than {MAX_REASON_LEN} bytes"
                )));
            }
            ("reason", Value::Null) => {}
            ("reason", _) => return Err(ApiError::BadRequest("reason must be a string".into())),
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown member {other:?} (expected reason)"
                )));
            }
        }
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_vote_body_is_an_optional_reason_and_nothing_else() {
        assert_eq!(reason(b"{}").unwrap(), "");
        assert_eq!(reason(b"").unwrap(), "");
        assert_eq!(
            reason(br#"{"reason": "looks fine"}"#).unwrap(),
            "looks fine"
        );
        assert_eq!(reason(br#"{"reason": null}"#).unwrap(), "");
        for bad in [
            &br#"{"reason": 1}"#[..],
            br#"{"reason": "a", "reason": "b"}"#,
            br#"{"reasons": "a"}"#,
            br#"["a"]"#,
            b"not json",
            b"\xff",
        ] {
            assert!(
                matches!(reason(bad), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(MAX_REASON_LEN + 1));
        assert!(reason(long.as_bytes()).is_err());
    }

    #[test]
    fn approval_ids_are_plain() {
        assert_eq!(approval_id("appr-0123abcd").unwrap(), "appr-0123abcd");
        for bad in ["", "a/b", "a b", "é", &"a".repeat(129)] {
            assert!(approval_id(bad).is_err(), "{bad:?}");
        }
    }
}

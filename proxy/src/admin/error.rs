//! The one place where errors become HTTP answers. Handlers return
//! [`ApiError`]; the exhaustive match below picks every status code, so a new
//! variant does not compile until someone decides what the client sees.

use aegis_ledger::{AppendError, StoreError};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::auth::AuthError;

/// Sent with every 401, as RFC 6750 asks.
const WWW_AUTHENTICATE: &str = "Bearer realm=\"aegis-proxy\"";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("Content-Type must be application/json, got {0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Append(#[from] AppendError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("request did not complete within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Unavailable(String),
    /// Well-formed but refused (422): an idempotency key reused with
    /// another body.
    #[error("{0}")]
    Unprocessable(String),
    /// In conflict with a request still in flight (409).
    #[error("{0}")]
    Conflict(String),
    /// No, a bad, or an insufficient credential.
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status code and JSON body the client gets.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let message = self.to_string();
        let (status, extra) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, None),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
            ApiError::Append(e) => match e {
                AppendError::Invalid(_) => (StatusCode::BAD_REQUEST, None),
                AppendError::HashMismatch {
                    seq,
                    expected,
                    received,
                } => (
                    StatusCode::BAD_REQUEST,
                    Some(
                        json!({"seq": seq, "expected_hash": expected.to_hex(), "received_hash": received.to_hex()}),
                    ),
                ),
                AppendError::Conflict { head, .. } => (
                    StatusCode::CONFLICT,
                    Some(json!({
                        "head_seq": head.map(|h| h.seq),
                        "head_hash": head.map(|h| h.hash.to_hex()),
                        "next_seq": head.map_or(0, |h| h.seq + 1),
                    })),
                ),
                AppendError::WrongKind {
                    kind: Some(kind), ..
                } => (
                    StatusCode::CONFLICT,
                    Some(json!({"session_kind": kind.as_str()})),
                ),
                AppendError::WrongKind { kind: None, .. } => (StatusCode::NOT_FOUND, None),
                AppendError::Approval(_) => (StatusCode::CONFLICT, None),
                AppendError::Storage(_) | AppendError::Closed => {
                    (StatusCode::SERVICE_UNAVAILABLE, None)
                }
            },
            ApiError::Store(e) => match e {
                StoreError::BadQuery(_) => (StatusCode::BAD_REQUEST, None),
                StoreError::Sqlite(_)
                | StoreError::NotALedger(_)
                | StoreError::SchemaTooNew { .. }
                | StoreError::Open { .. }
                | StoreError::Closed => (StatusCode::SERVICE_UNAVAILABLE, None),
            },
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            ApiError::Auth(e) => match e {
                AuthError::Missing(_) | AuthError::Invalid(_) => (StatusCode::UNAUTHORIZED, None),
                AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            },
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %message, "request failed");
        }
        let mut body = json!({ "error": message });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (extra, &mut body) {
            map.extend(extra);
        }
        let mut response = json_response(status, &body);
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        response
    }
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    json_bytes_response(status, Bytes::from(body.to_string()))
}

/// A JSON answer from already-serialised bytes.
pub fn json_bytes_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aegis_ledger::{Digest, Head};

    fn body(r: Response<Full<Bytes>>) -> (StatusCode, Value) {
        use http_body_util::BodyExt;
        let status = r.status();
        let bytes = block_on(r.into_body().collect()).unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_conflict_carries_the_head() {
        let head = Head {
            seq: 4,
            hash: Digest([1; 32]),
        };
        let (status, v) = body(
            ApiError::from(AppendError::Conflict {
                reason: "x".into(),
                head: Some(head),
            })
            .into_response(),
        );
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(v["head_seq"], 4);
        assert_eq!(v["next_seq"], 5);
        assert_eq!(v["head_hash"], "01".repeat(32));
        assert!(v["error"].as_str().unwrap().contains("chain conflict"));
    }

    #[test]
    fn a_hash_mismatch_names_both_hashes() {
        let e = AppendError::HashMismatch {
            seq: 1,
            expected: Digest([2; 32]),
            received: Digest([3; 32]),
        };
        let (status, v) = body(ApiError::from(e).into_response());
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["expected_hash"], "02".repeat(32));
        assert_eq!(v["received_hash"], "03".repeat(32));
        assert!(v["error"].as_str().unwrap().contains(&"02".repeat(32)));
    }
}

//! Every way an egress request can fail, and the one place each becomes an
//! answer: 400 for what is not a proxy request, 407 for a missing or bad
//! JWT, 403 with the reason code for a refusal, 502/504 when the
//! destination cannot be reached, 503 when the ledger cannot record.

use std::fmt;

use aegis_policy::Reason;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::EgressBody;
use crate::gate::GateError;
use crate::identity::IdentityError;

/// Names the reason code of a 403, for clients that read headers.
pub const REASON_HEADER: &str = "x-aegis-reason";

/// Why an egress request got no tunnel or forwarded answer.
#[derive(Debug)]
pub enum EgressError {
    /// Not a proxy request, or a target that does not parse.
    BadRequest(String),
    /// Who the request acts for could not be established (`mcp.identity`):
    /// nothing was decided or recorded.
    Identity(IdentityError),
    /// Refused and recorded: by the policy, the port check or the SSRF guard.
    Denied { reason: Reason, message: String },
    /// The attempt could not be recorded (the ledger is failing): refused.
    Ledger(GateError),
    /// Allowed, but the name did not resolve or the destination did not
    /// accept the connection or answer.
    Unreachable(String),
    /// Allowed, but the destination did not answer in time.
    Timeout(String),
}

impl EgressError {
    /// `(outcome, reason)` metric labels, from closed sets.
    pub fn labels(&self) -> (&'static str, &'static str) {
        match self {
            EgressError::BadRequest(_) => ("error", "bad_request"),
            EgressError::Identity(_) => ("error", "identity"),
            EgressError::Denied { reason, .. } => ("deny", reason.as_str()),
            EgressError::Ledger(e) => ("error", e.kind()),
            EgressError::Unreachable(_) => ("error", "unreachable"),
            EgressError::Timeout(_) => ("error", "timeout"),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            EgressError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EgressError::Identity(e) if e.failure.is_authentication() => {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED
            }
            EgressError::Identity(_) => StatusCode::FORBIDDEN,
            EgressError::Denied { .. } => StatusCode::FORBIDDEN,
            EgressError::Ledger(GateError::Busy(_)) => StatusCode::TOO_MANY_REQUESTS,
            EgressError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
            EgressError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            EgressError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressError::BadRequest(message) => write!(f, "bad proxy request: {message}"),
            // The reason only: the detail stays in the sidecar's log.
            EgressError::Identity(e) => write!(f, "identity refused: {}", e.failure.as_str()),
            EgressError::Denied { reason, message } => write!(f, "{}: {message}", reason.as_str()),
            EgressError::Ledger(e) => write!(f, "refused: {e}"),
            EgressError::Unreachable(message) => write!(f, "unreachable: {message}"),
            EgressError::Timeout(message) => write!(f, "timed out: {message}"),
        }
    }
}

/// The answer for `error`: a one-line plain-text body.
pub fn respond(error: &EgressError) -> Response<EgressBody> {
    let mut response = text(error.status(), format!("{error}\n"));
    match error {
        EgressError::Denied { reason, .. } => {
            response
                .headers_mut()
                .insert(REASON_HEADER, HeaderValue::from_static(reason.as_str()));
        }
        // Both ways a proxy URL can carry the token (RFC 6750 §3, RFC 7617).
        EgressError::Identity(e) if e.failure.is_authentication() => {
            let headers = response.headers_mut();
            headers.append(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            headers.append(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"aegis-proxy\""),
            );
        }
        _ => {}
    }
    response
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: String) -> Response<EgressBody> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A fixed body in the proxy's body type.
pub fn full(bytes: Bytes) -> EgressBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_its_reason_code_first() {
        let error = EgressError::Denied {
            reason: Reason::EgressDeny,
            message: "example.org is not in the manifest's network allowlist".into(),
        };
        let response = respond(&error);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[REASON_HEADER], "EGRESS_DENY");
        assert_eq!(
            error.to_string(),
            "EGRESS_DENY: example.org is not in the manifest's network allowlist"
        );
        assert_eq!(error.labels(), ("deny", "EGRESS_DENY"));
    }

    #[test]
    fn a_bad_token_asks_for_proxy_authentication() {
        use crate::identity::Failure;
        let error = EgressError::Identity(IdentityError::new(Failure::Expired, "old"));
        let response = respond(&error);
        assert_eq!(response.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        let challenges: Vec<_> = response
            .headers()
            .get_all(header::PROXY_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(
            challenges,
            [
                "Bearer error=\"invalid_token\"",
                "Basic realm=\"aegis-proxy\""
            ]
        );
        assert_eq!(error.to_string(), "identity refused: expired");
        let error = EgressError::Identity(IdentityError::new(Failure::NoSan, "none"));
        assert_eq!(respond(&error).status(), StatusCode::FORBIDDEN);
    }
}

//! Every way an MCP request or one of its calls fails, and the one place
//! each becomes an answer: its HTTP status, JSON-RPC code, metric label
//! and the words the agent reads (never the upstream's URL, address or
//! error chain: those are internal topology, kept in the log and in the
//! ledger's `ERROR_RAISED`).
//!
//! A failure of the whole request is answered with [`Failure::response`];
//! one of a single call inside a POST (a malformed call, a call the ledger
//! could not record, an upstream that failed it) becomes that call's
//! JSON-RPC error, [`Failure::answer`], in an answer that is otherwise the
//! upstream's (HTTP 200).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::answers::{self, Outgoing};
use super::body::ProxyBody;
use super::jsonrpc::{Id, ParseError, codes};
use crate::front_door::Refusal;
use crate::gate::GateError;
use crate::identity::IdentityError;

/// How the upstream failed a request it was sent (the `kind` of its
/// `ERROR_RAISED` and of `aegis_mcp_tool_results_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    Unreachable,
    Timeout,
    /// An HTTP error status.
    Status,
    /// Not a JSON-RPC answer, compressed, or not JSON or SSE.
    Malformed,
    /// The answer did not include this request's answer.
    NoAnswer,
    /// The request could not be built for the upstream.
    BadRequest,
    /// Over `mcp.limits.max_response_bytes`.
    TooLarge,
    /// The agent hung up before the answer.
    AgentGone,
}

impl UpstreamKind {
    pub const ALL: [UpstreamKind; 8] = [
        UpstreamKind::Unreachable,
        UpstreamKind::Timeout,
        UpstreamKind::Status,
        UpstreamKind::Malformed,
        UpstreamKind::NoAnswer,
        UpstreamKind::BadRequest,
        UpstreamKind::TooLarge,
        UpstreamKind::AgentGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Unreachable => "unreachable",
            UpstreamKind::Timeout => "timeout",
            UpstreamKind::Status => "status",
            UpstreamKind::Malformed => "malformed",
            UpstreamKind::NoAnswer => "no_answer",
            UpstreamKind::BadRequest => "bad_request",
            UpstreamKind::TooLarge => "too_large",
            UpstreamKind::AgentGone => "agent_gone",
        }
    }

    /// What the agent is told.
    pub fn for_agent(self) -> &'static str {
        match self {
            UpstreamKind::Unreachable => "the upstream MCP server is unreachable",
            UpstreamKind::Timeout => "the upstream MCP server did not answer in time",
            UpstreamKind::Status => "the upstream MCP server answered with an HTTP error",
            UpstreamKind::Malformed => {
                "the upstream MCP server's answer is not a valid JSON-RPC message"
            }
            UpstreamKind::NoAnswer => {
                "the upstream MCP server's answer did not include this request's answer"
            }
            UpstreamKind::BadRequest => "the request could not be sent to the upstream MCP server",
            UpstreamKind::TooLarge => {
                "the upstream MCP server's answer exceeds mcp.limits.max_response_bytes"
            }
            UpstreamKind::AgentGone => "the agent closed the connection before the answer",
        }
    }
}

/// Why a request, or one call in it, got no upstream answer.
#[derive(Debug)]
pub enum Failure {
    /// `Host` or `Origin` not allowed (DNS rebinding).
    FrontDoor(Refusal),
    /// No valid credential (401) or a certificate naming no principal (403).
    Identity(IdentityError),
    /// No upstream at this path.
    NoRoute {
        path: String,
        upstreams: Vec<String>,
        default: Option<String>,
    },
    /// `mcp.limits.max_in_flight` POSTs are being handled.
    AtCapacity {
        max_in_flight: usize,
    },
    /// Not GET, POST or DELETE.
    MethodNotAllowed(Method),
    /// A POST whose body is not `application/json`.
    NotJson,
    /// Over `mcp.limits.max_body_bytes`.
    BodyTooLarge {
        limit: usize,
    },
    BodyUnreadable(String),
    BodyTimeout(Duration),
    /// Not JSON-RPC (or duplicate members, colliding ids, ...).
    Malformed(ParseError),
    /// `Mcp-Method` / `Mcp-Name` disagree with the body.
    HeaderMismatch(String),
    /// One `tools/call` with bad params.
    InvalidCall(String),
    /// One `tools/call` the ledger could not record: not run.
    NotRecorded(GateError),
    /// The upstream failed (`upstream` names it for the agent).
    Upstream {
        upstream: String,
        kind: UpstreamKind,
    },
}

impl Failure {
    /// The `reason` label values of `aegis_mcp_refused_requests_total`.
    pub const LABELS: [&'static str; 15] = [
        "front_door",
        "identity",
        "no_route",
        "at_capacity",
        "method_not_allowed",
        "not_json",
        "body_too_large",
        "body_unreadable",
        "body_timeout",
        "malformed",
        "header_mismatch",
        "invalid_call",
        "not_recorded",
        "session_busy",
        "upstream",
    ];

    /// The HTTP status when this failure is the whole answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::FrontDoor(_) => StatusCode::FORBIDDEN,
            Failure::Identity(e) if e.failure.is_authentication() => StatusCode::UNAUTHORIZED,
            Failure::Identity(_) => StatusCode::FORBIDDEN,
            Failure::NoRoute { .. } => StatusCode::NOT_FOUND,
            Failure::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Failure::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Failure::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Failure::BodyUnreadable(_)
            | Failure::Malformed(_)
            | Failure::HeaderMismatch(_)
            | Failure::InvalidCall(_) => StatusCode::BAD_REQUEST,
            Failure::NotRecorded(GateError::Busy(_)) => StatusCode::TOO_MANY_REQUESTS,
            Failure::NotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Upstream {
                kind: UpstreamKind::Timeout,
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            Failure::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Failure::Malformed(e) => e.code,
            Failure::HeaderMismatch(_) => codes::HEADER_MISMATCH,
            Failure::InvalidCall(_) => codes::INVALID_PARAMS,
            Failure::AtCapacity { .. } | Failure::NotRecorded(_) | Failure::Upstream { .. } => {
                codes::INTERNAL_ERROR
            }
            _ => codes::INVALID_REQUEST,
        }
    }

    /// The metric label and log reason: one of [`Failure::LABELS`].
    pub fn label(&self) -> &'static str {
        match self {
            Failure::FrontDoor(_) => "front_door",
            Failure::Identity(_) => "identity",
            Failure::NoRoute { .. } => "no_route",
            Failure::AtCapacity { .. } => "at_capacity",
            Failure::MethodNotAllowed(_) => "method_not_allowed",
            Failure::NotJson => "not_json",
            Failure::BodyTooLarge { .. } => "body_too_large",
            Failure::BodyUnreadable(_) => "body_unreadable",
            Failure::BodyTimeout(_) => "body_timeout",
            Failure::Malformed(_) => "malformed",
            Failure::HeaderMismatch(_) => "header_mismatch",
            Failure::InvalidCall(_) => "invalid_call",
            Failure::NotRecorded(GateError::Busy(_)) => "session_busy",
            Failure::NotRecorded(_) => "not_recorded",
            Failure::Upstream { .. } => "upstream",
        }
    }

    /// What the agent reads.
    pub fn message(&self) -> String {
        match self {
            Failure::FrontDoor(Refusal::Host) => "the Host header names no host this MCP listener serves (mcp.allowed_hosts): refused to prevent DNS rebinding".into(),
            Failure::FrontDoor(Refusal::Origin) => "the Origin header is not an allowed origin (mcp.allowed_origins): refused to prevent DNS rebinding".into(),
            Failure::Identity(e) if e.failure.is_authentication() => {
                "a valid bearer token is required (mcp.identity.jwt)".into()
            }
            Failure::Identity(_) => {
                "the client certificate does not name a principal (mcp.identity.mtls)".into()
            }
            Failure::NoRoute { path, .. } => format!("no such MCP endpoint: {path}"),
            Failure::AtCapacity { .. } => {
                "the sidecar is at its in-flight request limit; retry".into()
            }
            Failure::MethodNotAllowed(method) => {
                format!("{method} is not part of MCP's Streamable HTTP transport")
            }
            Failure::NotJson => "a POST body must be JSON (Content-Type: application/json)".into(),
            Failure::BodyTooLarge { limit } => format!(
                "the request body is larger than {limit} bytes (mcp.limits.max_body_bytes)"
            ),
            Failure::BodyUnreadable(e) => format!("the request body could not be read: {e}"),
            Failure::BodyTimeout(after) => format!(
                "the request body did not arrive within {} s",
                after.as_secs()
            ),
            Failure::Malformed(e) => e.message.clone(),
            Failure::HeaderMismatch(message) | Failure::InvalidCall(message) => message.clone(),
            Failure::NotRecorded(GateError::Busy(busy)) => {
                format!("not run: {busy}")
            }
            Failure::NotRecorded(_) => {
                "the sidecar could not record this tool call, so it was not run".into()
            }
            Failure::Upstream { kind, .. } => {
                format!("the upstream MCP server failed: {}", kind.for_agent())
            }
        }
    }

    /// The JSON-RPC error's `data`.
    fn data(&self) -> Option<Value> {
        match self {
            Failure::FrontDoor(refusal) => Some(json!({"reason": refusal.as_str()})),
            Failure::Identity(e) => Some(json!({"reason": e.failure.as_str()})),
            Failure::NoRoute {
                upstreams, default, ..
            } => Some(json!({"upstreams": upstreams, "default": default})),
            Failure::AtCapacity { max_in_flight } => Some(json!({"max_in_flight": max_in_flight})),
            Failure::NotRecorded(e) => Some(json!({"reason": e.kind(), "detail": e.to_string()})),
            Failure::Upstream { upstream, kind } => {
                Some(json!({"upstream": upstream, "kind": kind.as_str()}))
            }
            _ => None,
        }
    }

    /// The failure as the JSON-RPC error answering `id`.
    pub fn answer(&self, id: Option<&Id>) -> Outgoing {
        answers::error(id, self.code(), &self.message(), self.data())
    }

    /// The failure as the whole answer to a request.
    pub fn response(&self, id: Option<&Id>) -> Response<ProxyBody> {
        let mut response =
            answers::json_response(self.status(), answers::body(vec![self.answer(id)], false));
        let headers = response.headers_mut();
        match self {
            // RFC 6750 §3.
            Failure::Identity(e) if e.failure.is_authentication() => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Failure::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_label_from_the_closed_set() {
        let failures = [
            Failure::FrontDoor(Refusal::Host),
            Failure::NotJson,
            Failure::BodyTooLarge { limit: 1 },
            Failure::BodyUnreadable("x".into()),
            Failure::BodyTimeout(Duration::from_secs(1)),
            Failure::HeaderMismatch("x".into()),
            Failure::InvalidCall("x".into()),
            Failure::MethodNotAllowed(Method::PUT),
            Failure::AtCapacity { max_in_flight: 1 },
            Failure::Upstream {
                upstream: "u".into(),
                kind: UpstreamKind::Timeout,
            },
        ];
        for failure in &failures {
            assert!(Failure::LABELS.contains(&failure.label()), "{failure:?}");
        }
    }

    #[test]
    fn statuses_and_codes() {
        let timeout = Failure::Upstream {
            upstream: "u".into(),
            kind: UpstreamKind::Timeout,
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(timeout.code(), codes::INTERNAL_ERROR);
        let response = Failure::MethodNotAllowed(Method::PUT).response(None);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, POST, DELETE");
        assert_eq!(
            Failure::HeaderMismatch("x".into()).code(),
            codes::HEADER_MISMATCH
        );
    }

    #[test]
    fn the_agent_never_reads_the_upstreams_address() {
        for kind in UpstreamKind::ALL {
            let text = Failure::Upstream {
                upstream: "tools".into(),
                kind,
            }
            .message();
            assert!(!text.contains("http"), "{text}");
        }
    }
}

//! The MCP headers a request carries, and the heads of our answers.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::sync::mpsc;

use crate::config::AnswerMode;
use crate::error::HttpError;
use crate::mcp::Revision;
use crate::sse::AnswerBody;

/// The session header (HTTP header names are case-insensitive).
pub(crate) const MCP_SESSION_ID: &str = "mcp-session-id";
/// The revision a request is made under.
pub(crate) const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Our own: `json` or `sse`, overriding the configured answer mode.
pub(crate) const ANSWER_HEADER: &str = "x-demo-answer";

/// The answer mode: the header's, else the configured one.
pub(crate) fn answer_mode(
    headers: &HeaderMap,
    default: AnswerMode,
) -> Result<AnswerMode, HttpError> {
    match headers.get(ANSWER_HEADER) {
        None => Ok(default),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or(HttpError::BadAnswerMode),
    }
}

/// The request's revision; a header naming one we lack is refused (400), as
/// the spec asks. No header: answered as a session-era request.
pub(crate) fn revision(headers: &HeaderMap) -> Result<Revision, HttpError> {
    match headers.get(MCP_PROTOCOL_VERSION) {
        None => Ok(Revision::Session),
        Some(value) => {
            let text = value.to_str().unwrap_or("");
            Revision::from_header(text.trim())
                .ok_or_else(|| HttpError::UnsupportedVersion(text.chars().take(64).collect()))
        }
    }
}

/// The `Mcp-Session-Id` sent, if any (not text: `""`, which no session has).
pub(crate) fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(MCP_SESSION_ID)
        .map(|value| value.to_str().unwrap_or(""))
}

/// 200 `application/json`.
pub(crate) fn json(body: Vec<u8>, session: Option<&str>) -> Response<AnswerBody> {
    respond(
        StatusCode::OK,
        "application/json",
        AnswerBody::full(Bytes::from(body)),
        session,
    )
}

/// 200 `text/event-stream`, events as they come.
pub(crate) fn sse(events: mpsc::Receiver<Bytes>, session: Option<&str>) -> Response<AnswerBody> {
    let mut response = respond(
        StatusCode::OK,
        "text/event-stream",
        AnswerBody::Stream(events),
        session,
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// 202, no body: notifications and responses only.
pub(crate) fn accepted(session: Option<&str>) -> Response<AnswerBody> {
    let mut response = Response::new(AnswerBody::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    add_session(&mut response, session);
    response
}

/// 200, no body: a session ended.
pub(crate) fn ok_empty() -> Response<AnswerBody> {
    Response::new(AnswerBody::empty())
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: AnswerBody,
    session: Option<&str>,
) -> Response<AnswerBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    add_session(&mut response, session);
    response
}

fn add_session(response: &mut Response<AnswerBody>, session: Option<&str>) {
    // Our ids are hex digits: always a valid header value.
    if let Some(value) = session.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert(MCP_SESSION_ID, value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn headers_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            answer_mode(&headers, AnswerMode::Sse).unwrap(),
            AnswerMode::Sse
        );
        assert_eq!(revision(&headers).unwrap(), Revision::Session);
        assert_eq!(session_id(&headers), None);
        headers.insert(ANSWER_HEADER, HeaderValue::from_static("json"));
        headers.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2026-07-28"));
        headers.insert(MCP_SESSION_ID, HeaderValue::from_static("abc"));
        assert_eq!(
            answer_mode(&headers, AnswerMode::Sse).unwrap(),
            AnswerMode::Json
        );
        assert_eq!(revision(&headers).unwrap(), Revision::Stateless);
        assert_eq!(session_id(&headers), Some("abc"));
        headers.insert(ANSWER_HEADER, HeaderValue::from_static("xml"));
        headers.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2024-11-05"));
        assert!(answer_mode(&headers, AnswerMode::Json).is_err());
        assert!(revision(&headers).is_err());
    }
}

//! Every HTTP-level refusal, and the one place it becomes a response.
//!
//! The body is always a JSON-RPC error with `id: null`, so an MCP client
//! can read it. Errors about one request of a body that was read (an unknown
//! method or tool) are not here: they are JSON-RPC answers with that id.

use http::{HeaderValue, Response, StatusCode, header};

use crate::jsonrpc::{self, INVALID_REQUEST, PARSE_ERROR};
use crate::session::Refusal;
use crate::sse::AnswerBody;

/// JSON-RPC code for a session the server does not know (as the official
/// SDKs answer it).
const SESSION_NOT_FOUND: i32 = -32001;
/// JSON-RPC code for a refusal that is not about the message.
const SERVER_ERROR: i32 = -32000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("Parse error: {0}")]
    Parse(String),
    #[error("Invalid Request: {0}")]
    InvalidRequest(&'static str),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the request body could not be read")]
    BodyRead,
    #[error("Bad Request: Mcp-Session-Id header is required")]
    SessionRequired,
    #[error("Session not found")]
    SessionNotFound,
    #[error("Bad Request: unsupported MCP-Protocol-Version {0:?}")]
    UnsupportedVersion(String),
    #[error("Bad Request: x-demo-answer must be `json` or `sse`")]
    BadAnswerMode,
    #[error("too many sessions")]
    TooManySessions,
    #[error("too many open streams for this session")]
    TooManyStreams,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("Method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("Not found")]
    NotFound,
}

impl From<Refusal> for HttpError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unknown => HttpError::SessionNotFound,
            Refusal::TooManySessions => HttpError::TooManySessions,
            Refusal::TooManyStreams => HttpError::TooManyStreams,
            Refusal::ShuttingDown => HttpError::ShuttingDown,
        }
    }
}

impl HttpError {
    fn status_and_code(&self) -> (StatusCode, i32) {
        match self {
            HttpError::Parse(_) => (StatusCode::BAD_REQUEST, PARSE_ERROR),
            HttpError::InvalidRequest(_)
            | HttpError::BodyRead
            | HttpError::SessionRequired
            | HttpError::UnsupportedVersion(_)
            | HttpError::BadAnswerMode => (StatusCode::BAD_REQUEST, INVALID_REQUEST),
            HttpError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, INVALID_REQUEST),
            HttpError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, SERVER_ERROR),
            HttpError::SessionNotFound => (StatusCode::NOT_FOUND, SESSION_NOT_FOUND),
            HttpError::TooManySessions | HttpError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, SERVER_ERROR)
            }
            HttpError::TooManyStreams => (StatusCode::CONFLICT, SERVER_ERROR),
            HttpError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, SERVER_ERROR),
            HttpError::NotFound => (StatusCode::NOT_FOUND, SERVER_ERROR),
        }
    }

    pub(crate) fn into_response(self) -> Response<AnswerBody> {
        let (status, code) = self.status_and_code();
        let mut body = Vec::with_capacity(128);
        jsonrpc::write_error(&mut body, None, code, &self.to_string());
        let mut response = Response::new(AnswerBody::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let HttpError::MethodNotAllowed { allow } = self {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            (HttpError::Parse("x".into()), 400, -32700),
            (HttpError::InvalidRequest("x"), 400, -32600),
            (HttpError::BodyTooLarge(1), 413, -32600),
            (HttpError::SessionRequired, 400, -32600),
            (HttpError::SessionNotFound, 404, -32001),
            (HttpError::MethodNotAllowed { allow: "POST" }, 405, -32000),
        ];
        for (error, status, code) in cases {
            let (s, c) = error.status_and_code();
            assert_eq!((s.as_u16(), c), (status, code), "{error}");
        }
    }
}

//! Which endpoint a request is for: the MCP path (POST, GET, DELETE) or
//! `/stats`. Errors become responses here, through `HttpError`.

use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::config::STATS_PATH;
use crate::error::HttpError;
use crate::mcp::Revision;
use crate::post;
use crate::sse::AnswerBody;
use crate::state::Shared;
use crate::wire;

/// The endpoints, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Mcp,
    Stats,
    NotFound,
}

fn route(mcp_path: &str, path: &str) -> Route {
    if path == mcp_path {
        Route::Mcp
    } else if path == STATS_PATH {
        Route::Stats
    } else {
        Route::NotFound
    }
}

/// Answers one request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<AnswerBody> {
    let result = match route(&shared.config.path, req.uri().path()) {
        Route::Mcp => match *req.method() {
            Method::POST => post::handle(&shared, req).await,
            Method::GET => open_stream(&shared, req.headers()),
            Method::DELETE => end_session(&shared, req.headers()),
            _ => Err(HttpError::MethodNotAllowed {
                allow: mcp_methods(&shared),
            }),
        },
        Route::Stats if req.method() == Method::GET => Ok(stats(&shared)),
        Route::Stats => Err(HttpError::MethodNotAllowed { allow: "GET" }),
        Route::NotFound => Err(HttpError::NotFound),
    };
    result.unwrap_or_else(HttpError::into_response)
}

fn mcp_methods(shared: &Shared) -> &'static str {
    if shared.config.stateful {
        "GET, POST, DELETE"
    } else {
        "POST"
    }
}

/// GET: an SSE stream for server-sent messages, held open (after its
/// priming event) until the session ends. This server sends none on it.
fn open_stream(shared: &Shared, headers: &HeaderMap) -> Result<Response<AnswerBody>, HttpError> {
    if !shared.config.stateful || wire::revision(headers)? == Revision::Stateless {
        return Err(HttpError::MethodNotAllowed {
            allow: mcp_methods(shared),
        });
    }
    let id = wire::session_id(headers).ok_or(HttpError::SessionRequired)?;
    let (tx, rx) = mpsc::channel(1);
    // The channel is new and its receiver alive: the priming event fits.
    let _ = tx.try_send(shared.event_ids.priming());
    shared.sessions.attach(id, tx)?;
    Ok(wire::sse(rx, None))
}

/// DELETE: ends the session and its GET streams.
fn end_session(shared: &Shared, headers: &HeaderMap) -> Result<Response<AnswerBody>, HttpError> {
    if !shared.config.stateful || wire::revision(headers)? == Revision::Stateless {
        return Err(HttpError::MethodNotAllowed {
            allow: mcp_methods(shared),
        });
    }
    let id = wire::session_id(headers).ok_or(HttpError::SessionRequired)?;
    if shared.sessions.remove(id) {
        Ok(wire::ok_empty())
    } else {
        Err(HttpError::SessionNotFound)
    }
}

/// `GET /stats`: the counters as JSON.
fn stats(shared: &Shared) -> Response<AnswerBody> {
    // A map of strings to integers always serialises.
    let body = serde_json::to_vec(&shared.stats.snapshot()).unwrap_or_default();
    wire::json(body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(route("/mcp", "/mcp"), Route::Mcp);
        assert_eq!(route("/mcp", "/stats"), Route::Stats);
        assert_eq!(route("/mcp", "/mcp/"), Route::NotFound);
        assert_eq!(route("/other", "/mcp"), Route::NotFound);
    }
}

//! A POST to the MCP path, top to bottom: read the body (bounded in size and
//! time) → parse JSON-RPC → admit the session → count → answer, as one JSON
//! body or as an SSE stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming as Body;
use tokio::sync::mpsc;

use crate::config::AnswerMode;
use crate::error::HttpError;
use crate::jsonrpc::{self, INVALID_REQUEST, Incoming, Item, ParseError};
use crate::mcp::{self, CallContext, Method, Revision};
use crate::sse::{EventIds, EventSink, STREAM_BUFFER};
use crate::state::Shared;
use crate::wire;

/// The largest body read: a JSON-RPC request is far smaller; 413 past it.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The longest wait for a whole body once the headers are in.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    req: Request<Body>,
) -> Result<Response<crate::sse::AnswerBody>, HttpError> {
    let (parts, body) = req.into_parts();
    let mode = wire::answer_mode(&parts.headers, shared.config.answer)?;
    let revision = wire::revision(&parts.headers)?;
    let body = read_body(&parts.headers, body).await?;
    let incoming = jsonrpc::parse(&body).map_err(|e| match e {
        ParseError::NotJson(e) => HttpError::Parse(e.to_string()),
        ParseError::Invalid(why) => HttpError::InvalidRequest(why),
    })?;
    let minted = admit(shared, &parts.headers, &incoming, revision)?;
    count(shared, &incoming);
    let session = minted.as_deref();
    if !incoming.items.iter().any(Item::wants_answer) {
        return Ok(wire::accepted(session));
    }
    Ok(match mode {
        AnswerMode::Json => wire::json(answer_json(shared, &incoming, revision).await, session),
        AnswerMode::Sse => wire::sse(answer_sse(shared, incoming, revision), session),
    })
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(HttpError::BodyTooLarge(MAX_BODY_BYTES));
    }
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(HttpError::BodyTooLarge(MAX_BODY_BYTES)),
        Ok(Err(_)) => Err(HttpError::BodyRead),
        Err(_) => Err(HttpError::BodyTimeout),
    }
}

/// Stateful mode: `initialize` mints a session (its id, returned, goes in
/// the answer's header); anything else needs a live one, unless it is made
/// under the stateless revision. Stateless mode: nothing to check.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    incoming: &Incoming<'_>,
    revision: Revision,
) -> Result<Option<String>, HttpError> {
    if !shared.config.stateful {
        return Ok(None);
    }
    let initialize = incoming
        .items
        .iter()
        .any(|item| matches!(item, Item::Request(r) if r.method == Method::Initialize.as_str()));
    if initialize {
        return Ok(Some(shared.sessions.create()?));
    }
    if revision == Revision::Stateless {
        return Ok(None);
    }
    let id = wire::session_id(headers).ok_or(HttpError::SessionRequired)?;
    if shared.sessions.contains(id) {
        Ok(None)
    } else {
        Err(HttpError::SessionNotFound)
    }
}

fn count(shared: &Shared, incoming: &Incoming<'_>) {
    for item in &incoming.items {
        let method = match item {
            Item::Request(request) => &request.method,
            Item::Notification { method } => method,
            Item::Response | Item::Invalid { .. } => continue,
        };
        shared.stats.count_method(Method::from_name(method), method);
    }
}

/// The answers as one JSON body: an object, or an array for a batch.
/// A batch's requests run one after the other.
async fn answer_json(shared: &Shared, incoming: &Incoming<'_>, revision: Revision) -> Vec<u8> {
    let cx = CallContext {
        revision,
        events: None,
    };
    let mut out = Vec::with_capacity(256);
    if incoming.batch {
        out.push(b'[');
    }
    let mut first = true;
    for item in incoming.items.iter().filter(|item| item.wants_answer()) {
        if !first {
            out.push(b',');
        }
        first = false;
        answer_item(shared, item, &cx, &mut out).await;
    }
    if incoming.batch {
        out.push(b']');
    }
    out
}

/// The answers as an SSE stream: the priming event, then for each request
/// its progress notifications and its response, from a task of its own (the
/// body streams while it runs). The task ends when its work is done or the
/// client leaves; the server's shutdown waits for it through the connection.
fn answer_sse(
    shared: &Arc<Shared>,
    incoming: Incoming<'_>,
    revision: Revision,
) -> mpsc::Receiver<Bytes> {
    let items: Vec<Item<'static>> = incoming
        .items
        .into_iter()
        .filter(Item::wants_answer)
        .map(Item::into_owned)
        .collect();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let sink = EventSink::new(tx, Arc::clone(&shared.event_ids));
        if sink.prime().await.is_err() {
            return;
        }
        let cx = CallContext {
            revision,
            events: Some(&sink),
        };
        for item in &items {
            let mut event = EventIds::buffer(256);
            answer_item(&shared, item, &cx, &mut event).await;
            if sink.send(event).await.is_err() {
                return;
            }
        }
    });
    rx
}

async fn answer_item(shared: &Shared, item: &Item<'_>, cx: &CallContext<'_>, out: &mut Vec<u8>) {
    match item {
        Item::Request(request) => mcp::answer(shared, request, cx, out).await,
        Item::Invalid { id, why } => {
            let message = format!("Invalid Request: {why}");
            jsonrpc::write_error(out, id.as_deref(), INVALID_REQUEST, &message);
        }
        Item::Notification { .. } | Item::Response => {}
    }
}

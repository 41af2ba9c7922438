//! A GET's event stream, relayed event by event from a task: an answer in
//! it settles what waits for it ([`super::Resumable`]) exactly as on the
//! POST stream, an answer for nothing waiting is dropped, and an event too
//! large to inspect is never relayed.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{Awaited, Claim, Replay, StreamKey, count, gauge};
use crate::identity::Identity;
use crate::mcp::McpState;
use crate::mcp::answers;
use crate::mcp::body::{ChannelBody, ProxyBody};
use crate::mcp::jsonrpc::Id;
use crate::mcp::settle::{Ending, too_large_error};
use crate::mcp::sse::SseEvent;
use crate::mcp::sse::frames::{Framer, Piece};
use crate::mcp::tools_list;
use crate::mcp::upstream::{self, Upstream};

/// Starts relaying `response`, a GET's event stream from `upstream`.
pub fn relay(
    state: Arc<McpState>,
    upstream: &Upstream,
    identity: &Identity,
    response: Response<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let (tx, channel) = ChannelBody::channel();
    let key = StreamKey::new(&upstream.name, identity);
    tokio::spawn(task(state, key, body, tx).in_current_span());
    let mut response = Response::new(channel);
    *response.status_mut() = parts.status;
    *response.headers_mut() = upstream::response_headers(parts.headers, true);
    response
}

async fn task(state: Arc<McpState>, key: StreamKey, mut body: Incoming, tx: mpsc::Sender<Bytes>) {
    let limit = state.config.max_response_bytes;
    // Any answer may be awaited here: an event too large to inspect is
    // never passed on.
    let hold = Some(limit as u64);
    let mut framer = Framer::new(limit);
    let mut pieces = Vec::new();
    let mut shutdown = state.streams_end.clone();
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let chunk = match next {
            None => return,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "a GET event stream broke off");
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        framer.feed(&chunk, hold, &mut pieces);
        for piece in pieces.drain(..) {
            let out = match piece {
                Piece::Block {
                    bytes,
                    event: Some(event),
                } => on_event(&state, &key, bytes, &event).await,
                Piece::Block { bytes, event: None } | Piece::Passed(bytes) => Some(bytes),
                Piece::Dropped(event) => on_oversized(&state, &key, &event).await,
            };
            if let Some(out) = out
                && tx.send(out).await.is_err()
            {
                return;
            }
        }
    }
}

/// One complete event of a GET stream: what the agent gets for it.
async fn on_event(
    state: &Arc<McpState>,
    key: &StreamKey,
    block: Bytes,
    event: &SseEvent,
) -> Option<Bytes> {
    let Ok(message) = serde_json::from_slice::<Value>(&event.data) else {
        return Some(block);
    };
    if let Some(items) = message.as_array() {
        // A batch in one event: answers in it could not be settled one by
        // one, so one holding an answer is not relayed.
        if items.iter().any(is_answer) {
            count(state, "dropped");
            tracing::warn!(upstream = %key.upstream, "dropped a batch of answers on a GET stream");
            return None;
        }
        return Some(block);
    }
    if !is_answer(&message) {
        return Some(block);
    }
    let Some(id) = message.get("id").and_then(Id::from_value) else {
        return Some(block);
    };
    let (size, sha256) = (event.data_len, event.data_sha256);
    match state.resumable.claim(key, &id) {
        Claim::Waiting(waiting) => {
            count(state, "settled");
            gauge(state, state.resumable.waiting());
            let recorder = waiting.origin.recorder(state);
            let (out, replay) = match &waiting.awaited {
                Awaited::Call(call) => {
                    let ending = Ending::Answered {
                        message,
                        size,
                        sha256,
                    };
                    match recorder.call(call, ending).await {
                        Some(replacement) => {
                            let event = answers::sse_event(&replacement);
                            (event.clone(), Replay::Instead(event))
                        }
                        None => (block, Replay::Same { sha256 }),
                    }
                }
                Awaited::Read(read) => {
                    recorder.read(read, &message, size, sha256).await;
                    (block, Replay::Same { sha256 })
                }
                Awaited::ToolsList(asked) => {
                    (filtered(state, message, asked, block), Replay::Filter)
                }
                Awaited::Other(_) => (block, Replay::Same { sha256 }),
            };
            state.resumable.remember(key.clone(), id, replay);
            Some(out)
        }
        Claim::Settled(replay) => match replay {
            Replay::Same { sha256: first } if first == sha256 => {
                count(state, "replayed");
                Some(block)
            }
            Replay::Same { .. } => {
                count(state, "dropped");
                tracing::warn!(upstream = %key.upstream, "dropped a second, different answer to a settled request on a GET stream");
                None
            }
            Replay::Instead(event) => {
                count(state, "replayed");
                Some(event)
            }
            Replay::Filter => {
                count(state, "replayed");
                Some(filtered(state, message, &id, block))
            }
        },
        Claim::Nothing => {
            count(state, "dropped");
            tracing::warn!(
                upstream = %key.upstream,
                session = %key.session,
                "dropped an answer on a GET stream that no request waits for"
            );
            None
        }
    }
}

fn is_answer(message: &Value) -> bool {
    message.get("result").is_some() || message.get("error").is_some()
}

/// A `tools/list` answer, filtered by the live manifest (the block as it
/// came when nothing was removed).
fn filtered(state: &McpState, mut message: Value, asked: &Id, block: Bytes) -> Bytes {
    if tools_list::filter_live(&state.manifests, &mut message) {
        let message = answers::from_value(&message, std::slice::from_ref(asked));
        return answers::sse_event(&message);
    }
    block
}

/// An event too large to inspect: never relayed; what waited for it gets
/// the withheld-result answer.
async fn on_oversized(state: &Arc<McpState>, key: &StreamKey, event: &SseEvent) -> Option<Bytes> {
    count(state, "too_large");
    let waiting = state.resumable.claim_mentioned(key, &event.data)?;
    gauge(state, state.resumable.waiting());
    let answer = match &waiting.awaited {
        Awaited::Call(call) => {
            let recorder = waiting.origin.recorder(state);
            recorder.call(call, Ending::too_large(event)).await?
        }
        other => too_large_error(&key.upstream, other.id()),
    };
    let event = answers::sse_event(&answer);
    let id = waiting.awaited.id().clone();
    state
        .resumable
        .remember(key.clone(), id, Replay::Instead(event.clone()));
    Some(event)
}

//! An SSE answer to a POST, relayed event by event from a task: each
//! event's bytes go to the agent exactly as received, as soon as the event
//! is complete (`id:`, `retry:`, comments and empty priming events
//! included). Only the event carrying a call's result can be replaced, and
//! only a `tools/list` result is rewritten (filtered); a read's answer is
//! recorded before it is relayed. A stream that ends before its answers,
//! having carried an event id, ends untouched and what still waits goes to
//! [`crate::mcp::resume`].

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::mcp::answers::{self, Outgoing};
use crate::mcp::body::{ChannelBody, ProxyBody};
use crate::mcp::error::UpstreamKind;
use crate::mcp::exchange::Exchange;
use crate::mcp::jsonrpc::Id;
use crate::mcp::resume;
use crate::mcp::settle::{Ending, Recorder, mentions_id, too_large_error};
use crate::mcp::sse::SseEvent;
use crate::mcp::sse::frames::{Framer, Piece};
use crate::mcp::{tools_list, upstream};

/// Starts relaying `response` (an event stream answering `exchange`'s POST).
pub fn relay(exchange: Exchange, response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let (tx, channel) = ChannelBody::channel();
    let headers = upstream::response_headers(parts.headers, true);
    tokio::spawn(task(exchange, body, tx).in_current_span());
    let mut response = Response::new(channel);
    *response.status_mut() = parts.status;
    *response.headers_mut() = headers;
    response
}

/// How the relay loop ended.
enum End {
    /// The stream ended (or broke off) with `exchange`'s requests possibly
    /// unanswered; whether it carried an event id.
    Stream { resumable: bool },
    /// The agent stopped reading.
    AgentGone { resumable: bool },
    /// Settled already (a deadline or a broken stream).
    Done,
}

async fn task(mut exchange: Exchange, body: Incoming, tx: mpsc::Sender<Bytes>) {
    match pump(&mut exchange, body, &tx).await {
        End::Done => {}
        End::Stream { resumable } => {
            // Ended before its answers: a stream that can be resumed (it
            // carried an event id) ends untouched, and what waits is kept
            // for the resumed one.
            if resumable {
                match resume::adopt(exchange) {
                    None => return,
                    Some(back) => exchange = back,
                }
            }
            let out = exchange
                .settle_rest(|| Ending::Failed {
                    kind: UpstreamKind::NoAnswer,
                    detail: "the event stream ended without this call's answer".into(),
                })
                .await;
            send_all(&tx, out).await;
        }
        End::AgentGone { resumable } => {
            if resumable {
                match resume::adopt(exchange) {
                    None => return,
                    Some(back) => exchange = back,
                }
            }
            exchange
                .settle_rest(|| Ending::Failed {
                    kind: UpstreamKind::AgentGone,
                    detail: "the agent closed the connection before the answer".into(),
                })
                .await;
        }
    }
}

/// Relays until the stream ends, the agent goes, or the calls' deadline.
async fn pump(exchange: &mut Exchange, mut body: Incoming, tx: &mpsc::Sender<Bytes>) -> End {
    // Answers the sidecar made (denials in a batch) go first.
    for answer in std::mem::take(&mut exchange.local) {
        if tx.send(answers::sse_event(&answer)).await.is_err() {
            return End::AgentGone { resumable: false };
        }
    }
    let limit = exchange.state.config.max_response_bytes;
    let mut framer = Framer::new(limit);
    let mut pieces = Vec::new();
    loop {
        let next = match exchange.deadline() {
            Some(at) => match tokio::time::timeout_at(at, body.frame()).await {
                Ok(next) => next,
                Err(_) => {
                    // Cut: the upstream body is dropped with this task.
                    let out = exchange.settle_rest(|| Ending::TimedOut).await;
                    send_all(tx, out).await;
                    return End::Done;
                }
            },
            None => body.frame().await,
        };
        let chunk = match next {
            None => break,
            Some(Err(e)) => {
                let detail = format!("the event stream broke off: {e}");
                let out = exchange
                    .settle_rest(|| Ending::Failed {
                        kind: UpstreamKind::Malformed,
                        detail: detail.clone(),
                    })
                    .await;
                send_all(tx, out).await;
                return End::Done;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        // Reads wait too: their answer must be read whole to be recorded,
        // so one over the limit is not passed on.
        let hold = exchange
            .calls
            .iter()
            .map(|c| c.max_output_bytes)
            .chain(exchange.reads.first().map(|_| limit as u64))
            .max();
        framer.feed(&chunk, hold, &mut pieces);
        for piece in pieces.drain(..) {
            let out = match piece {
                Piece::Block {
                    bytes,
                    event: Some(event),
                } => on_event(exchange, bytes, &event).await,
                Piece::Block { bytes, event: None } | Piece::Passed(bytes) => Some(bytes),
                Piece::Dropped(event) => on_oversized(exchange, &event).await,
            };
            if let Some(out) = out
                && tx.send(out).await.is_err()
            {
                let resumable = framer.last_event_id().is_some();
                return End::AgentGone { resumable };
            }
        }
    }
    End::Stream {
        resumable: framer.last_event_id().is_some(),
    }
}

/// One complete event: what the agent gets for it.
async fn on_event(exchange: &mut Exchange, block: Bytes, event: &SseEvent) -> Option<Bytes> {
    if event.data.is_empty() {
        return Some(block);
    }
    let Ok(mut message) = serde_json::from_slice::<Value>(&event.data) else {
        return Some(block);
    };
    if let Some(items) = message.as_array() {
        // A batch in one event: its answers cannot be settled one by one,
        // so one holding an answer is not relayed (the calls it answered
        // end without an answer).
        let answers = items
            .iter()
            .any(|m| m.get("result").is_some() || m.get("error").is_some());
        return (!answers).then_some(block);
    }
    let is_response = message.get("result").is_some() || message.get("error").is_some();
    let Some(id) = message
        .get("id")
        .and_then(Id::from_value)
        .filter(|_| is_response)
    else {
        return Some(block);
    };
    exchange.answered.push(id.clone());
    if let Some(read) = exchange.take_read(&id) {
        Recorder::of(exchange)
            .read(&read, &message, event.data_len, event.data_sha256)
            .await;
        return Some(block);
    }
    if let Some(call) = exchange.take_call(&id) {
        let ending = Ending::Answered {
            message,
            size: event.data_len,
            sha256: event.data_sha256,
        };
        return match exchange.settle(&call, ending).await {
            Some(replacement) => Some(answers::sse_event(&replacement)),
            None => Some(block),
        };
    }
    if exchange.tools_list.contains(&id)
        && tools_list::filter_live(&exchange.state.manifests, &mut message)
    {
        let message = answers::from_value(&message, &exchange.forwarded_requests);
        return Some(answers::sse_event(&message));
    }
    Some(block)
}

/// An event too large to hold: if it answered a waiting call or read (the
/// only one waiting, or the one whose id its first bytes name), that answer
/// is replaced: a call's by a withheld-result tool error (recorded), a
/// read's by a JSON-RPC error (nothing of it reached the agent).
async fn on_oversized(exchange: &mut Exchange, event: &SseEvent) -> Option<Bytes> {
    let only = exchange.calls.len() + exchange.reads.len() == 1;
    let names = |id: &Id| only || mentions_id(&event.data, id);
    if let Some(at) = exchange.calls.iter().position(|c| names(&c.id)) {
        let call = exchange.calls.swap_remove(at);
        return exchange
            .settle(&call, Ending::too_large(event))
            .await
            .map(|answer| answers::sse_event(&answer));
    }
    let at = exchange.reads.iter().position(|r| names(&r.id))?;
    let read = exchange.reads.swap_remove(at);
    Some(answers::sse_event(&too_large_error(
        &exchange.upstream.name,
        &read.id,
    )))
}

async fn send_all(tx: &mpsc::Sender<Bytes>, answers: Vec<Outgoing>) {
    for answer in answers {
        if tx.send(answers::sse_event(&answer)).await.is_err() {
            return;
        }
    }
}

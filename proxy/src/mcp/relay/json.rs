//! A JSON answer: read whole (bounded, within the calls' deadline), settle
//! the calls it answers, record the reads, filter `tools/list`, and add the
//! sidecar's own answers. Unchanged, it goes to the agent byte for byte.

use bytes::{Bytes, BytesMut};
use http::Response;
use http::header::{self, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::mcp::answers::{self, Outgoing};
use crate::mcp::body::{ProxyBody, full};
use crate::mcp::error::UpstreamKind;
use crate::mcp::exchange::Exchange;
use crate::mcp::jsonrpc::Id;
use crate::mcp::settle::{Ending, Recorder};
use crate::mcp::tools_list;
use crate::mcp::upstream;

/// Relays `response` (an `application/json` answer to `exchange`'s POST).
pub async fn relay(mut exchange: Exchange, response: Response<Incoming>) -> Response<ProxyBody> {
    let limit = exchange.state.config.max_response_bytes;
    // A JSON answer is one message: it must complete within the calls'
    // timeout, or the upstream's when no call waits for it.
    let deadline = exchange.answer_deadline();
    let call_deadline = !exchange.calls.is_empty();
    let (parts, mut body) = response.into_parts();
    let mut buf = BytesMut::new();
    let mut size = 0usize;
    let mut hasher = Sha256::new();
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, body.frame()).await else {
            let detail = "the answer did not complete in time".to_owned();
            return exchange
                .fail(UpstreamKind::Timeout, detail, call_deadline)
                .await;
        };
        match next {
            None => break,
            Some(Err(e)) => {
                let detail = format!("the answer broke off: {e}");
                return exchange.fail(UpstreamKind::Malformed, detail, false).await;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    size += data.len();
                    hasher.update(&data);
                    if size <= limit {
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    let whole_sha: [u8; 32] = hasher.finalize().into();
    if size > limit {
        let mut out = exchange.failed_requests(UpstreamKind::TooLarge);
        let head = buf.freeze();
        let rest = exchange
            .settle_rest(|| Ending::TooLarge {
                size,
                sha256: whole_sha,
                head: head.clone(),
            })
            .await;
        out.extend(rest);
        return exchange.json_answer(out);
    }
    let bytes = buf.freeze();
    let (mut messages, single) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(items)) => (items, false),
        Ok(item @ Value::Object(_)) => (vec![item], true),
        Ok(_) | Err(_) => {
            let detail = "the upstream's JSON answer is not a JSON-RPC message or batch".to_owned();
            return exchange.fail(UpstreamKind::Malformed, detail, false).await;
        }
    };
    // What replaces each message, if anything (parallel to `messages`).
    let mut replaced: Vec<Option<Outgoing>> = Vec::with_capacity(messages.len());
    let mut changed = false;
    for message in &mut messages {
        let replacement = settle_one(&mut exchange, message, &bytes, single, whole_sha).await;
        changed |= replacement.changed;
        replaced.push(replacement.answer);
    }
    let unanswered = exchange
        .settle_rest(|| Ending::Failed {
            kind: UpstreamKind::NoAnswer,
            detail: "the upstream's answer did not include this call".into(),
        })
        .await;
    changed |= !unanswered.is_empty();
    if !changed && exchange.local.is_empty() {
        let mut response = Response::from_parts(parts, full(bytes));
        *response.headers_mut() =
            upstream::response_headers(std::mem::take(response.headers_mut()), false);
        return response;
    }
    let mut headers = upstream::response_headers(parts.headers, true);
    let mut out: Vec<Outgoing> = messages
        .iter()
        .zip(replaced)
        .map(|(m, r)| r.unwrap_or_else(|| answers::from_value(m, &exchange.forwarded_requests)))
        .collect();
    out.extend(unanswered);
    let answer = if single && exchange.local.is_empty() {
        answers::body(out.pop().into_iter().collect(), false)
    } else {
        out.append(&mut exchange.local);
        answers::body(out, true)
    };
    let mut response = answers::json_response(parts.status, answer);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *response.headers_mut() = headers;
    response
}

struct Settled {
    /// What the agent gets instead of the message.
    answer: Option<Outgoing>,
    /// The message itself was changed (a filtered `tools/list`).
    changed: bool,
}

/// Settles what `message` answers.
async fn settle_one(
    exchange: &mut Exchange,
    message: &mut Value,
    bytes: &Bytes,
    single: bool,
    whole_sha: [u8; 32],
) -> Settled {
    let mut settled = Settled {
        answer: None,
        changed: false,
    };
    let Some(id) = message.get("id").and_then(Id::from_value) else {
        return settled;
    };
    // One message's own size and hash: the body's, or its own text's.
    let own = || {
        if single {
            (bytes.len(), whole_sha)
        } else {
            let own = serde_json::to_vec(message).unwrap_or_default();
            (own.len(), Sha256::digest(&own).into())
        }
    };
    if let Some(call) = exchange.take_call(&id) {
        let (size, sha256) = own();
        let ending = Ending::Answered {
            message: message.clone(),
            size,
            sha256,
        };
        settled.answer = exchange.settle(&call, ending).await;
        settled.changed = settled.answer.is_some();
    } else if let Some(read) = exchange.take_read(&id) {
        let (size, sha256) = own();
        Recorder::of(exchange)
            .read(&read, message, size, sha256)
            .await;
    } else if exchange.tools_list.contains(&id) {
        settled.changed = tools_list::filter_live(&exchange.state.manifests, message);
    }
    settled
}

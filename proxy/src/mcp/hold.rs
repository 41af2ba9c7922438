//! `approval.mode: hold` (`README.md`, "Approvals"): a call that waits for
//! a person is held open instead of answered pending.
//!
//! A client that takes an event stream (every Streamable HTTP client does)
//! is answered `200 text/event-stream` at once, and then, every
//! [`KEEPALIVE`], an MCP progress notification when the call carried a
//! `progressToken`, else an SSE comment. A client that takes only JSON
//! gets nothing until the end. The hold ends when
//!
//! - the approval is approved: the call is decided again under the live
//!   manifest and session state, exactly as the same call made again in
//!   `retry` mode would be (a new `TOOL_CALL_PROPOSED`, then
//!   `TOOL_CALL_ALLOWED` naming the approval, which the commit consumes),
//!   and forwarded; its answer is the upstream's, relayed as usual;
//! - it is denied, expires, or is used by another call: a tool-error result
//!   saying so;
//! - `approval.hold_timeout_ms` passes, or the sidecar shuts down: the
//!   `retry` answer (the approval still stands; the same call made again
//!   once it is approved runs);
//! - the agent goes: nothing more happens (the approval still stands).
//!
//! Only a POST of one message is held; a batch's calls get the `retry`
//! answer. A held call keeps its `mcp.limits.max_in_flight` slot, so an
//! agent cannot hold more calls than that.

use std::time::Duration;

use aegis_ledger::{Approval, ApprovalState, VoteKind, now_unix_ms};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::McpState;
use super::admit;
use super::answers::{self, Outgoing};
use super::body::{ChannelBody, ProxyBody};
use super::error::{Failure, UpstreamKind};
use super::exchange::Exchange;
use super::held::Held;
use super::jsonrpc::{Id, Message};
use super::upstream;

/// Between keep-alives (a progress notification or an SSE comment): well
/// inside the idle timeouts of proxies and load balancers (60 s is common).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Holds `exchange`'s one call (`message`, sent as `body`) for its
/// approval; see the module's notes.
pub async fn hold(
    exchange: Exchange,
    parts: Parts,
    body: Bytes,
    message: Message,
    held: Held,
) -> Response<ProxyBody> {
    let state = exchange.state.clone();
    let gauge = HeldGauge::new(&state.metrics.approvals.held);
    if !accepts_event_stream(&parts.headers) {
        let answer = run(exchange, parts, body, message, held, None).await;
        drop(gauge);
        return answer.unwrap_or_else(answers::accepted);
    }
    let (tx, channel) = ChannelBody::channel();
    let limit = state.config.max_response_bytes;
    // The first at once: the agent's client knows straight away that the
    // call waits, and for what.
    let _ = tx.try_send(keepalive_event(&held, None, 1));
    let task = async move {
        let call_id = held.call_id.clone();
        let upstream = exchange.upstream.name.clone();
        let answer = run(exchange, parts, body, message, held, Some(&tx)).await;
        drop(gauge);
        if let Some(response) = answer {
            pipe(response, &tx, &call_id, &upstream, limit).await;
        }
    };
    tokio::spawn(task.in_current_span());
    let mut response = Response::new(channel);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Counts a call in `aegis_approval_held_calls` until dropped.
struct HeldGauge(prometheus::IntGauge);

impl HeldGauge {
    fn new(gauge: &prometheus::IntGauge) -> HeldGauge {
        gauge.inc();
        HeldGauge(gauge.clone())
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Waits, and then answers: the forwarded call's answer, or the sidecar's.
/// `None` when the agent went away.
async fn run(
    mut exchange: Exchange,
    parts: Parts,
    body: Bytes,
    message: Message,
    mut held: Held,
    tx: Option<&mpsc::Sender<Bytes>>,
) -> Option<Response<ProxyBody>> {
    let state = exchange.state.clone();
    let until = Instant::now() + state.gate.approvals.hold_timeout;
    loop {
        let (ending, answer) = match wait(&state, &mut held, until, tx).await {
            Waited::Approved => (None, None),
            Waited::Ended(ending, answer) => (Some(ending), Some(answer)),
            Waited::AgentGone => (Some("agent_gone"), None),
        };
        if let Some(ending) = ending {
            ended(&state, &held, ending);
            return answer.map(|answer| exchange.json_answer(vec![answer]));
        }
        // Decided again, now, as a repeated call would be: the approval
        // releases it unless something else refuses it meanwhile.
        exchange.started = std::time::Instant::now();
        if admit::admit(&state, &mut exchange, &message).await {
            ended(&state, &held, "released");
            exchange.forwarded_requests =
                admit::request_id(&message).cloned().into_iter().collect();
            let rewrites = std::mem::take(&mut exchange.rewrites);
            let body =
                admit::upstream_body(body, std::slice::from_ref(&message), 1, false, &rewrites);
            return Some(super::forward::forward(exchange, parts, body).await);
        }
        match exchange.held.take() {
            // The live manifest wants another approval (more approvers).
            Some(again) => {
                ended(&state, &held, "refused");
                let sent = held.sent;
                held = again;
                held.sent = sent;
            }
            None => {
                ended(&state, &held, "refused");
                return Some(exchange.local_only());
            }
        }
    }
}

fn ended(state: &McpState, held: &Held, ending: &'static str) {
    state
        .metrics
        .approvals
        .holds_ended
        .with_label_values(&[ending])
        .inc();
    tracing::info!(approval_id = %held.approval_id, ending, "held call's hold ended");
}

enum Waited {
    Approved,
    Ended(&'static str, Outgoing),
    AgentGone,
}

/// Until the approval is approved or the hold ends otherwise.
async fn wait(
    state: &McpState,
    held: &mut Held,
    until: Instant,
    tx: Option<&mpsc::Sender<Bytes>>,
) -> Waited {
    // Before the first read, so a decision made meanwhile wakes it.
    let mut waiting = state.gate.waiters.wait(&held.approval_id);
    let mut shutdown = state.shutdown.clone();
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let approval = match read(state, &held.approval_id).await {
            Some(approval) => approval,
            None => return Waited::Ended("timed_out", held.pending.clone()),
        };
        let now = now_unix_ms();
        match approval.state_at(now) {
            ApprovalState::Approved => return Waited::Approved,
            ApprovalState::Pending => {}
            other => return ended_answer(held, &approval, other),
        }
        let left = u64::try_from(approval.expires_unix_ms.saturating_sub(now)).unwrap_or(0);
        let expiry = Instant::now() + Duration::from_millis(left);
        tokio::select! {
            biased;
            () = stopping(&mut shutdown) => {
                return Waited::Ended("shutdown", held.pending.clone());
            }
            () = gone(tx) => return Waited::AgentGone,
            () = waiting.woken() => {}
            () = tokio::time::sleep_until(expiry) => {}
            () = tokio::time::sleep_until(until) => {
                return Waited::Ended("timed_out", still_pending(state, held));
            }
            _ = keepalive.tick() => {
                if let Some(tx) = tx {
                    held.sent += 1;
                    let event = keepalive_event(held, Some(&approval), held.sent);
                    if tx.send(event).await.is_err() {
                        return Waited::AgentGone;
                    }
                }
            }
        }
    }
}

/// The approval as the ledger has it; `None` (logged) if it cannot be read.
async fn read(state: &McpState, id: &str) -> Option<Approval> {
    let reader = state.gate.reader.clone();
    let owned = id.to_owned();
    match tokio::task::spawn_blocking(move || reader.approval(&owned)).await {
        Ok(Ok(Some(approval))) => Some(approval),
        Ok(Ok(None)) => {
            tracing::warn!(approval_id = %id, "a held call's approval is not in the ledger");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(approval_id = %id, error = %e, "a held call's approval could not be read");
            None
        }
        Err(e) => {
            tracing::warn!(approval_id = %id, error = %e, "a held call's approval could not be read");
            None
        }
    }
}

/// Resolves when shutdown begins.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not held: only that it returned.
    let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
}

/// Resolves when the agent stopped reading the event stream (never for a
/// JSON answer: hyper drops the whole request when its connection closes).
async fn gone(tx: Option<&mpsc::Sender<Bytes>>) {
    match tx {
        Some(tx) => tx.closed().await,
        None => std::future::pending().await,
    }
}

fn ended_answer(held: &Held, approval: &Approval, state: ApprovalState) -> Waited {
    let id = &held.approval_id;
    let (ending, text) = match state {
        ApprovalState::Denied => {
            let vote = approval.votes.iter().find(|v| v.decision == VoteKind::Deny);
            let by = vote.map_or("an approver", |v| v.approver.as_str());
            let why = match vote.map(|v| v.reason.as_str()) {
                Some(reason) if !reason.is_empty() => format!(": {reason}"),
                _ => String::new(),
            };
            (
                "denied",
                format!("Approval {id} was denied by {by}{why}. The call was not run."),
            )
        }
        ApprovalState::Expired => (
            "expired",
            format!(
                "Approval {id} expired before it was approved. The call was not run; \
                 making it again asks for a new approval."
            ),
        ),
        _ => (
            "consumed",
            format!(
                "Approval {id} was used by another call with the same arguments. This one \
                 was not run; making it again asks for a new approval."
            ),
        ),
    };
    let mut meta = held.meta.clone();
    meta["approval_state"] = json!(state.as_str());
    Waited::Ended(ending, answers::tool_error(&held.call_id, text, meta))
}

/// The answer when the hold times out: the approval still stands.
fn still_pending(state: &McpState, held: &Held) -> Outgoing {
    let id = &held.approval_id;
    let waited = state.gate.approvals.hold_timeout.as_secs_f64();
    let text = format!(
        "Approval pending: nobody decided approval {id} within the {waited} s this call was \
         held, so it was not run. It still stands: once a person approves it \
         (`aegis-proxy approvals approve {id}`), make the same call again with the same \
         arguments and it runs once."
    );
    let mut meta = held.meta.clone();
    meta["approval_state"] = json!("pending");
    answers::tool_error(&held.call_id, text, meta)
}

/// A progress notification when the call asked for progress, else an SSE
/// comment. Progress counts the keep-alives sent (it must increase).
fn keepalive_event(held: &Held, approval: Option<&Approval>, sent: u64) -> Bytes {
    let id = &held.approval_id;
    let need = held.approvals_required;
    let have = approval.map_or(0, Approval::approvals);
    match &held.progress_token {
        Some(token) => {
            let message = format!(
                "waiting for a person to approve {id} ({have} of {need} approval{}; \
                 `aegis-proxy approvals approve {id}`)",
                if need == 1 { "" } else { "s" }
            );
            let notification = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": sent, "message": message},
            });
            data_event(notification.to_string().as_bytes())
        }
        None => format!(": waiting for approval {id} ({have} of {need})\n\n").into(),
    }
}

/// Whether the client takes an event stream (`Accept`).
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|range| range.split(';').next().unwrap_or_default().trim())
        .any(|media| media.eq_ignore_ascii_case("text/event-stream"))
}

/// One `message` event carrying `json`: each of its lines a `data:` line,
/// so that the event's data is the text itself (a line break inside JSON
/// is only ever whitespace).
fn data_event(json: &[u8]) -> Bytes {
    let mut out = b"event: message\n".to_vec();
    for line in json.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend(line.iter().filter(|b| **b != b'\r'));
        out.push(b'\n');
    }
    out.push(b'\n');
    out.into()
}

/// Sends the final answer down the held event stream: an event stream's
/// bytes as they come; a JSON answer as one event; anything else as the
/// sidecar's JSON-RPC error for the call (the stream's status was 200).
async fn pipe(
    response: Response<ProxyBody>,
    tx: &mpsc::Sender<Bytes>,
    call_id: &Id,
    upstream: &str,
    limit: usize,
) {
    let sse = upstream::media_type(response.headers()).as_deref() == Some("text/event-stream");
    let status = response.status();
    let mut body = response.into_body();
    if sse {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                return;
            }
        }
        return;
    }
    // Built or read whole by the sidecar already; bounded all the same.
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                bytes.clear();
                break;
            }
            bytes.extend_from_slice(&data);
        }
    }
    let json = serde_json::from_slice::<&serde_json::value::RawValue>(&bytes).is_ok();
    let event = if json && !bytes.is_empty() {
        data_event(&bytes)
    } else {
        let kind = match status {
            StatusCode::ACCEPTED => UpstreamKind::NoAnswer,
            _ => UpstreamKind::Status,
        };
        let failure = Failure::Upstream {
            upstream: upstream.to_owned(),
            kind,
        };
        answers::sse_event(&failure.answer(Some(call_id)))
    };
    let _ = tx.send(event).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::*;

    #[test]
    fn accept_takes_event_streams_in_any_position_and_case() {
        let mut h = HeaderMap::new();
        assert!(!accepts_event_stream(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!accepts_event_stream(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, Text/Event-Stream;q=0.9"),
        );
        assert!(accepts_event_stream(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-streams"),
        );
        assert!(!accepts_event_stream(&h));
    }

    #[test]
    fn a_json_answer_becomes_one_event_whose_data_is_the_json() {
        let event = data_event(b"{\r\n  \"a\": 1,\n  \"b\": [2]\n}");
        let text = std::str::from_utf8(&event).unwrap();
        assert_eq!(
            text,
            "event: message\ndata: {\ndata:   \"a\": 1,\ndata:   \"b\": [2]\ndata: }\n\n"
        );
        // What an SSE client reads back is the same JSON.
        let mut parser = crate::mcp::sse::SseParser::new(1 << 20);
        let mut events = Vec::new();
        parser.feed(&event, &mut events);
        assert_eq!(events.len(), 1);
        let parsed: Value = serde_json::from_slice(&events[0].data).unwrap();
        assert_eq!(parsed, json!({"a": 1, "b": [2]}));
    }
}

//! Resumed streams: MCP's "resumability and redelivery". An upstream may end
//! a POST's event stream before it answers (having sent an event `id:`),
//! expecting the client to reconnect with `GET` and `Last-Event-ID` and get
//! the answer there. Through the sidecar that answer must be what it is on
//! the POST stream: recorded before the agent sees it (so the taint is in
//! place), held to the call's limits, and never a way around either.
//!
//! - When a POST's stream ends (or the agent hangs up) with requests still
//!   unanswered and the stream carried an event id, the end passes through
//!   untouched and those requests are **adopted** here, keyed by (upstream,
//!   tenant, session, `Mcp-Session-Id`), each with its deadline (a call's
//!   `timeout_ms`, else the upstream's timeout). At most [`MAX_AWAITING`]
//!   wait at once; beyond that (or without an event id) the stream's end is
//!   answered as before: `-32603`, `no_answer`.
//! - Every `GET` event stream from the upstream is relayed event by event
//!   and inspected. A JSON-RPC answer whose id a waiting request of the
//!   same key holds **settles** it exactly as on the POST stream: a call's
//!   `TOOL_RESULT` (withheld over `max_output_bytes`), a read's recorded
//!   content, a `tools/list` filtered. Any other answer on a GET stream is
//!   **dropped** (not relayed): the specification lets a server answer on a
//!   GET stream only when resuming, so an answer for nothing waiting is one
//!   that would reach the agent unrecorded. Answers settled here are
//!   remembered for [`REPLAY_WINDOW`], so a client resuming from an earlier
//!   event gets the same answer again (**replayed**; a different one with
//!   the same id is dropped).
//! - A call whose answer does not arrive by its deadline is recorded as
//!   timed out (`ERROR_RAISED` `{error: "timeout"}`); an answer arriving
//!   later is replaced by the timed-out tool error.
//! - An event too large to inspect (over `mcp.limits.max_response_bytes`)
//!   is never relayed: the waiting request it answers (the only one, or the
//!   one its first bytes name) gets the withheld-result error instead.
//!
//! Counted in `aegis_mcp_resumed_answers_total{outcome}` and
//! `aegis_mcp_awaiting_resumption`. Waiting requests live in memory: a
//! sidecar restart forgets them (their proposals and decisions are in the
//! ledger; their results never reached the agent through it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant as Deadline;

use super::answers;
use super::identity::Identity;
use super::inputs::Read;
use super::jsonrpc::Id;
use super::relay::{
    ChannelBody, Ending, Exchange, Pending, ProxyBody, RELAY_QUEUE, Recorder, filter_tools_with,
    too_large, too_large_error,
};
use super::server::McpState;
use super::sse::{SseEvent, SseParser};
use super::upstream::{self, Upstream};

/// The `outcome` label values of `aegis_mcp_resumed_answers_total`.
pub const OUTCOMES: [&str; 4] = ["settled", "replayed", "dropped", "too_large"];
/// Requests waiting for a resumed stream, across all sessions.
pub const MAX_AWAITING: usize = 1024;
/// How long an answer settled on a resumed stream is remembered for replay.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// Answers remembered for replay, across all sessions (oldest forgotten).
const MAX_REMEMBERED: usize = 1024;

/// Whose stream an answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamKey {
    upstream: String,
    tenant: String,
    session: String,
    mcp_session: Option<String>,
}

impl StreamKey {
    fn new(upstream: &str, identity: &Identity) -> StreamKey {
        StreamKey {
            upstream: upstream.to_owned(),
            tenant: identity.tenant_id.clone(),
            session: identity.session_id.clone(),
            mcp_session: identity.mcp_session_id.clone(),
        }
    }
}

/// The POST a waiting request came in.
#[derive(Debug)]
struct Origin {
    upstream: Arc<Upstream>,
    identity: Identity,
    started: Instant,
}

impl Origin {
    fn recorder<'a>(&'a self, state: &'a Arc<McpState>) -> Recorder<'a> {
        Recorder {
            state,
            upstream: &self.upstream,
            identity: &self.identity,
            started: self.started,
        }
    }
}

#[derive(Debug)]
enum Awaited {
    Call(Pending),
    Read(Read),
    ToolsList(Id),
    Other(Id),
}

impl Awaited {
    fn id(&self) -> &Id {
        match self {
            Awaited::Call(call) => &call.id,
            Awaited::Read(read) => &read.id,
            Awaited::ToolsList(id) | Awaited::Other(id) => id,
        }
    }
}

#[derive(Debug)]
struct Waiting {
    /// The adopting exchange (its expiry task's).
    serial: u64,
    origin: Arc<Origin>,
    awaited: Awaited,
    deadline: Deadline,
}

/// What a second answer with a settled id gets.
#[derive(Debug, Clone)]
enum Replay {
    /// Relayed again if it is the same answer (by SHA-256).
    Same { sha256: [u8; 32] },
    /// This event instead (the replacement the first answer got).
    Instead(Bytes),
    /// Filtered again (a `tools/list`).
    Filter,
}

#[derive(Debug)]
struct Remembered {
    key: StreamKey,
    id: Id,
    replay: Replay,
    until: Deadline,
}

enum Claim {
    Waiting(Waiting),
    Settled(Replay),
    Nothing,
}

#[derive(Debug, Default)]
struct Inner {
    waiting: HashMap<StreamKey, Vec<Waiting>>,
    count: usize,
    remembered: VecDeque<Remembered>,
    next_serial: u64,
}

/// The requests waiting for resumed streams (one per MCP listener).
#[derive(Debug, Default)]
pub struct Resumable {
    inner: Mutex<Inner>,
}

impl Resumable {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().count
    }

    /// Takes the waiting request `id` of `key`, or says how it was settled.
    fn claim(&self, key: &StreamKey, id: &Id) -> Claim {
        let mut inner = self.lock();
        if let Some(waiting) = inner.take(key, |w| w.awaited.id() == id) {
            return Claim::Waiting(waiting);
        }
        let now = Deadline::now();
        inner
            .remembered
            .iter()
            .find(|r| r.until > now && &r.key == key && &r.id == id)
            .map_or(Claim::Nothing, |r| Claim::Settled(r.replay.clone()))
    }

    /// Takes the waiting request of `key` that an oversized event's first
    /// bytes name (or the only one).
    fn claim_mentioned(&self, key: &StreamKey, data: &[u8]) -> Option<Waiting> {
        let mut inner = self.lock();
        let only = inner.waiting.get(key).is_some_and(|list| list.len() == 1);
        inner.take(key, |w| {
            only || super::relay::mentions_id(data, w.awaited.id())
        })
    }

    fn remember(&self, key: StreamKey, id: Id, replay: Replay) {
        let mut inner = self.lock();
        let now = Deadline::now();
        while inner
            .remembered
            .front()
            .is_some_and(|r| r.until <= now || inner.remembered.len() >= MAX_REMEMBERED)
        {
            inner.remembered.pop_front();
        }
        inner.remembered.push_back(Remembered {
            key,
            id,
            replay,
            until: now + REPLAY_WINDOW,
        });
    }

    /// The earliest deadline among `serial`'s requests still waiting.
    fn next_deadline(&self, serial: u64) -> Option<Deadline> {
        let inner = self.lock();
        inner
            .waiting
            .values()
            .flatten()
            .filter(|w| w.serial == serial)
            .map(|w| w.deadline)
            .min()
    }

    /// Takes `serial`'s requests whose deadline has passed.
    fn take_expired(&self, serial: u64, now: Deadline) -> Vec<(StreamKey, Waiting)> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        let keys: Vec<StreamKey> = inner.waiting.keys().cloned().collect();
        for key in keys {
            while let Some(w) = inner.take(&key, |w| w.serial == serial && w.deadline <= now) {
                out.push((key.clone(), w));
            }
        }
        out
    }
}

impl Inner {
    fn take(&mut self, key: &StreamKey, which: impl Fn(&Waiting) -> bool) -> Option<Waiting> {
        let list = self.waiting.get_mut(key)?;
        let at = list.iter().position(which)?;
        let waiting = list.swap_remove(at);
        if list.is_empty() {
            self.waiting.remove(key);
        }
        self.count -= 1;
        Some(waiting)
    }
}

/// Keeps what `exchange` still waits for, for a resumed stream; the
/// exchange back (`Some`) when nothing waits or the table is full.
pub(super) fn adopt(mut exchange: Exchange) -> Option<Exchange> {
    let answered = std::mem::take(&mut exchange.answered);
    let calls = std::mem::take(&mut exchange.calls);
    let reads = std::mem::take(&mut exchange.reads);
    let pending = |id: &Id| {
        !answered.contains(id)
            && !calls.iter().any(|c| &c.id == id)
            && !reads.iter().any(|r| &r.id == id)
    };
    let lists: Vec<Id> = exchange
        .tools_list
        .iter()
        .filter(|id| pending(id))
        .cloned()
        .collect();
    let others: Vec<Id> = exchange
        .forwarded_requests
        .iter()
        .filter(|id| pending(id) && !exchange.tools_list.contains(id))
        .cloned()
        .collect();
    let total = calls.len() + reads.len() + lists.len() + others.len();
    let state = exchange.state.clone();
    let mut inner = state.resumable.lock();
    if total == 0 || inner.count + total > MAX_AWAITING {
        drop(inner);
        if total > 0 {
            tracing::warn!(
                upstream = %exchange.upstream.name,
                waiting = total,
                max = MAX_AWAITING,
                "too many requests waiting for resumed streams; this one's end is answered now"
            );
        }
        exchange.calls = calls;
        exchange.reads = reads;
        exchange.answered = answered;
        return Some(exchange);
    }
    let serial = inner.next_serial;
    inner.next_serial += 1;
    let origin = Arc::new(Origin {
        upstream: exchange.upstream.clone(),
        identity: exchange.identity.clone(),
        started: exchange.started,
    });
    let start = Deadline::from_std(exchange.started);
    let default_deadline = start + exchange.upstream.timeout;
    let key = StreamKey::new(&exchange.upstream.name, &exchange.identity);
    let list = inner.waiting.entry(key).or_default();
    let mut push = |awaited: Awaited, deadline: Deadline| {
        list.push(Waiting {
            serial,
            origin: origin.clone(),
            awaited,
            deadline,
        });
    };
    for call in calls {
        let deadline = start + call.timeout;
        push(Awaited::Call(call), deadline);
    }
    for read in reads {
        push(Awaited::Read(read), default_deadline);
    }
    for id in lists {
        push(Awaited::ToolsList(id), default_deadline);
    }
    for id in others {
        push(Awaited::Other(id), default_deadline);
    }
    inner.count += total;
    let count = inner.count;
    drop(inner);
    gauge(&state, count);
    tracing::info!(
        upstream = %exchange.upstream.name,
        session = %exchange.identity.session_id,
        waiting = total,
        "the event stream ended before its answers; waiting for the client to resume it"
    );
    tokio::spawn(expire(state, serial));
    None
}

fn gauge(state: &McpState, count: usize) {
    state
        .metrics
        .mcp
        .awaiting_resumption
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

fn count(state: &McpState, outcome: &'static str) {
    state
        .metrics
        .mcp
        .resumed_answers
        .with_label_values(&[outcome])
        .inc();
}

/// Records `serial`'s calls that were not answered in time, until none of
/// its requests wait (or the sidecar shuts down).
async fn expire(state: Arc<McpState>, serial: u64) {
    let mut shutdown = state.shutdown.clone();
    while let Some(at) = state.resumable.next_deadline(serial) {
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        for (key, waiting) in state.resumable.take_expired(serial, Deadline::now()) {
            if let Awaited::Call(call) = &waiting.awaited {
                let recorder = waiting.origin.recorder(&state);
                // Remembered first: a late answer arriving while the
                // timeout is being recorded already gets the tool error.
                let event = answers::sse_event(&recorder.timed_out(call));
                state
                    .resumable
                    .remember(key, call.id.clone(), Replay::Instead(event));
                recorder.call(call, Ending::TimedOut).await;
            }
        }
        gauge(&state, state.resumable.waiting());
    }
}

/// A GET's event stream: relayed event by event from a task, each answer
/// in it settling what waits for it.
pub(super) fn relay_stream(
    state: Arc<McpState>,
    upstream: &Upstream,
    identity: &Identity,
    response: Response<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let (tx, rx) = mpsc::channel::<Bytes>(RELAY_QUEUE);
    let key = StreamKey::new(&upstream.name, identity);
    tokio::spawn(stream_task(state, key, body, tx));
    let mut response = Response::new(ChannelBody { rx }.boxed_unsync());
    *response.status_mut() = parts.status;
    *response.headers_mut() = upstream::response_headers(parts.headers, true);
    response
}

async fn stream_task(
    state: Arc<McpState>,
    key: StreamKey,
    mut body: Incoming,
    tx: mpsc::Sender<Bytes>,
) {
    let limit = state.config.max_response_bytes;
    let mut parser = SseParser::new(limit);
    let mut raw = BytesMut::new();
    // The event being read is too large to hold: its bytes are dropped.
    let mut skipping = false;
    let (mut events, mut marks) = (Vec::<SseEvent>::new(), Vec::new());
    let mut shutdown = state.shutdown.clone();
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let chunk = match next {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "a GET event stream broke off");
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        events.clear();
        marks.clear();
        parser.feed_framed(&chunk, &mut events, &mut marks);
        let mut start = 0;
        for mark in &marks {
            let piece = chunk.slice(start..mark.offset);
            start = mark.offset;
            let block = if skipping {
                None
            } else {
                raw.extend_from_slice(&piece);
                Some(raw.split().freeze())
            };
            skipping = false;
            let event = mark.event.and_then(|i| events.get(i));
            let out = match (block, event) {
                (Some(block), Some(event)) if event.is_complete() => {
                    on_event(&state, &key, block, event).await
                }
                (Some(block), None) => Some(block),
                (_, Some(event)) => on_oversized(&state, &key, event).await,
                (None, None) => None,
            };
            if let Some(out) = out
                && tx.send(out).await.is_err()
            {
                return;
            }
        }
        if !skipping {
            raw.extend_from_slice(&chunk[start..]);
            if raw.len() > limit || parser.pending_data_len() > limit {
                raw.clear();
                skipping = true;
            }
        }
    }
    // An unterminated last event is not an event (WHATWG): not relayed.
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
    if message.is_array() {
        // A batch in one event: answers in it could not be settled one by
        // one, so one holding an answer is not relayed.
        if message
            .as_array()
            .is_some_and(|items| items.iter().any(is_answer))
        {
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
    if filter_tools_with(&state.manifests, &mut message) {
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
            recorder.call(call, too_large(event)).await?
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::UpstreamConfig;
    use crate::identity::{PrincipalSource, SessionSource};

    fn id(n: u64) -> Id {
        Id::from_value(&Value::from(n)).unwrap()
    }

    fn key(mcp_session: &str) -> StreamKey {
        StreamKey {
            upstream: "tools".into(),
            tenant: "t".into(),
            session: "s".into(),
            mcp_session: Some(mcp_session.into()),
        }
    }

    fn origin() -> Arc<Origin> {
        let config = UpstreamConfig {
            name: "tools".into(),
            url: "http://127.0.0.1:9/mcp".parse().unwrap(),
            tls: None,
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
        };
        let upstream = Upstream::new(&config, &upstream::client(None)).unwrap();
        Arc::new(Origin {
            upstream: Arc::new(upstream),
            identity: Identity {
                tenant_id: "t".into(),
                user_id: String::new(),
                session_id: "s".into(),
                session_source: SessionSource::Principal,
                principal: "s".into(),
                principal_source: PrincipalSource::Config,
                mcp_session_id: Some("m".into()),
            },
            started: Instant::now(),
        })
    }

    fn add(table: &Resumable, key: StreamKey, serial: u64, n: u64, deadline: Deadline) {
        let mut inner = table.lock();
        inner.waiting.entry(key).or_default().push(Waiting {
            serial,
            origin: origin(),
            awaited: Awaited::Other(id(n)),
            deadline,
        });
        inner.count += 1;
    }

    #[tokio::test]
    async fn a_waiting_request_is_claimed_once_and_only_under_its_key() {
        let table = Resumable::default();
        let later = Deadline::now() + Duration::from_secs(60);
        add(&table, key("m"), 0, 1, later);
        add(&table, key("m"), 0, 2, later);
        assert_eq!(table.waiting(), 2);
        // Another MCP session's stream cannot take it.
        assert!(matches!(table.claim(&key("other"), &id(1)), Claim::Nothing));
        assert!(matches!(table.claim(&key("m"), &id(3)), Claim::Nothing));
        let Claim::Waiting(w) = table.claim(&key("m"), &id(1)) else {
            panic!("not claimed")
        };
        assert_eq!(w.awaited.id(), &id(1));
        assert!(matches!(table.claim(&key("m"), &id(1)), Claim::Nothing));
        assert_eq!(table.waiting(), 1);
        // Remembered once settled: a replay is recognised, under its key only.
        table.remember(key("m"), id(1), Replay::Same { sha256: [7; 32] });
        assert!(matches!(
            table.claim(&key("m"), &id(1)),
            Claim::Settled(Replay::Same { sha256: [7, ..] })
        ));
        assert!(matches!(table.claim(&key("x"), &id(1)), Claim::Nothing));
    }

    #[tokio::test]
    async fn expiry_takes_only_its_own_past_deadlines() {
        let table = Resumable::default();
        let now = Deadline::now();
        add(&table, key("m"), 1, 1, now);
        add(&table, key("m"), 1, 2, now + Duration::from_secs(60));
        add(&table, key("n"), 2, 3, now);
        assert_eq!(table.next_deadline(1), Some(now));
        let expired = table.take_expired(1, now);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].1.awaited.id(), &id(1));
        assert_eq!(table.next_deadline(1), Some(now + Duration::from_secs(60)));
        assert_eq!(table.waiting(), 2);
        assert_eq!(table.take_expired(2, now).len(), 1);
        assert_eq!(table.next_deadline(2), None);
    }

    #[tokio::test]
    async fn remembered_answers_are_bounded() {
        let table = Resumable::default();
        for n in 0..(MAX_REMEMBERED as u64 + 10) {
            table.remember(key("m"), id(n), Replay::Filter);
        }
        assert_eq!(table.lock().remembered.len(), MAX_REMEMBERED);
        assert!(matches!(table.claim(&key("m"), &id(0)), Claim::Nothing));
        assert!(matches!(
            table.claim(&key("m"), &id(MAX_REMEMBERED as u64 + 9)),
            Claim::Settled(Replay::Filter)
        ));
    }

    #[test]
    fn outcomes_are_the_metric_label_set() {
        assert_eq!(OUTCOMES, ["settled", "replayed", "dropped", "too_large"]);
    }
}

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

pub mod stream;

use bytes::Bytes;
use tokio::time::Instant as Deadline;

use super::McpState;
use super::answers;
use super::exchange::{Call, Exchange};
use super::inputs::Read;
use super::jsonrpc::Id;
use super::settle::{self, Ending, Recorder};
use super::upstream::Upstream;
use crate::identity::Identity;

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
    Call(Call),
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
        inner.take(key, |w| only || settle::mentions_id(data, w.awaited.id()))
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
pub fn adopt(mut exchange: Exchange) -> Option<Exchange> {
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
    let mut shutdown = state.streams_end.clone();
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
                let event = answers::sse_event(&settle::timed_out(call));
                state
                    .resumable
                    .remember(key, call.id.clone(), Replay::Instead(event));
                recorder.call(call, Ending::TimedOut).await;
            }
        }
        gauge(&state, state.resumable.waiting());
    }
}

#[cfg(test)]
mod tests;

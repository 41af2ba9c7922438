//! Response bodies, and Server-Sent Events.
//!
//! A streamed answer is a bounded channel of finished events: the task
//! answering a POST (or a session, for the GET stream) holds the sender; the
//! body holds the receiver, and ends when every sender is gone. Each event
//! is one frame, written out as it comes.
//!
//! Event ids come from one server-wide counter, taken when an event is
//! finished, so they are unique across streams and rise within each. Every
//! stream opens with a priming event (an id and empty data) and
//! `retry: 1000`, as 2025-11-25 servers do.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::jsonrpc;

/// Events buffered ahead of a slow reader before the writer waits.
pub(crate) const STREAM_BUFFER: usize = 16;
/// What a client waits before reconnecting, in milliseconds.
const RETRY_MS: u32 = 1000;
/// Room kept in front of an event's JSON for its head, which is written
/// last (once the id is known) without moving the JSON: `id: ` and up to
/// 20 digits and `\nevent: message\ndata: ` fit.
const HEAD_ROOM: usize = 64;

/// A response body: whole, or a stream of SSE events.
#[derive(Debug)]
pub(crate) enum AnswerBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl AnswerBody {
    pub(crate) fn empty() -> AnswerBody {
        AnswerBody::Full(None)
    }

    pub(crate) fn full(bytes: impl Into<Bytes>) -> AnswerBody {
        AnswerBody::Full(Some(bytes.into()))
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AnswerBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            AnswerBody::Stream(events) => {
                events.poll_recv(cx).map(|e| e.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, AnswerBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AnswerBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            AnswerBody::Full(None) => SizeHint::with_exact(0),
            AnswerBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// The server-wide event id counter.
#[derive(Debug, Default)]
pub(crate) struct EventIds(AtomicU64);

impl EventIds {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    /// `id: N`, `retry: 1000`, empty data: the event a stream opens with.
    pub(crate) fn priming(&self) -> Bytes {
        Bytes::from(format!("id: {}\nretry: {RETRY_MS}\ndata:\n\n", self.next()))
    }

    /// A buffer for one message event: append one line of JSON, then
    /// [`EventIds::finish`] it.
    pub(crate) fn buffer(capacity: usize) -> Vec<u8> {
        let mut event = Vec::with_capacity(HEAD_ROOM + capacity + 2);
        event.resize(HEAD_ROOM, b' ');
        event
    }

    /// Gives the event in `buffer` its id and head; the JSON is not copied.
    pub(crate) fn finish(&self, mut buffer: Vec<u8>) -> Bytes {
        let mut head = [0u8; HEAD_ROOM];
        let mut rest = &mut head[..];
        // 4 + 20 + 22 bytes at most: always fits.
        let _ = write!(rest, "id: {}\nevent: message\ndata: ", self.next());
        let len = HEAD_ROOM - rest.len();
        let start = HEAD_ROOM - len;
        buffer[start..HEAD_ROOM].copy_from_slice(&head[..len]);
        buffer.extend_from_slice(b"\n\n");
        Bytes::from(buffer).slice(start..)
    }
}

/// The receiving end is gone: the client left, or the server is stopping.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the event stream is closed")]
pub(crate) struct Closed;

/// The sending end of one POST's SSE answer.
#[derive(Debug)]
pub(crate) struct EventSink {
    tx: mpsc::Sender<Bytes>,
    ids: Arc<EventIds>,
}

impl EventSink {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>, ids: Arc<EventIds>) -> EventSink {
        EventSink { tx, ids }
    }

    /// Sends the priming event.
    pub(crate) async fn prime(&self) -> Result<(), Closed> {
        self.tx.send(self.ids.priming()).await.map_err(|_| Closed)
    }

    /// Sends the message event in `buffer` (from [`EventIds::buffer`]);
    /// waits while the stream's buffer is full.
    pub(crate) async fn send(&self, buffer: Vec<u8>) -> Result<(), Closed> {
        self.tx
            .send(self.ids.finish(buffer))
            .await
            .map_err(|_| Closed)
    }

    /// Sends a JSON-RPC notification as a message event.
    pub(crate) async fn notify(&self, method: &str, params: &impl Serialize) -> Result<(), Closed> {
        let mut event = EventIds::buffer(128);
        jsonrpc::write_notification(&mut event, method, params);
        self.send(event).await
    }

    /// Resolves when the body is gone.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed() {
        let ids = EventIds::default();
        assert_eq!(ids.priming(), "id: 0\nretry: 1000\ndata:\n\n");
        let mut event = EventIds::buffer(8);
        event.extend_from_slice(b"{}");
        assert_eq!(ids.finish(event), "id: 1\nevent: message\ndata: {}\n\n");
    }

    #[test]
    fn the_longest_head_fits() {
        let ids = EventIds(AtomicU64::new(u64::MAX));
        let mut event = EventIds::buffer(2);
        event.extend_from_slice(b"{}");
        let event = ids.finish(event);
        assert!(event.starts_with(format!("id: {}\n", u64::MAX).as_bytes()));
    }
}

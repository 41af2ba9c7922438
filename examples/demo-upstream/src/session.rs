//! Sessions (stateful mode): ids minted on `initialize`, the GET streams
//! held open for each, and their end (DELETE, or the server stopping).
//!
//! A session holds the senders of its GET streams: removing the session
//! drops them, which ends those streams. Nothing else is kept per session.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Sessions alive at once; `initialize` past it is refused (503).
const MAX_SESSIONS: usize = 10_000;
/// GET streams open at once per session; more is refused (409).
const MAX_STREAMS_PER_SESSION: usize = 8;

/// Why a session operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unknown,
    TooManySessions,
    TooManyStreams,
    ShuttingDown,
}

/// Every live session. One short lock per lookup, never across an `.await`.
#[derive(Debug)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
    /// Keyed SipHash of a counter: unpredictable ids without a
    /// random-number crate (the keys are random per process).
    keys: RandomState,
    minted: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<Box<str>, Vec<mpsc::Sender<Bytes>>>,
    /// Set at shutdown: nothing new opens after.
    closed: bool,
}

impl Sessions {
    pub(crate) fn new() -> Sessions {
        Sessions {
            inner: Mutex::new(Inner::default()),
            keys: RandomState::new(),
            minted: AtomicU64::new(0),
        }
    }

    /// A new session's id: 32 hex digits.
    pub(crate) fn create(&self) -> Result<String, Refusal> {
        let n = self.minted.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "{:016x}{:016x}",
            self.keys.hash_one((n, 0u8)),
            self.keys.hash_one((n, 1u8))
        );
        let mut inner = self.lock();
        if inner.closed {
            return Err(Refusal::ShuttingDown);
        }
        if inner.live.len() >= MAX_SESSIONS {
            return Err(Refusal::TooManySessions);
        }
        inner.live.insert(id.as_str().into(), Vec::new());
        Ok(id)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().live.contains_key(id)
    }

    /// Ends a session and its GET streams; false if it was not live.
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.lock().live.remove(id).is_some()
    }

    /// Keeps `stream` open until the session ends.
    pub(crate) fn attach(&self, id: &str, stream: mpsc::Sender<Bytes>) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Refusal::ShuttingDown);
        }
        let streams = inner.live.get_mut(id).ok_or(Refusal::Unknown)?;
        streams.retain(|s| !s.is_closed());
        if streams.len() >= MAX_STREAMS_PER_SESSION {
            return Err(Refusal::TooManyStreams);
        }
        streams.push(stream);
        Ok(())
    }

    /// Ends every session (and so every GET stream); refuses new ones.
    pub(crate) fn close_all(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.live.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn sessions_live_until_removed() {
        let sessions = Sessions::new();
        let a = sessions.create().unwrap();
        let b = sessions.create().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(sessions.contains(&a));
        assert!(sessions.remove(&a));
        assert!(!sessions.contains(&a));
        assert!(!sessions.remove(&a));
        let (tx, _rx) = mpsc::channel(1);
        assert_eq!(sessions.attach(&a, tx.clone()), Err(Refusal::Unknown));
        assert_eq!(sessions.attach(&b, tx), Ok(()));
    }

    #[test]
    fn closing_ends_streams_and_refuses_new_sessions() {
        let sessions = Sessions::new();
        let id = sessions.create().unwrap();
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        sessions.attach(&id, tx).unwrap();
        sessions.close_all();
        assert!(rx.try_recv().is_err());
        assert!(rx.is_closed());
        assert_eq!(sessions.create(), Err(Refusal::ShuttingDown));
    }

    #[test]
    fn streams_per_session_are_bounded() {
        let sessions = Sessions::new();
        let id = sessions.create().unwrap();
        let mut receivers = Vec::new();
        for _ in 0..MAX_STREAMS_PER_SESSION {
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            receivers.push(rx);
            sessions.attach(&id, tx).unwrap();
        }
        let (tx, _rx) = mpsc::channel::<Bytes>(1);
        assert_eq!(
            sessions.attach(&id, tx.clone()),
            Err(Refusal::TooManyStreams)
        );
        // A stream whose client left frees its place.
        receivers.pop();
        assert_eq!(sessions.attach(&id, tx), Ok(()));
    }
}

//! Connections that have not yet sent a whole request head.
//!
//! Until its first request head arrives, a connection holds a slot of the
//! listener's cap and nothing else: no request is in flight, so closing it
//! loses nothing. A client that opens connections and sends nothing (or
//! trickles a few bytes) could otherwise hold every slot — hyper-util's
//! protocol detection has no timer, and hyper's header timer starts only
//! after it — and lock everyone else out, the kubelet's probes included.
//! So each such connection is
//!
//! - **closed after the header timeout** counted from its accept (TLS
//!   handshake included), whatever it sent meanwhile;
//! - **closed to make room** when the listener is at its cap and another
//!   connection arrives: the one that has been waiting longest goes first.
//!
//! Once its first request head is in, a connection is an ordinary one:
//! HTTP/1.1's own header timer bounds the wait for each later request, and
//! it is never closed to make room.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// Why a connection was closed before its first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No whole request head within the header timeout.
    Timeout,
    /// The listener was at its cap and this was the oldest such connection.
    MadeRoom,
}

const OPENING: u8 = 0;
const SERVING: u8 = 1;
const CLOSED: u8 = 2;

/// One connection before its first request.
#[derive(Debug)]
pub struct Pending {
    id: u64,
    state: AtomicU8,
    close: Notify,
}

impl Pending {
    /// Whether the first request head has arrived (one relaxed load: this
    /// is asked on every request).
    pub fn serving(&self) -> bool {
        self.state.load(Ordering::Relaxed) == SERVING
    }
}

/// A listener's connections before their first request, oldest first.
#[derive(Debug, Default)]
pub struct Openings {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    waiting: BTreeMap<u64, Arc<Pending>>,
}

impl Openings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection just accepted; it leaves when its guard drops.
    pub fn register(self: &Arc<Self>) -> Registered {
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        let pending = Arc::new(Pending {
            id,
            state: AtomicU8::new(OPENING),
            close: Notify::new(),
        });
        inner.waiting.insert(id, pending.clone());
        Registered {
            openings: self.clone(),
            pending,
        }
    }

    /// `pending`'s first request head has arrived: from now on it is never
    /// closed by this module. Whether it was still open (a connection being
    /// closed may still parse the head it had buffered).
    pub fn started(&self, pending: &Pending) -> bool {
        let won = pending
            .state
            .compare_exchange(OPENING, SERVING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            self.lock().waiting.remove(&pending.id);
        }
        won
    }

    /// Closes the connection that has waited longest for its first request;
    /// `false` when every connection is past it.
    pub fn close_oldest(&self) -> bool {
        let mut inner = self.lock();
        while let Some((_, pending)) = inner.waiting.pop_first() {
            if pending
                .state
                .compare_exchange(OPENING, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                pending.close.notify_one();
                return true;
            }
        }
        false
    }

    /// Connections waiting for their first request.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }
}

/// A registered connection; dropping it (the connection's task ended)
/// forgets it.
#[derive(Debug)]
pub struct Registered {
    openings: Arc<Openings>,
    pending: Arc<Pending>,
}

impl Registered {
    pub fn pending(&self) -> &Arc<Pending> {
        &self.pending
    }

    /// Resolves when the connection must close before its first request:
    /// `timeout` after it was accepted, or when it is chosen to make room.
    /// Never resolves once its first request has arrived.
    pub async fn closed(&self, timeout: Duration) -> Closed {
        tokio::select! {
            () = tokio::time::sleep(timeout) => {
                let timed_out = self
                    .pending
                    .state
                    .compare_exchange(OPENING, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
                if timed_out {
                    self.openings.lock().waiting.remove(&self.pending.id);
                    return Closed::Timeout;
                }
                // Serving (never closed here), or chosen to make room just
                // now: then the notification below is on its way.
                if self.pending.state.load(Ordering::Acquire) == CLOSED {
                    self.pending.close.notified().await;
                    return Closed::MadeRoom;
                }
                std::future::pending().await
            }
            () = self.pending.close.notified() => Closed::MadeRoom,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.pending.state.load(Ordering::Acquire) == OPENING {
            self.openings.lock().waiting.remove(&self.pending.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_one_that_started_never_does() {
        let openings = Arc::new(Openings::default());
        let silent = openings.register();
        assert_eq!(
            silent.closed(Duration::from_secs(10)).await,
            Closed::Timeout
        );
        assert_eq!(openings.len(), 0);

        let busy = openings.register();
        assert!(openings.started(busy.pending()));
        assert!(busy.pending().serving());
        let never = tokio::time::timeout(LONG, busy.closed(Duration::from_secs(10))).await;
        assert!(never.is_err(), "a serving connection is never closed here");
        assert!(!openings.close_oldest(), "nothing left to close");
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_waiting_connection_makes_room_first() {
        let openings = Arc::new(Openings::default());
        let first = openings.register();
        let second = openings.register();
        let third = openings.register();
        assert!(openings.started(second.pending()));
        assert!(openings.close_oldest());
        assert_eq!(first.closed(LONG).await, Closed::MadeRoom);
        assert!(
            !openings.started(first.pending()),
            "a closed connection does not start serving"
        );
        assert!(openings.close_oldest());
        assert_eq!(third.closed(LONG).await, Closed::MadeRoom);
        assert!(!openings.close_oldest());
        drop((first, second, third));
        assert_eq!(openings.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ends_is_forgotten() {
        let openings = Arc::new(Openings::default());
        let gone = openings.register();
        drop(gone);
        assert_eq!(openings.len(), 0);
        assert!(!openings.close_oldest());
    }
}

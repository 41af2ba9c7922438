//! Calls held open for their approval (`approval.mode: hold`), woken when
//! it is voted on or expires. A wake-up says only "look again": the held
//! call reads the approval from the ledger, which is the one truth, so a
//! lost or extra wake-up can delay an answer (never past the next
//! keep-alive) but never change it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// Who waits on which approval. Cheap to clone; one per process, shared by
/// the MCP listener (which waits), the approvals API and the expiry sweep
/// (which wake).
#[derive(Debug, Clone, Default)]
pub struct Waiters {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    tx: watch::Sender<u64>,
    /// Held calls waiting on this approval; the entry goes with the last.
    holders: usize,
}

/// One held call's place in [`Waiters`]; leaves it when dropped.
#[derive(Debug)]
pub struct Waiting {
    waiters: Waiters,
    id: String,
    rx: watch::Receiver<u64>,
}

impl Waiters {
    /// Starts waiting on approval `id`. A wake-up after this call is seen
    /// by [`Waiting::woken`], so read the approval after calling it.
    pub fn wait(&self, id: &str) -> Waiting {
        let mut map = self.lock();
        let entry = map.entry(id.to_owned()).or_insert_with(|| Entry {
            tx: watch::channel(0).0,
            holders: 0,
        });
        entry.holders += 1;
        Waiting {
            waiters: self.clone(),
            id: id.to_owned(),
            rx: entry.tx.subscribe(),
        }
    }

    /// Wakes every call held on approval `id` (after its change is durable).
    pub fn wake(&self, id: &str) {
        if let Some(entry) = self.lock().get(id) {
            entry.tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Approvals that have calls held on them.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // The map stays consistent whatever panicked while holding it: each
        // change is one insert, increment or removal.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Waiting {
    /// Returns when the approval was woken since the last return (or since
    /// [`Waiters::wait`]).
    pub async fn woken(&mut self) {
        // The sender lives in the map while this holder does, so `changed`
        // only fails if it was dropped: then there is nothing to wait for.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        if let Some(entry) = map.get_mut(&self.id) {
            entry.holders = entry.holders.saturating_sub(1);
            if entry.holders == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("within the test's guard")
    }

    #[tokio::test]
    async fn a_wake_reaches_every_holder_of_that_approval_and_no_other() {
        let waiters = Waiters::default();
        let mut a1 = waiters.wait("a");
        let mut a2 = waiters.wait("a");
        let mut b = waiters.wait("b");
        assert_eq!(waiters.len(), 2);
        waiters.wake("a");
        within(a1.woken()).await;
        within(a2.woken()).await;
        // `b` was not woken: a wake of `b` now is the one it sees.
        let pending = tokio::time::timeout(Duration::ZERO, b.woken()).await;
        assert!(pending.is_err(), "b woken by a's wake");
        waiters.wake("b");
        within(b.woken()).await;
    }

    #[tokio::test]
    async fn a_wake_between_wait_and_woken_is_not_lost() {
        let waiters = Waiters::default();
        let mut held = waiters.wait("a");
        // The approval is decided before the held call gets to await.
        waiters.wake("a");
        within(held.woken()).await;
    }

    #[tokio::test]
    async fn entries_go_with_their_last_holder_and_unknown_wakes_are_nothing() {
        let waiters = Waiters::default();
        waiters.wake("nobody");
        let a1 = waiters.wait("a");
        let a2 = waiters.wait("a");
        drop(a1);
        assert_eq!(waiters.len(), 1);
        drop(a2);
        assert!(waiters.is_empty());
        // Waiting again starts fresh: an old wake is not replayed.
        waiters.wake("a");
        let mut again = waiters.wait("a");
        let pending = tokio::time::timeout(Duration::ZERO, again.woken()).await;
        assert!(pending.is_err());
    }
}

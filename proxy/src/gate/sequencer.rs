//! Per-session order: one call of a session decided at a time, and never
//! before the session's previous results are durable.
//!
//! Each session with a call in flight has a [`Slot`]: a FIFO async mutex
//! (the *turn*, held by a call from reading the session's state until its
//! decision is committed) and a count of the session's results still on
//! their way to the ledger (recorded after the agent got its answer,
//! `ledger.result_commit: after_answer`). A call takes its turn, then waits
//! for that count to reach zero, so its decision sees every result the agent
//! has seen: taint still applies to the next call. A result whose commit
//! failed leaves the session marked *unrecorded* until the next decision
//! records the loss (`ERROR_RAISED`, `result_not_recorded`), which taints.
//!
//! A session's calls holding or waiting for its turn are bounded
//! (`mcp.limits.max_queued_per_session`): past the bound a call is refused
//! at once ([`Busy`]), so an agent flooding one session holds neither
//! unbounded memory nor every in-flight slot other sessions need.
//!
//! Who touches it: every `tools/call` and egress attempt, for a map lookup
//! under a short `std` mutex section (never held across `.await`). A slot
//! lives while a call holds or waits for its turn, a result is pending, or
//! a loss is unrecorded, so the map is bounded by the calls in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::identity::Identity;

type SessionKey = (String, String);

/// What one session's calls and results share.
#[derive(Debug, Default)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Calls holding or waiting for `turn`.
    queued: AtomicUsize,
    /// Results sent to the ledger and not yet committed (or failed).
    pending: AtomicUsize,
    /// Results whose commit failed since the last decision (see module docs).
    lost: Mutex<Vec<Lost>>,
    /// Wakes calls waiting for `pending` to reach zero.
    settled: Notify,
}

/// A result that never reached the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub proposal_seq: u64,
    pub tool_name: String,
}

/// The sessions with calls or results in flight.
#[derive(Debug, Clone)]
pub struct Sequencers {
    sessions: Arc<Mutex<HashMap<SessionKey, Arc<Slot>>>>,
    /// Calls waiting for their session's results (a gauge's source).
    waiting: Arc<AtomicUsize>,
    /// Most calls of one session holding or waiting for its turn.
    max_queued: usize,
}

impl Default for Sequencers {
    fn default() -> Sequencers {
        Sequencers::new(crate::config::DEFAULT_MCP_MAX_QUEUED_PER_SESSION)
    }
}

/// A call refused because its session already had `limit` calls holding
/// or waiting for their turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this session already has {limit} calls waiting for their turn (mcp.limits.max_queued_per_session); \
     retry once some are answered"
)]
pub struct Busy {
    pub limit: usize,
}

/// A session's turn; the next call of the session goes when it is dropped.
#[derive(Debug)]
pub struct Turn {
    sequencers: Sequencers,
    key: SessionKey,
    slot: Arc<Slot>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// A result on its way to the ledger: the session's next decision waits
/// until it is [`Pending::committed`] or dropped (dropped uncommitted, it is
/// [`Lost`]).
#[derive(Debug)]
pub struct Pending {
    sequencers: Sequencers,
    key: SessionKey,
    slot: Arc<Slot>,
    lost: Option<Lost>,
}

impl Sequencers {
    /// At most `max_queued` calls per session hold or wait for its turn
    /// (at least one).
    pub fn new(max_queued: usize) -> Sequencers {
        Sequencers {
            sessions: Arc::default(),
            waiting: Arc::default(),
            max_queued: max_queued.max(1),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<SessionKey, Arc<Slot>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, identity: &Identity) -> (SessionKey, Arc<Slot>) {
        let key = (identity.tenant_id.clone(), identity.session_id.clone());
        let slot = self.map().entry(key.clone()).or_default().clone();
        (key, slot)
    }

    /// Takes the session's turn, then waits until none of its results is
    /// still on its way to the ledger; refused at once when the session
    /// already has its most calls queued.
    pub async fn turn(&self, identity: &Identity) -> Result<Turn, Busy> {
        let (key, slot) = self.slot(identity);
        if slot.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            slot.queued.fetch_sub(1, Ordering::SeqCst);
            self.forget(&key, &slot);
            return Err(Busy {
                limit: self.max_queued,
            });
        }
        // From here the turn (even before it holds the lock) gives the
        // count back when dropped.
        let mut turn = Turn {
            sequencers: self.clone(),
            key,
            slot,
            guard: None,
        };
        turn.guard = Some(turn.slot.turn.clone().lock_owned().await);
        turn.results_durable().await;
        Ok(turn)
    }

    /// Registers a result about to be sent to the ledger for `identity`'s
    /// session, before the agent may see the answer it records.
    pub fn pending(&self, identity: &Identity, proposal_seq: u64, tool_name: &str) -> Pending {
        let (key, slot) = self.slot(identity);
        slot.pending.fetch_add(1, Ordering::SeqCst);
        Pending {
            sequencers: self.clone(),
            key,
            slot,
            lost: Some(Lost {
                proposal_seq,
                tool_name: tool_name.to_owned(),
            }),
        }
    }

    /// Calls of `identity`'s session holding or waiting for its turn.
    pub fn queued(&self, identity: &Identity) -> usize {
        let key = (identity.tenant_id.clone(), identity.session_id.clone());
        self.map()
            .get(&key)
            .map_or(0, |slot| slot.queued.load(Ordering::SeqCst))
    }

    /// Sessions with a call or a result in flight.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls waiting now for their session's earlier results.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits until no result of any session is on its way to the ledger
    /// (shutdown: before the ledger closes).
    pub async fn results_idle(&self) {
        loop {
            let slot = self
                .map()
                .values()
                .find(|s| s.pending.load(Ordering::SeqCst) > 0)
                .cloned();
            let Some(slot) = slot else { return };
            wait_settled(&slot).await;
        }
    }

    /// Drops `key`'s slot when nobody uses it any more.
    fn forget(&self, key: &SessionKey, slot: &Arc<Slot>) {
        let mut map = self.map();
        // The map's and the caller's references only.
        let unused = Arc::strong_count(slot) == 2
            && slot.pending.load(Ordering::SeqCst) == 0
            && slot
                .lost
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
        if unused && map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(key);
        }
    }
}

/// Waits until `slot` has no pending result.
async fn wait_settled(slot: &Slot) {
    loop {
        let notified = slot.settled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if slot.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}

impl Turn {
    async fn results_durable(&self) {
        if self.slot.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.sequencers.waiting.fetch_add(1, Ordering::SeqCst);
        wait_settled(&self.slot).await;
        self.sequencers.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// The session's results lost since the last decision; the caller
    /// records them before deciding (and puts them back if it cannot).
    pub fn take_lost(&self) -> Vec<Lost> {
        std::mem::take(
            &mut *self
                .slot
                .lost
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Puts back losses the caller could not record.
    pub fn restore_lost(&self, lost: Vec<Lost>) {
        self.slot
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(lost);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.slot.queued.fetch_sub(1, Ordering::SeqCst);
        self.sequencers.forget(&self.key, &self.slot);
    }
}

impl Pending {
    /// The result is durable.
    pub fn committed(mut self) {
        self.lost = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(lost) = self.lost.take() {
            self.slot
                .lost
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(lost);
        }
        if self.slot.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.slot.settled.notify_waiters();
        }
        self.sequencers.forget(&self.key, &self.slot);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::gate::tests::identity_in as identity;

    /// The bound on each wait below: a hang guard only.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_session_is_decided_one_call_at_a_time_and_forgotten_after() {
        let sequencers = Sequencers::default();
        let id = identity("s");
        let first = sequencers.turn(&id).await.unwrap();
        assert_eq!(sequencers.len(), 1);
        // A second call of the same session waits for the first...
        let waiting = tokio::spawn({
            let sequencers = sequencers.clone();
            let id = id.clone();
            async move {
                let _turn = sequencers.turn(&id).await.unwrap();
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...another session does not.
        let other_turn = tokio::time::timeout(HANG_GUARD, sequencers.turn(&identity("other")))
            .await
            .expect("another session is not held up")
            .unwrap();
        drop(other_turn);
        drop(first);
        tokio::time::timeout(HANG_GUARD, waiting)
            .await
            .expect("the waiting call goes next")
            .expect("no panic");
        assert!(sequencers.is_empty());
    }

    #[tokio::test]
    async fn a_decision_waits_for_the_sessions_pending_results() {
        let sequencers = Sequencers::default();
        let id = identity("s");
        let result = sequencers.pending(&id, 1, "fetch");
        let next = tokio::spawn({
            let sequencers = sequencers.clone();
            let id = id.clone();
            async move { sequencers.turn(&id).await.unwrap().take_lost() }
        });
        // The next call is parked on the result, not on another call's turn.
        tokio::time::timeout(HANG_GUARD, async {
            while sequencers.waiting() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the next call waits for the result");
        assert!(!next.is_finished());
        // Another session's decision is not held up by it.
        drop(
            tokio::time::timeout(HANG_GUARD, sequencers.turn(&identity("other")))
                .await
                .expect("another session goes")
                .unwrap(),
        );
        result.committed();
        let lost = tokio::time::timeout(HANG_GUARD, next)
            .await
            .expect("the next call goes once the result is durable")
            .expect("no panic");
        assert!(lost.is_empty());
        assert_eq!(sequencers.waiting(), 0);
        assert!(sequencers.is_empty());
    }

    #[tokio::test]
    async fn a_result_that_was_not_committed_is_handed_to_the_next_decision() {
        let sequencers = Sequencers::default();
        let id = identity("s");
        drop(sequencers.pending(&id, 7, "fetch"));
        // Kept while unrecorded, even with nothing in flight.
        assert_eq!(sequencers.len(), 1);
        let turn = tokio::time::timeout(HANG_GUARD, sequencers.turn(&id))
            .await
            .expect("nothing pending")
            .unwrap();
        let lost = turn.take_lost();
        assert_eq!(
            lost,
            vec![Lost {
                proposal_seq: 7,
                tool_name: "fetch".into()
            }]
        );
        // Not recorded after all: it stays for the decision after.
        turn.restore_lost(lost);
        drop(turn);
        assert_eq!(sequencers.len(), 1);
        let turn = sequencers.turn(&id).await.unwrap();
        assert_eq!(turn.take_lost().len(), 1);
        drop(turn);
        assert!(sequencers.is_empty());
    }

    #[tokio::test]
    async fn a_session_with_its_most_calls_queued_is_refused_at_once_others_are_not() {
        let sequencers = Sequencers::new(3);
        let id = identity("flood");
        let first = sequencers.turn(&id).await.unwrap();
        // Two more wait for the turn (spawned and parked on it)...
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let (sequencers, id) = (sequencers.clone(), id.clone());
            waiting.push(tokio::spawn(async move {
                drop(sequencers.turn(&id).await.unwrap());
            }));
        }
        tokio::time::timeout(HANG_GUARD, async {
            while sequencers.queued(&id) < 3 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both parked");
        // ...so the fourth is refused without waiting, and counted nowhere.
        let refused = sequencers.turn(&id).await.unwrap_err();
        assert_eq!(refused, Busy { limit: 3 });
        assert_eq!(sequencers.queued(&id), 3);
        // Another session is not affected.
        drop(sequencers.turn(&identity("other")).await.unwrap());
        drop(first);
        for task in waiting {
            tokio::time::timeout(HANG_GUARD, task)
                .await
                .expect("the queued calls go")
                .expect("no panic");
        }
        assert!(sequencers.is_empty());
        // A call that gave up while waiting gives its place back.
        let held = sequencers.turn(&id).await.unwrap();
        let gave_up = tokio::time::timeout(Duration::ZERO, sequencers.turn(&id)).await;
        assert!(gave_up.is_err(), "it had to wait");
        assert_eq!(sequencers.queued(&id), 1);
        drop(held);
        assert!(sequencers.is_empty());
    }

    #[tokio::test]
    async fn shutdown_waits_for_every_pending_result() {
        let sequencers = Sequencers::default();
        let a = sequencers.pending(&identity("a"), 1, "x");
        let b = sequencers.pending(&identity("b"), 1, "x");
        let idle = tokio::spawn({
            let sequencers = sequencers.clone();
            async move { sequencers.results_idle().await }
        });
        tokio::task::yield_now().await;
        a.committed();
        tokio::task::yield_now().await;
        assert!(!idle.is_finished(), "b is still pending");
        b.committed();
        tokio::time::timeout(HANG_GUARD, idle)
            .await
            .expect("idle once both are durable")
            .expect("no panic");
    }
}

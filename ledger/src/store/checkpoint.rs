//! Checkpoints off the writer's path.
//!
//! A checkpoint copies the WAL's pages into the database file and fsyncs both:
//! tens of milliseconds for a large WAL on a slow disk, proportional to what
//! it copies. Run by the writer (SQLite's automatic checkpoint), every append
//! queued behind it waits that long. So the writer only tracks the WAL's size
//! (a `wal_hook`) and this thread, on its own connection, does the copying
//! with PASSIVE checkpoints while appends go on.
//!
//! A PASSIVE checkpoint never reaches frames committed while it ran, so under
//! continuous appends the WAL could never start over. The writer therefore
//! finishes the job itself once the WAL passes `checkpoint_pages`: a PASSIVE
//! checkpoint on its own connection, between batches, which copies only the
//! tail this thread has not reached yet; its next transaction then restarts
//! the WAL from the beginning.
//!
//! SQLite lets one connection checkpoint at a time and turns the other away
//! at once (`SQLITE_BUSY`, never waiting). The two used to meet by chance: a
//! writer that found the thread mid-checkpoint woke it again and skipped its
//! own turn for another quarter of `checkpoint_pages`, so under sustained
//! appends the thread checkpointed back to back, the writer never got its
//! turn, and the WAL grew to several times the limit (`bench/README.md`,
//! "The WAL's bound"). Now they take turns in-process ([`Turns`]). Past the
//! limit the writer *claims* the cycle: from then on the thread starts no
//! checkpoint, and the writer runs its own at the first batch boundary at
//! which the thread's current one (if any) has ended — it never waits for it,
//! since that one's fsyncs can take a long time on a busy disk. After the
//! commit that follows its checkpoint the claim ends. So, with no reader on an
//! old snapshot, the WAL restarts once per cycle, holding at most the limit
//! plus what was appended while one background checkpoint finished.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{CheckpointBy, LedgerObserver, StoreError};
use crate::config::Synchronous;

/// The WAL's size in frames (pages) after the writer's last commit, as
/// SQLite's `wal_hook` reports it; it falls when the WAL restarts.
#[derive(Debug, Clone, Default)]
pub(super) struct WalFrames(Arc<AtomicU32>);

impl WalFrames {
    /// Makes `conn` report its WAL size here after each commit. This also
    /// turns off SQLite's automatic checkpoint on that connection.
    pub(super) fn watch(&self, conn: &mut Connection) -> Result<(), StoreError> {
        let frames = self.0.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            frames.store(u32::try_from(pages).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(())
    }

    pub(super) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How the writer and the thread take turns at checkpointing (see the
/// module's notes). Shared by both.
#[derive(Debug, Default)]
struct Turns {
    /// Held by whichever thread is checkpointing.
    running: Mutex<()>,
    /// Set by the writer from when it wants its own checkpoint until the
    /// commit after it; the thread starts no checkpoint meanwhile.
    claimed: AtomicBool,
}

impl Turns {
    fn run(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a panic while holding it leaves nothing
        // inconsistent behind.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_run(&self) -> Option<MutexGuard<'_, ()>> {
        match self.running.try_lock() {
            Ok(turn) => Some(turn),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// The background checkpointing thread; stops when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    turns: Arc<Turns>,
}

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        synchronous: Synchronous,
        observer: Arc<dyn LedgerObserver>,
    ) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // PASSIVE never waits on a lock; this only bounds opening a read
        // snapshot while the writer restarts the WAL.
        conn.busy_timeout(Duration::from_millis(100))?;
        conn.pragma_update(None, "synchronous", synchronous.as_str())?;
        // Requests coalesce: one pending wake-up is enough.
        let (wake, requests) = mpsc::sync_channel::<()>(1);
        let turns = Arc::new(Turns::default());
        let shared = turns.clone();
        let thread = std::thread::Builder::new()
            .name("aegis-ledger-checkpoint".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    pass(&conn, &shared, &*observer);
                }
            })
            .map_err(|e| {
                StoreError::BadQuery(format!("cannot start the ledger checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            turns,
        })
    }

    /// The writer claims the cycle: until [`Checkpointer::release`] the
    /// thread starts no checkpoint. The turn to run one is returned at once
    /// when the thread is not running one, and `None` while it is: never
    /// waits.
    pub(super) fn claim(&self) -> Option<MutexGuard<'_, ()>> {
        self.turns.claimed.store(true, Ordering::Release);
        self.turns.try_run()
    }

    /// Ends the writer's claim.
    pub(super) fn release(&self) {
        self.turns.claimed.store(false, Ordering::Release);
    }

    /// Asks for a checkpoint soon; never blocks.
    pub(super) fn request(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    tracing::warn!("the ledger checkpoint thread has stopped");
                }
            }
        }
    }
}

/// One wake-up's work: a PASSIVE checkpoint, unless the writer has claimed
/// the cycle. The observer hears of it before the turn is given back.
fn pass(conn: &Connection, turns: &Turns, observer: &dyn LedgerObserver) {
    let _turn = turns.run();
    if turns.claimed.load(Ordering::Acquire) {
        // The writer is finishing this cycle itself.
        return;
    }
    let started = Instant::now();
    match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
        Ok(_) => observer.checkpointed(CheckpointBy::Background, started.elapsed()),
        // Another process is checkpointing the same file.
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
            tracing::debug!(error = %e, "background ledger checkpoint skipped");
        }
        Err(e) => tracing::warn!(error = %e, "background ledger checkpoint failed"),
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its current checkpoint.
        self.wake.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the ledger checkpoint thread panicked");
        }
    }
}

/// When the writer checkpoints, and when it asks the thread to: the thread
/// copies the first three quarters of each `pages` while appends go on, the
/// writer the rest, so the writer's share is about a quarter of what
/// SQLite's automatic checkpoint would cost it.
#[derive(Debug)]
pub(super) struct CheckpointPolicy {
    /// The WAL size at which the writer finishes a checkpoint itself.
    pub(super) pages: u32,
    /// WAL size at the writer's last own checkpoint that did not let the
    /// WAL restart (a reader held an old snapshot): it tries again only
    /// after another quarter of `pages`, not after every batch. A turn it
    /// could not have (the thread was checkpointing) does not count: it
    /// tries again after the next batch.
    last_attempt: u32,
    /// WAL size at the last wake-up of the thread (0: none since the WAL
    /// restarted). It is woken once per cycle, at three quarters of `pages`:
    /// waking it every quarter, or after every batch, meant back-to-back
    /// checkpoints whose fsyncs slowed the writer's own WAL writes.
    last_request: u32,
}

/// What the writer should do after a batch, given the WAL's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// Wake the background thread.
    Background,
    /// Claim the cycle and checkpoint the tail on the writer, now if the
    /// thread is not checkpointing.
    Writer,
}

impl CheckpointPolicy {
    pub(super) fn new(pages: u32) -> CheckpointPolicy {
        CheckpointPolicy {
            pages: pages.max(4),
            last_attempt: 0,
            last_request: 0,
        }
    }

    pub(super) fn step(&mut self, frames: u32) -> Step {
        let quarter = self.pages / 4;
        if frames < self.last_attempt.max(self.last_request) {
            // The WAL restarted.
            self.last_attempt = 0;
            self.last_request = 0;
        }
        if frames >= self.pages && frames >= self.last_attempt.saturating_add(quarter) {
            self.last_request = self.last_request.max(frames);
            Step::Writer
        } else if frames >= self.pages - quarter && self.last_request == 0 {
            self.last_request = frames;
            Step::Background
        } else {
            Step::Nothing
        }
    }

    /// The writer ran its checkpoint with the WAL at `frames`.
    pub(super) fn ran(&mut self, frames: u32) {
        self.last_attempt = frames;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_works_at_three_quarters_and_the_writer_at_the_limit() {
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.step(0), Step::Nothing);
        assert_eq!(policy.step(6143), Step::Nothing);
        assert_eq!(policy.step(6144), Step::Background);
        // Once per cycle, not after every batch.
        assert_eq!(policy.step(6200), Step::Nothing);
        assert_eq!(policy.step(8191), Step::Nothing);
        assert_eq!(policy.step(8192), Step::Writer);
        policy.ran(8192);
        // The WAL did not restart (a reader): not again on the next batch…
        assert_eq!(policy.step(8200), Step::Nothing);
        // …but after another quarter.
        assert_eq!(policy.step(10240), Step::Writer);
        policy.ran(10240);
        // It restarted: a new cycle.
        assert_eq!(policy.step(3), Step::Nothing);
        assert_eq!(policy.step(6144), Step::Background);
        assert_eq!(policy.step(8192), Step::Writer);
    }

    #[test]
    fn a_turn_the_writer_could_not_have_is_tried_again_after_the_next_batch() {
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.step(6144), Step::Background);
        // The thread was checkpointing: no `ran`.
        assert_eq!(policy.step(8192), Step::Writer);
        assert_eq!(policy.step(8193), Step::Writer);
        assert_eq!(policy.step(9000), Step::Writer);
        policy.ran(9000);
        // It restarted after the writer's checkpoint.
        assert_eq!(policy.step(2), Step::Nothing);
        assert_eq!(policy.step(6144), Step::Background);
    }

    #[test]
    fn tiny_limits_still_leave_room() {
        let mut policy = CheckpointPolicy::new(1);
        assert_eq!(policy.pages, 4);
        assert_eq!(policy.step(2), Step::Nothing);
        assert_eq!(policy.step(3), Step::Background);
        assert_eq!(policy.step(4), Step::Writer);
    }
}

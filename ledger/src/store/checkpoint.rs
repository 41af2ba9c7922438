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
//! short tail this thread has not reached yet; its next transaction then
//! restarts the WAL from the beginning.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
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

/// The background checkpointing thread; stops when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
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
        let thread = std::thread::Builder::new()
            .name("aegis-ledger-checkpoint".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    let started = Instant::now();
                    match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                        Ok(_) => observer.checkpointed(CheckpointBy::Background, started.elapsed()),
                        // The writer is checkpointing the tail: its turn.
                        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                            tracing::debug!(error = %e, "background ledger checkpoint skipped");
                        }
                        Err(e) => tracing::warn!(error = %e, "background ledger checkpoint failed"),
                    }
                }
            })
            .map_err(|e| {
                StoreError::BadQuery(format!("cannot start the ledger checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
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
/// writer the last quarter, so the writer's stall is a quarter of what SQLite's
/// automatic checkpoint would cost it.
#[derive(Debug)]
pub(super) struct CheckpointPolicy {
    /// The WAL size at which the writer finishes a checkpoint itself.
    pub(super) pages: u32,
    /// WAL size at the writer's last own checkpoint that did not let the
    /// WAL restart (a reader held an old snapshot): it tries again only
    /// after another quarter of `pages`, not after every batch.
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
    /// Wake it, and checkpoint the tail on the writer now.
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
            self.last_attempt = frames;
            self.last_request = frames;
            Step::Writer
        } else if frames >= self.pages - quarter && self.last_request == 0 {
            self.last_request = frames;
            Step::Background
        } else {
            Step::Nothing
        }
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
        // The WAL did not restart (a reader): not again on the next batch…
        assert_eq!(policy.step(8200), Step::Nothing);
        // …but after another quarter.
        assert_eq!(policy.step(10240), Step::Writer);
        // It restarted: a new cycle.
        assert_eq!(policy.step(3), Step::Nothing);
        assert_eq!(policy.step(6144), Step::Background);
        assert_eq!(policy.step(8192), Step::Writer);
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

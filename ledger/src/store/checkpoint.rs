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
//!
//! That left the writer a quarter of the limit to copy each cycle (2,048
//! pages, 8 MiB by default): 15–30 ms with its two fsyncs, once a cycle, and
//! at one connection a cycle lasts under a second (every commit writes its
//! pages whole). So the thread now *chases* the tail: each of its passes
//! publishes how far it backfilled ([`Backfill`]), and while the WAL is
//! under the limit the writer wakes it again for what was appended during
//! the pass, as long as each pass gets further. Passes shrink as they go;
//! once what is left is at most [`CheckpointPolicy::small`] pages (1/64 of
//! the limit), the writer copies that itself, once, at the next batch
//! boundary — a short stall instead of a quarter's. When the chase cannot
//! catch up before the limit (saturation, or a reader on an old snapshot),
//! the claim above ends the cycle as before, so the bound is unchanged.

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

/// How far the thread's last checkpoint got, for the writer to judge what
/// is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backfill {
    /// Counts the thread's passes: a new value is a new result.
    pub(super) pass: u32,
    /// Frames of the WAL copied into the database (from its start).
    pub(super) frames: u32,
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
    /// The WAL's generation as the writer counts it (one more at each
    /// restart it sees), read by the thread when a pass starts.
    cycle: AtomicU32,
    /// The thread's last pass: the generation it started in, and how far
    /// it got. A pass from an older generation says nothing of this one.
    backfill: Mutex<Option<(u32, Backfill)>>,
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

    /// The writer saw the WAL restart: generation `cycle` began.
    pub(super) fn new_cycle(&self, cycle: u32) {
        self.turns.cycle.store(cycle, Ordering::Release);
    }

    /// How far the thread's last pass in generation `cycle` got (`None`:
    /// none has ended in it).
    pub(super) fn backfill(&self, cycle: u32) -> Option<Backfill> {
        let last = *self
            .turns
            .backfill
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.and_then(|(generation, backfill)| (generation == cycle).then_some(backfill))
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
    let cycle = turns.cycle.load(Ordering::Acquire);
    let started = Instant::now();
    match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
        Ok((_, done)) => {
            observer.checkpointed(CheckpointBy::Background, started.elapsed());
            // Published last, still holding the turn: the writer acts on it
            // from its next batch on.
            let mut last = turns
                .backfill
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let pass = last.map_or(0, |(_, b)| b.pass.wrapping_add(1));
            let frames = u32::try_from(done).unwrap_or(0);
            *last = Some((cycle, Backfill { pass, frames }));
        }
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
/// copies the first three quarters of each `pages` while appends go on,
/// then chases what was appended meanwhile; the writer copies the last few
/// pages (or, if the chase cannot catch up, whatever is left at `pages`).
#[derive(Debug)]
pub(super) struct CheckpointPolicy {
    /// The WAL size at which the writer finishes a checkpoint itself.
    pub(super) pages: u32,
    /// The most the writer copies itself before the limit: what is left
    /// after a pass of the thread's.
    pub(super) small: u32,
    /// WAL generations seen (restarts), for [`Backfill`]s.
    cycle: u32,
    /// The thread's last pass this generation that the writer acted on.
    seen: Option<Backfill>,
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
    /// Wake the background thread (the first time in a cycle, or to chase
    /// what was appended during its last pass).
    Background,
    /// Claim the cycle and checkpoint the tail on the writer, now if the
    /// thread is not checkpointing.
    Writer,
}

impl CheckpointPolicy {
    pub(super) fn new(pages: u32) -> CheckpointPolicy {
        let pages = pages.max(4);
        CheckpointPolicy {
            pages,
            small: (pages / 64).max(1),
            cycle: 0,
            seen: None,
            last_attempt: 0,
            last_request: 0,
        }
    }

    /// Notes the WAL's size; true when it restarted (a new generation,
    /// [`CheckpointPolicy::cycle`]).
    pub(super) fn observe(&mut self, frames: u32) -> bool {
        if frames < self.last_attempt.max(self.last_request) {
            self.last_attempt = 0;
            self.last_request = 0;
            self.seen = None;
            self.cycle = self.cycle.wrapping_add(1);
            true
        } else {
            false
        }
    }

    /// The WAL's generation.
    pub(super) fn cycle(&self) -> u32 {
        self.cycle
    }

    /// What to do after a batch, the WAL at `frames`, the thread's last
    /// pass this generation at `backfill`; `committed`: the batch made a
    /// commit (only then does the writer copy a small tail: with no commit
    /// after it, nothing would restart the WAL).
    pub(super) fn step(
        &mut self,
        frames: u32,
        backfill: Option<Backfill>,
        committed: bool,
    ) -> Step {
        self.observe(frames);
        let quarter = self.pages / 4;
        let fresh = backfill.filter(|b| self.seen.is_none_or(|seen| seen.pass != b.pass));
        if frames >= self.pages && frames >= self.last_attempt.saturating_add(quarter) {
            self.last_request = self.last_request.max(frames);
            Step::Writer
        } else if self.last_request == 0 {
            if frames >= self.pages - quarter {
                self.last_request = frames;
                Step::Background
            } else {
                Step::Nothing
            }
        } else if let Some(pass) = fresh {
            let progress = self.seen.is_none_or(|seen| pass.frames > seen.frames);
            let left = frames.saturating_sub(pass.frames);
            if left <= self.small && self.last_attempt == 0 {
                // Not marked seen: if this batch did not commit, or the
                // writer cannot have its turn yet, the next batch decides
                // again (`ran` ends it once the writer has copied the tail).
                if committed {
                    Step::Writer
                } else {
                    Step::Nothing
                }
            } else if progress && self.last_attempt == 0 {
                self.seen = Some(pass);
                Step::Background
            } else {
                // A reader holds the thread back, or the writer already
                // tried: the limit decides.
                self.seen = Some(pass);
                Step::Nothing
            }
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
        assert_eq!(policy.step(0, None, true), Step::Nothing);
        assert_eq!(policy.step(6143, None, true), Step::Nothing);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        // Once per cycle, not after every batch.
        assert_eq!(policy.step(6200, None, true), Step::Nothing);
        assert_eq!(policy.step(8191, None, true), Step::Nothing);
        assert_eq!(policy.step(8192, None, true), Step::Writer);
        policy.ran(8192);
        // The WAL did not restart (a reader): not again on the next batch…
        assert_eq!(policy.step(8200, None, true), Step::Nothing);
        // …but after another quarter.
        assert_eq!(policy.step(10240, None, true), Step::Writer);
        policy.ran(10240);
        // It restarted: a new cycle.
        assert_eq!(policy.step(3, None, true), Step::Nothing);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        assert_eq!(policy.step(8192, None, true), Step::Writer);
    }

    #[test]
    fn a_turn_the_writer_could_not_have_is_tried_again_after_the_next_batch() {
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        // The thread was checkpointing: no `ran`.
        assert_eq!(policy.step(8192, None, true), Step::Writer);
        assert_eq!(policy.step(8193, None, true), Step::Writer);
        assert_eq!(policy.step(9000, None, true), Step::Writer);
        policy.ran(9000);
        // It restarted after the writer's checkpoint.
        assert_eq!(policy.step(2, None, true), Step::Nothing);
        assert_eq!(policy.step(6144, None, true), Step::Background);
    }

    #[test]
    fn tiny_limits_still_leave_room() {
        let mut policy = CheckpointPolicy::new(1);
        assert_eq!(policy.pages, 4);
        assert_eq!(policy.step(2, None, true), Step::Nothing);
        assert_eq!(policy.step(3, None, true), Step::Background);
        assert_eq!(policy.step(4, None, true), Step::Writer);
    }

    fn pass(pass: u32, frames: u32) -> Option<Backfill> {
        Some(Backfill { pass, frames })
    }

    #[test]
    fn the_thread_chases_the_tail_and_the_writer_copies_only_the_last_few_pages() {
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.small, 128);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        // Its first pass is still running.
        assert_eq!(policy.step(6500, None, true), Step::Nothing);
        // It copied 6144 frames; 856 came in meanwhile: chase them.
        assert_eq!(policy.step(7000, pass(0, 6144), true), Step::Background);
        // Once per pass, not after every batch.
        assert_eq!(policy.step(7010, pass(0, 6144), true), Step::Nothing);
        // The second pass left 100 frames: few enough for the writer.
        assert_eq!(policy.step(7100, pass(1, 7000), true), Step::Writer);
        policy.ran(7100);
        // Its checkpoint let the WAL restart: a new cycle, and the old
        // generation's passes mean nothing now.
        assert!(policy.observe(5));
        assert_eq!(policy.cycle(), 1);
        assert_eq!(policy.step(6144, None, true), Step::Background);
    }

    #[test]
    fn a_small_tail_waits_for_a_batch_that_commits() {
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        assert_eq!(policy.step(6150, pass(0, 6144), false), Step::Nothing);
        assert_eq!(policy.step(6152, pass(0, 6144), true), Step::Writer);
        // The thread was still checkpointing (no `ran`): again next batch…
        assert_eq!(policy.step(6155, pass(0, 6144), true), Step::Writer);
        // …or, if the tail has grown meanwhile, chase it first.
        assert_eq!(policy.step(6400, pass(0, 6144), true), Step::Background);
    }

    #[test]
    fn a_chase_that_gets_no_further_is_left_to_the_limit() {
        // A reader on an old snapshot stops every pass at the same frame.
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        assert_eq!(policy.step(6500, pass(0, 5000), true), Step::Background);
        assert_eq!(policy.step(7000, pass(1, 5000), true), Step::Nothing);
        assert_eq!(policy.step(7500, pass(1, 5000), true), Step::Nothing);
        // The limit still ends the cycle.
        assert_eq!(policy.step(8192, pass(1, 5000), true), Step::Writer);
        policy.ran(8192);
        // And a writer whose own checkpoint did not restart the WAL copies
        // no small tail again this cycle.
        assert_eq!(policy.step(8200, pass(2, 8150), true), Step::Nothing);
    }

    #[test]
    fn past_the_limit_the_claim_comes_first_even_with_a_pass_in_hand() {
        let mut policy = CheckpointPolicy::new(8192);
        assert_eq!(policy.step(6144, None, true), Step::Background);
        // The chase fell behind: at the limit the writer takes the rest.
        assert_eq!(policy.step(9000, pass(0, 6144), true), Step::Writer);
    }
}

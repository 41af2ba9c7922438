//! Ledger settings: where the database lives and how hard each commit syncs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How much a commit waits for the disk (SQLite `PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// WAL + `synchronous=NORMAL`: a commit survives a crash of the process;
    /// the last commits may be lost on power failure. The default.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced; survives power loss.
    Full,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a `synchronous` value that is neither `normal` nor `full`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("synchronous must be \"normal\" or \"full\", got {0:?}")]
pub struct ParseSynchronousError(pub String);

impl FromStr for Synchronous {
    type Err = ParseSynchronousError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            _ => Err(ParseSynchronousError(s.to_owned())),
        }
    }
}

/// Default capacity of the append queue in front of the writer thread: deep
/// enough to fill large group commits, small enough that a stalled disk pushes
/// back on callers within milliseconds instead of buffering without bound.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Default largest group commit: bounds one transaction's latency and memory.
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Default WAL size, in 4 KiB pages, at which the WAL is folded back into
/// the database and starts over (a 32 MiB WAL). A background thread copies
/// the WAL while appends go on, chasing its tail; the writer copies only the
/// last sliver (at most 1/64 of this), and appends queued meanwhile wait for
/// that (see `store::checkpoint`; measured in bench/README.md, "What was
/// fixed (issue 6)", item 1, "The WAL's bound", and the issue 14 checkpoint
/// section).
pub const DEFAULT_CHECKPOINT_PAGES: u32 = 8192;

/// Envelopes of a session after which the writer stores its state again
/// (`ARCHITECTURE.md`, "The ledger"): a rebuild folds at most this many
/// (plus one batch) instead of the whole chain; the row costs the commit
/// that writes it a few pages. Measured in bench/README.md, "Session
/// rebuild (issue 15, item 6)".
pub const DEFAULT_SUMMARY_EVERY: u64 = 1024;

/// Everything needed to open a ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The SQLite database file; created with its schema when missing.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Appends that may wait for the writer before callers are pushed back.
    pub queue_capacity: usize,
    /// Most appends committed in one transaction.
    pub max_batch: usize,
    /// WAL pages after which the WAL is checkpointed and starts over.
    pub checkpoint_pages: u32,
    /// Envelopes between a session's stored summaries (0: store none; the
    /// ones stored are still used).
    pub summary_every: u64,
}

impl LedgerConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LedgerConfig {
            path: path.into(),
            synchronous: Synchronous::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            checkpoint_pages: DEFAULT_CHECKPOINT_PAGES,
            summary_every: DEFAULT_SUMMARY_EVERY,
        }
    }
}

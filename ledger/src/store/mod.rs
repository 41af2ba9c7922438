//! The SQLite ledger: one writer thread, group commit, read-only readers.
//!
//! ```text
//! callers (async or blocking) ──bounded queue──▶ writer thread ──▶ SQLite (WAL)
//!     ▲        check(): ids, client hash              │ one transaction per batch:
//!     └──────── oneshot: (seq, hash) after commit ◀────┘ place, hash, insert, commit,
//!                                                        then update SessionTable
//! readers: their own read-only connections (WAL: never wait on the writer)
//! ```
//!
//! The writer is the single sequencer: the chain order is the commit order,
//! with no lock. Chain rules (`seq = head + 1`, `prev_hash = head hash`) are
//! checked against the head it caches, in the same transaction as the insert.

mod approvals;
mod checkpoint;
mod files;
mod reader;
mod rebuild;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

pub use approvals::ApprovalQuery;
pub use reader::{LedgerReader, ListQuery, Page};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use crate::append::{AppendError, AppendRequest, Appended, now_unix_ms};
use crate::config::LedgerConfig;
use crate::event::EventType;
use crate::session::{DefaultSessionRules, SessionRules};
use crate::table::SessionTable;

/// Why the ledger could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is not an aegis ledger: {0}")]
    NotALedger(String),
    #[error(
        "the ledger's schema version {found} is newer than this build supports ({supported}); upgrade aegis-proxy"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("{0}")]
    BadQuery(String),
    #[error("the ledger writer has stopped")]
    Closed,
    #[error(
        "cannot open the ledger {} for writing (its directory must be writable, on a read-write file system with room): {source}",
        path.display()
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// What the writer reports after each commit (metrics hook; the ledger
/// itself knows nothing of Prometheus).
pub trait LedgerObserver: Send + Sync + std::fmt::Debug + 'static {
    /// A group commit finished: `event_types` of every envelope it holds.
    fn committed(&self, _event_types: &[EventType], _duration: Duration) {}
    /// An append was refused or failed.
    fn rejected(&self, _error: &AppendError) {}
    /// A checkpoint copied WAL pages into the database (see
    /// [`CheckpointBy`]); a writer-side one held up the appends behind it.
    fn checkpointed(&self, _by: CheckpointBy, _duration: Duration) {}
    /// The writer found it cannot record (`false`: a commit or a probe
    /// failed, or the files at its path are not the ones it opened), or can
    /// again (`true`). Reported on each change only.
    fn writable(&self, _writable: bool) {}
}

/// Which thread ran a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointBy {
    /// The checkpoint thread, while appends went on.
    Background,
    /// The writer, finishing a cycle: appends waited for it.
    Writer,
}

impl CheckpointBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointBy::Background => "background",
            CheckpointBy::Writer => "writer",
        }
    }
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl LedgerObserver for NoObserver {}

enum Command {
    Append {
        entry: Box<writer::Entry>,
        reply: oneshot::Sender<Result<Appended, AppendError>>,
    },
    /// Appends committed in the same transaction, in order (a call's
    /// proposal and its decision).
    AppendGroup(Vec<Prepared>),
    /// "Can you write?" — answered after the batch it arrived in.
    Ping(oneshot::Sender<Result<(), String>>),
    /// Readiness: the files are the ones opened and a commit succeeds now.
    Probe(oneshot::Sender<Result<(), String>>),
    /// Drop in-memory sessions last appended to before the cutoff (Unix ms).
    EvictIdle {
        cutoff_unix_ms: i64,
        reply: oneshot::Sender<usize>,
    },
    /// Commit what is queued, then stop.
    Shutdown,
}

/// An append ready for the writer, and where its result goes.
type Prepared = (
    Box<writer::Entry>,
    oneshot::Sender<Result<Appended, AppendError>>,
);
/// Where an append's result arrives.
type Answer = oneshot::Receiver<Result<Appended, AppendError>>;

/// A cheap, cloneable handle that talks to the writer thread.
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    queue: mpsc::Sender<Command>,
    sessions: Arc<SessionTable>,
    detector: Arc<dyn SessionRules>,
    observer: Arc<dyn LedgerObserver>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Append { entry, .. } => f.debug_tuple("Append").field(&entry.seal).finish(),
            Command::AppendGroup(group) => f
                .debug_list()
                .entries(group.iter().map(|(entry, _)| entry.seal))
                .finish(),
            Command::Ping(_) => f.write_str("Ping"),
            Command::Probe(_) => f.write_str("Probe"),
            Command::EvictIdle { cutoff_unix_ms, .. } => f
                .debug_struct("EvictIdle")
                .field("cutoff_unix_ms", cutoff_unix_ms)
                .finish(),
            Command::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// An append sent to the writer ([`LedgerHandle::enqueue`]).
#[derive(Debug)]
pub struct Queued(oneshot::Receiver<Result<Appended, AppendError>>);

impl Queued {
    /// Waits until the envelope is committed (or refused).
    pub async fn committed(self) -> Result<Appended, AppendError> {
        self.0.await.map_err(|_| AppendError::Closed)?
    }
}

impl LedgerHandle {
    fn prepare(&self, request: AppendRequest) -> Result<(Prepared, Answer), AppendError> {
        if let Err(e) = request.check() {
            self.observer.rejected(&e);
            return Err(e);
        }
        // Everything that needs the parsed payload is done here, on the
        // caller's thread; the writer gets only what it stores and hashes.
        let entry = Box::new(writer::Entry::new(request));
        let (reply, answer) = oneshot::channel();
        Ok(((entry, reply), answer))
    }

    /// Appends and waits until the envelope is committed. Waits for room in
    /// the queue when it is full (backpressure).
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let ((entry, reply), answer) = self.prepare(request)?;
        self.queue
            .send(Command::Append { entry, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Sends `request` to the writer (waiting for room in the queue) and
    /// returns what waits for its commit: the envelope is placed after
    /// everything sent before it, and before anything sent after it
    /// (including a [`LedgerHandle::ping`], answered after the commit of
    /// everything sent before the ping).
    pub async fn enqueue(&self, request: AppendRequest) -> Result<Queued, AppendError> {
        let ((entry, reply), answer) = self.prepare(request)?;
        self.queue
            .send(Command::Append { entry, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        Ok(Queued(answer))
    }

    /// Appends several envelopes in one transaction, in order, and waits
    /// until they are committed: one commit instead of one per envelope.
    /// Each is placed on its own (a later one may name the seq an earlier
    /// one takes, `Seal::Expect`, so it fails if the earlier one does). If
    /// any request is invalid, none is sent and every result is that error.
    pub async fn append_group(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, AppendError>> {
        let n = requests.len();
        let mut group = Vec::with_capacity(n);
        let mut answers = Vec::with_capacity(n);
        for request in requests {
            match self.prepare(request) {
                Ok((prepared, answer)) => {
                    group.push(prepared);
                    answers.push(answer);
                }
                Err(e) => return vec![Err(e); n],
            }
        }
        if self.queue.send(Command::AppendGroup(group)).await.is_err() {
            return vec![Err(AppendError::Closed); n];
        }
        let mut out = Vec::with_capacity(n);
        for answer in answers {
            out.push(answer.await.unwrap_or(Err(AppendError::Closed)));
        }
        out
    }

    /// [`LedgerHandle::append`] for threads outside an async runtime.
    pub fn append_blocking(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let ((entry, reply), answer) = self.prepare(request)?;
        self.queue
            .blocking_send(Command::Append { entry, reply })
            .map_err(|_| AppendError::Closed)?;
        answer.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// Asks the writer whether it can take the database's write lock.
    pub async fn ping(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command::Ping(reply))
            .await
            .map_err(|_| "the ledger writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the ledger writer has stopped".to_owned())?
    }

    /// Asks the writer whether it can record now: the database and WAL at
    /// its path are still the files it opened, and a one-row commit
    /// succeeds (a full disk, a read-only file system or an I/O error fail
    /// it). Readiness asks this; it costs one small commit.
    pub async fn probe(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command::Probe(reply))
            .await
            .map_err(|_| "the ledger writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the ledger writer has stopped".to_owned())?
    }

    /// Drops from memory the sessions not appended to for `idle` (they are
    /// rebuilt from the ledger on next use); returns how many. Done by the
    /// writer thread between batches, so it never races an append.
    pub async fn evict_idle(&self, idle: Duration) -> Result<usize, AppendError> {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command::EvictIdle {
                cutoff_unix_ms: now_unix_ms().saturating_sub(idle_ms),
                reply,
            })
            .await
            .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)
    }

    /// Appends waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// The live session states.
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    pub fn session_rules(&self) -> &Arc<dyn SessionRules> {
        &self.detector
    }
}

/// Builds a [`Ledger`]: the hooks are optional.
#[derive(Debug)]
pub struct LedgerBuilder {
    config: LedgerConfig,
    detector: Arc<dyn SessionRules>,
    observer: Arc<dyn LedgerObserver>,
}

impl LedgerBuilder {
    pub fn session_rules(mut self, detector: Arc<dyn SessionRules>) -> Self {
        self.detector = detector;
        self
    }

    pub fn observer(mut self, observer: Arc<dyn LedgerObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Opens (creating and migrating if needed) the database and starts the writer.
    pub fn open(self) -> Result<Ledger, StoreError> {
        let LedgerBuilder {
            config,
            detector,
            observer,
        } = self;
        let mut conn = open_writer(&config).map_err(|e| match e {
            StoreError::Sqlite(source) => StoreError::Open {
                path: config.path.clone(),
                source,
            },
            other => other,
        })?;
        let files = files::Files::opened(&config.path).map_err(|e| {
            StoreError::BadQuery(format!("cannot stat {}: {e}", config.path.display()))
        })?;
        let wal_frames = checkpoint::WalFrames::default();
        wal_frames.watch(&mut conn)?;
        let checkpointer =
            checkpoint::Checkpointer::start(&config.path, config.synchronous, observer.clone())?;
        let sessions = Arc::new(SessionTable::default());
        let (queue, inbox) = mpsc::channel(config.queue_capacity.max(1));
        let writer = writer::Writer::new(
            conn,
            sessions.clone(),
            detector.clone(),
            observer.clone(),
            config.max_batch,
            config.summary_every,
            files,
        )
        .with_checkpoints(
            checkpointer,
            wal_frames,
            checkpoint::CheckpointPolicy::new(config.checkpoint_pages),
        );
        let thread = std::thread::Builder::new()
            .name("aegis-ledger-writer".into())
            .spawn(move || writer.run(inbox))
            .map_err(|e| {
                StoreError::BadQuery(format!("cannot start the ledger writer thread: {e}"))
            })?;
        let reader = LedgerReader::live(config.path.clone(), detector.clone());
        Ok(Ledger {
            handle: LedgerHandle {
                queue,
                sessions,
                detector,
                observer,
            },
            reader,
            thread: Some(thread),
            path: config.path,
        })
    }
}

/// An open ledger: the writer thread, a handle to it, and readers.
#[derive(Debug)]
pub struct Ledger {
    handle: LedgerHandle,
    reader: LedgerReader,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Ledger {
    pub fn builder(config: LedgerConfig) -> LedgerBuilder {
        LedgerBuilder {
            config,
            detector: Arc::new(DefaultSessionRules),
            observer: Arc::new(NoObserver),
        }
    }

    /// Opens with no loop detection and no observer.
    pub fn open(config: LedgerConfig) -> Result<Ledger, StoreError> {
        Ledger::builder(config).open()
    }

    pub fn handle(&self) -> LedgerHandle {
        self.handle.clone()
    }

    pub fn reader(&self) -> LedgerReader {
        self.reader.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops taking appends, commits everything already queued, checkpoints
    /// the WAL into the main file and joins the writer. Appends through
    /// handles still alive fail with [`AppendError::Closed`] from then on.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let queue = self.handle.queue.clone();
        // `blocking_send` refuses to run on an async runtime's thread, and
        // close may be called from one: wait for queue room on a plain thread.
        let sent = std::thread::scope(|s| {
            s.spawn(|| queue.blocking_send(Command::Shutdown).is_ok())
                .join()
                .unwrap_or(false)
        });
        if !sent {
            tracing::warn!("the ledger writer had already stopped");
        }
        if thread.join().is_err() {
            tracing::error!("the ledger writer thread panicked");
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Keeps prepared statements' plans across bindings. The bundled SQLite is
/// built with STAT4, which otherwise re-prepares a cached statement whenever
/// new values are bound to its WHERE clause.
pub(crate) fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn open_writer(config: &LedgerConfig) -> Result<Connection, StoreError> {
    let mut conn = Connection::open_with_flags(
        &config.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::BadQuery(format!(
            "cannot put the ledger in WAL mode (journal_mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", config.synchronous.as_str())?;
    // No automatic checkpoints on this connection: see `checkpoint`.
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(32);
    schema::migrate(&mut conn)?;
    Ok(conn)
}

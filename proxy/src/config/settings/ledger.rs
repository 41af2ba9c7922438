//! `ledger:`, `log:`, `manifest:` and `ready_file`.

use aegis_ledger::Synchronous;

use super::{FlagValue, Kind, Setting, path, text};
use crate::config::LogFormat;

// ---- ledger: the hash-chained SQLite ledger ---------------------------------

pub const ENV_LEDGER_PATH: &str = "AEGIS_LEDGER_PATH";
/// Next to wherever the sidecar runs (relative to the working directory), so a
/// laptop run needs no setup; a sidecar should point it at a volume.
pub const DEFAULT_LEDGER_PATH: &str = "aegis-ledger.db";
pub const LEDGER_PATH: Setting = Setting::new(
    "ledger.path",
    Kind::Path,
    DEFAULT_LEDGER_PATH,
    "the SQLite file",
)
.env(ENV_LEDGER_PATH)
.flag("--ledger", |f| path(&f.ledger));

pub const ENV_LEDGER_SYNCHRONOUS: &str = "AEGIS_LEDGER_SYNCHRONOUS";
/// WAL + NORMAL survives a process crash at a fraction of FULL's fsync cost;
/// FULL (survives power loss) is one switch away.
pub const DEFAULT_LEDGER_SYNCHRONOUS: Synchronous = Synchronous::Normal;
pub const LEDGER_SYNCHRONOUS: Setting = Setting::new(
    "ledger.synchronous",
    Kind::Text,
    "normal",
    "how hard each commit syncs: normal or full",
)
.env(ENV_LEDGER_SYNCHRONOUS)
.flag("--ledger-synchronous", |f| text(&f.ledger_synchronous));

pub const ENV_LEDGER_QUEUE_CAPACITY: &str = "AEGIS_LEDGER_QUEUE_CAPACITY";
/// The ledger's own default (`aegis_ledger`'s `DEFAULT_QUEUE_CAPACITY`, not
/// exported from the crate root yet): deep enough to fill large group commits,
/// small enough that a stalled disk pushes back within milliseconds. A unit test
/// keeps the two equal.
pub const DEFAULT_LEDGER_QUEUE_CAPACITY: usize = 4096;
pub const LEDGER_QUEUE_CAPACITY: Setting = Setting::new(
    "ledger.queue_capacity",
    Kind::Integer,
    "4096",
    "appends waiting for the writer before callers wait",
)
.env(ENV_LEDGER_QUEUE_CAPACITY);

pub const ENV_LEDGER_MAX_BATCH: &str = "AEGIS_LEDGER_MAX_BATCH";
/// The ledger's own default (`DEFAULT_MAX_BATCH`): bounds one transaction's
/// latency and memory. A unit test keeps the two equal.
pub const DEFAULT_LEDGER_MAX_BATCH: usize = 1024;
pub const LEDGER_MAX_BATCH: Setting = Setting::new(
    "ledger.max_batch",
    Kind::Integer,
    "1024",
    "most appends in one group commit",
)
.env(ENV_LEDGER_MAX_BATCH);

pub const ENV_LEDGER_CHECKPOINT_PAGES: &str = "AEGIS_LEDGER_CHECKPOINT_PAGES";
/// The ledger's own default (`DEFAULT_CHECKPOINT_PAGES`): a WAL of up to
/// 32 MiB, checkpointed by the commit that fills it. A unit test keeps the
/// two equal.
pub const DEFAULT_LEDGER_CHECKPOINT_PAGES: u32 = 8192;
pub const LEDGER_CHECKPOINT_PAGES: Setting = Setting::new(
    "ledger.checkpoint_pages",
    Kind::Integer,
    "8192",
    "WAL pages after which a commit checkpoints the WAL",
)
.env(ENV_LEDGER_CHECKPOINT_PAGES);

pub const ENV_LEDGER_FAIL_OPEN: &str = "AEGIS_LEDGER_FAIL_OPEN";
/// Fail closed: a call the ledger cannot record is refused, since an
/// unrecorded call is exactly what the sidecar exists to prevent.
pub const DEFAULT_LEDGER_FAIL_OPEN: bool = false;
pub const LEDGER_FAIL_OPEN: Setting = Setting::new(
    "ledger.fail_open",
    Kind::Bool,
    "false",
    "forward calls the ledger cannot record instead of refusing them",
)
.env(ENV_LEDGER_FAIL_OPEN)
// A switch: it can only turn fail-open on.
.flag("--fail-open", |f| f.fail_open.then_some(FlagValue::On));

pub const ENV_LEDGER_RESULT_COMMIT: &str = "AEGIS_LEDGER_RESULT_COMMIT";
pub const DEFAULT_LEDGER_RESULT_COMMIT: crate::gate::ResultCommit =
    crate::gate::ResultCommit::AfterAnswer;
pub const LEDGER_RESULT_COMMIT: Setting = Setting::new(
    "ledger.result_commit",
    Kind::Text,
    "after_answer",
    "when a result is committed: after_answer or before_answer",
)
.env(ENV_LEDGER_RESULT_COMMIT);

// ---- log ----------------------------------------------------------------------

pub const ENV_LOG_LEVEL: &str = "AEGIS_LOG_LEVEL";
/// Start-up, reloads and denials without per-request noise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const LOG_LEVEL: Setting = Setting::new(
    "log.level",
    Kind::Text,
    DEFAULT_LOG_LEVEL,
    "a tracing filter directive",
)
.env(ENV_LOG_LEVEL)
.flag("--log-level", |f| text(&f.log_level));

pub const ENV_LOG_FORMAT: &str = "AEGIS_LOG_FORMAT";
/// Readable in a terminal; log collectors should ask for `json`.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;
pub const LOG_FORMAT: Setting = Setting::new(
    "log.format",
    Kind::Text,
    "text",
    "how log lines are written: text or json",
)
.env(ENV_LOG_FORMAT)
.flag("--log-format", |f| text(&f.log_format));

// ---- manifest: the capability manifest, reloaded live ----------------------

/// The agent's capability manifest (JSON or YAML). No default: without one,
/// every decision fails closed with `MANIFEST_UNAVAILABLE`. The file (not
/// this setting) reloads live: the directory is watched, and SIGHUP and
/// `POST /v1/manifest/reload` reload it too.
pub const ENV_MANIFEST: &str = "AEGIS_MANIFEST";
pub const MANIFEST_PATH: Setting = Setting::noted(
    "manifest.path",
    Kind::Path,
    "none",
    "the capability manifest file",
)
.env(ENV_MANIFEST)
.flag("--manifest", |f| path(&f.manifest));

// ---- ready_file ---------------------------------------------------------------

/// A file created once the sidecar is ready (no default: none is written), for
/// scripts and init containers that cannot poll `/readyz`.
pub const ENV_READY_FILE: &str = "AEGIS_READY_FILE";
pub const READY_FILE: Setting = Setting::noted(
    "ready_file",
    Kind::Path,
    "none",
    "created once the sidecar is ready to serve",
)
.env(ENV_READY_FILE)
.flag("--ready-file", |f| path(&f.ready_file));

pub(super) const SETTINGS: &[Setting] = &[
    LEDGER_PATH,
    LEDGER_SYNCHRONOUS,
    LEDGER_QUEUE_CAPACITY,
    LEDGER_MAX_BATCH,
    LEDGER_CHECKPOINT_PAGES,
    LEDGER_FAIL_OPEN,
    LEDGER_RESULT_COMMIT,
    LOG_LEVEL,
    LOG_FORMAT,
    MANIFEST_PATH,
];

pub(super) const LATER_SETTINGS: &[Setting] = &[READY_FILE];

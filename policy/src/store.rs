//! The live manifest and its hot reload: the only I/O in this crate.
//!
//! [`ManifestStore`] holds the current [`LoadedManifest`] behind an
//! `ArcSwapOption`, so every decision reads it without a lock. A reload reads
//! the file, validates it, compiles it and swaps it in; a file that cannot be
//! read or does not validate leaves the old manifest live and is recorded in
//! [`ManifestStatus::last_error`]. Identical bytes (same SHA-256) are not a
//! new generation.
//!
//! Reloads come from three places, all calling [`ManifestStore::reload`]:
//! the directory watch ([`ManifestStore::watch`], [`crate::watch`]: a reader
//! thread plus one debounce thread), SIGHUP and `POST /v1/manifest/reload` (the proxy runs
//! those on blocking threads). Reloads are serialised by one mutex, so
//! generations only grow; readers never wait for it.
//!
//! The watch is on the manifest's **directory**, not the file: editors write a
//! temporary file and rename it over the manifest, and Kubernetes ConfigMap
//! volumes swap a `..data` symlink — both replace the inode a file watch
//! would be holding.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use sha2::{Digest as _, Sha256};

use crate::decide::CompiledManifest;
use crate::manifest::{Manifest, ManifestError};

#[cfg(test)]
mod tests;

/// Quiet time after the last file event before reloading: an editor's
/// write-then-rename, or a ConfigMap swap, arrives as one burst of events.
pub use crate::watch::DEBOUNCE;

/// Longest a burst of events may postpone a reload (a file rewritten
/// continuously is still picked up).
pub use crate::watch::MAX_DEBOUNCE;

/// A manifest read from disk, validated and compiled.
#[derive(Debug)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    pub compiled: CompiledManifest,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// 1 for the first successful load, +1 per successful reload.
    pub generation: u64,
    pub loaded_at_unix_ms: i64,
    pub path: PathBuf,
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestLoadError {
    #[error("cannot read the manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem, one `field.path: message` per line.
    #[error("invalid manifest {}:\n{error}", path.display())]
    Invalid { path: PathBuf, error: ManifestError },
    #[error("cannot watch the manifest ({}): {source}", dir.display())]
    Watch {
        dir: PathBuf,
        source: crate::watch::WatchError,
    },
}

/// What one reload attempt did.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new manifest is live.
    Reloaded(Arc<LoadedManifest>),
    /// The file's bytes equal the live manifest's; nothing changed.
    Unchanged(Arc<LoadedManifest>),
    /// The file could not be read or is invalid; the old manifest stays live.
    Failed(String),
    /// No manifest path is configured.
    NotConfigured,
}

impl ReloadOutcome {
    /// `reloaded`, `unchanged`, `failed` or `not_configured`: a closed set,
    /// used as a metric label and in API answers.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReloadOutcome::Reloaded(_) => "reloaded",
            ReloadOutcome::Unchanged(_) => "unchanged",
            ReloadOutcome::Failed(_) => "failed",
            ReloadOutcome::NotConfigured => "not_configured",
        }
    }
}

/// The store's state, for `GET /v1/manifest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestStatus {
    /// The configured manifest file; `None` when none is configured.
    pub path: Option<PathBuf>,
    /// The live manifest's SHA-256.
    pub sha256: Option<String>,
    /// The live manifest's generation; 0 when none is live.
    pub generation: u64,
    pub loaded_at_unix_ms: Option<i64>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Why the latest reload attempt failed; cleared by a successful one.
    pub last_error: Option<String>,
    pub last_attempt_unix_ms: Option<i64>,
    /// The latest attempt's result (`ReloadOutcome::as_str`).
    pub last_result: Option<&'static str>,
    /// SHA-256 of the bytes the latest attempt read, if it read any.
    pub last_attempt_sha256: Option<String>,
    /// Attempts that swapped in a new manifest.
    pub reloads_ok: u64,
    /// Attempts whose bytes equalled the live manifest's.
    pub reloads_unchanged: u64,
    pub reloads_failed: u64,
}

/// Reload bookkeeping; every field is written under the reload lock and read
/// by `status()` for a moment.
#[derive(Debug, Default)]
struct Attempts {
    last_error: Option<String>,
    last_attempt_unix_ms: Option<i64>,
    last_result: Option<&'static str>,
    last_sha256: Option<String>,
    ok: u64,
    unchanged: u64,
    failed: u64,
}

#[derive(Debug)]
struct Inner {
    /// `None` for [`ManifestStore::empty`].
    path: Option<PathBuf>,
    /// Read by every decision (lock-free); written only under `reloading`.
    live: ArcSwapOption<LoadedManifest>,
    /// Held for a whole reload (read, validate, swap), so reloads from the
    /// watcher, SIGHUP and the API run one at a time.
    reloading: Mutex<()>,
    /// Short sections only: updated at the end of a reload, read by `status()`.
    attempts: Mutex<Attempts>,
}

/// The live manifest; a cheap clone shared by the API and the watcher.
#[derive(Debug, Clone)]
pub struct ManifestStore {
    inner: Arc<Inner>,
}

impl ManifestStore {
    /// Loads `path` once. An unreadable or invalid manifest is an error that
    /// lists every problem (the sidecar refuses to start with it).
    pub fn open(path: impl Into<PathBuf>) -> Result<ManifestStore, ManifestLoadError> {
        let path = path.into();
        let loaded = load(&path, 1)?;
        Ok(ManifestStore {
            inner: Arc::new(Inner {
                path: Some(path),
                live: ArcSwapOption::from_pointee(loaded),
                reloading: Mutex::new(()),
                attempts: Mutex::new(Attempts::default()),
            }),
        })
    }

    /// A store with no manifest configured: `current()` is `None`, so
    /// decisions fail closed (`MANIFEST_UNAVAILABLE`).
    pub fn empty() -> ManifestStore {
        ManifestStore {
            inner: Arc::new(Inner {
                path: None,
                live: ArcSwapOption::empty(),
                reloading: Mutex::new(()),
                attempts: Mutex::new(Attempts::default()),
            }),
        }
    }

    /// The live manifest, read without a lock.
    pub fn current(&self) -> Option<Arc<LoadedManifest>> {
        self.inner.live.load_full()
    }

    /// The configured manifest file.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Re-reads and validates the file. On success swaps it in as the next
    /// generation, unless its bytes equal the live manifest's (`Unchanged`);
    /// on failure the old manifest stays live and the error is recorded.
    /// Blocking file I/O: call it off async runtime workers.
    pub fn reload(&self) -> ReloadOutcome {
        let Some(path) = &self.inner.path else {
            return ReloadOutcome::NotConfigured;
        };
        let _reloading = lock(&self.inner.reloading);
        let live = self.current();
        let next = live.as_ref().map_or(1, |m| m.generation + 1);
        let (outcome, sha256) = match read(path) {
            Err(e) => (ReloadOutcome::Failed(e.to_string()), None),
            Ok(bytes) => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let outcome = match live {
                    Some(live) if live.sha256 == sha256 => ReloadOutcome::Unchanged(live),
                    _ => match compile(path, &bytes, sha256.clone(), next) {
                        Ok(loaded) => {
                            let loaded = Arc::new(loaded);
                            self.inner.live.store(Some(loaded.clone()));
                            ReloadOutcome::Reloaded(loaded)
                        }
                        Err(e) => ReloadOutcome::Failed(e.to_string()),
                    },
                };
                (outcome, Some(sha256))
            }
        };
        let mut attempts = lock(&self.inner.attempts);
        attempts.last_attempt_unix_ms = Some(now_unix_ms());
        attempts.last_result = Some(outcome.as_str());
        attempts.last_sha256 = sha256;
        match &outcome {
            ReloadOutcome::Reloaded(_) => {
                attempts.ok += 1;
                attempts.last_error = None;
            }
            ReloadOutcome::Unchanged(_) => {
                attempts.unchanged += 1;
                attempts.last_error = None;
            }
            ReloadOutcome::Failed(error) => {
                attempts.failed += 1;
                attempts.last_error = Some(error.clone());
            }
            ReloadOutcome::NotConfigured => {}
        }
        outcome
    }

    /// The live manifest and the reload history.
    pub fn status(&self) -> ManifestStatus {
        let live = self.current();
        let attempts = lock(&self.inner.attempts);
        ManifestStatus {
            path: self.inner.path.clone(),
            sha256: live.as_ref().map(|m| m.sha256.clone()),
            generation: live.as_ref().map_or(0, |m| m.generation),
            loaded_at_unix_ms: live.as_ref().map(|m| m.loaded_at_unix_ms),
            name: live.as_ref().map(|m| m.manifest.name.clone()),
            version: live.as_ref().map(|m| m.manifest.version.clone()),
            last_error: attempts.last_error.clone(),
            last_attempt_unix_ms: attempts.last_attempt_unix_ms,
            last_result: attempts.last_result,
            last_attempt_sha256: attempts.last_sha256.clone(),
            reloads_ok: attempts.ok,
            reloads_unchanged: attempts.unchanged,
            reloads_failed: attempts.failed,
        }
    }

    /// Watches the manifest's directory and reloads, after [`DEBOUNCE`] of
    /// quiet, whenever the manifest (or a Kubernetes `..`-prefixed entry) is
    /// created, written, renamed or removed; then calls `on_reload` with the
    /// outcome. Runs on notify's thread and one debounce thread, never on an
    /// async runtime. Watching stops when the guard is dropped. A store with
    /// no manifest configured watches nothing.
    pub fn watch(
        &self,
        on_reload: impl Fn(&ReloadOutcome) + Send + Sync + 'static,
    ) -> Result<WatchGuard, ManifestLoadError> {
        let Some(path) = self.inner.path.clone() else {
            return Ok(WatchGuard { _watch: None });
        };
        let store = self.clone();
        let watch = crate::watch::watch([path.as_path()], "aegis-manifest-watch", move || {
            on_reload(&store.reload());
        })
        .map_err(|source| ManifestLoadError::Watch {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            source,
        })?;
        Ok(WatchGuard {
            _watch: Some(watch),
        })
    }
}

/// Stops the directory watch when dropped (the debounce thread then ends on
/// its own once its channel closes).
#[derive(Debug)]
pub struct WatchGuard {
    _watch: Option<crate::watch::FileWatch>,
}

/// Reads, validates and compiles `path` as generation `generation`.
fn load(path: &Path, generation: u64) -> Result<LoadedManifest, ManifestLoadError> {
    let bytes = read(path)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    compile(path, &bytes, sha256, generation)
}

fn read(path: &Path) -> Result<Vec<u8>, ManifestLoadError> {
    std::fs::read(path).map_err(|source| ManifestLoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn compile(
    path: &Path,
    bytes: &[u8],
    sha256: String,
    generation: u64,
) -> Result<LoadedManifest, ManifestLoadError> {
    let manifest = Manifest::parse(bytes).map_err(|error| ManifestLoadError::Invalid {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(LoadedManifest {
        compiled: CompiledManifest::new(&manifest),
        manifest,
        sha256,
        generation,
        loaded_at_unix_ms: now_unix_ms(),
        path: path.to_path_buf(),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The sections under these locks cannot leave the data half-updated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

//! Noticing that files changed, the way `aegis_policy::ManifestStore::watch`
//! does for the manifest: each file's **directory** is watched, not the file
//! (an editor's write-then-rename and a Kubernetes ConfigMap or Secret's
//! `..data` symlink swap both replace the inode a file watch would hold),
//! and a burst of events becomes one call after it settles. Used for the
//! JWK Set (`crate::identity`) and the admin token files
//! (`crate::admin::tokens`).
//!
//! Threads: notify's own, and one debounce thread that calls `on_change`;
//! both end when the [`FileWatch`] is dropped.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

/// Quiet time after the last event before `on_change` runs.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a burst of events may postpone `on_change`.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Stops the watch when dropped.
#[derive(Debug)]
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

/// Calls `on_change` (on a thread of its own) after any of `paths` may have
/// changed. Errors are plain words naming the directory.
pub fn watch<'a>(
    paths: impl IntoIterator<Item = &'a Path>,
    thread_name: &str,
    on_change: impl Fn() + Send + 'static,
) -> Result<FileWatch, String> {
    let mut dirs = BTreeSet::new();
    let mut names: BTreeSet<OsString> = BTreeSet::new();
    for path in paths {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| format!("{} names no file", path.display()))?;
        dirs.insert(dir);
        names.insert(name.to_owned());
    }
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            // An overflow or backend error: look again to be safe.
            Err(_) => true,
            Ok(event) => {
                changes_content(&event.kind)
                    && event.paths.iter().any(|p| {
                        p.file_name().is_some_and(|name| {
                            names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
                        })
                    })
            }
        };
        if relevant {
            // Fails only once the debounce thread is gone.
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot start a file watch: {e}"))?;
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    }
    std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn(move || debounce(&rx, &on_change))
        .map_err(|e| format!("cannot start the watch thread: {e}"))?;
    Ok(FileWatch { _watcher: watcher })
}

/// Waits for a burst of events, lets it settle, calls `on_change`; until
/// the watcher (the sender) is dropped.
fn debounce(rx: &mpsc::Receiver<()>, on_change: &dyn Fn()) {
    while rx.recv().is_ok() {
        let burst = Instant::now();
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(()) if burst.elapsed() < MAX_DEBOUNCE => continue,
                Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        on_change();
    }
}

/// Whether an event may have changed what the path reads. Opening or
/// reading the file (which a reload itself does) does not.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

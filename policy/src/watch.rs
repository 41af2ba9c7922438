//! Noticing that files changed: the manifest ([`crate::ManifestStore::watch`])
//! and, in the proxy, the JWK Set and the admin token files. One
//! implementation for all of them.
//!
//! Each file's **directory** is watched, not the file: an editor's
//! write-then-rename and a Kubernetes ConfigMap or Secret's `..data`
//! symlink swap both replace the inode a file watch would hold. A burst of
//! events becomes one call of `on_change` once it settles ([`DEBOUNCE`], at
//! most [`MAX_DEBOUNCE`] late).
//!
//! What is asked of the kernel matters: the directory is often the
//! ledger's too, where SQLite writes on every call. On Linux the watch
//! (inotify, directly) asks only for entries created, moved, deleted,
//! closed after writing, or changed in their attributes — never for each
//! `write()` (`IN_MODIFY`) — so ledger writes wake nobody; a file written in
//! place is noticed when its writer closes it. Elsewhere the `notify` crate's
//! watcher is used, and other files' events are filtered out after waking.
//!
//! Threads: a reader (inotify) or notify's own, and one debounce thread that
//! calls `on_change`; all end when the [`FileWatch`] is dropped.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Quiet time after the last event before `on_change` runs.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a burst of events may postpone `on_change`.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Stops the watch when dropped.
#[derive(Debug)]
pub struct FileWatch {
    _backend: backend::Watch,
}

/// Why a watch could not start: plain words naming the directory.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WatchError(String);

/// The files watched: their directories, and the names that count.
#[derive(Debug, Clone)]
struct Targets {
    dirs: BTreeSet<PathBuf>,
    names: BTreeSet<OsString>,
}

impl Targets {
    fn new<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Targets, WatchError> {
        let mut dirs = BTreeSet::new();
        let mut names = BTreeSet::new();
        for path in paths {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let name = path
                .file_name()
                .ok_or_else(|| WatchError(format!("{} names no file", path.display())))?;
            dirs.insert(dir);
            names.insert(name.to_owned());
        }
        Ok(Targets { dirs, names })
    }

    /// Whether an entry called `name` is one of the files, or a Kubernetes
    /// volume's `..`-prefixed entry (`..data`, `..2024_...`).
    fn counts(&self, name: &OsStr) -> bool {
        self.names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
    }
}

/// Calls `on_change` (on a thread of its own) after any of `paths` may have
/// changed.
pub fn watch<'a>(
    paths: impl IntoIterator<Item = &'a Path>,
    thread_name: &str,
    on_change: impl Fn() + Send + 'static,
) -> Result<FileWatch, WatchError> {
    let targets = Targets::new(paths)?;
    let (tx, rx) = mpsc::channel::<()>();
    let backend = backend::Watch::start(&targets, thread_name, tx)?;
    std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn(move || debounce(&rx, &on_change))
        .map_err(|e| WatchError(format!("cannot start the watch thread: {e}")))?;
    Ok(FileWatch { _backend: backend })
}

/// Waits for a burst of events, lets it settle, calls `on_change`; until
/// the backend (the sender) is dropped.
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

#[cfg(target_os = "linux")]
mod backend {
    //! inotify with a mask that leaves out `IN_MODIFY`.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::Sender;

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

    use super::{Targets, WatchError};

    /// What a directory watch asks for: entries appearing, leaving, renamed,
    /// closed after writing or changed in their attributes; the directory
    /// itself going. Not `MODIFY` (one event per `write()`).
    pub(super) fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::CLOSE_WRITE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
    }

    #[derive(Debug)]
    pub(super) struct Watch {
        watches: Watches,
        descriptors: Vec<WatchDescriptor>,
        stop: Arc<AtomicBool>,
    }

    impl Watch {
        pub(super) fn start(
            targets: &Targets,
            thread_name: &str,
            tx: Sender<()>,
        ) -> Result<Watch, WatchError> {
            let inotify = Inotify::init()
                .map_err(|e| WatchError(format!("cannot start a file watch: {e}")))?;
            let mut watches = inotify.watches();
            let mut descriptors = Vec::new();
            for dir in &targets.dirs {
                let wd = watches
                    .add(dir, mask())
                    .map_err(|e| WatchError(format!("cannot watch {}: {e}", dir.display())))?;
                descriptors.push(wd);
            }
            let stop = Arc::new(AtomicBool::new(false));
            let reader_stop = stop.clone();
            let targets = targets.clone();
            std::thread::Builder::new()
                .name(format!("{thread_name}-inotify"))
                .spawn(move || read(inotify, &targets, &tx, &reader_stop))
                .map_err(|e| WatchError(format!("cannot start the watch thread: {e}")))?;
            Ok(Watch {
                watches,
                descriptors,
                stop,
            })
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Removing a watch queues IN_IGNORED, which wakes the reader.
            for wd in self.descriptors.drain(..) {
                let _ = self.watches.remove(wd);
            }
        }
    }

    fn read(mut inotify: Inotify, targets: &Targets, tx: &Sender<()>, stop: &AtomicBool) {
        let mut buffer = [0u8; 4096];
        loop {
            let events = match inotify.read_events_blocking(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut relevant = false;
            for event in events {
                relevant |= counts(event.mask, event.name, targets);
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if relevant && tx.send(()).is_err() {
                return;
            }
        }
    }

    /// Whether one event may have changed a watched file.
    pub(super) fn counts(
        mask: EventMask,
        name: Option<&std::ffi::OsStr>,
        targets: &Targets,
    ) -> bool {
        if mask.contains(EventMask::IGNORED) {
            return false;
        }
        // Lost events, or the directory itself went: look again to be safe.
        if mask.intersects(EventMask::Q_OVERFLOW | EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
            return true;
        }
        name.is_some_and(|name| targets.counts(name))
    }
}

#[cfg(not(target_os = "linux"))]
mod backend {
    //! The `notify` crate's watcher; other files' events are dropped after
    //! they arrive.

    use std::sync::mpsc::Sender;

    use notify::event::{AccessKind, AccessMode};
    use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

    use super::{Targets, WatchError};

    #[derive(Debug)]
    pub(super) struct Watch {
        _watcher: RecommendedWatcher,
    }

    impl Watch {
        pub(super) fn start(
            targets: &Targets,
            _thread_name: &str,
            tx: Sender<()>,
        ) -> Result<Watch, WatchError> {
            let names = targets.clone();
            let mut watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let relevant = match event {
                        Err(_) => true,
                        Ok(event) => {
                            changes_content(&event.kind)
                                && event
                                    .paths
                                    .iter()
                                    .any(|p| p.file_name().is_some_and(|n| names.counts(n)))
                        }
                    };
                    if relevant {
                        let _ = tx.send(());
                    }
                })
                .map_err(|e| WatchError(format!("cannot start a file watch: {e}")))?;
            for dir in &targets.dirs {
                watcher
                    .watch(dir, RecursiveMode::NonRecursive)
                    .map_err(|e| WatchError(format!("cannot watch {}: {e}", dir.display())))?;
            }
            Ok(Watch { _watcher: watcher })
        }
    }

    /// Opening or reading a file (which a reload itself does) changes nothing.
    fn changes_content(kind: &EventKind) -> bool {
        match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn targets() -> Targets {
        Targets::new([Path::new("/etc/aegis/manifest.yaml")]).unwrap()
    }

    #[test]
    fn the_files_and_kubernetes_entries_count_nothing_else() {
        let t = targets();
        assert_eq!(t.dirs.iter().next().unwrap(), Path::new("/etc/aegis"));
        assert!(t.counts(OsStr::new("manifest.yaml")));
        assert!(t.counts(OsStr::new("..data")));
        assert!(t.counts(OsStr::new("..2026_12_02_10_00_00.123")));
        assert!(!t.counts(OsStr::new("aegis-ledger.db-wal")));
        assert!(!t.counts(OsStr::new("manifest.yaml.swp")));
        assert!(Targets::new([Path::new("/")]).is_err());
        let bare = Targets::new([Path::new("manifest.yaml")]).unwrap();
        assert_eq!(bare.dirs.iter().next().unwrap(), Path::new("."));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_is_never_asked_for_every_write() {
        use inotify::{EventMask, WatchMask};
        let mask = backend::mask();
        assert!(!mask.contains(WatchMask::MODIFY));
        for wanted in [
            WatchMask::CLOSE_WRITE,
            WatchMask::MOVED_TO,
            WatchMask::CREATE,
        ] {
            assert!(mask.contains(wanted));
        }
        let t = targets();
        let name = Some(OsStr::new("manifest.yaml"));
        assert!(backend::counts(EventMask::CLOSE_WRITE, name, &t));
        assert!(backend::counts(
            EventMask::MOVED_TO,
            Some(OsStr::new("..data")),
            &t
        ));
        assert!(!backend::counts(
            EventMask::CLOSE_WRITE,
            Some(OsStr::new("aegis-ledger.db")),
            &t
        ));
        assert!(!backend::counts(EventMask::IGNORED, None, &t));
        assert!(backend::counts(EventMask::Q_OVERFLOW, None, &t));
        assert!(backend::counts(EventMask::DELETE_SELF, None, &t));
    }

    #[test]
    fn a_change_is_noticed_and_the_watch_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "a").unwrap();
        let (tx, rx) = mpsc::channel();
        let watch = watch([path.as_path()], "test-watch", move || {
            let _ = tx.send(());
        })
        .unwrap();
        // Other files in the directory (a ledger) are not the file.
        std::fs::write(dir.path().join("ledger.db"), "x").unwrap();
        let next = dir.path().join("tokens.new");
        std::fs::write(&next, "b").unwrap();
        std::fs::rename(&next, &path).unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        drop(watch);
        // Both threads end with the watch: the callback (and its sender)
        // is dropped.
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the watch threads did not end"),
            }
        }
    }
}

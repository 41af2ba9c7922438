#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::*;

/// How long a test waits for the watch's next reload: a hang guard only (a
/// working watch reloads within its debounce), so a loaded machine cannot
/// fail the test.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A valid manifest declaring `tools`.
fn manifest(tools: &[&str]) -> String {
    format!(
        "schema: aegis.dev/manifest/v0.1\nname: t\nversion: \"1.0.0\"\npublisher: acme\n\
         permissions:\n  tools: [{}]\nsandbox:\n  required: false\n",
        tools.join(", ")
    )
}

const INVALID: &str = "schema: aegis.dev/manifest/v9\nname: t\n";

fn tools(store: &ManifestStore) -> Vec<String> {
    store.current().unwrap().manifest.permissions.tools.clone()
}

/// Writes `text` to a temporary sibling, then renames it over `path`, as
/// editors do.
fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A Kubernetes ConfigMap volume: `dir/..data -> ..<stamp>`,
/// `dir/manifest.yaml -> ..data/manifest.yaml`.
struct ConfigMap {
    dir: PathBuf,
    swaps: u32,
}

impl ConfigMap {
    fn new(dir: &Path, text: &str) -> ConfigMap {
        let mut map = ConfigMap {
            dir: dir.to_path_buf(),
            swaps: 0,
        };
        map.swap(text);
        std::os::unix::fs::symlink("..data/manifest.yaml", dir.join("manifest.yaml")).unwrap();
        map
    }

    fn path(&self) -> PathBuf {
        self.dir.join("manifest.yaml")
    }

    /// What the kubelet does: a new timestamped directory, a temporary
    /// symlink to it, renamed over `..data`.
    fn swap(&mut self, text: &str) {
        self.swaps += 1;
        let stamp = format!("..2026_11_22_{:02}", self.swaps);
        std::fs::create_dir(self.dir.join(&stamp)).unwrap();
        std::fs::write(self.dir.join(&stamp).join("manifest.yaml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// What the watch's callback saw: the outcome (`reloaded`, `unchanged`,
/// `failed`) and the generation then live (none on a failure).
type Reload = (&'static str, Option<u64>);

/// Waits for the watch's reloads, one by one, until one leaves generation
/// `want` live; returns how long that took (printed, never asserted). A
/// write in place may be reloaded half-written first (a failure) or twice
/// (the second `unchanged`): each is just another reload to wait past.
fn wait_generation(store: &ManifestStore, reloads: &Receiver<Reload>, want: u64) -> Duration {
    let started = Instant::now();
    while next_reload(store, reloads, &format!("generation {want}")).1 < Some(want) {}
    started.elapsed()
}

/// The watch's next reload, as its callback reported it.
fn next_reload(store: &ManifestStore, reloads: &Receiver<Reload>, what: &str) -> Reload {
    reloads.recv_timeout(HANG_GUARD).unwrap_or_else(|e| {
        panic!(
            "waiting for {what}: no reload within {HANG_GUARD:?} ({e}): {:?}",
            store.status()
        )
    })
}

#[test]
fn open_loads_a_valid_manifest_as_generation_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest(&["read_file"])).unwrap();
    let store = ManifestStore::open(&path).unwrap();
    let live = store.current().unwrap();
    assert_eq!(live.generation, 1);
    assert_eq!(live.path, path);
    assert_eq!(
        live.sha256,
        hex::encode(Sha256::digest(manifest(&["read_file"])))
    );
    let status = store.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.name.as_deref(), Some("t"));
    assert_eq!(status.last_error, None);
    assert_eq!((status.reloads_ok, status.reloads_failed), (0, 0));
}

#[test]
fn open_refuses_an_invalid_or_missing_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, INVALID).unwrap();
    let err = ManifestStore::open(&path).unwrap_err();
    assert!(matches!(err, ManifestLoadError::Invalid { .. }), "{err}");
    let text = err.to_string();
    // Every problem, each with its field path.
    assert!(text.contains("schema"), "{text}");
    assert!(text.contains("version"), "{text}");
    assert!(text.contains("permissions"), "{text}");

    let err = ManifestStore::open(dir.path().join("absent.yaml")).unwrap_err();
    assert!(matches!(err, ManifestLoadError::Read { .. }), "{err}");
}

#[test]
fn an_empty_store_has_nothing_to_reload() {
    let store = ManifestStore::empty();
    assert!(store.current().is_none());
    assert!(matches!(store.reload(), ReloadOutcome::NotConfigured));
    assert_eq!(store.status(), ManifestStatus::default());
    let _guard = store.watch(|_| {}).unwrap();
}

/// Reloads and checks that a new generation with new bytes went live.
fn reload_expecting_new(store: &ManifestStore, want_tools: &[&str]) {
    let before = store.current().unwrap();
    let ReloadOutcome::Reloaded(after) = store.reload() else {
        panic!("expected a reload: {:?}", store.status())
    };
    assert_eq!(after.generation, before.generation + 1);
    assert_ne!(after.sha256, before.sha256);
    assert!(Arc::ptr_eq(&after, &store.current().unwrap()));
    assert_eq!(tools(store), want_tools);
}

#[test]
fn reload_sees_in_place_writes_rename_over_and_configmap_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, manifest(&["a"])).unwrap();
    let store = ManifestStore::open(&path).unwrap();
    std::fs::write(&path, manifest(&["a", "b"])).unwrap();
    reload_expecting_new(&store, &["a", "b"]);
    rename_over(&path, &manifest(&["c"]));
    reload_expecting_new(&store, &["c"]);
    let status = store.status();
    assert_eq!((status.generation, status.reloads_ok), (3, 2));
    assert_eq!(status.last_result, Some("reloaded"));

    let dir = tempfile::tempdir().unwrap();
    let mut map = ConfigMap::new(dir.path(), &manifest(&["a"]));
    let store = ManifestStore::open(map.path()).unwrap();
    map.swap(&manifest(&["a", "b"]));
    reload_expecting_new(&store, &["a", "b"]);
    // Through the symlinks, as an operator on a laptop might.
    let real = std::fs::canonicalize(map.path()).unwrap();
    std::fs::write(&real, manifest(&["c"])).unwrap();
    reload_expecting_new(&store, &["c"]);
    assert_eq!(store.status().generation, 3);
}

#[test]
fn an_invalid_reload_keeps_the_old_manifest_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest(&["a"])).unwrap();
    let store = ManifestStore::open(&path).unwrap();
    let before = store.current().unwrap();

    std::fs::write(&path, INVALID).unwrap();
    let ReloadOutcome::Failed(error) = store.reload() else {
        panic!("an invalid manifest must fail")
    };
    assert!(error.contains("schema"), "{error}");
    let after = store.current().unwrap();
    assert!(Arc::ptr_eq(&before, &after), "the old manifest stays live");
    let status = store.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(status.last_result, Some("failed"));
    assert_eq!(
        status.last_attempt_sha256,
        Some(hex::encode(Sha256::digest(INVALID)))
    );
    assert_eq!(status.reloads_failed, 1);

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(store.reload(), ReloadOutcome::Failed(_)));
    assert_eq!(store.status().last_attempt_sha256, None);

    // A good manifest clears the error and is generation 2.
    std::fs::write(&path, manifest(&["b"])).unwrap();
    assert!(matches!(store.reload(), ReloadOutcome::Reloaded(_)));
    let status = store.status();
    assert_eq!((status.generation, status.last_error), (2, None));
    assert_eq!((status.reloads_ok, status.reloads_failed), (1, 2));
}

#[test]
fn identical_bytes_are_not_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, manifest(&["a"])).unwrap();
    let store = ManifestStore::open(&path).unwrap();
    rename_over(&path, &manifest(&["a"]));
    let ReloadOutcome::Unchanged(live) = store.reload() else {
        panic!("same bytes must be unchanged")
    };
    assert_eq!(live.generation, 1);
    let status = store.status();
    assert_eq!((status.generation, status.reloads_unchanged), (1, 1));
    assert_eq!(status.last_result, Some("unchanged"));
}

/// A watched store whose watch callback sends each reload it made.
fn watched(path: &Path) -> (ManifestStore, WatchGuard, Receiver<Reload>) {
    let store = ManifestStore::open(path).unwrap();
    let (tx, rx) = mpsc::channel();
    let guard = store
        .watch(move |outcome| {
            let live = match outcome {
                ReloadOutcome::Reloaded(live) | ReloadOutcome::Unchanged(live) => {
                    Some(live.generation)
                }
                ReloadOutcome::Failed(_) | ReloadOutcome::NotConfigured => None,
            };
            let _ = tx.send((outcome.as_str(), live));
        })
        .unwrap();
    (store, guard, rx)
}

#[test]
fn watch_sees_in_place_writes_and_rename_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest(&["a"])).unwrap();
    let (store, _guard, reloads) = watched(&path);

    std::fs::write(&path, manifest(&["a", "b"])).unwrap();
    let took = wait_generation(&store, &reloads, 2);
    assert_eq!(tools(&store), ["a", "b"]);
    eprintln!("in-place write seen in {took:?}");

    rename_over(&path, &manifest(&["c"]));
    let took = wait_generation(&store, &reloads, 3);
    assert_eq!(tools(&store), ["c"]);
    eprintln!("rename-over seen in {took:?}");

    // An invalid write is reloaded, fails (as the callback is told), and
    // leaves "c" live; other files in the directory change nothing. Every
    // reload before generation 3 went live has been received, so the
    // failure waited for is this write's.
    std::fs::write(dir.path().join("unrelated.log"), "x").unwrap();
    std::fs::write(&path, INVALID).unwrap();
    while next_reload(&store, &reloads, "the failed reload").0 != "failed" {}
    assert_eq!(tools(&store), ["c"]);
    assert_eq!(store.status().generation, 3);
    assert!(store.status().reloads_failed >= 1);
}

#[test]
fn watch_sees_a_configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut map = ConfigMap::new(dir.path(), &manifest(&["a"]));
    let (store, guard, reloads) = watched(&map.path());

    map.swap(&manifest(&["a", "b"]));
    let took = wait_generation(&store, &reloads, 2);
    assert_eq!(tools(&store), ["a", "b"]);
    eprintln!("..data swap seen in {took:?}");

    map.swap(&manifest(&["z"]));
    wait_generation(&store, &reloads, 3);
    assert_eq!(tools(&store), ["z"]);
    drop(guard);
}

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

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

/// Polls `status().generation` until it reaches `want`, for at most 5 s.
fn wait_generation(store: &ManifestStore, want: u64) -> Duration {
    let started = Instant::now();
    while store.status().generation < want {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "generation {} after 5 s, wanted {want}: {:?}",
            store.status().generation,
            store.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
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

/// A store that counts its watch callbacks.
fn watched(path: &Path) -> (ManifestStore, WatchGuard, Arc<AtomicU64>) {
    let store = ManifestStore::open(path).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let guard = store
        .watch(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    (store, guard, calls)
}

#[test]
fn watch_sees_in_place_writes_and_rename_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest(&["a"])).unwrap();
    let (store, _guard, calls) = watched(&path);

    std::fs::write(&path, manifest(&["a", "b"])).unwrap();
    let took = wait_generation(&store, 2);
    assert_eq!(tools(&store), ["a", "b"]);
    eprintln!("in-place write seen in {took:?}");

    rename_over(&path, &manifest(&["c"]));
    let took = wait_generation(&store, 3);
    assert_eq!(tools(&store), ["c"]);
    eprintln!("rename-over seen in {took:?}");

    // Other files in the directory do not trigger reloads.
    let before = calls.load(Ordering::SeqCst);
    std::fs::write(dir.path().join("unrelated.log"), "x").unwrap();
    std::fs::write(&path, INVALID).unwrap();
    let started = Instant::now();
    while store.status().reloads_failed == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no failed reload"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(tools(&store), ["c"]);
    assert!(calls.load(Ordering::SeqCst) > before);
}

#[test]
fn watch_sees_a_configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut map = ConfigMap::new(dir.path(), &manifest(&["a"]));
    let (store, guard, _calls) = watched(&map.path());

    map.swap(&manifest(&["a", "b"]));
    let took = wait_generation(&store, 2);
    assert_eq!(tools(&store), ["a", "b"]);
    eprintln!("..data swap seen in {took:?}");

    map.swap(&manifest(&["z"]));
    wait_generation(&store, 3);
    assert_eq!(tools(&store), ["z"]);
    drop(guard);
}

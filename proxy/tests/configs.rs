//! Every config file shipped in `configs/` must load, so examples cannot rot.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use aegis_proxy::cli::RunFlags;
use aegis_proxy::config::{self, Config};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn load(path: &Path) -> Result<Config, config::ConfigError> {
    let flags = RunFlags {
        config: Some(path.to_owned()),
        ..RunFlags::default()
    };
    config::load(&flags, &HashMap::new())
}

/// Kubernetes manifests (sidecar examples) also live in `configs/`; they are
/// not aegis-proxy configs. They are recognised by their first line that is
/// neither blank nor a comment (nor a `---` document marker) starting with
/// `apiVersion:`.
fn is_kubernetes_manifest(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && *line != "---")
        .is_some_and(|line| line.starts_with("apiVersion:"))
}

#[test]
fn every_example_config_loads() {
    let dir = configs_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|err| panic!("read {}: {err}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read a configs/ entry").path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();

    let mut loaded = 0;
    let mut failures = Vec::new();
    for path in &paths {
        let text =
            fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        if is_kubernetes_manifest(&text) {
            continue;
        }
        match load(path) {
            Ok(_) => loaded += 1,
            Err(err) => failures.push(format!("{}:\n{err}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "configs that do not load:\n{}",
        failures.join("\n")
    );
    assert!(
        loaded >= 1,
        "no aegis-proxy config found in {}",
        dir.display()
    );
}

#[test]
fn the_annotated_example_holds_exactly_the_defaults() {
    let path = configs_dir().join("aegis.yaml");
    let config = load(&path).expect("configs/aegis.yaml loads");
    let expected = Config {
        source: Some(path),
        ..Config::default()
    };
    assert_eq!(config, expected);
}

#[test]
fn kubernetes_manifests_are_recognised() {
    assert!(is_kubernetes_manifest(
        "# sidecar\n---\napiVersion: v1\nkind: Pod\n"
    ));
    assert!(!is_kubernetes_manifest(
        "# apiVersion: v1\nadmin:\n  listen: 127.0.0.1:1\n"
    ));
    assert!(!is_kubernetes_manifest(""));
}

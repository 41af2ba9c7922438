//! `deploy/kubernetes/`: every resource a kustomization names validates
//! against the Kubernetes 1.33 schemas in strict mode (PyPI
//! `kubernetes-validate`, pinned, in its own venv), with no warning but the
//! two kinds it has no schema for (the Prometheus Operator's `PodMonitor`,
//! kustomize's `Kustomization`). How the sidecar's container agrees with
//! its configuration is checked in `proxy/tests/configs.rs`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aegis_e2e::python::{self, Sdk};

/// Kinds kubernetes-validate has no schema for (custom resources).
const UNCHECKED_KINDS: [&str; 2] = ["kind PodMonitor", "kind Kustomization"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .canonicalize()
        .unwrap()
}

/// The Kubernetes resources under `deploy/kubernetes/`: every YAML file
/// that starts with `apiVersion:` (the sidecar's config and manifest are
/// not resources).
fn resources() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for topology in std::fs::read_dir(deploy()).unwrap() {
        let topology = topology.unwrap().path();
        if !topology.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&topology).unwrap() {
            let file = file.unwrap().path();
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---");
            if first.is_some_and(|l| l.starts_with("apiVersion:")) {
                found.push(file);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_resource_passes_kubernetes_validate_for_1_33_in_strict_mode() {
    let files = resources();
    assert!(files.len() >= 11, "{files:?}");
    let bin = python::venv(Sdk::KubernetesValidate)
        .join("bin")
        .join("kubernetes-validate");
    let out = Command::new(&bin)
        .args(["--kubernetes-version", "1.33.0", "--strict"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let mut passed = 0;
    for line in text.lines() {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            passed += 1;
        } else {
            assert!(
                line.starts_with("WARN")
                    && line.contains("Couldn't find schema")
                    && UNCHECKED_KINDS.iter().any(|k| line.contains(k)),
                "kubernetes-validate: {line}"
            );
        }
    }
    assert_eq!(
        passed,
        files.len() - 4,
        "every resource but the two PodMonitors and Kustomizations: {text}"
    );
}

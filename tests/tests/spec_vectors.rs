//! The envelope vectors of `spec/envelope.md`, recomputed by an implementation
//! that shares no code with the ledger: `spec/vectors/reproduce.py`, Python's
//! standard library only. The Rust side is checked in `aegis-ledger`'s own
//! tests; together they show the vectors are not just our code agreeing with
//! itself.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

/// `$AEGIS_PYTHON`, else `python3`: the interpreter the SDK tests use too.
fn reproduce(file: &Path) -> Output {
    let python = std::env::var("AEGIS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    Command::new(&python)
        .arg(vectors_dir().join("reproduce.py"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (Python 3 is needed by the tests): {e}"))
}

#[test]
fn python_recomputes_every_vector() {
    let out = reproduce(&vectors_dir().join("envelope-chains.json"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "6 envelopes checked, 0 failures");
}

#[test]
fn python_notices_a_changed_vector() {
    let text = std::fs::read_to_string(vectors_dir().join("envelope-chains.json")).unwrap();
    // One character of one payload: that envelope's preimage and hash no
    // longer match its fields.
    let changed = text.replacen("/workspace/data.csv", "/workspace/data.csx", 1);
    assert_ne!(changed, text);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changed.json");
    std::fs::write(&file, changed).unwrap();
    let out = reproduce(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("acme/sess-001 seq 1: preimage differs"),
        "{stdout}"
    );
}

//! A ledger that cannot record says so and acknowledges nothing: its file
//! deleted, moved or replaced underneath it, or its disk full (a real
//! tmpfs). When the fault clears, appends go on without a reopen and the
//! chain is intact.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aegis_ledger::testing::{Tmpfs, fill};
use aegis_ledger::*;
use serde_json::json;

fn proposal(session: &str, n: u64) -> AppendRequest {
    AppendRequest::at_head(NewEvent {
        tenant_id: "t".into(),
        user_id: "u".into(),
        session_id: session.into(),
        ts_unix_ms: 1_700_000_000_000,
        event_type: EventType::ToolCallProposed,
        payload: Payload::from_value(
            json!({"tool_name": "read_file", "call_id": format!("c{n}"), "args": {"path": "/w", "pad": "x".repeat(2000)}}),
        ),
    })
}

fn run<T, F: std::future::Future<Output = T>>(f: F) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), f)
                .await
                .expect("test timed out")
        })
}

/// Every session's chain verifies, and `session` holds `n` envelopes.
fn intact(ledger: &Ledger, session: &str, n: usize) {
    let report = ledger
        .reader()
        .verify_session("t", session)
        .unwrap()
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    let page = ledger
        .reader()
        .list(&ListQuery {
            tenant_id: "t".into(),
            session_id: Some(session.into()),
            limit: 10_000,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(page.envelopes.len(), n);
}

fn storage_error(result: Result<Appended, AppendError>) -> String {
    match result {
        Err(AppendError::Storage(reason)) => reason,
        other => panic!("expected a storage refusal, got {other:?}"),
    }
}

#[test]
fn a_ledger_file_moved_away_refuses_everything_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let handle = ledger.handle();
    run(async {
        handle.append(proposal("s", 0)).await.unwrap();
        handle.probe().await.unwrap();

        let away = dir.path().join("elsewhere.db");
        std::fs::rename(&path, &away).unwrap();
        let reason = storage_error(handle.append(proposal("s", 1)).await);
        assert!(reason.contains("was deleted"), "{reason}");
        assert!(handle.probe().await.unwrap_err().contains("was deleted"));

        std::fs::rename(&away, &path).unwrap();
        handle.probe().await.unwrap();
        let next = handle.append(proposal("s", 1)).await.unwrap();
        assert_eq!(next.seq, 1, "the refused append took no seq");
    });
    intact(&ledger, "s", 2);
    ledger.close();
}

#[test]
fn a_ledger_file_deleted_or_replaced_is_never_written_into_again() {
    for replace in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
        let handle = ledger.handle();
        run(async {
            handle.append(proposal("s", 0)).await.unwrap();
            std::fs::remove_file(&path).unwrap();
            if replace {
                std::fs::write(&path, b"someone else's file").unwrap();
            }
            for n in 1..4 {
                let reason = storage_error(handle.append(proposal("s", n)).await);
                let word = if replace {
                    "was replaced"
                } else {
                    "was deleted"
                };
                assert!(reason.contains(word), "{reason}");
            }
            assert!(handle.probe().await.is_err());
        });
        if replace {
            assert_eq!(std::fs::read(&path).unwrap(), b"someone else's file");
        }
        ledger.close();
    }
}

#[test]
fn a_deleted_wal_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let handle = ledger.handle();
    run(async {
        handle.append(proposal("s", 0)).await.unwrap();
        handle.append(proposal("s", 1)).await.unwrap();
        std::fs::remove_file(dir.path().join("ledger.db-wal")).unwrap();
        let reason = storage_error(handle.append(proposal("s", 2)).await);
        assert!(reason.contains("write-ahead log"), "{reason}");
    });
    ledger.close();
}

#[test]
fn a_full_disk_refuses_appends_and_readiness_then_recovers_without_a_reopen() {
    let Some(fs) = Tmpfs::mount(4 * 1024 * 1024) else {
        return;
    };
    let path = fs.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let handle = ledger.handle();
    let mut recorded = 0;
    run(async {
        for n in 0..5 {
            handle.append(proposal("s", n)).await.unwrap();
            recorded += 1;
        }
        let filler = fill(fs.path());
        // The WAL grows with every commit (no checkpoint restarts it this
        // early), so appends fail as soon as it needs a block: none is
        // acknowledged.
        let mut refused = 0;
        for n in 5..40 {
            match handle.append(proposal("s", n)).await {
                Ok(_) => recorded += 1,
                Err(AppendError::Storage(_)) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(refused > 0, "a full disk refused nothing");
        assert!(handle.probe().await.is_err(), "readiness while full");

        std::fs::remove_file(filler).unwrap();
        handle.probe().await.unwrap();
        handle.append(proposal("s", 40)).await.unwrap();
        recorded += 1;
    });
    intact(&ledger, "s", recorded);
    ledger.close();
}

#[test]
fn a_ledger_on_a_read_only_file_system_is_refused_at_open_with_a_clear_error() {
    // Linux refuses to remount read-only while a file is open for writing,
    // so a running writer meets EROFS only from a kernel's emergency
    // remount; what can be tested is the start.
    let Some(fs) = Tmpfs::mount(4 * 1024 * 1024) else {
        return;
    };
    let path = fs.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    run(async { ledger.handle().append(proposal("s", 0)).await.unwrap() });
    ledger.close();
    fs.set_writable(false);
    let refused = Ledger::open(LedgerConfig::new(&path))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("cannot open the ledger") && refused.contains("read-write file system"),
        "{refused}"
    );
    fs.set_writable(true);
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    intact(&ledger, "s", 1);
    ledger.close();
}

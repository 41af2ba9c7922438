//! The SQLite ledger end to end: appends, chain rules, concurrency, restart,
//! listing, and verification of damaged files.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aegis_ledger::testing::{Tamper, tamper};
use aegis_ledger::wire::parse_append;
use aegis_ledger::*;
use serde_json::json;

fn open(dir: &Path) -> Ledger {
    Ledger::open(LedgerConfig::new(dir.join("ledger.db"))).unwrap()
}

fn event(
    tenant: &str,
    session: &str,
    event_type: EventType,
    payload: serde_json::Value,
) -> NewEvent {
    NewEvent {
        tenant_id: tenant.into(),
        user_id: "u1".into(),
        session_id: session.into(),
        ts_unix_ms: 1_700_000_000_000,
        event_type,
        payload: Payload::from_value(payload),
    }
}

fn proposal(tenant: &str, session: &str, n: u64) -> AppendRequest {
    AppendRequest::at_head(event(
        tenant,
        session,
        EventType::ToolCallProposed,
        json!({"tool_name": "read_file", "call_id": format!("c{n}"), "args": {"path": format!("/w/{n}")}}),
    ))
}

/// Runs an async test body under a timeout; returns what it returns.
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

#[test]
fn client_sealed_spec_chain_is_accepted_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    let bodies = [
        r#"{"tenant_id": "acme", "user_id": "u1", "session_id": "sess-001", "seq": 0, "ts_unix_ms": 1700000000000, "event_type": "MODEL_CALL_STARTED", "payload": {"model_id": "gpt-4o", "call_id": "m1"}, "hash": "1a1b6ca883e2784e32b436f37494361b63047de115481b3009e1593f87974b6b"}"#,
        r#"{"tenant_id": "acme", "user_id": "u1", "session_id": "sess-001", "seq": 1, "ts_unix_ms": 1700000000001, "event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "read_file", "call_id": "t1", "args": {"path": "/workspace/data.csv"}}, "prev_hash": [26, 27, 108, 168, 131, 226, 120, 78, 50, 180, 54, 243, 116, 148, 54, 27, 99, 4, 125, 225, 21, 72, 27, 48, 9, 225, 89, 63, 135, 151, 75, 107], "hash": [144, 69, 81, 134, 255, 137, 48, 44, 153, 34, 232, 228, 48, 28, 45, 151, 179, 78, 45, 222, 162, 177, 166, 225, 193, 226, 116, 83, 191, 11, 3, 253]}"#,
    ];
    for (seq, body) in bodies.iter().enumerate() {
        let appended = h
            .append_blocking(parse_append(body.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(appended.seq, seq as u64);
    }
    // Seq 2 sealed by the sidecar, with the spec's timestamp: the spec's hash.
    let mut third = event(
        "acme",
        "sess-001",
        EventType::ToolResult,
        json!({"call_id": "t1", "result": "ok"}),
    );
    third.ts_unix_ms = 1700000000002;
    third.payload = Payload::from_text(r#"{"call_id":"t1","result":"ok"}"#).unwrap();
    let appended = h.append_blocking(AppendRequest::at_head(third)).unwrap();
    assert_eq!(
        appended.hash.to_hex(),
        "9f56be3ea40210968ed21bf227d90d93d9acaaf8a004723b3eec40cc3834db41"
    );

    let report = ledger
        .reader()
        .verify_session("acme", "sess-001")
        .unwrap()
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.envelopes, 3);
}

#[test]
fn chain_conflicts_report_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    let expect = |seq, prev_hash| AppendRequest {
        seal: Seal::Expect { seq, prev_hash },
        ..proposal("t", "s", seq)
    };
    match h.append_blocking(expect(1, None)).unwrap_err() {
        AppendError::Conflict { head: None, reason } => {
            assert!(reason.contains("next seq is 0"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let first = h.append_blocking(expect(0, None)).unwrap();
    match h.append_blocking(expect(0, None)).unwrap_err() {
        AppendError::Conflict {
            head: Some(head), ..
        } => assert_eq!(
            head,
            Head {
                seq: 0,
                hash: first.hash
            }
        ),
        other => panic!("{other:?}"),
    }
    let wrong = Digest([7; 32]);
    assert!(matches!(
        h.append_blocking(expect(1, Some(wrong))).unwrap_err(),
        AppendError::Conflict { head: Some(_), .. }
    ));
    assert_eq!(
        h.append_blocking(expect(1, Some(first.hash))).unwrap().seq,
        1
    );
    assert!(matches!(
        h.append_blocking(AppendRequest {
            seal: Seal::Expect {
                seq: 0,
                prev_hash: Some(wrong)
            },
            ..proposal("t", "s", 0)
        })
        .unwrap_err(),
        AppendError::Invalid(_)
    ));
    let report = ledger.reader().verify_session("t", "s").unwrap().unwrap();
    assert!(report.is_valid());
    assert_eq!(report.envelopes, 2, "refused appends leave nothing behind");
}

#[test]
fn concurrent_appenders_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let handle = ledger.handle();
    const TASKS: u64 = 32;
    const SESSIONS: u64 = 8;
    const EACH: u64 = 40;
    run(async move {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..EACH {
                    let session = format!("s{}", (task + n) % SESSIONS);
                    let a = h
                        .append(proposal("acme", &session, task * 1000 + n))
                        .await
                        .unwrap();
                    acked.push((session, a));
                }
                acked
            }));
        }
        let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
        for t in tasks {
            for (session, a) in t.await.unwrap() {
                seen.entry(session).or_default().push(a.seq);
            }
        }
        for (session, mut seqs) in seen {
            seqs.sort_unstable();
            assert_eq!(
                seqs,
                (0..seqs.len() as u64).collect::<Vec<_>>(),
                "{session}: every seq once"
            );
        }
    });
    let mut sessions = 0;
    let summary = ledger
        .reader()
        .verify_all(None, |r| {
            sessions += 1;
            assert!(r.is_valid(), "{r:?}")
        })
        .unwrap();
    assert_eq!(summary.envelopes, TASKS * EACH);
    assert_eq!(summary.sessions, SESSIONS);
    assert_eq!(summary.invalid_sessions, 0);
    assert_eq!(sessions, SESSIONS);
}

#[test]
fn a_restart_resumes_heads_and_state_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    for n in 0..3 {
        h.append_blocking(proposal("t", "s", n)).unwrap();
    }
    h.append_blocking(AppendRequest::at_head(event(
        "t",
        "s",
        EventType::ToolResult,
        json!({}),
    )))
    .unwrap();
    let before = h.sessions().snapshot("t", "s", 1_700_000_000_500).unwrap();
    ledger.close();
    assert!(matches!(
        h.append_blocking(proposal("t", "s", 9)),
        Err(AppendError::Closed)
    ));

    let ledger = open(dir.path());
    let h = ledger.handle();
    assert!(
        h.sessions().snapshot("t", "s", 0).is_none(),
        "nothing in memory yet"
    );
    let rebuilt = ledger.reader().load_session("t", "s").unwrap().unwrap();
    assert_eq!(rebuilt.state.snapshot(1_700_000_000_500), before);
    assert_eq!(before.steps_consumed, 3);
    assert_eq!(before.tool_calls_consumed, 3);
    assert!(before.is_tainted);
    assert_eq!(before.wall_time_ms, 500);

    let next = h.append_blocking(proposal("t", "s", 3)).unwrap();
    assert_eq!(next.seq, 4);
    assert_eq!(
        h.sessions()
            .snapshot("t", "s", 1_700_000_000_500)
            .unwrap()
            .steps_consumed,
        4
    );
    assert!(
        ledger
            .reader()
            .verify_session("t", "s")
            .unwrap()
            .unwrap()
            .is_valid()
    );
}

#[test]
fn listing_pages_across_sessions_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    for n in 0..10 {
        h.append_blocking(proposal("acme", &format!("s{}", n % 3), n))
            .unwrap();
        h.append_blocking(AppendRequest::at_head(event(
            "acme",
            &format!("s{}", n % 3),
            EventType::ToolResult,
            json!({}),
        )))
        .unwrap();
    }
    h.append_blocking(proposal("other", "s0", 0)).unwrap();
    let reader = ledger.reader();

    let mut query = ListQuery {
        tenant_id: "acme".into(),
        limit: 3,
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = reader.list(&query).unwrap();
        assert!(page.envelopes.len() <= 3);
        all.extend(page.envelopes);
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(all.len(), 20, "every envelope of the tenant, once");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(all.iter().all(|e| e.tenant_id == "acme"));

    let session = ListQuery {
        tenant_id: "acme".into(),
        session_id: Some("s1".into()),
        limit: 100,
        ..Default::default()
    };
    let page = reader.list(&session).unwrap();
    assert_eq!(
        page.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert_eq!(page.next_page_token, None);

    let by_type = ListQuery {
        event_type: Some("TOOL_RESULT".into()),
        ..session.clone()
    };
    assert_eq!(reader.list(&by_type).unwrap().envelopes.len(), 3);
    let by_tool = ListQuery {
        tool_name: Some("read_file".into()),
        limit: 100,
        tenant_id: "acme".into(),
        ..Default::default()
    };
    assert_eq!(reader.list(&by_tool).unwrap().envelopes.len(), 10);

    // A token continues only the listing that issued it.
    let first = reader
        .list(&ListQuery {
            limit: 1,
            ..session.clone()
        })
        .unwrap();
    let token = first.next_page_token.unwrap();
    let err = reader
        .list(&ListQuery {
            page_token: Some(token),
            ..by_type
        })
        .unwrap_err();
    assert!(err.to_string().contains("other filters"), "{err}");
    let err = reader
        .list(&ListQuery {
            page_token: Some("garbage".into()),
            ..session.clone()
        })
        .unwrap_err();
    assert!(err.to_string().contains("page_token"), "{err}");
    let err = reader
        .list(&ListQuery {
            event_type: Some("NOPE".into()),
            ..session
        })
        .unwrap_err();
    assert!(err.to_string().contains("unknown event type"), "{err}");
}

#[test]
fn every_kind_of_damage_is_caught_at_the_right_seq() {
    for &how in Tamper::ALL {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(dir.path());
        let h = ledger.handle();
        for n in 0..6 {
            h.append_blocking(proposal("t", "s", n)).unwrap();
            h.append_blocking(proposal("t", "other", n)).unwrap();
        }
        ledger.close();
        let path = dir.path().join("ledger.db");
        let bad = tamper(&path, "t", "s", 3, how).unwrap();

        let reader = LedgerReader::open_offline(&path).unwrap();
        let report = reader.verify_session("t", "s").unwrap().unwrap();
        let failure = report
            .failure
            .unwrap_or_else(|| panic!("{how:?} went unnoticed"));
        assert_eq!(failure.seq, bad as u64, "{how:?}: {}", failure.reason);
        let mut invalid = Vec::new();
        let summary = reader
            .verify_all(None, |r| {
                if !r.is_valid() {
                    invalid.push(r.session_id)
                }
            })
            .unwrap();
        assert_eq!(invalid, ["s"], "{how:?}: only the damaged session fails");
        assert_eq!(summary.invalid_sessions, 1);
    }
}

#[test]
fn offline_open_refuses_what_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    assert!(LedgerReader::open_offline(&dir.path().join("missing.db")).is_err());
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE x (a);")
        .unwrap();
    let err = LedgerReader::open_offline(&other).unwrap_err();
    assert!(err.to_string().contains("not an aegis ledger"), "{err}");
    let err = Ledger::open(LedgerConfig::new(&other)).unwrap_err();
    assert!(err.to_string().contains("not an aegis ledger"), "{err}");
}

#[test]
fn readiness_ping_and_queue_depth() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    run(async move {
        h.ping().await.unwrap();
        assert_eq!(h.queue_depth(), 0);
    });
}

#[test]
fn idle_sessions_are_evicted_and_rebuilt_on_next_use() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    run(async {
        for n in 0..3 {
            h.append(proposal("t", "idle", n)).await.unwrap();
        }
        h.append(proposal("t", "busy", 0)).await.unwrap();
        // Nothing is idle for an hour yet.
        assert_eq!(h.evict_idle(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(h.sessions().len(), 2);
        // Everything is idle for zero time.
        assert_eq!(h.evict_idle(Duration::ZERO).await.unwrap(), 2);
        assert!(h.sessions().is_empty());
        // The next append continues the chain and the counts from disk.
        let appended = h.append(proposal("t", "idle", 3)).await.unwrap();
        assert_eq!(appended.seq, 3);
        let snapshot = h.sessions().snapshot("t", "idle", now_unix_ms()).unwrap();
        assert_eq!(snapshot.tool_calls_consumed, 4);
        assert_eq!(snapshot.steps_consumed, 4);
    });
    let report = ledger
        .reader()
        .verify_session("t", "idle")
        .unwrap()
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.envelopes, 4);
}

#[test]
fn a_group_is_committed_together_and_fails_together() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let h = ledger.handle();
    run(async {
        let first = proposal("t", "g", 0);
        let mut second = proposal("t", "g", 1);
        second.seal = Seal::Expect {
            seq: 1,
            prev_hash: None,
        };
        let results = h.append_group(vec![first, second]).await;
        let seqs: Vec<u64> = results.iter().map(|r| r.as_ref().unwrap().seq).collect();
        assert_eq!(seqs, [0, 1]);
        // A group whose first append conflicts (it expects seq 1, the head
        // is 1): the second names the first's hash as its predecessor, so
        // it conflicts too, even though seq 2 is next; nothing is recorded.
        let mut stale = proposal("t", "g", 2);
        stale.seal = Seal::Expect {
            seq: 1,
            prev_hash: None,
        };
        let stale_hash = stale.preimage(1, None).hash();
        let mut after = proposal("t", "g", 3);
        after.seal = Seal::Expect {
            seq: 2,
            prev_hash: Some(stale_hash),
        };
        let results = h.append_group(vec![stale, after]).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(AppendError::Conflict { .. }))),
            "{results:?}"
        );
        // An invalid member: none is sent.
        let mut invalid = proposal("t", "g", 4);
        invalid.event.session_id.clear();
        let results = h.append_group(vec![proposal("t", "g", 5), invalid]).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(AppendError::Invalid(_)))),
            "{results:?}"
        );
        assert_eq!(h.sessions().head("t", "g").unwrap().seq, 1);
    });
}

/// SQLite's WAL: a 32-byte header, then frames of a 24-byte header and a page.
const WAL_HEADER: u64 = 32;
const FRAME: u64 = 24 + 4096;

/// The WAL's length in frames. SQLite restarts a WAL by writing it again
/// from the start, never by shortening it (until the ledger closes), so
/// this is the most it ever held.
fn wal_high_water(path: &Path) -> u64 {
    let len = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    len.saturating_sub(WAL_HEADER) / FRAME
}

/// The WAL header's checkpoint sequence number: one more each time the WAL
/// restarts (written with the new WAL's first frame).
fn wal_restarts(path: &Path) -> u32 {
    let header = std::fs::read(path.with_extension("db-wal")).unwrap();
    u32::from_be_bytes(header[12..16].try_into().unwrap())
}

/// A ledger at `path` whose WAL is checkpointed every `pages`.
fn open_checkpointing(path: &Path, pages: u32, observer: Arc<dyn LedgerObserver>) -> Ledger {
    Ledger::builder(LedgerConfig {
        checkpoint_pages: pages,
        ..LedgerConfig::new(path)
    })
    .observer(observer)
    .open()
    .unwrap()
}

/// Appends to session `s` one at a time until `done` says so; `what` names
/// the wait if it never ends (a hang guard, not a time limit).
fn append_until(h: &LedgerHandle, next: &mut u64, what: &str, mut done: impl FnMut() -> bool) {
    let first = *next;
    while !done() {
        h.append_blocking(proposal("acme", "s", *next)).unwrap();
        *next += 1;
        assert!(*next - first < 100_000, "{what}: not after 100,000 appends");
    }
}

/// Appends until the WAL holds three quarters of `pages`, then once more:
/// the writer checks the WAL after each batch, before it serves the next,
/// so by that append's answer it has woken the checkpoint thread.
fn wake_the_thread(h: &LedgerHandle, path: &Path, pages: u32, next: &mut u64) {
    let woken = u64::from(pages / 4 * 3);
    append_until(h, next, "three quarters", || wal_high_water(path) >= woken);
    h.append_blocking(proposal("acme", "s", *next)).unwrap();
    *next += 1;
}

/// A hang guard for a wait on the other thread.
const HANG_GUARD: Duration = Duration::from_secs(120);

#[test]
fn a_background_checkpoint_holds_up_no_append_and_the_writer_finishes_the_cycle_after_it() {
    // The checkpoint thread is made as slow as a busy disk can make it: held
    // inside its checkpoint, its turn taken, until the test lets it go.
    // Appends must go on meanwhile (the writer never waits for it), and the
    // writer, which cannot have its turn, finishes the cycle at the first
    // batch after the thread's checkpoint ends; the commit after that
    // restarts the WAL.
    const PAGES: u32 = 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (observer, reports, release) = Held::new();
    let ledger = open_checkpointing(&path, PAGES, observer);
    let h = ledger.handle();
    let mut n = 0;
    wake_the_thread(&h, &path, PAGES, &mut n);
    let by = reports.recv_timeout(HANG_GUARD).expect("the thread ran");
    assert_eq!(by, CheckpointBy::Background);
    // If the thread's checkpoint reached the WAL's end (no append came in
    // while it ran), this append restarts the WAL on its own; either way no
    // other restart can come before the writer's checkpoint.
    h.append_blocking(proposal("acme", "s", n)).unwrap();
    n += 1;
    let before = wal_restarts(&path);

    // Well past the limit while the thread holds its turn (the WAL file is
    // longer than any generation before it was).
    let past = u64::from(PAGES + PAGES / 2);
    append_until(&h, &mut n, "past the limit", || {
        wal_high_water(&path) >= past
    });
    assert!(
        reports.try_recv().is_err(),
        "no checkpoint while the thread held its turn"
    );
    assert_eq!(wal_restarts(&path), before, "no restart yet");

    drop(release);
    append_until(&h, &mut n, "the writer's checkpoint", || {
        match reports.try_recv() {
            Ok(by) => {
                assert_eq!(by, CheckpointBy::Writer, "the thread starts no other");
                true
            }
            Err(_) => false,
        }
    });
    // The writer reports after the batch it answered last, so the commit
    // after its checkpoint may already have been made; by this append's
    // answer it has, and it restarted the WAL exactly once.
    h.append_blocking(proposal("acme", "s", n)).unwrap();
    n += 1;
    assert_eq!(
        wal_restarts(&path),
        before + 1,
        "the commit after the writer's checkpoint restarted the WAL"
    );

    ledger.close();
    assert_eq!(wal_high_water(&path), 0, "a closed ledger folds its WAL in");
    let summary = LedgerReader::open_offline(&path)
        .unwrap()
        .verify_all(None, |r| assert!(r.is_valid(), "{r:?}"))
        .unwrap();
    assert_eq!(summary.envelopes, n);
}

#[test]
fn the_checkpoint_thread_copies_the_wal_at_three_quarters() {
    // Far below the writer's own limit, the thread is woken once the WAL
    // holds three quarters of it. Appends then stop, so the writer never
    // claims the cycle, and it cannot checkpoint before the thread's pass
    // has ended (it copies only the tail a pass left): the first report is
    // the thread's.
    const PAGES: u32 = 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (observer, reports, release) = Held::new();
    drop(release);
    let ledger = open_checkpointing(&path, PAGES, observer);
    let h = ledger.handle();
    let mut n = 0;
    wake_the_thread(&h, &path, PAGES, &mut n);
    assert!(
        wal_high_water(&path) < u64::from(PAGES),
        "below the writer's limit"
    );
    let by = reports.recv_timeout(HANG_GUARD).expect("the thread ran");
    assert_eq!(by, CheckpointBy::Background);
    ledger.close();
}

#[test]
fn the_writer_copies_only_the_tail_the_threads_pass_left_and_the_wal_restarts_below_the_limit() {
    // A reader's snapshot, taken a few pages short of three quarters, stops
    // the thread's first pass there, so a tail is certainly left: those few
    // pages. The thread is held after its pass until the reader has gone;
    // then it says how far it got, and the writer copies that small tail
    // itself, well before the limit, and the commit after it restarts the
    // WAL.
    const PAGES: u32 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (observer, reports, release) = Held::new();
    let ledger = open_checkpointing(&path, PAGES, observer);
    let h = ledger.handle();
    let mut n = 0;
    let short = u64::from(PAGES / 4 * 3 - 8);
    append_until(&h, &mut n, "nearly three quarters", || {
        wal_high_water(&path) >= short
    });
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM envelopes", [], |r| r.get(0))
        .unwrap();
    wake_the_thread(&h, &path, PAGES, &mut n);
    let by = reports.recv_timeout(HANG_GUARD).expect("the thread ran");
    assert_eq!(by, CheckpointBy::Background);
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let before = wal_restarts(&path);
    drop(release);
    append_until(&h, &mut n, "the writer's tail", || {
        match reports.try_recv() {
            Ok(by) => {
                assert_eq!(by, CheckpointBy::Writer, "the tail was small: the writer's");
                true
            }
            Err(_) => false,
        }
    });
    h.append_blocking(proposal("acme", "s", n)).unwrap();
    n += 1;
    assert_eq!(
        wal_restarts(&path),
        before + 1,
        "the commit after the writer's checkpoint restarted the WAL"
    );
    // The cycle ended without the writer's claim at the limit.
    assert!(
        wal_high_water(&path) < u64::from(PAGES),
        "restarted below the limit"
    );

    ledger.close();
    let summary = LedgerReader::open_offline(&path)
        .unwrap()
        .verify_all(None, |r| assert!(r.is_valid(), "{r:?}"))
        .unwrap();
    assert_eq!(summary.envelopes, n);
}

#[test]
fn concurrent_appends_across_many_checkpoint_cycles_lose_nothing() {
    // A tiny limit, so the two threads' checkpoints and the WAL's restarts
    // interleave with group commits from eight appenders all along.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = open_checkpointing(&path, 64, Arc::new(NoObserver));
    let handle = ledger.handle();
    const TASKS: u64 = 8;
    const EACH: u64 = 300;
    run(async move {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..EACH {
                    h.append(proposal("acme", &format!("s{task}"), n))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    ledger.close();
    assert_eq!(wal_high_water(&path), 0, "a closed ledger folds its WAL in");
    let mut sessions = Vec::new();
    let summary = LedgerReader::open_offline(&path)
        .unwrap()
        .verify_all(None, |r| {
            assert!(r.is_valid(), "{r:?}");
            sessions.push((r.session_id.clone(), r.envelopes));
        })
        .unwrap();
    assert_eq!(summary.envelopes, TASKS * EACH);
    sessions.sort();
    let expected: Vec<_> = (0..TASKS).map(|t| (format!("s{t}"), EACH)).collect();
    assert_eq!(sessions, expected, "every session whole");
}

/// Reports each checkpoint, by the thread that ran it, as it happens, and
/// holds the checkpoint thread inside its first checkpoint (its turn still
/// taken: the ledger reports before giving it back) until `release` is
/// dropped.
#[derive(Debug)]
struct Held {
    reports: std::sync::Mutex<std::sync::mpsc::Sender<CheckpointBy>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Held {
    fn new() -> (
        Arc<Held>,
        std::sync::mpsc::Receiver<CheckpointBy>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (report, reports) = std::sync::mpsc::channel();
        let (release, held) = std::sync::mpsc::channel();
        let observer = Held {
            reports: std::sync::Mutex::new(report),
            release: std::sync::Mutex::new(Some(held)),
        };
        (Arc::new(observer), reports, release)
    }
}

impl LedgerObserver for Held {
    fn checkpointed(&self, by: CheckpointBy, _duration: Duration) {
        let _ = self.reports.lock().unwrap().send(by);
        if by == CheckpointBy::Background {
            let held = self.release.lock().unwrap().take();
            if let Some(held) = held {
                // Returns when the test drops its sender.
                let _ = held.recv_timeout(HANG_GUARD);
            }
        }
    }
}

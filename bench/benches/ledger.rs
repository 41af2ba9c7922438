//! Criterion benches for the ledger's hot paths (results: `bench/README.md`).
//!
//! - `seal_hash/<bytes>`: SHA-256 of an envelope's canonical preimage, the
//!   payload already canonical (what the writer pays per append).
//! - `canonicalize/<bytes>`: strict parse + RFC 8785 bytes of a payload text
//!   (what `Payload::from_text` pays, on the caller and in verification).
//! - `append/<normal|full>/<appenders>`: committed appends per second into a
//!   fresh ledger, each appender a tokio task on its own session.
//! - `verify/...`: full chain recomputation, one long session and many short ones.
//! - `rebuild/100000/<from>`: a 100k-envelope session's head and state
//!   rebuilt as after a restart (`LedgerReader::load_session` on the closed
//!   file): `summary` from the summaries the writer stored, `every_envelope`
//!   from a copy without them (what every rebuild did before issue 15).
//!
//! Run: `cargo bench -p aegis-bench --bench ledger`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_bench::{
    CommitCounter, TENANT, append_concurrently, fill, new_event, open_ledger, open_observed,
    session_id, sized_payload_text, tool_call_payload, tool_call_requests_from,
};
use aegis_ledger::{AppendRequest, Digest, EventType, LedgerReader, Payload, Synchronous, canon};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Payload sizes for hashing and canonicalisation, in bytes of JSON text.
const PAYLOAD_SIZES: [usize; 4] = [100, 1024, 16 * 1024, 64 * 1024];

/// Envelopes appended per measured iteration, split over the appenders
/// (divisible by every appender count below).
const APPENDS_PER_ITER: usize = 2048;

/// Concurrent appenders, each on its own session.
const APPENDERS: [usize; 3] = [1, 8, 64];

/// Worker threads of the appenders' runtime: the machine's cores, as the
/// sidecar would run.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

fn seal_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal_hash");
    let prev = Digest([0xab; 32]);
    for size in PAYLOAD_SIZES {
        let payload =
            Payload::from_text(&sized_payload_text(size)).expect("sized payloads are valid JSON");
        let request = AppendRequest::at_head(new_event(&session_id(0), payload));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &request, |b, request| {
            b.iter(|| black_box(request.preimage(black_box(41), Some(&prev)).hash()));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("canonicalize");
    for size in PAYLOAD_SIZES {
        let text = sized_payload_text(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &text, |b, text| {
            b.iter(|| {
                let value = canon::parse(black_box(text)).expect("sized payloads are valid JSON");
                black_box(canon::to_vec(&value))
            });
        });
    }
    group.finish();
}

/// Appends `APPENDS_PER_ITER` envelopes per iteration into one ledger per
/// benchmark (steady state: the WAL is reused after checkpoints, sessions are
/// in memory); building the requests is outside the timing. Reports the mean group commit on stderr, since it explains the
/// throughput.
fn append(c: &mut Criterion) {
    let rt = runtime();
    let counter = Arc::new(CommitCounter::default());
    for synchronous in [Synchronous::Normal, Synchronous::Full] {
        let mut group = c.benchmark_group(format!("append/{synchronous}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::Elements(APPENDS_PER_ITER as u64));
        for appenders in APPENDERS {
            counter.take();
            group.bench_with_input(
                BenchmarkId::from_parameter(appenders),
                &appenders,
                |b, &appenders| {
                    // One ledger for the whole run, as in a running sidecar:
                    // the WAL cycles through checkpoints instead of growing a
                    // new file. Each iteration's appenders start new sessions
                    // (agent sessions are short; the first append of each
                    // pays the lookup a new session costs).
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    let ledger = open_observed(dir.path(), synchronous, counter.clone())
                        .expect("a fresh ledger opens");
                    let handle = ledger.handle();
                    let mut next_session = 0;
                    b.iter_custom(|iters| {
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iters {
                            let appends =
                                tool_call_requests_from(next_session, appenders, APPENDS_PER_ITER);
                            next_session += appenders;
                            let started = Instant::now();
                            rt.block_on(append_concurrently(&handle, appends))
                                .expect("every append commits");
                            elapsed += started.elapsed();
                        }
                        elapsed
                    });
                    drop(handle);
                    ledger.close();
                },
            );
            let (commits, envelopes) = counter.take();
            if commits > 0 {
                eprintln!(
                    "append/{synchronous}/{appenders}: {envelopes} envelopes in {commits} commits, {:.1} per commit",
                    envelopes as f64 / commits as f64
                );
            }
        }
        group.finish();
    }
}

/// A closed ledger file, read as an auditor would (`open_offline`).
struct Filled {
    _dir: tempfile::TempDir,
    reader: LedgerReader,
}

fn filled(rt: &Runtime, sessions: usize, per_session: usize) -> Filled {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = open_ledger(dir.path(), Synchronous::Normal).expect("a fresh ledger opens");
    rt.block_on(fill(&ledger.handle(), sessions, per_session, 64))
        .expect("every append commits");
    let path = ledger.path().to_owned();
    ledger.close();
    let reader = LedgerReader::open_offline(&path).expect("the closed ledger opens read-only");
    Filled { _dir: dir, reader }
}

fn verify(c: &mut Criterion) {
    let rt = runtime();
    let long = filled(&rt, 1, 10_000);
    let many = filled(&rt, 100, 100);
    let report = long
        .reader
        .verify_session(TENANT, &session_id(0))
        .expect("the session reads")
        .expect("the session has envelopes");
    assert!(
        report.is_valid() && report.envelopes == 10_000,
        "{report:?}"
    );
    let summary = many
        .reader
        .verify_all(None, |r| assert!(r.is_valid(), "{r:?}"))
        .expect("the ledger reads");
    assert_eq!((summary.sessions, summary.envelopes), (100, 10_000));

    let mut group = c.benchmark_group("verify");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(10_000));
    group.bench_function(BenchmarkId::new("session", "1x10000"), |b| {
        b.iter(|| {
            black_box(
                long.reader
                    .verify_session(TENANT, &session_id(0))
                    .expect("the session reads"),
            )
        });
    });
    group.bench_function(BenchmarkId::new("all", "100x100"), |b| {
        b.iter(|| {
            black_box(
                many.reader
                    .verify_all(None, |r| drop(black_box(r)))
                    .expect("the ledger reads"),
            )
        });
    });
    group.finish();
}

/// Envelopes of the rebuilt session.
const REBUILD_ENVELOPES: u64 = 100_000;

/// One session of `REBUILD_ENVELOPES`: tool calls of three envelopes each
/// (the proposal, ~200 bytes; its allowance; its result), as the sidecar
/// records them.
fn rebuild(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ledger = open_ledger(dir.path(), Synchronous::Normal).expect("a fresh ledger opens");
    let handle = ledger.handle();
    let session = session_id(0);
    rt.block_on(async {
        let mut queued = Vec::with_capacity(REBUILD_ENVELOPES as usize);
        for seq in 0..REBUILD_ENVELOPES {
            let proposal_seq = seq - seq % 3;
            let (event_type, payload) = match seq % 3 {
                0 => (EventType::ToolCallProposed, tool_call_payload(seq)),
                1 => (
                    EventType::ToolCallAllowed,
                    Payload::from_value(serde_json::json!({
                        "tool_name": "read_file", "proposal_seq": proposal_seq,
                        "rule": "permissions.tools", "manifest_sha256": "ab".repeat(32),
                    })),
                ),
                _ => (
                    EventType::ToolResult,
                    Payload::from_value(serde_json::json!({
                        "tool_name": "read_file", "proposal_seq": proposal_seq,
                        "result_sha256": "cd".repeat(32), "bytes": 4096, "is_error": false,
                    })),
                ),
            };
            let mut event = new_event(&session, payload);
            event.event_type = event_type;
            queued.push(
                handle
                    .enqueue(AppendRequest::at_head(event))
                    .await
                    .expect("the append is queued"),
            );
        }
        for q in queued {
            q.committed().await.expect("every append commits");
        }
    });
    let path = ledger.path().to_owned();
    ledger.close();
    let bare = dir.path().join("without-summaries.db");
    std::fs::copy(&path, &bare).expect("the closed ledger copies");
    // (A build from before summaries has no such table.)
    let _ = rusqlite::Connection::open(&bare)
        .and_then(|conn| conn.execute("DELETE FROM session_summaries", []));

    let mut group = c.benchmark_group(format!("rebuild/{REBUILD_ENVELOPES}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (name, file) in [("summary", &path), ("every_envelope", &bare)] {
        let reader = LedgerReader::open_offline(file).expect("the closed ledger opens read-only");
        let entry = reader
            .load_session(TENANT, &session)
            .expect("the session reads")
            .expect("the session has envelopes");
        assert_eq!(entry.head.seq, REBUILD_ENVELOPES - 1);
        assert_eq!(
            entry.state.tool_calls_consumed(),
            REBUILD_ENVELOPES.div_ceil(3)
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    reader
                        .load_session(TENANT, &session)
                        .expect("the session reads"),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, seal_hash, append, verify, rebuild);
criterion_main!(benches);

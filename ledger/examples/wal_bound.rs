//! The ledger's WAL under sustained appends: how large it grows, how often
//! each thread checkpoints, how long the writer's own checkpoints hold
//! appends up, and what that does to append latency. Ledger only, so it
//! builds in about a minute (`bench/README.md`, "The WAL's bound").
//!
//! ```sh
//! cargo run --release -p aegis-ledger --example wal_bound -- \
//!     [--appenders 64] [--appends 100000] [--rate 0] [--synchronous normal] \
//!     [--pages 8192] [--dir .]
//! ```
//!
//! `--rate 0` is a closed loop (each appender waits for its commit, then
//! appends again); a rate is appends per second over all appenders, each
//! sending on its own schedule. Every appender writes `TOOL_CALL_PROPOSED`
//! envelopes of about 300 bytes to sessions of its own, 64 envelopes each.
//! The ledger lives in a new directory under `--dir` (keep it on the disk
//! being measured; the system temp directory may be memory).

#![allow(clippy::print_stdout, reason = "the report is the program's output")]
#![allow(clippy::unwrap_used, reason = "a measuring tool, not the data path")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_ledger::{
    AppendRequest, CheckpointBy, EventType, Ledger, LedgerConfig, LedgerObserver, NewEvent,
    Payload, Synchronous,
};

/// SQLite's WAL: a 32-byte header, then frames of a 24-byte header and a page.
const WAL_HEADER: u64 = 32;
const FRAME: u64 = 24 + 4096;

struct Args {
    appenders: u64,
    appends: u64,
    rate: u64,
    synchronous: Synchronous,
    pages: u32,
    dir: std::path::PathBuf,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        appenders: 64,
        appends: 100_000,
        rate: 0,
        synchronous: Synchronous::Normal,
        pages: LedgerConfig::new("").checkpoint_pages,
        dir: ".".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--appenders" => args.appenders = number()?.max(1),
            "--appends" => args.appends = number()?,
            "--rate" => args.rate = number()?,
            "--pages" => args.pages = u32::try_from(number()?).map_err(|e| e.to_string())?,
            "--synchronous" => {
                args.synchronous = match value.as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    _ => return Err(format!("--synchronous {value}: normal or full")),
                }
            }
            "--dir" => args.dir = value.into(),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.appends < args.appenders {
        return Err("--appends must be at least --appenders".into());
    }
    Ok(args)
}

/// Checkpoints by thread, and the writer's total and longest stall.
#[derive(Debug, Default)]
struct Checkpoints {
    background: AtomicU64,
    writer: AtomicU64,
    writer_us: AtomicU64,
    writer_max_us: AtomicU64,
}

impl LedgerObserver for Checkpoints {
    fn checkpointed(&self, by: CheckpointBy, duration: Duration) {
        match by {
            CheckpointBy::Background => {
                self.background.fetch_add(1, Ordering::Relaxed);
            }
            CheckpointBy::Writer => {
                let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
                self.writer.fetch_add(1, Ordering::Relaxed);
                self.writer_us.fetch_add(us, Ordering::Relaxed);
                self.writer_max_us.fetch_max(us, Ordering::Relaxed);
            }
        }
    }
}

fn event(appender: u64, n: u64) -> AppendRequest {
    let payload = format!(
        r#"{{"tool_name":"read_file","call_id":"c{n}","args":{{"path":"/workspace/project/src/module_{n}.rs","encoding":"utf-8"}},"reason":"read the module before editing it"}}"#
    );
    AppendRequest::at_head(NewEvent {
        tenant_id: "bench".into(),
        user_id: "agent".into(),
        session_id: format!("a{appender}-s{}", n / 64),
        ts_unix_ms: 1_700_000_000_000,
        event_type: EventType::ToolCallProposed,
        payload: Payload::from_text(&payload).unwrap(),
    })
}

fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("wal_bound: {e}");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir_in(&args.dir).unwrap();
    let path = dir.path().join("ledger.db");
    let checkpoints = Arc::new(Checkpoints::default());
    let ledger = Ledger::builder(LedgerConfig {
        synchronous: args.synchronous,
        checkpoint_pages: args.pages,
        ..LedgerConfig::new(&path)
    })
    .observer(checkpoints.clone())
    .open()
    .unwrap();
    let handle = ledger.handle();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.appends as usize)));
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for appender in 0..args.appenders {
            let (handle, latencies) = (handle.clone(), latencies.clone());
            let each = args.appends / args.appenders;
            let mut schedule = (args.rate > 0).then(|| {
                let period = Duration::from_secs_f64(args.appenders as f64 / args.rate as f64);
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                interval
            });
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::with_capacity(each as usize);
                for n in 0..each {
                    if let Some(schedule) = schedule.as_mut() {
                        schedule.tick().await;
                    }
                    let request = event(appender, n);
                    let sent = Instant::now();
                    handle.append(request).await.unwrap();
                    mine.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                latencies.lock().unwrap().extend(mine);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let wal_len = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let writer = checkpoints.writer.load(Ordering::Relaxed);
    println!(
        "appends/s {:.0}  latency µs p50 {} p99 {} p99.9 {} max {}  WAL high-water {} frames (limit {})  checkpoints background {} writer {}  writer stall µs mean {} max {}",
        latencies.len() as f64 / seconds,
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0),
        wal_len.saturating_sub(WAL_HEADER) / FRAME,
        args.pages,
        checkpoints.background.load(Ordering::Relaxed),
        writer,
        checkpoints.writer_us.load(Ordering::Relaxed) / writer.max(1),
        checkpoints.writer_max_us.load(Ordering::Relaxed),
    );
    ledger.close();
}

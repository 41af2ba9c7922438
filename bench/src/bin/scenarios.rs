//! `scenarios`: every end-to-end scenario, alternating in one invocation —
//! `tools/call` with 1 KiB and 64 KiB results, JSON and SSE answers, at 1
//! and N connections, directly, through a bare proxy and through the
//! sidecar (allowed, denied, `synchronous=FULL`, shadow mode), plus an open
//! loop at fixed rates — and the table of medians and ratios.
//!
//! ```sh
//! cargo run --release -p aegis-bench --bin scenarios -- [--rounds N] [--seconds S] [--json out.json] [--only LABEL] ...
//! ```
//!
//! About 7.6 minutes with the defaults, once built (the planned total is
//! printed first).
//! The method is in `aegis_bench::scenarios`; the process exits non-zero
//! if any answer failed its check or a refused call reached the tool
//! server.

#![allow(clippy::print_stdout, reason = "the report is the program's output")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aegis_bench::cpu::{Machine, loadavg};
use aegis_bench::scenarios::{self, Bench, Load, Run, Summary, Timing};
use anyhow::Context as _;
use clap::Parser;
use serde::Serialize;

/// Longest wait for one answer; past it the request is a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Highest `--rate`: the open loop spawns one task per request, and keeps
/// every handle until the run ends.
const MAX_RATE: u32 = 50_000;

/// Every end-to-end scenario, alternating in rounds.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds; each runs every scenario once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds recorded per closed-loop scenario and round.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Seconds of unrecorded warm-up before each closed-loop scenario.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    /// Connections of the closed loop's throughput scenarios.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Open-loop rates, requests/s (comma-separated; `--rate` alone for no
    /// open loop).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1000")]
    rate: Vec<u32>,
    /// Seconds recorded per open-loop scenario and round.
    #[arg(long, default_value_t = 3.0)]
    open_seconds: f64,
    /// Seconds of unrecorded warm-up before each open-loop scenario.
    #[arg(long, default_value_t = 0.5)]
    open_warmup: f64,
    /// The open loop's connection pool: connections open at most. As many
    /// as the sidecar takes POSTs in flight (`mcp.limits.max_in_flight`):
    /// a 100 ms ledger stall at 1000/s holds 100 requests, which a pool of
    /// 64 turned into waits in the load generator.
    #[arg(long, default_value_t = 256)]
    open_connections: usize,
    /// Also write every run and the summaries here, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only the scenarios whose label (e.g. `sidecar/sse/64KiB@32`,
    /// `deny`, `@1000/s`) contains this, with the direct and bare runs of
    /// their groups; repeatable.
    #[arg(long)]
    only: Vec<String>,
}

/// Everything `--json` writes.
#[derive(Debug, Serialize)]
struct Output<'a> {
    machine: &'a Machine,
    loadavg_after: String,
    rounds: usize,
    seconds: f64,
    warmup: f64,
    connections: usize,
    rates: &'a [u32],
    open_seconds: f64,
    open_warmup: f64,
    open_connections: usize,
    planned_s: f64,
    wall_s: f64,
    runs: &'a [Run],
    summaries: &'a [Summary],
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|e| anyhow::anyhow!("--{name} {value}: {e}"))
}

fn main() -> anyhow::Result<()> {
    let began = Instant::now();
    let args = Args::parse();
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(
        args.rate.iter().all(|&r| (1..=MAX_RATE).contains(&r)),
        "--rate must be from 1 to {MAX_RATE}"
    );
    let timing = Timing {
        warmup: seconds("warmup", args.warmup)?,
        seconds: seconds("seconds", args.seconds)?,
        open_warmup: seconds("open-warmup", args.open_warmup)?,
        open_seconds: seconds("open-seconds", args.open_seconds)?,
        open_connections: args.open_connections.max(1),
        request_timeout: REQUEST_TIMEOUT,
    };
    let plan = scenarios::select(
        scenarios::round_plan(args.connections, &args.rate),
        &args.only,
    );
    anyhow::ensure!(!plan.is_empty(), "--only matches no scenario");
    let planned = scenarios::planned(&plan, args.rounds, &timing);
    let machine = Machine::read();
    println!(
        "machine: {} cores, {}; load average {}",
        machine.nproc, machine.cpu, machine.loadavg
    );
    println!(
        "plan: {} rounds × {} scenarios (closed loop {}+{} s each, open loop {}+{} s each) = {:.0} s of load, about {:.1} minutes",
        args.rounds,
        plan.len(),
        args.warmup,
        args.seconds,
        args.open_warmup,
        args.open_seconds,
        planned.as_secs_f64(),
        planned.as_secs_f64() / 60.0,
    );

    let bench = Bench::start()?;
    println!("started in {:.1} s\n", began.elapsed().as_secs_f64());
    let mut runs = Vec::new();
    for round in 0..args.rounds {
        for &scenario in &plan {
            let run = bench.run(round, scenario, &timing);
            println!("{}", scenarios::run_line(&run, began.elapsed()));
            runs.push(run);
        }
    }
    let ledgers: Vec<String> = bench
        .ledger_bytes()
        .iter()
        .map(|(route, bytes)| format!("{route} {:.0} MB", *bytes as f64 / 1e6))
        .collect();
    bench.shutdown();

    let summaries = scenarios::summarise(&runs);
    let wall = began.elapsed();
    println!(
        "\n{} rounds in {:.0} s (planned {:.0} s of load); load average now {}; ledgers: {}",
        args.rounds,
        wall.as_secs_f64(),
        planned.as_secs_f64(),
        loadavg(),
        ledgers.join(", ")
    );
    let closed = summaries
        .iter()
        .any(|s| matches!(s.scenario.group.load, Load::Closed { .. }));
    if closed {
        println!(
            "\nClosed loop — medians over rounds; added = median of per-round (route − baseline), ÷ = median of per-round ratios:\n"
        );
        print!("{}", scenarios::closed_table(&summaries, args.connections));
    }
    if plan
        .iter()
        .any(|s| matches!(s.group.load, Load::Open { .. }))
    {
        println!(
            "\nOpen loop — latency from each request's intended send time, medians over rounds:\n"
        );
        print!("{}", scenarios::open_table(&summaries));
    }
    if summaries.iter().any(|s| s.stages.is_some()) {
        println!("\nThe sidecars' own account (medians; warm-up included):\n");
        print!("{}", scenarios::stages_table(&summaries));
    }

    if let Some(path) = &args.json {
        let output = Output {
            machine: &machine,
            loadavg_after: loadavg(),
            rounds: args.rounds,
            seconds: args.seconds,
            warmup: args.warmup,
            connections: args.connections,
            rates: &args.rate,
            open_seconds: args.open_seconds,
            open_warmup: args.open_warmup,
            open_connections: timing.open_connections,
            planned_s: planned.as_secs_f64(),
            wall_s: wall.as_secs_f64(),
            runs: &runs,
            summaries: &summaries,
        };
        let text = serde_json::to_string_pretty(&output).context("serialising the results")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let failed: Vec<String> = summaries
        .iter()
        .filter(|s| s.failures > 0)
        .map(|s| format!("{} {:?}", s.label, s.failure_labels))
        .collect();
    anyhow::ensure!(failed.is_empty(), "failures: {}", failed.join("; "));
    Ok(())
}

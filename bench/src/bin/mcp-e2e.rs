//! `mcp-e2e`: the added latency and the throughput cost of the sidecar on
//! `tools/call`, against calling the tool server directly.
//!
//! ```sh
//! cargo run --release -p aegis-bench --bin mcp-e2e -- [--rounds N] [--seconds S] [--json out.json]
//! ```
//!
//! Starts two demo tool servers (JSON and SSE answers) and the sidecar in
//! front of them (ledger in a temporary directory), then runs the rounds of
//! `aegis_bench::e2e::round_plan` and prints each run, then the medians.
//! About 2 minutes 20 seconds with the defaults.

#![allow(clippy::print_stdout, reason = "the report is the program's output")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_bench::cpu::{CpuSnapshot, Machine};
use aegis_bench::e2e::{self, Run};
use aegis_bench::load::ClosedLoop;
use aegis_bench::mcp::{EchoCall, Route, Stack};
use aegis_bench::stages::Stages;
use aegis_ledger::Synchronous;
use anyhow::Context as _;
use clap::Parser;
use serde::Serialize;

/// Direct and through-the-sidecar `tools/call` load, alternating in rounds.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds; each runs every scenario once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds recorded per scenario and round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seconds of unrecorded warm-up before each scenario.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Connections of the throughput scenarios.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The sidecar ledger's `synchronous` (normal or full).
    #[arg(long, default_value = "normal")]
    synchronous: String,
    /// Also write every run and the summaries here, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only the scenarios whose label (e.g. `sidecar/json@32`) contains
    /// this, for profiling one of them; the summary then needs all four of
    /// an answer shape's scenarios to say anything.
    #[arg(long)]
    only: Option<String>,
    /// Put the manifest in the ledger's directory (the sidecar's manifest
    /// watcher then wakes on every ledger write), to measure what that costs.
    #[arg(long)]
    manifest_beside_ledger: bool,
}

/// Everything `--json` writes.
#[derive(Debug, Serialize)]
struct Output<'a> {
    machine: Machine,
    rounds: usize,
    seconds: f64,
    warmup: f64,
    synchronous: &'a str,
    manifest_beside_ledger: bool,
    runs: &'a [Run],
    summaries: &'a [e2e::Summary],
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let synchronous: Synchronous = args
        .synchronous
        .parse()
        .map_err(|e| anyhow::anyhow!("--synchronous: {e}"))?;
    let machine = Machine::read();
    println!(
        "machine: {} cores, {}; {} rounds × ({}+{} s) per scenario, ledger synchronous={}",
        machine.nproc, machine.cpu, args.rounds, args.warmup, args.seconds, args.synchronous
    );

    let stack = Stack::start(synchronous, args.manifest_beside_ledger)?;
    let load_rt = aegis_bench::mcp::runtime("load")?;
    let plan: Vec<_> = e2e::round_plan(args.connections)
        .into_iter()
        .filter(|s| {
            args.only
                .as_ref()
                .is_none_or(|only| s.label().contains(only.as_str()))
        })
        .collect();
    let began = Instant::now();
    let mut runs = Vec::new();
    for round in 0..args.rounds {
        for scenario in &plan {
            let endpoint = stack.endpoint(scenario.route, scenario.answering);
            // Fresh sidecar sessions per run: an agent's session is short.
            let prefix = format!(
                "bench-r{round}-{}-{}c",
                scenario.answering, scenario.connections
            );
            let workload = Arc::new(EchoCall::new(&endpoint, scenario.answering, prefix));
            let load = ClosedLoop {
                connections: scenario.connections,
                warmup: Duration::from_secs_f64(args.warmup),
                duration: Duration::from_secs_f64(args.seconds),
                requests: None,
                request_timeout: Duration::from_secs(30),
            };
            let before = stack.sidecar_samples();
            let calls_before = stack.upstream_tool_calls();
            let cpu_before = CpuSnapshot::now();
            let started = Instant::now();
            let report = load_rt.block_on(load.run(endpoint.addr, workload));
            let cpu = CpuSnapshot::now().since(&cpu_before, started.elapsed().as_secs_f64());
            let calls_after = stack.upstream_tool_calls();
            let calls = (calls_after.0 + calls_after.1) - (calls_before.0 + calls_before.1);
            let stages = (scenario.route == Route::Sidecar)
                .then(|| Stages::from_delta(&stack.sidecar_samples().since(&before)));
            let run = Run {
                round,
                scenario: *scenario,
                report,
                stages,
                calls,
                cpu,
            };
            println!("{}", e2e::run_line(&run, began.elapsed()));
            runs.push(run);
        }
    }

    let summaries = e2e::summarise(&runs, args.connections);
    let (json_calls, sse_calls) = stack.upstream_tool_calls();
    println!(
        "\ntool calls that reached the tool servers: {json_calls} (JSON), {sse_calls} (SSE); ledger {:.1} MB",
        stack.ledger_bytes() as f64 / 1e6
    );
    println!(
        "\nmedians over {} rounds (added = median of per-round sidecar − direct):\n",
        args.rounds
    );
    print!("{}", e2e::table(&summaries));
    for s in &summaries {
        println!(
            "{}: at {} connections p50/p99 direct {:.0}/{:.0} µs, sidecar {:.0}/{:.0} µs; at 1 connection {:.0}/s direct, {:.0}/s sidecar",
            s.answering,
            s.connections,
            s.direct_many_p50_us,
            s.direct_many_p99_us,
            s.sidecar_many_p50_us,
            s.sidecar_many_p99_us,
            s.direct_1_rps,
            s.sidecar_1_rps,
        );
        let fmt_cpu = |m: &std::collections::BTreeMap<String, f64>| {
            m.iter()
                .map(|(name, us)| format!("{name} {us:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  CPU µs per call at {} connections: direct [{}] (machine busy {:.2} cores), sidecar [{}] (busy {:.2}); other processes {:.2} cores",
            s.connections,
            fmt_cpu(&s.direct_many_cpu_us),
            s.direct_many_busy_cores,
            fmt_cpu(&s.sidecar_many_cpu_us),
            s.sidecar_many_busy_cores,
            s.many_others_cores,
        );
        for (connections, st) in [
            (1, &s.sidecar_1_stages),
            (s.connections, &s.sidecar_many_stages),
        ] {
            println!(
                "  sidecar@{connections}: per tool call {:.2} commits of {:.0} µs ({:.1} envelopes each; {:.0} commits per run over 2.5 ms), upstream {:.0} µs, answer starts {:.0} µs, decide {:.1} µs",
                st.commits / st.tool_calls.max(1.0),
                st.commit_us,
                st.envelopes_per_commit,
                st.slow_commits,
                st.upstream_us,
                st.request_us,
                st.decision_us,
            );
        }
    }

    if let Some(path) = &args.json {
        let output = Output {
            machine,
            rounds: args.rounds,
            seconds: args.seconds,
            warmup: args.warmup,
            synchronous: &args.synchronous,
            manifest_beside_ledger: args.manifest_beside_ledger,
            runs: &runs,
            summaries: &summaries,
        };
        let text = serde_json::to_string_pretty(&output).context("serialising the results")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    drop(load_rt);
    stack.shutdown();
    let failures: u64 = summaries.iter().map(|s| s.failures).sum();
    anyhow::ensure!(failures == 0, "{failures} requests failed");
    Ok(())
}

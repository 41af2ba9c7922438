//! `egress-tunnel`: what the sidecar's egress forward proxy costs a
//! `CONNECT` tunnel, against reaching the same server directly.
//!
//! ```sh
//! cargo run --release -p aegis-bench --bin egress-tunnel -- [--rounds 5] [--mib 256] [--connects 2000]
//! ```
//!
//! Starts a loopback sink/echo server (`aegis_bench::egress::Server`) and
//! the sidecar with only its forward proxy (no MCP upstreams; ledger in a
//! temporary directory, the manifest in a directory of its own), each on a
//! runtime of its own, then in every round, direct before tunnel:
//!
//! 1. throughput: one connection pushes `--mib` MiB in 64 KiB writes to the
//!    sink, which acknowledges the count at the end (the `CONNECT` handshake
//!    is outside the timing);
//! 2. connect latency: `--connects` sequential new connections, each timed
//!    from the start of its TCP connect until a 1-byte echo came back
//!    (through the tunnel: connect to the proxy, `CONNECT`, `200`, echo).
//!
//! Prints each run, then medians over rounds. Under 2 minutes with the
//! defaults. Exits non-zero if any transfer failed or miscounted, or the
//! ledger does not hold exactly what the tunnels should have recorded.

#![allow(clippy::print_stdout, reason = "the report is the program's output")]
#![allow(clippy::print_stderr, reason = "failures are reported as they happen")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aegis_bench::cpu::{CpuSnapshot, CpuUse, Machine};
use aegis_bench::e2e::median;
use aegis_bench::egress::{self, Client, DOMAIN, Route, Server};
use aegis_bench::stages::{Samples, Stages};
use aegis_ledger::Synchronous;
use aegis_proxy::app::{self, Running};
use aegis_proxy::config::Config;
use aegis_proxy::identity::SessionScope;
use anyhow::Context as _;
use clap::Parser;
use serde::Serialize;

/// Unrecorded connections before each connect-latency run.
const WARMUP_CONNECTS: usize = 50;
/// The sidecar's drain deadline when the bench ends.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// The tenant the proxy records under (no identity configured).
const TENANT: &str = "default";
const MIB: u64 = 1024 * 1024;

/// Direct and through-the-tunnel transfers and connects, alternating.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds; each runs every scenario once, direct before tunnel.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// MiB pushed through one connection per throughput run.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Sequential connections per connect-latency run.
    #[arg(long, default_value_t = 2000)]
    connects: usize,
    /// The sidecar ledger's `synchronous` (normal or full).
    #[arg(long, default_value = "normal")]
    synchronous: String,
    /// After each tunnel connect (outside its timing), wait until the
    /// sidecar has committed all three of its envelopes, so that the next
    /// `CONNECT` never races the previous tunnel's `TOOL_RESULT`.
    #[arg(long)]
    settle: bool,
    /// Also write every run and the summary here, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One throughput run.
#[derive(Debug, Serialize)]
struct Push {
    round: usize,
    route: &'static str,
    seconds: f64,
    /// 10^6 bytes per second.
    mb_s: f64,
    cpu: CpuUse,
}

/// One connect-latency run.
#[derive(Debug, Serialize)]
struct Connects {
    round: usize,
    route: &'static str,
    connects: usize,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    cpu: CpuUse,
    /// The sidecar's ledger and decisions over the run (tunnel runs).
    stages: Option<Stages>,
    /// Appends the ledger refused per connect (tunnel runs).
    refused_per_connect: f64,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    direct_mb_s: f64,
    tunnel_mb_s: f64,
    /// Median of the per-round tunnel ÷ direct.
    throughput_ratio: f64,
    /// CPU µs per MiB through the tunnel, by thread name.
    tunnel_cpu_us_per_mib: BTreeMap<String, f64>,
    direct_p50_us: f64,
    direct_p99_us: f64,
    tunnel_p50_us: f64,
    tunnel_p99_us: f64,
    /// Median of the per-round tunnel − direct.
    added_p50_us: f64,
    added_p99_us: f64,
    /// CPU µs per tunnel connect, by thread name.
    tunnel_cpu_us_per_connect: BTreeMap<String, f64>,
    tunnel_busy_cores: f64,
    tunnel_others_cores: f64,
    commits_per_connect: f64,
    envelopes_per_connect: f64,
    envelopes_per_commit: f64,
    commit_us: f64,
    slow_commits: f64,
    decision_us: f64,
    refused_per_connect: f64,
    failures: u64,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    machine: Machine,
    rounds: usize,
    mib: u64,
    connects: usize,
    synchronous: &'a str,
    settle: bool,
    pushes: &'a [Push],
    connect_runs: &'a [Connects],
    summary: &'a Summary,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rounds > 0 && args.mib > 0 && args.connects > 0,
        "rounds, mib, connects > 0"
    );
    let synchronous: Synchronous = args
        .synchronous
        .parse()
        .map_err(|e| anyhow::anyhow!("--synchronous: {e}"))?;
    let machine = Machine::read();
    println!(
        "machine: {} cores, {}; {} rounds × ({} MiB push, {} connects{}), ledger synchronous={}",
        machine.nproc,
        machine.cpu,
        args.rounds,
        args.mib,
        args.connects,
        if args.settle { ", settled" } else { "" },
        args.synchronous
    );

    let upstream_rt = aegis_bench::mcp::runtime("upstream")?;
    let sidecar_rt = aegis_bench::mcp::runtime("sidecar")?;
    // The client: one thread (this one, named `egress-tunnel` in the CPU
    // report) driving its own I/O, so no wake-up crosses threads on its side.
    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the client runtime")?;
    let server = upstream_rt.block_on(Server::start())?;

    let dir = tempfile::tempdir().context("creating the bench directory")?;
    let manifest_dir = dir.path().join("manifest");
    std::fs::create_dir(&manifest_dir).context("creating the manifest directory")?;
    let manifest = manifest_dir.join("manifest.yaml");
    let per_session = WARMUP_CONNECTS + args.connects;
    std::fs::write(&manifest, egress::manifest(per_session)).context("writing the manifest")?;
    let mut config = Config::default();
    config.admin.listen = "127.0.0.1:0".parse().context("admin address")?;
    config.ledger.path = dir.path().join("ledger.db");
    config.ledger.synchronous = synchronous;
    config.manifest = Some(manifest);
    config.mcp.enforce = true;
    // Each round's connections name their session (`x-aegis-session-id`).
    config.mcp.identity.session_scope = SessionScope::Client;
    config.forward.listen = Some("127.0.0.1:0".parse().context("forward address")?);
    config.forward.allowed_ports = vec![server.addr().port()];
    config.forward.dns_overrides =
        BTreeMap::from([(DOMAIN.to_owned(), "127.0.0.1".parse().context("loopback")?)]);
    let sidecar = sidecar_rt
        .block_on(app::start(config))
        .context("starting the sidecar")?;
    let client = Client {
        server: server.addr(),
        proxy: sidecar
            .forward_addr()
            .context("the sidecar has no forward listener")?,
    };

    let bytes = args.mib * MIB;
    let warm_bytes = bytes.min(16 * MIB);
    let mut failures = 0u64;
    let began = Instant::now();
    let mut pushes = Vec::new();
    let mut connect_runs = Vec::new();
    for round in 0..args.rounds {
        for route in [Route::Direct, Route::Tunnel] {
            let session = format!("bench-throughput-{round}");
            if let Err(e) = load_rt.block_on(client.push(route, &session, warm_bytes)) {
                fail(&mut failures, "warm-up push", e);
            }
            let cpu_before = CpuSnapshot::now();
            let started = Instant::now();
            let pushed = load_rt.block_on(client.push(route, &session, bytes));
            let cpu = CpuSnapshot::now().since(&cpu_before, started.elapsed().as_secs_f64());
            match pushed {
                Ok(took) => {
                    let run = Push {
                        round,
                        route: route.as_str(),
                        seconds: took.as_secs_f64(),
                        mb_s: bytes as f64 / took.as_secs_f64() / 1e6,
                        cpu,
                    };
                    println!(
                        "[{:5.1} s] round {round} push {:<6} {:>7.0} MB/s ({:.3} s; busy {:.2} cores)",
                        began.elapsed().as_secs_f64(),
                        run.route,
                        run.mb_s,
                        run.seconds,
                        run.cpu.machine_busy_cores,
                    );
                    pushes.push(run);
                }
                Err(e) => fail(&mut failures, "push", e),
            }
        }
        for route in [Route::Direct, Route::Tunnel] {
            let session = format!("bench-connect-{round}");
            for _ in 0..WARMUP_CONNECTS {
                if let Err(e) = load_rt.block_on(client.first_byte(route, &session)) {
                    fail(&mut failures, "warm-up connect", e);
                }
            }
            let before = sidecar_samples(&sidecar);
            let cpu_before = CpuSnapshot::now();
            let started = Instant::now();
            let mut samples = Vec::with_capacity(args.connects);
            let mut run_failures = 0u64;
            let settle = args.settle && route == Route::Tunnel;
            let appended_before = before.get(APPENDS);
            load_rt.block_on(async {
                for i in 0..args.connects {
                    match client.first_byte(route, &session).await {
                        Ok(took) => samples.push(took),
                        Err(e) => {
                            run_failures += 1;
                            eprintln!("FAILED connect: {e:#}");
                        }
                    }
                    if settle {
                        let want = appended_before + 3.0 * (i + 1) as f64;
                        for _ in 0..1000 {
                            if sidecar_samples(&sidecar).get(APPENDS) >= want {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
            });
            let wall = started.elapsed();
            let cpu = CpuSnapshot::now().since(&cpu_before, wall.as_secs_f64());
            let after = sidecar_samples(&sidecar);
            failures += run_failures;
            let delta = after.since(&before);
            let stages = (route == Route::Tunnel).then(|| Stages::from_delta(&delta));
            let refused_per_connect = delta.get(APPEND_ERRORS) / samples.len().max(1) as f64;
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            let mean_us = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len().max(1) as f64;
            let run = Connects {
                round,
                route: route.as_str(),
                connects: samples.len(),
                p50_us: us(egress::quantile(&mut samples, 0.50)),
                p99_us: us(egress::quantile(&mut samples, 0.99)),
                mean_us,
                cpu,
                stages,
                refused_per_connect,
            };
            println!(
                "[{:5.1} s] round {round} connect {:<6} p50 {:>5.0} µs, p99 {:>6.0} µs, mean {:>5.0} µs over {} ({:.2} s{})",
                began.elapsed().as_secs_f64(),
                run.route,
                run.p50_us,
                run.p99_us,
                run.mean_us,
                run.connects,
                wall.as_secs_f64(),
                run.stages.map_or_else(String::new, |s| format!(
                    "; {:.2} commits/connect of {:.0} µs, {:.2} envelopes each, {:.2} refused appends/connect, decide {:.1} µs",
                    s.commits / run.connects.max(1) as f64,
                    s.commit_us,
                    s.envelopes_per_commit,
                    run.refused_per_connect,
                    s.decision_us
                )),
            );
            connect_runs.push(run);
        }
    }

    // The ledger must hold three envelopes per CONNECT (proposal, decision,
    // result); the results land after each tunnel closes, so wait for them.
    let expected_accepts = args.rounds as u64 * (4 + 2 * per_session as u64);
    let mut ledger_problems = Vec::new();
    for round in 0..args.rounds {
        for (session, connects) in [
            (format!("bench-throughput-{round}"), 2u64),
            (format!("bench-connect-{round}"), per_session as u64),
        ] {
            let want = 3 * connects;
            let mut got = None;
            for _ in 0..100 {
                got = sidecar_rt.block_on(sidecar.verify_session(TENANT, &session))?;
                if got.as_ref().is_some_and(|r| r.envelopes >= want) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match got {
                Some(report) if report.is_valid() && report.envelopes == want => {}
                other => ledger_problems.push(format!(
                    "{session}: want {want} envelopes in a valid chain, got {other:?}"
                )),
            }
        }
    }
    for problem in &ledger_problems {
        eprintln!("FAILED ledger: {problem}");
    }
    failures += ledger_problems.len() as u64;
    if server.accepted() != expected_accepts {
        eprintln!(
            "FAILED: the server accepted {} connections, expected {expected_accepts}",
            server.accepted()
        );
        failures += 1;
    }
    let ledger_mb = ["ledger.db", "ledger.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.path().join(name)).ok())
        .map(|meta| meta.len())
        .sum::<u64>() as f64
        / 1e6;

    let summary = summarise(&pushes, &connect_runs, args.rounds, args.mib, failures);
    println!(
        "\nmedians over {} rounds (ratio and added = median of per-round values); ledger {ledger_mb:.1} MB\n",
        args.rounds
    );
    println!("| measure | direct | tunnel | tunnel vs direct |");
    println!("|---|---|---|---|");
    println!(
        "| throughput, 1 connection, {} MiB | {:.0} MB/s | {:.0} MB/s | **×{:.2}** |",
        args.mib, summary.direct_mb_s, summary.tunnel_mb_s, summary.throughput_ratio
    );
    println!(
        "| connect → first byte, p50 | {:.0} µs | {:.0} µs | **+{:.0} µs** |",
        summary.direct_p50_us, summary.tunnel_p50_us, summary.added_p50_us
    );
    println!(
        "| connect → first byte, p99 | {:.0} µs | {:.0} µs | **+{:.0} µs** |",
        summary.direct_p99_us, summary.tunnel_p99_us, summary.added_p99_us
    );
    let fmt = |m: &BTreeMap<String, f64>| {
        m.iter()
            .map(|(name, v)| format!("{name} {v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\ntunnel push: CPU µs per MiB [{}]",
        fmt(&summary.tunnel_cpu_us_per_mib)
    );
    println!(
        "tunnel connects: CPU µs per connect [{}] (machine busy {:.2} cores, other processes {:.2})",
        fmt(&summary.tunnel_cpu_us_per_connect),
        summary.tunnel_busy_cores,
        summary.tunnel_others_cores,
    );
    println!(
        "tunnel connects: {:.2} commits per connect of {:.0} µs ({:.2} envelopes each, {:.2} envelopes per connect; {:.0} commits per run over 2.5 ms; {:.2} appends refused per connect), decide {:.1} µs",
        summary.commits_per_connect,
        summary.commit_us,
        summary.envelopes_per_commit,
        summary.envelopes_per_connect,
        summary.slow_commits,
        summary.refused_per_connect,
        summary.decision_us,
    );
    println!("failures: {failures}");

    if let Some(path) = &args.json {
        let output = Output {
            machine,
            rounds: args.rounds,
            mib: args.mib,
            connects: args.connects,
            synchronous: &args.synchronous,
            settle: args.settle,
            pushes: &pushes,
            connect_runs: &connect_runs,
            summary: &summary,
        };
        let text = serde_json::to_string_pretty(&output).context("serialising the results")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    drop(load_rt);
    sidecar_rt.block_on(shutdown(sidecar));
    drop(upstream_rt);
    drop(dir);
    anyhow::ensure!(failures == 0, "{failures} failures");
    Ok(())
}

/// Envelopes committed, all event types.
const APPENDS: &str = "aegis_ledger_appends_total";
/// Appends refused (a `CONNECT`'s proposal racing the previous tunnel's
/// `TOOL_RESULT` is refused as a conflict and decided again).
const APPEND_ERRORS: &str = "aegis_ledger_append_errors_total";

fn sidecar_samples(sidecar: &Running) -> Samples {
    Samples::parse(&String::from_utf8_lossy(&sidecar.metrics().render()))
}

fn fail(failures: &mut u64, what: &str, e: anyhow::Error) {
    *failures += 1;
    eprintln!("FAILED {what}: {e:#}");
}

async fn shutdown(sidecar: Running) {
    sidecar.shutdown(SHUTDOWN_DEADLINE).await;
}

fn summarise(
    pushes: &[Push],
    connects: &[Connects],
    rounds: usize,
    mib: u64,
    failures: u64,
) -> Summary {
    let push = |round: usize, route: Route| {
        pushes
            .iter()
            .find(|p| p.round == round && p.route == route.as_str())
    };
    let conn = |round: usize, route: Route| {
        connects
            .iter()
            .find(|c| c.round == round && c.route == route.as_str())
    };
    let mut s = Summary {
        failures,
        ..Summary::default()
    };
    let of_pushes = |route: Route, f: fn(&Push) -> f64| {
        median((0..rounds).filter_map(|r| push(r, route)).map(f).collect())
    };
    s.direct_mb_s = of_pushes(Route::Direct, |p| p.mb_s);
    s.tunnel_mb_s = of_pushes(Route::Tunnel, |p| p.mb_s);
    s.throughput_ratio = median(
        (0..rounds)
            .filter_map(|r| Some(push(r, Route::Tunnel)?.mb_s / push(r, Route::Direct)?.mb_s))
            .collect(),
    );
    let of_connects = |route: Route, f: fn(&Connects) -> f64| {
        median((0..rounds).filter_map(|r| conn(r, route)).map(f).collect())
    };
    s.direct_p50_us = of_connects(Route::Direct, |c| c.p50_us);
    s.direct_p99_us = of_connects(Route::Direct, |c| c.p99_us);
    s.tunnel_p50_us = of_connects(Route::Tunnel, |c| c.p50_us);
    s.tunnel_p99_us = of_connects(Route::Tunnel, |c| c.p99_us);
    let added = |f: fn(&Connects) -> f64| {
        median(
            (0..rounds)
                .filter_map(|r| Some(f(conn(r, Route::Tunnel)?) - f(conn(r, Route::Direct)?)))
                .collect(),
        )
    };
    s.added_p50_us = added(|c| c.p50_us);
    s.added_p99_us = added(|c| c.p99_us);

    let tunnel_pushes: Vec<&Push> = (0..rounds).filter_map(|r| push(r, Route::Tunnel)).collect();
    s.tunnel_cpu_us_per_mib = per_thread(tunnel_pushes.iter().map(|p| &p.cpu), mib as f64);
    let tunnel_connects: Vec<&Connects> =
        (0..rounds).filter_map(|r| conn(r, Route::Tunnel)).collect();
    if let Some(first) = tunnel_connects.first() {
        s.tunnel_cpu_us_per_connect = per_thread(
            tunnel_connects.iter().map(|c| &c.cpu),
            first.connects as f64,
        );
    }
    let m = |f: &dyn Fn(&Connects) -> f64| median(tunnel_connects.iter().map(|c| f(c)).collect());
    s.tunnel_busy_cores = m(&|c| c.cpu.machine_busy_cores);
    s.tunnel_others_cores = m(&|c| c.cpu.others_cores);
    let st = |f: fn(&Stages, f64) -> f64| {
        m(&|c| {
            c.stages
                .as_ref()
                .map_or(0.0, |s| f(s, c.connects.max(1) as f64))
        })
    };
    s.commits_per_connect = st(|s, n| s.commits / n);
    s.envelopes_per_connect = st(|s, n| s.envelopes / n);
    s.envelopes_per_commit = st(|s, _| s.envelopes_per_commit);
    s.commit_us = st(|s, _| s.commit_us);
    s.slow_commits = st(|s, _| s.slow_commits);
    s.decision_us = st(|s, _| s.decision_us);
    s.refused_per_connect = m(&|c| c.refused_per_connect);
    s
}

/// Median over runs of each thread group's CPU µs per `unit`; groups under
/// 0.5 µs are left out.
fn per_thread<'a>(runs: impl Iterator<Item = &'a CpuUse>, unit: f64) -> BTreeMap<String, f64> {
    let mut by_name: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let runs: Vec<&CpuUse> = runs.collect();
    for cpu in &runs {
        for (name, seconds) in &cpu.seconds {
            by_name
                .entry(name.clone())
                .or_default()
                .push(seconds * 1e6 / unit.max(1.0));
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            // A thread absent from a run used nothing in it.
            values.resize(runs.len(), 0.0);
            (name, median(values))
        })
        .filter(|(_, us)| *us >= 0.5)
        .collect()
}

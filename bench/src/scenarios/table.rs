//! The summaries as Markdown tables (what `bench/README.md` quotes), and
//! one line per run as it finishes.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Group, Load, OPEN_BYTES, Route, Run, SIZES, Scenario, Summary, Versus, size};
use crate::mcp::Answering;

/// The CPU accounting's name for the ledger writer thread (the kernel keeps
/// 15 bytes of `aegis-ledger-writer`).
const LEDGER_WRITER: &str = "aegis-ledger-wr";

fn find(summaries: &[Summary], scenario: Scenario) -> Option<&Summary> {
    summaries.iter().find(|s| s.scenario == scenario)
}

/// `1,234`: whole numbers with thousands separated.
fn int(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("−{out}")
    } else {
        out
    }
}

/// `+1,234` / `−56`.
fn signed(value: f64) -> String {
    if value.round() >= 0.0 {
        format!("+{}", int(value))
    } else {
        int(value)
    }
}

/// `41.2k/s`, `950/s`.
fn rate(rps: f64) -> String {
    if rps >= 1000.0 {
        format!("{:.1}k/s", rps / 1000.0)
    } else {
        format!("{rps:.0}/s")
    }
}

fn added(v: Option<&Versus>) -> String {
    v.map_or_else(
        || "—".to_owned(),
        |v| format!("{} / {}", signed(v.added_p50_us), signed(v.added_p99_us)),
    )
}

fn ratio(v: Option<&Versus>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("×{:.2}", v.rps_ratio))
}

/// The closed loop: one row per answer shape, result size and route; its
/// latency at one connection and throughput at `many`, each against
/// `direct` and `bare`.
pub fn closed_table(summaries: &[Summary], many: usize) -> String {
    let mut out = format!(
        "| answer | result | route | p50 / p99 @1 (µs) | added vs direct @1 | added vs bare @1 | answers/s @{many} | ÷ direct @{many} | ÷ bare @{many} | failed |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for answering in Answering::ALL {
        for (i, bytes) in SIZES.into_iter().enumerate() {
            for route in Route::ALL {
                if route == Route::Deny && i > 0 {
                    continue;
                }
                let at = |connections| {
                    find(
                        summaries,
                        Scenario {
                            route,
                            group: Group {
                                answering,
                                bytes,
                                load: Load::Closed { connections },
                            },
                        },
                    )
                };
                let (one, n) = (at(1), at(many));
                if one.is_none() && n.is_none() {
                    continue;
                }
                let result = if route == Route::Deny {
                    "refusal".to_owned()
                } else {
                    size(bytes)
                };
                let latency = one.map_or_else(
                    || "—".to_owned(),
                    |s| format!("{} / {}", int(s.p50_us), int(s.p99_us)),
                );
                let failed: u64 = one.iter().chain(n.iter()).map(|s| s.failures).sum();
                let _ = writeln!(
                    out,
                    "| {} | {result} | {route} | {latency} | {} | {} | {} | {} | {} | {failed} |",
                    answering.as_str().to_uppercase(),
                    added(one.and_then(|s| s.vs_direct.as_ref())),
                    added(one.and_then(|s| s.vs_bare.as_ref())),
                    n.map_or_else(|| "—".to_owned(), |s| rate(s.rps)),
                    ratio(n.and_then(|s| s.vs_direct.as_ref())),
                    ratio(n.and_then(|s| s.vs_bare.as_ref())),
                );
            }
        }
    }
    out
}

/// The open loop: one row per rate and route; latency from the intended
/// send time, against `direct` and `bare`.
pub fn open_table(summaries: &[Summary]) -> String {
    let mut out = format!(
        "| JSON {} at | route | achieved | p50 / p99 / p99.9 (µs) | added vs direct | added vs bare | send lag p50 / p99 (clock p99) (µs) | waited for a connection | failed |\n|---|---|---|---|---|---|---|---|---|\n",
        size(OPEN_BYTES)
    );
    let added3 = |v: Option<&Versus>| {
        v.map_or_else(
            || "—".to_owned(),
            |v| {
                format!(
                    "{} / {} / {}",
                    signed(v.added_p50_us),
                    signed(v.added_p99_us),
                    signed(v.added_p999_us)
                )
            },
        )
    };
    for s in summaries {
        let Load::Open { rate: target } = s.scenario.group.load else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {target}/s | {} | {} | {} / {} / {} | {} | {} | {} / {} ({}) | {} | {} |",
            s.scenario.route,
            rate(s.rps),
            int(s.p50_us),
            int(s.p99_us),
            int(s.p999_us),
            added3(s.vs_direct.as_ref()),
            added3(s.vs_bare.as_ref()),
            int(s.send_lag_p50_us.unwrap_or(0.0)),
            int(s.send_lag_p99_us.unwrap_or(0.0)),
            int(s.clock_lag_p99_us.unwrap_or(0.0)),
            s.waited_for_connection.unwrap_or(0),
            s.failures,
        );
    }
    out
}

/// The sidecars' own account of the runs through them (medians): CPU per
/// call of the sidecar's threads and of the ledger writer, the ledger's
/// commits, the time to the upstream's answer headers, the decision.
pub fn stages_table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| scenario | answers/s | sidecar CPU µs/call | ledger writer CPU µs/call | commits per call | commit µs | envelopes per commit | commits > 2.5 ms / > 100 ms | upstream µs | decide µs | checkpoints per 10 s, background / writer | writer checkpoint ms, mean / p50 / max ≤ |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let Some(st) = &s.stages else { continue };
        let threads = match s.scenario.route {
            Route::Full => "sidecar-full",
            Route::Shadow => "sidecar-shadow",
            _ => "sidecar",
        };
        let cpu = |name: &str| s.cpu_us.get(name).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1} | {:.0} / {:.0} | {:.0} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} |",
            s.label,
            rate(s.rps),
            cpu(threads),
            cpu(LEDGER_WRITER),
            st.commits / st.tool_calls.max(1.0),
            st.commit_us,
            st.envelopes_per_commit,
            st.slow_commits,
            st.stalled_commits,
            st.upstream_us,
            st.decision_us,
            st.per_10s(st.checkpoints_background),
            st.per_10s(st.checkpoints_writer),
            st.writer_checkpoint_us / 1e3,
            st.writer_checkpoint_p50_us / 1e3,
            st.writer_checkpoint_max_us / 1e3,
        );
    }
    out
}

/// One line per run, as it finishes.
pub fn run_line(run: &Run, elapsed: Duration) -> String {
    let r = &run.report;
    let mut line = format!(
        "[{:>5.1}s] r{} {:<26} {:>9}  p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs  ok {:>6}  failed {}  busy {:.2} cores",
        elapsed.as_secs_f64(),
        run.round,
        run.label,
        rate(r.throughput_rps),
        int(r.latency.p50_us),
        int(r.latency.p99_us),
        int(r.latency.p999_us),
        r.ok,
        r.failed(),
        run.cpu.machine_busy_cores,
    );
    if let (Some(due), Some(lag), Some(clock), Some(waited)) = (
        run.due,
        &run.send_lag,
        &run.clock_lag,
        run.waited_for_connection,
    ) {
        let _ = write!(
            line,
            "  (due {due}, {} connections, {waited} waited for one, send lag p50 {} p99 {} µs, clock p99 {} µs)",
            r.connections,
            int(lag.p50_us),
            int(lag.p99_us),
            int(clock.p99_us),
        );
    }
    if let Some(s) = &run.stages {
        let _ = write!(
            line,
            "  commit {:.0} µs × {:.0} ({:.0} over 2.5 ms, {:.0} over 100 ms)",
            s.commit_us, s.commits, s.slow_commits, s.stalled_commits
        );
        let _ = write!(
            line,
            "  checkpoints background {:.0} writer {:.0} (writer ms mean {:.1} p50 {:.1} max ≤ {:.1})",
            s.checkpoints_background,
            s.checkpoints_writer,
            s.writer_checkpoint_us / 1e3,
            s.writer_checkpoint_p50_us / 1e3,
            s.writer_checkpoint_max_us / 1e3,
        );
    }
    for (label, n) in &r.failures {
        let _ = write!(line, "  [{label}: {n}]");
    }
    line
}

//! The MCP end-to-end comparison: the same `tools/call` load sent straight to
//! the tool server and through the sidecar, alternating in rounds, summarised
//! as medians over rounds of each scenario and of the per-round differences
//! (added latency) and ratios (throughput).
//!
//! Per round and per answer shape (JSON, then SSE) the order is fixed:
//! direct@1, sidecar@1, direct@N, sidecar@N. A sidecar number is only ever
//! compared with the direct number of the same round, measured seconds
//! before it on the same noisy machine.

use std::time::Duration;

use serde::Serialize;

use std::collections::BTreeMap;

use crate::cpu::CpuUse;
use crate::load::LoadReport;
use crate::mcp::{Answering, Route};
use crate::stages::Stages;
pub use crate::stages::median;

/// One measured load: a route, an answer shape, a connection count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub route: Route,
    pub answering: Answering,
    pub connections: usize,
}

impl Scenario {
    /// `sidecar/sse@32`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}@{}",
            self.route.as_str(),
            self.answering,
            self.connections
        )
    }
}

/// The scenarios of one round, in the order they run.
pub fn round_plan(many: usize) -> Vec<Scenario> {
    let mut plan = Vec::new();
    for answering in Answering::ALL {
        for connections in [1, many] {
            for route in [Route::Direct, Route::Sidecar] {
                plan.push(Scenario {
                    route,
                    answering,
                    connections,
                });
            }
        }
    }
    plan
}

/// One scenario's report in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub scenario: Scenario,
    pub report: LoadReport,
    /// The sidecar's own account of the run (sidecar runs only; warm-up
    /// included).
    pub stages: Option<Stages>,
    /// Tool calls that reached the tool server, warm-up included.
    pub calls: u64,
    /// CPU used over the run, warm-up included.
    pub cpu: CpuUse,
}

impl Run {
    /// CPU µs per tool call, by component (thread name); components under
    /// half a microsecond per call (the main thread, idle ones) are left out.
    pub fn cpu_per_call_us(&self) -> BTreeMap<String, f64> {
        self.cpu
            .seconds
            .keys()
            .map(|name| (name.clone(), self.cpu.per_request_us(name, self.calls)))
            .filter(|(_, us)| *us >= 0.5)
            .collect()
    }
}

/// Medians over rounds for one answer shape.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub answering: Answering,
    pub rounds: usize,
    /// At one connection, µs.
    pub direct_p50_us: f64,
    pub direct_p99_us: f64,
    pub sidecar_p50_us: f64,
    pub sidecar_p99_us: f64,
    /// Median over rounds of (sidecar − direct) in the same round, µs.
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    /// At one connection, requests/s.
    pub direct_1_rps: f64,
    pub sidecar_1_rps: f64,
    /// At many connections.
    pub connections: usize,
    pub direct_many_rps: f64,
    pub sidecar_many_rps: f64,
    /// Median over rounds of sidecar ÷ direct throughput in the same round.
    pub throughput_ratio: f64,
    pub direct_many_p50_us: f64,
    pub direct_many_p99_us: f64,
    pub sidecar_many_p50_us: f64,
    pub sidecar_many_p99_us: f64,
    /// Every failure of every round, all four scenarios.
    pub failures: u64,
    /// The sidecar's metrics, field by field medians over rounds.
    pub sidecar_1_stages: Stages,
    pub sidecar_many_stages: Stages,
    /// At many connections: CPU µs per tool call by component, medians.
    pub direct_many_cpu_us: BTreeMap<String, f64>,
    pub sidecar_many_cpu_us: BTreeMap<String, f64>,
    /// At many connections: busy cores (whole machine) and the part of them
    /// not explained by this process, medians.
    pub direct_many_busy_cores: f64,
    pub sidecar_many_busy_cores: f64,
    pub many_others_cores: f64,
}

/// The summary of every answer shape found in `runs`.
pub fn summarise(runs: &[Run], many: usize) -> Vec<Summary> {
    Answering::ALL
        .iter()
        .filter_map(|&answering| summarise_one(runs, answering, many))
        .collect()
}

fn summarise_one(runs: &[Run], answering: Answering, many: usize) -> Option<Summary> {
    let find = |round: usize, route: Route, connections: usize| {
        runs.iter().find(|run| {
            run.round == round
                && run.scenario
                    == Scenario {
                        route,
                        answering,
                        connections,
                    }
        })
    };
    let mut rounds: Vec<usize> = runs.iter().map(|run| run.round).collect();
    rounds.dedup();
    // Rounds where all four scenarios ran (a run cut short may lack some).
    let complete: Vec<[&Run; 4]> = rounds
        .iter()
        .filter_map(|&round| {
            Some([
                find(round, Route::Direct, 1)?,
                find(round, Route::Sidecar, 1)?,
                find(round, Route::Direct, many)?,
                find(round, Route::Sidecar, many)?,
            ])
        })
        .collect();
    if complete.is_empty() {
        return None;
    }
    let reports: Vec<[&LoadReport; 4]> = complete
        .iter()
        .map(|runs| runs.map(|run| &run.report))
        .collect();
    let med = |f: &dyn Fn(&[&LoadReport; 4]) -> f64| median(reports.iter().map(f).collect());
    let cpu_us = |i: usize| {
        let per_run: Vec<BTreeMap<String, f64>> = complete
            .iter()
            .map(|runs| runs[i].cpu_per_call_us())
            .collect();
        let names: std::collections::BTreeSet<&String> =
            per_run.iter().flat_map(|m| m.keys()).collect();
        names
            .into_iter()
            .map(|name| {
                let values = per_run.iter().map(|m| m.get(name).copied().unwrap_or(0.0));
                (name.clone(), median(values.collect()))
            })
            .filter(|(_, us)| *us >= 0.5)
            .collect::<BTreeMap<String, f64>>()
    };
    let busy = |i: usize| {
        median(
            complete
                .iter()
                .map(|runs| runs[i].cpu.machine_busy_cores)
                .collect(),
        )
    };
    let stages = |i: usize| {
        let all: Vec<Stages> = complete.iter().filter_map(|runs| runs[i].stages).collect();
        Stages::median(&all)
    };
    Some(Summary {
        answering,
        rounds: complete.len(),
        direct_p50_us: med(&|r| r[0].latency.p50_us),
        direct_p99_us: med(&|r| r[0].latency.p99_us),
        sidecar_p50_us: med(&|r| r[1].latency.p50_us),
        sidecar_p99_us: med(&|r| r[1].latency.p99_us),
        added_p50_us: med(&|r| r[1].latency.p50_us - r[0].latency.p50_us),
        added_p99_us: med(&|r| r[1].latency.p99_us - r[0].latency.p99_us),
        direct_1_rps: med(&|r| r[0].throughput_rps),
        sidecar_1_rps: med(&|r| r[1].throughput_rps),
        connections: many,
        direct_many_rps: med(&|r| r[2].throughput_rps),
        sidecar_many_rps: med(&|r| r[3].throughput_rps),
        throughput_ratio: med(&|r| ratio(r[3].throughput_rps, r[2].throughput_rps)),
        direct_many_p50_us: med(&|r| r[2].latency.p50_us),
        direct_many_p99_us: med(&|r| r[2].latency.p99_us),
        sidecar_many_p50_us: med(&|r| r[3].latency.p50_us),
        sidecar_many_p99_us: med(&|r| r[3].latency.p99_us),
        failures: runs
            .iter()
            .filter(|run| run.scenario.answering == answering)
            .map(|run| run.report.failed())
            .sum(),
        sidecar_1_stages: stages(1),
        sidecar_many_stages: stages(3),
        direct_many_cpu_us: cpu_us(2),
        sidecar_many_cpu_us: cpu_us(3),
        direct_many_busy_cores: busy(2),
        sidecar_many_busy_cores: busy(3),
        many_others_cores: median(
            complete
                .iter()
                .flat_map(|runs| [runs[2].cpu.others_cores, runs[3].cpu.others_cores])
                .collect(),
        ),
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The summaries as a Markdown table (what `bench/README.md` quotes).
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    out.push_str("| answer | direct p50 / p99 (1 conn) | sidecar p50 / p99 (1 conn) | added p50 / p99 | direct @N | sidecar @N | sidecar ÷ direct | failures |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for s in summaries {
        out.push_str(&format!(
            "| {} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | **{:.0} / {:.0} µs** | {:.0}/s | {:.0}/s | **{:.2}** (N = {}) | {} |\n",
            s.answering.as_str().to_uppercase(),
            s.direct_p50_us,
            s.direct_p99_us,
            s.sidecar_p50_us,
            s.sidecar_p99_us,
            s.added_p50_us,
            s.added_p99_us,
            s.direct_many_rps,
            s.sidecar_many_rps,
            s.throughput_ratio,
            s.connections,
            s.failures,
        ));
    }
    out
}

/// One line per run, as it finishes.
pub fn run_line(run: &Run, elapsed: Duration) -> String {
    let r = &run.report;
    let cpu: Vec<String> = run
        .cpu_per_call_us()
        .iter()
        .map(|(name, us)| format!("{name} {us:.0}"))
        .collect();
    let line = format!(
        "[{:>5.1}s] round {} {:<18} {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  max {:>8.0} µs  ok {:>7}  failed {}\n           cpu µs/call: {}; machine busy {:.2} of {:.0} cores (others {:.2}, steal {:.2})",
        elapsed.as_secs_f64(),
        run.round,
        run.scenario.label(),
        r.throughput_rps,
        r.latency.p50_us,
        r.latency.p99_us,
        r.latency.max_us,
        r.ok,
        r.failed(),
        cpu.join(", "),
        run.cpu.machine_busy_cores,
        run.cpu.machine_cores,
        run.cpu.others_cores,
        run.cpu.steal_cores,
    );
    match &run.stages {
        Some(s) => format!(
            "{line}\n           sidecar: commit {:.0} µs × {:.0} ({:.0} over 2.5 ms; {:.1} envelopes each), upstream {:.0} µs, answer starts {:.0} µs, decide {:.1} µs",
            s.commit_us,
            s.commits,
            s.slow_commits,
            s.envelopes_per_commit,
            s.upstream_us,
            s.request_us,
            s.decision_us
        ),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn a_round_alternates_direct_and_sidecar() {
        let labels: Vec<String> = round_plan(32).iter().map(Scenario::label).collect();
        assert_eq!(
            labels,
            [
                "direct/json@1",
                "sidecar/json@1",
                "direct/json@32",
                "sidecar/json@32",
                "direct/sse@1",
                "sidecar/sse@1",
                "direct/sse@32",
                "sidecar/sse@32",
            ]
        );
    }
}

//! From runs to summaries: per scenario, medians over rounds of its own
//! numbers, and of its per-round differences (latency) and ratios
//! (throughput) to `direct` and to `bare` in the same group and round.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Route, Run, Scenario};
use crate::e2e::median;
use crate::load::LoadReport;
use crate::stages::Stages;

/// One scenario over every round it ran in.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub label: String,
    pub scenario: Scenario,
    pub rounds: usize,
    /// Medians over rounds, µs (from the intended send time in an open
    /// loop).
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Median over rounds, answers/s (the rate achieved in an open loop).
    pub rps: f64,
    /// Open loop: medians of the send lag's p50 and p99, and of the
    /// clock's lateness p99, µs.
    pub send_lag_p50_us: Option<f64>,
    pub send_lag_p99_us: Option<f64>,
    pub clock_lag_p99_us: Option<f64>,
    /// Open loop: requests that waited for a free connection, all rounds.
    pub waited_for_connection: Option<u64>,
    /// Against the same group's `direct` and `bare` runs, round by round
    /// (absent for a baseline itself and for `direct` against `bare`, or
    /// when the baseline did not run).
    pub vs_direct: Option<Versus>,
    pub vs_bare: Option<Versus>,
    /// Every failure of every round.
    pub failures: u64,
    /// Failures by label, over all rounds.
    pub failure_labels: BTreeMap<String, u64>,
    /// The sidecar's metrics, field by field medians (sidecar routes).
    pub stages: Option<Stages>,
    /// CPU µs per call by component (thread name), medians; components
    /// under half a microsecond per call are left out.
    pub cpu_us: BTreeMap<String, f64>,
    /// Busy cores (whole machine) and those of other processes, medians.
    pub busy_cores: f64,
    pub others_cores: f64,
}

/// A scenario against a baseline: medians over the rounds where both ran
/// of the per-round values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Versus {
    pub rounds: usize,
    /// This − baseline, µs.
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    pub added_p999_us: f64,
    /// This ÷ baseline, answers/s.
    pub rps_ratio: f64,
}

impl Versus {
    /// Over `pairs` of (this, baseline) reports, one per round; `None`
    /// without any.
    pub fn of(pairs: &[(&LoadReport, &LoadReport)]) -> Option<Versus> {
        if pairs.is_empty() {
            return None;
        }
        let med = |f: &dyn Fn(&LoadReport, &LoadReport) -> f64| {
            median(pairs.iter().map(|(a, b)| f(a, b)).collect())
        };
        Some(Versus {
            rounds: pairs.len(),
            added_p50_us: med(&|a, b| a.latency.p50_us - b.latency.p50_us),
            added_p99_us: med(&|a, b| a.latency.p99_us - b.latency.p99_us),
            added_p999_us: med(&|a, b| a.latency.p999_us - b.latency.p999_us),
            rps_ratio: med(&|a, b| ratio(a.throughput_rps, b.throughput_rps)),
        })
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// A summary per scenario found in `runs`, in the order they first ran.
pub fn summarise(runs: &[Run]) -> Vec<Summary> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    for run in runs {
        if !scenarios.contains(&run.scenario) {
            scenarios.push(run.scenario);
        }
    }
    scenarios.iter().map(|s| summarise_one(runs, *s)).collect()
}

fn summarise_one(runs: &[Run], scenario: Scenario) -> Summary {
    let own: Vec<&Run> = runs.iter().filter(|r| r.scenario == scenario).collect();
    let med = |f: &dyn Fn(&Run) -> f64| median(own.iter().map(|r| f(r)).collect());
    let versus = |baseline: Route| {
        // Direct against bare would only be bare against direct negated.
        if baseline == scenario.route || (scenario.route, baseline) == (Route::Direct, Route::Bare)
        {
            return None;
        }
        let pairs: Vec<(&LoadReport, &LoadReport)> = own
            .iter()
            .filter_map(|run| {
                let base = runs
                    .iter()
                    .find(|b| b.round == run.round && b.scenario == scenario.by(baseline))?;
                Some((&run.report, &base.report))
            })
            .collect();
        Versus::of(&pairs)
    };
    let lag = |f: &dyn Fn(&Run) -> Option<f64>| {
        let values: Vec<f64> = own.iter().filter_map(|r| f(r)).collect();
        (!values.is_empty()).then(|| median(values))
    };
    let mut failure_labels = BTreeMap::new();
    for run in &own {
        for (label, n) in &run.report.failures {
            *failure_labels.entry(label.clone()).or_insert(0) += n;
        }
    }
    let stages: Vec<Stages> = own.iter().filter_map(|r| r.stages).collect();
    Summary {
        label: scenario.label(),
        scenario,
        rounds: own.len(),
        p50_us: med(&|r| r.report.latency.p50_us),
        p99_us: med(&|r| r.report.latency.p99_us),
        p999_us: med(&|r| r.report.latency.p999_us),
        rps: med(&|r| r.report.throughput_rps),
        send_lag_p50_us: lag(&|r| r.send_lag.map(|l| l.p50_us)),
        send_lag_p99_us: lag(&|r| r.send_lag.map(|l| l.p99_us)),
        clock_lag_p99_us: lag(&|r| r.clock_lag.map(|l| l.p99_us)),
        waited_for_connection: own
            .iter()
            .filter_map(|r| r.waited_for_connection)
            .reduce(|a, b| a + b),
        vs_direct: versus(Route::Direct),
        vs_bare: versus(Route::Bare),
        failures: failure_labels.values().sum(),
        failure_labels,
        stages: (!stages.is_empty()).then(|| Stages::median(&stages)),
        cpu_us: cpu_per_call(&own),
        busy_cores: med(&|r| r.cpu.machine_busy_cores),
        others_cores: med(&|r| r.cpu.others_cores),
    }
}

/// CPU µs per call by thread name, medians over `runs` (a name missing
/// from a run counts as 0 there).
fn cpu_per_call(runs: &[&Run]) -> BTreeMap<String, f64> {
    let per_run: Vec<BTreeMap<&str, f64>> = runs
        .iter()
        .map(|run| {
            let calls = run.calls();
            run.cpu
                .seconds
                .keys()
                .map(|name| (name.as_str(), run.cpu.per_request_us(name, calls)))
                .collect()
        })
        .collect();
    let names: BTreeSet<&str> = per_run.iter().flat_map(|m| m.keys().copied()).collect();
    names
        .into_iter()
        .map(|name| {
            let values = per_run.iter().map(|m| m.get(name).copied().unwrap_or(0.0));
            (name.to_owned(), median(values.collect()))
        })
        .filter(|(_, us)| *us >= 0.5)
        .collect()
}

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use super::*;
use crate::load::LatencySummary;

#[test]
fn a_round_runs_each_group_back_to_back() {
    let plan = round_plan(32, &[1000]);
    let labels: Vec<String> = plan.iter().map(Scenario::label).collect();
    assert_eq!(
        labels[..17],
        [
            "direct/json/1KiB@1",
            "bare/json/1KiB@1",
            "sidecar/json/1KiB@1",
            "deny/json@1",
            "full/json/1KiB@1",
            "shadow/json/1KiB@1",
            "direct/json/1KiB@32",
            "bare/json/1KiB@32",
            "sidecar/json/1KiB@32",
            "deny/json@32",
            "full/json/1KiB@32",
            "shadow/json/1KiB@32",
            "direct/json/64KiB@1",
            "bare/json/64KiB@1",
            "sidecar/json/64KiB@1",
            "full/json/64KiB@1",
            "shadow/json/64KiB@1",
        ]
    );
    // 2 shapes × 2 sizes × 2 loads × 5 routes, deny 2 × 2, open 3.
    assert_eq!(plan.len(), 40 + 4 + 3);
    assert_eq!(
        labels[44..],
        [
            "direct/json/1KiB@1000/s",
            "bare/json/1KiB@1000/s",
            "sidecar/json/1KiB@1000/s"
        ]
    );
    assert_eq!(
        labels.iter().filter(|l| l.starts_with("deny/sse")).count(),
        2
    );
    // Every label is distinct: it names the run's sidecar sessions.
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), labels.len());
    assert_eq!(round_plan(8, &[]).len(), 44);
}

#[test]
fn selecting_keeps_the_baselines_of_the_groups_chosen() {
    let plan = select(
        round_plan(32, &[1000, 2000]),
        &["full/sse/64KiB@32".to_owned()],
    );
    let labels: Vec<String> = plan.iter().map(Scenario::label).collect();
    assert_eq!(
        labels,
        [
            "direct/sse/64KiB@32",
            "bare/sse/64KiB@32",
            "full/sse/64KiB@32"
        ]
    );
    let open = select(
        round_plan(32, &[1000, 2000]),
        &["sidecar/json/1KiB@2000".to_owned()],
    );
    assert_eq!(open.len(), 3);
    assert_eq!(select(round_plan(32, &[]), &[]).len(), 44);
    assert!(select(round_plan(32, &[]), &["nothing".to_owned()]).is_empty());
}

#[test]
fn the_planned_time_adds_up_every_run() {
    let timing = Timing {
        warmup: Duration::from_millis(300),
        seconds: Duration::from_millis(1500),
        open_warmup: Duration::from_millis(500),
        open_seconds: Duration::from_secs(3),
        open_connections: 64,
        request_timeout: Duration::from_secs(10),
    };
    let plan = round_plan(32, &[1000]);
    // 44 closed runs of 1.8 s and 3 open ones of 3.5 s, five rounds.
    let expected = (44.0 * 1.8 + 3.0 * 3.5) * 5.0;
    let planned = planned(&plan, 5, &timing).as_secs_f64();
    assert!((planned - expected).abs() < 1e-6, "{planned}");
    assert!(
        planned < 540.0,
        "the default plan leaves a minute for the rest"
    );
}

fn report(p50: f64, p99: f64, rps: f64) -> LoadReport {
    LoadReport {
        connections: 1,
        elapsed_s: 1.0,
        ok: rps as u64,
        failures: BTreeMap::new(),
        throughput_rps: rps,
        latency: LatencySummary {
            p50_us: p50,
            p99_us: p99,
            p999_us: p99 * 2.0,
            ..LatencySummary::default()
        },
    }
}

fn run(round: usize, route: Route, report: LoadReport) -> Run {
    let group = Group {
        answering: Answering::Json,
        bytes: 1024,
        load: Load::Closed { connections: 1 },
    };
    let scenario = Scenario { route, group };
    Run {
        round,
        label: scenario.label(),
        scenario,
        report,
        due: None,
        send_lag: None,
        clock_lag: None,
        waited_for_connection: None,
        stages: None,
        upstream_calls: 0,
        cpu: CpuUse::default(),
    }
}

#[test]
fn differences_and_ratios_are_taken_within_a_round_then_medianed() {
    let runs = vec![
        run(0, Route::Direct, report(100.0, 200.0, 1000.0)),
        run(0, Route::Bare, report(150.0, 300.0, 800.0)),
        run(0, Route::Sidecar, report(900.0, 2000.0, 200.0)),
        // A slow round for everyone: absolute numbers move, differences less.
        run(1, Route::Direct, report(300.0, 600.0, 500.0)),
        run(1, Route::Bare, report(350.0, 700.0, 400.0)),
        run(1, Route::Sidecar, report(1000.0, 2400.0, 150.0)),
        run(2, Route::Direct, report(110.0, 210.0, 900.0)),
        run(2, Route::Bare, report(170.0, 330.0, 700.0)),
        run(2, Route::Sidecar, report(880.0, 1900.0, 180.0)),
        // Round 3 lacks its baselines (cut short): not paired.
        run(3, Route::Sidecar, report(5000.0, 9000.0, 10.0)),
    ];
    let summaries = summarise(&runs);
    assert_eq!(summaries.len(), 3);
    let sidecar = &summaries[2];
    assert_eq!(sidecar.label, "sidecar/json/1KiB@1");
    assert_eq!(sidecar.rounds, 4);
    // Medians of the sidecar's own numbers, all four rounds.
    assert_eq!(sidecar.p50_us, (900.0 + 1000.0) / 2.0);
    // Per round vs direct: p50 +800, +700, +770; p99 +1800, +1800, +1690.
    let d = sidecar.vs_direct.unwrap();
    assert_eq!(d.rounds, 3);
    assert_eq!(d.added_p50_us, 770.0);
    assert_eq!(d.added_p99_us, 1800.0);
    // Ratios 0.2, 0.3, 0.2: median 0.2.
    assert!((d.rps_ratio - 0.2).abs() < 1e-12);
    // Vs bare: p50 +750, +650, +710.
    let b = sidecar.vs_bare.unwrap();
    assert_eq!(b.added_p50_us, 710.0);
    // Ratios 0.25, 0.375, 0.257…: median 180 / 700.
    assert!(
        (b.rps_ratio - 180.0 / 700.0).abs() < 1e-12,
        "{}",
        b.rps_ratio
    );
    // The baselines: direct has neither, bare only vs direct.
    assert!(summaries[0].vs_direct.is_none() && summaries[0].vs_bare.is_none());
    assert_eq!(summaries[1].vs_direct.unwrap().added_p50_us, 50.0);
    assert!(summaries[1].vs_bare.is_none());
}

#[test]
fn failures_are_summed_by_label_and_show_in_the_table() {
    let mut refused = report(300.0, 500.0, 3000.0);
    refused.failures.insert("upstream_called".to_owned(), 2);
    let mut runs = vec![
        run(0, Route::Direct, report(100.0, 200.0, 1000.0)),
        run(0, Route::Deny, refused.clone()),
        run(1, Route::Deny, refused),
    ];
    runs[1].scenario.route = Route::Deny;
    let summaries = summarise(&runs);
    let deny = summaries
        .iter()
        .find(|s| s.scenario.route == Route::Deny)
        .unwrap();
    assert_eq!(deny.failures, 4);
    assert_eq!(deny.failure_labels["upstream_called"], 4);
    let table = closed_table(&summaries, 32);
    assert!(
        table.contains("| JSON | refusal | deny | 300 / 500 | +200 / +300 | — | — | — | — | 4 |"),
        "{table}"
    );
    assert!(
        table.contains("| JSON | 1KiB | direct | 100 / 200 | — | — |"),
        "{table}"
    );
}

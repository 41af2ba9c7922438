//! Each gate at and around its threshold, with the frozen defaults.

use super::*;

const P: Params = Params::FROZEN;

fn proposal() -> Proposal {
    Proposal {
        risk_baseline: 0.1,
        risk_proposed: 0.1,
        profit_baseline: 1.0,
        profit_proposed: 1.0,
        novelty_score: 0.75,
        complexity_score: 0.8,
        quality_score: 0.85,
        quality_subscores: vec![0.8, 0.9],
        utility: None,
    }
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() < eps
}

#[test]
fn the_normal_distribution_helpers_are_accurate() {
    assert!(close(normal_cdf(0.0), 0.5, 1e-7));
    assert!(close(normal_cdf(1.644_853_626_951_472_2), 0.95, 1e-6));
    assert!(close(normal_cdf(-1.959_963_984_540_054), 0.025, 1e-6));
    assert!(close(normal_quantile(0.95), 1.644_853_626_951_472_2, 1e-8));
    assert!(close(
        normal_quantile(0.001),
        -3.090_232_306_167_813_6,
        1e-7
    ));
    for p in [0.01, 0.2, 0.5, 0.8, 0.999] {
        assert!(close(normal_cdf(normal_quantile(p)), p, 1e-6), "{p}");
    }
    assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
}

/// The risk ratio at which `P(R ≥ 2b)` is exactly 0.95: `2 e^{1.645 σ}`.
fn risk_edge() -> f64 {
    P.risk_trigger_factor * (normal_quantile(P.trigger_confidence_prob) * P.risk_sigma).exp()
}

#[test]
fn risk_fails_once_the_risk_has_credibly_doubled() {
    let edge = risk_edge();
    assert!(close(edge, 3.0174, 1e-3), "{edge}");
    let at = |proposed: f64| {
        risk(
            &Proposal {
                risk_proposed: proposed,
                ..proposal()
            },
            &P,
        )
    };
    let below = at(0.1 * edge * 0.999);
    assert!(below.passed, "{below:?}");
    assert!(close(below.value, 0.95, 1e-3) && below.value < 0.95);
    let above = at(0.1 * edge * 1.001);
    assert!(!above.passed, "{above:?}");
    assert!(above.confidence > 0.95);
    // Unchanged risk: far from triggering.
    let same = at(0.1);
    assert!(same.passed && same.value < 0.01 && same.confidence > 0.99);
    // A zero baseline is the epsilon floor.
    let from_zero = |proposed| {
        risk(
            &Proposal {
                risk_baseline: 0.0,
                risk_proposed: proposed,
                ..proposal()
            },
            &P,
        )
        .passed
    };
    assert!(from_zero(0.01 * edge * 0.999));
    assert!(!from_zero(0.01 * edge * 1.001));
    // The SDK's own defaults (0.02 → 0.05) pass.
    assert!(
        risk(
            &Proposal {
                risk_baseline: 0.02,
                risk_proposed: 0.05,
                ..proposal()
            },
            &P
        )
        .passed
    );
}

#[test]
fn profit_fails_once_the_profit_has_credibly_halved() {
    let edge = risk_edge();
    let at = |proposed: f64| {
        profit(
            &Proposal {
                profit_proposed: proposed,
                ..proposal()
            },
            &P,
        )
    };
    assert!(at(1.0 / edge * 1.001).passed);
    assert!(!at(1.0 / edge * 0.999).passed);
    assert!(at(5.0).passed, "a gain never triggers");
    assert!(
        !at(0.0).passed,
        "a profit of zero is the epsilon floor, far below half"
    );
}

#[test]
fn novelty_passes_at_g_of_0_6() {
    // G(N) = 0.6 at N = N0 + ln(1.5) / k.
    let edge = P.novelty_n0 + (1.5f64).ln() / P.novelty_k;
    assert!(close(edge, 0.740_546_5, 1e-6));
    assert!(novelty(edge + 1e-6, &P).passed);
    assert!(!novelty(edge - 1e-6, &P).passed);
    let mid = novelty(P.novelty_n0, &P);
    assert!(close(mid.value, 0.5, 1e-12) && !mid.passed);
    assert!(novelty(0.75, &P).passed, "the SDK's default novelty passes");
}

#[test]
fn complexity_is_a_floor_at_0_5() {
    assert!(complexity(0.5, &P).passed);
    assert!(!complexity(0.499_999, &P).passed);
    assert!(complexity(1.0, &P).passed);
}

#[test]
fn quality_needs_0_7_and_no_zero_subscore() {
    assert!(quality(0.7, &[0.7, 0.7, 0.7], &P).passed);
    assert!(!quality(0.699_999, &[0.7], &P).passed);
    let zero = quality(0.95, &[0.9, 0.0, 0.9], &P);
    assert!(
        !zero.passed && zero.message.contains("subscore 1 is zero"),
        "{zero:?}"
    );
    assert!(quality(0.7, &[], &P).passed);
}

#[test]
fn utility_is_evaluated_only_with_its_input_and_needs_a_positive_lcb() {
    let none = utility(&proposal(), &P);
    assert!(none.passed && !none.evaluated);
    // Added risk 0.01: mean = gain − 100 − 2000·1.3·0.01 = gain − 126;
    // sd 10: LCB = gain − 126 − 16.449.
    let edge = 126.0 + 10.0 * normal_quantile(0.95);
    let at = |gain: f64| {
        utility(
            &Proposal {
                risk_proposed: 0.11,
                utility: Some(UtilityInput {
                    gain,
                    gain_sd: 10.0,
                }),
                ..proposal()
            },
            &P,
        )
    };
    let above = at(edge + 0.01);
    assert!(above.passed && above.evaluated, "{above:?}");
    assert!(close(above.value, 0.01, 1e-6));
    let below = at(edge - 0.01);
    assert!(!below.passed && below.value < 0.0, "{below:?}");
    // Lower risk adds no disruption cost.
    let safer = utility(
        &Proposal {
            risk_proposed: 0.05,
            utility: Some(UtilityInput {
                gain: 100.5,
                gain_sd: 0.0,
            }),
            ..proposal()
        },
        &P,
    );
    assert!(safer.passed && close(safer.value, 0.5, 1e-9), "{safer:?}");
}

#[test]
fn every_gate_is_evaluated_in_order() {
    let gates = evaluate(&proposal(), &P);
    let names: Vec<&str> = gates.iter().map(|g| g.gate.as_str()).collect();
    assert_eq!(
        names,
        [
            "risk",
            "profit",
            "novelty",
            "complexity",
            "quality",
            "utility"
        ]
    );
    assert!(gates.iter().all(|g| g.passed));
}

#[test]
fn drift_is_the_kl_divergence_of_binned_risk_deltas() {
    let baseline: Vec<f64> = (0..40).map(|i| (i % 4) as f64 * 0.01).collect();
    assert!(kl_divergence(&baseline, &baseline) < 1e-12);
    assert_eq!(
        drift_status(kl_divergence(&baseline, &baseline), &P),
        DriftStatus::Normal
    );
    let shifted = vec![0.9; 40];
    let kl = kl_divergence(&baseline, &shifted);
    assert!(kl > P.kl_tau_critical, "{kl}");
    assert_eq!(drift_status(kl, &P), DriftStatus::Critical);
    assert_eq!(drift_status(0.299_999, &P), DriftStatus::Normal);
    assert_eq!(drift_status(0.3, &P), DriftStatus::Warning);
    assert_eq!(drift_status(0.499_999, &P), DriftStatus::Warning);
    assert_eq!(drift_status(0.5, &P), DriftStatus::Critical);
    // Out-of-range and non-finite values are clamped, not a panic.
    assert!(kl_divergence(&[f64::NAN, 7.0, -7.0], &[f64::INFINITY]).is_finite());
}

//! The quantitative governance gates of the AEGIS governance SDK (seed 003,
//! served to `aegis-governance`'s `POST /evaluate`): risk, profit, novelty,
//! complexity, quality and utility, and KL drift, with the seed's frozen
//! defaults ([`Params::FROZEN`]). Pure functions: no I/O, no clock.
//!
//! Where the seed names a rule but not its model, the model is written down
//! here (and in the README, "Governance gates"):
//!
//! - **Risk** fails when the proposed risk has credibly at least doubled:
//!   `P(R ≥ f·b | data) > p` with `b = max(risk_baseline, ε_R)`, `f =
//!   risk_trigger_factor` (2) and `p = trigger_confidence_prob` (0.95). The
//!   caller's `risk_proposed` is read as a noisy measurement of the true
//!   risk `R`, log-normal around it: `ln R ~ N(ln max(risk_proposed, ε_R),
//!   σ²)` with `σ = 0.25` ([`Params::risk_sigma`]), a flat prior on `ln R`.
//!   So `P(R ≥ f·b) = 1 − Φ((ln(f·b) − ln r) / σ)`, and the gate fails once
//!   `r / b > f · e^{1.645 σ}` ≈ 3.02 (risk about tripled).
//! - **Profit** is the same test the other way: it fails when the proposed
//!   profit has credibly at most halved, `P(P ≤ b / f | data) > p` with `b =
//!   max(profit_baseline, ε_P)`, `ln P ~ N(ln max(profit_proposed, ε_P), σ²)`.
//! - **Novelty**: `G(N) = 1 / (1 + e^{−k (N − N0)})`, passes at `G ≥ 0.6`.
//! - **Complexity**: `complexity_score` (higher is simpler) `≥ 0.5`; a hard
//!   floor no override lifts.
//! - **Quality**: `quality_score ≥ 0.7`, and no subscore is zero.
//! - **Utility**, only when the request carries a `utility_result` (the
//!   seed's `PCWContext.utility_result`, absent by default): `U = κ·gain −
//!   φ_S − φ_D·(1 + γ)·max(0, risk_proposed − risk_baseline)`, its standard
//!   deviation `κ·gain_sd`, and `LCB(U) = U − z_{1−α}·sd` must exceed `θ`
//!   (0); a setup cost beyond `migration_budget` fails it too.
//! - **Drift**: the KL divergence `D(current ‖ baseline)` of two samples of
//!   the risk delta (`risk_proposed − risk_baseline`), each binned into ten
//!   equal bins over [−1, 1] with add-one smoothing; `≥ 0.3` is a warning,
//!   `≥ 0.5` critical.
//!
//! A gate's `confidence` is the probability of its verdict under its model
//! (`1 − P(trigger)` for a pass of risk or profit; 1 for the deterministic
//! gates).

use std::fmt;

/// The frozen parameters (seed 003's `AegisConfig` defaults), and the
/// measurement model's spreads that the seed leaves open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub epsilon_r: f64,
    pub epsilon_p: f64,
    pub risk_trigger_factor: f64,
    pub profit_trigger_factor: f64,
    pub trigger_confidence_prob: f64,
    pub novelty_n0: f64,
    pub novelty_k: f64,
    pub novelty_threshold: f64,
    pub complexity_floor: f64,
    pub quality_min_score: f64,
    pub quality_no_zero_subscore: bool,
    pub gamma: f64,
    pub kappa: f64,
    pub phi_s: f64,
    pub phi_d: f64,
    pub lcb_alpha: f64,
    pub migration_budget: f64,
    pub utility_threshold: f64,
    pub kl_tau_warning: f64,
    pub kl_tau_critical: f64,
    /// The log-normal spread of a caller's risk measurement.
    pub risk_sigma: f64,
    /// The log-normal spread of a caller's profit measurement.
    pub profit_sigma: f64,
}

impl Params {
    pub const FROZEN: Params = Params {
        epsilon_r: 0.01,
        epsilon_p: 0.01,
        risk_trigger_factor: 2.0,
        profit_trigger_factor: 2.0,
        trigger_confidence_prob: 0.95,
        novelty_n0: 0.7,
        novelty_k: 10.0,
        novelty_threshold: 0.6,
        complexity_floor: 0.5,
        quality_min_score: 0.7,
        quality_no_zero_subscore: true,
        gamma: 0.3,
        kappa: 1.0,
        phi_s: 100.0,
        phi_d: 2000.0,
        lcb_alpha: 0.05,
        migration_budget: 5000.0,
        utility_threshold: 0.0,
        kl_tau_warning: 0.3,
        kl_tau_critical: 0.5,
        risk_sigma: 0.25,
        profit_sigma: 0.25,
    };
}

/// The six gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    Risk,
    Profit,
    Novelty,
    Complexity,
    Quality,
    Utility,
}

impl Gate {
    pub const ALL: [Gate; 6] = [
        Gate::Risk,
        Gate::Profit,
        Gate::Novelty,
        Gate::Complexity,
        Gate::Quality,
        Gate::Utility,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Risk => "risk",
            Gate::Profit => "profit",
            Gate::Novelty => "novelty",
            Gate::Complexity => "complexity",
            Gate::Quality => "quality",
            Gate::Utility => "utility",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A caller's utility estimate (`utility_result`): the expected gain and
/// its standard deviation, in the same units as the costs (`φ_S`, `φ_D`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UtilityInput {
    pub gain: f64,
    pub gain_sd: f64,
}

/// What a proposal claims, as `/evaluate` receives it (already checked for
/// range and type).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub risk_baseline: f64,
    pub risk_proposed: f64,
    pub profit_baseline: f64,
    pub profit_proposed: f64,
    pub novelty_score: f64,
    pub complexity_score: f64,
    pub quality_score: f64,
    pub quality_subscores: Vec<f64>,
    pub utility: Option<UtilityInput>,
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    pub gate: Gate,
    pub passed: bool,
    /// Whether the gate was evaluated at all (utility needs its input).
    pub evaluated: bool,
    /// What was compared with `threshold`.
    pub value: f64,
    pub threshold: f64,
    /// The probability of the verdict under the gate's model.
    pub confidence: f64,
    pub message: String,
}

/// Every gate on `proposal`, in [`Gate::ALL`] order.
pub fn evaluate(proposal: &Proposal, params: &Params) -> Vec<GateResult> {
    vec![
        risk(proposal, params),
        profit(proposal, params),
        novelty(proposal.novelty_score, params),
        complexity(proposal.complexity_score, params),
        quality(proposal.quality_score, &proposal.quality_subscores, params),
        utility(proposal, params),
    ]
}

/// The risk gate: `value` is `P(R ≥ f·b | data)`, `threshold` the
/// confidence it must not exceed.
pub fn risk(p: &Proposal, params: &Params) -> GateResult {
    let base = p.risk_baseline.max(params.epsilon_r);
    let measured = p.risk_proposed.max(params.epsilon_r);
    let trigger = params.risk_trigger_factor * base;
    let z = ((trigger).ln() - measured.ln()) / params.risk_sigma;
    let p_trigger = 1.0 - normal_cdf(z);
    triggered_gate(
        Gate::Risk,
        p_trigger,
        params.trigger_confidence_prob,
        format!(
            "P(risk >= {trigger:.4}) = {p_trigger:.4} (baseline {base:.4}, proposed {measured:.4})"
        ),
    )
}

/// The profit gate: `value` is `P(P ≤ b / f | data)`.
pub fn profit(p: &Proposal, params: &Params) -> GateResult {
    let base = p.profit_baseline.max(params.epsilon_p);
    let measured = p.profit_proposed.max(params.epsilon_p);
    let trigger = base / params.profit_trigger_factor;
    let z = (trigger.ln() - measured.ln()) / params.profit_sigma;
    let p_trigger = normal_cdf(z);
    triggered_gate(
        Gate::Profit,
        p_trigger,
        params.trigger_confidence_prob,
        format!(
            "P(profit <= {trigger:.4}) = {p_trigger:.4} (baseline {base:.4}, proposed {measured:.4})"
        ),
    )
}

fn triggered_gate(gate: Gate, p_trigger: f64, limit: f64, detail: String) -> GateResult {
    let passed = p_trigger <= limit;
    GateResult {
        gate,
        passed,
        evaluated: true,
        value: p_trigger,
        threshold: limit,
        confidence: if passed { 1.0 - p_trigger } else { p_trigger },
        message: format!(
            "{detail}: {}",
            if passed { "not triggered" } else { "triggered" }
        ),
    }
}

/// The novelty gate: `G(N)` against its pass threshold.
pub fn novelty(score: f64, params: &Params) -> GateResult {
    let g = 1.0 / (1.0 + (-params.novelty_k * (score - params.novelty_n0)).exp());
    let passed = g >= params.novelty_threshold;
    certain(
        Gate::Novelty,
        passed,
        g,
        params.novelty_threshold,
        format!("G({score:.4}) = {g:.4}"),
    )
}

/// The complexity floor (higher is simpler); never overridable.
pub fn complexity(score: f64, params: &Params) -> GateResult {
    certain(
        Gate::Complexity,
        score >= params.complexity_floor,
        score,
        params.complexity_floor,
        format!(
            "complexity {score:.4} against the hard floor {:.4}",
            params.complexity_floor
        ),
    )
}

/// The quality gate: the score, and no zero subscore.
pub fn quality(score: f64, subscores: &[f64], params: &Params) -> GateResult {
    let zero = subscores.iter().position(|s| *s == 0.0);
    let passed =
        score >= params.quality_min_score && !(params.quality_no_zero_subscore && zero.is_some());
    let message = match zero {
        Some(i) if params.quality_no_zero_subscore => {
            format!("quality {score:.4}; subscore {i} is zero")
        }
        _ => format!("quality {score:.4} against {:.4}", params.quality_min_score),
    };
    certain(
        Gate::Quality,
        passed,
        score,
        params.quality_min_score,
        message,
    )
}

/// The utility gate's lower confidence bound against `θ`.
pub fn utility(p: &Proposal, params: &Params) -> GateResult {
    let Some(input) = p.utility else {
        return GateResult {
            gate: Gate::Utility,
            passed: true,
            evaluated: false,
            value: 0.0,
            threshold: params.utility_threshold,
            confidence: 1.0,
            message: "not evaluated: the request has no utility_result".to_owned(),
        };
    };
    let added_risk = (p.risk_proposed - p.risk_baseline).max(0.0);
    let mean =
        params.kappa * input.gain - params.phi_s - params.phi_d * (1.0 + params.gamma) * added_risk;
    let sd = (params.kappa * input.gain_sd).abs();
    let z = normal_quantile(1.0 - params.lcb_alpha);
    let lcb = mean - z * sd;
    let within_budget = params.phi_s <= params.migration_budget;
    let passed = lcb > params.utility_threshold && within_budget;
    let confidence = if sd > 0.0 {
        let p_above = 1.0 - normal_cdf((params.utility_threshold - mean) / sd);
        if passed { p_above } else { 1.0 - p_above }
    } else {
        1.0
    };
    GateResult {
        gate: Gate::Utility,
        passed,
        evaluated: true,
        value: lcb,
        threshold: params.utility_threshold,
        confidence,
        message: format!("E[U] = {mean:.2}, sd {sd:.2}, LCB = {lcb:.2}"),
    }
}

fn certain(gate: Gate, passed: bool, value: f64, threshold: f64, detail: String) -> GateResult {
    GateResult {
        gate,
        passed,
        evaluated: true,
        value,
        threshold,
        confidence: 1.0,
        message: format!("{detail}: {}", if passed { "passed" } else { "failed" }),
    }
}

/// How far the current sample has drifted from the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftStatus {
    Normal,
    Warning,
    Critical,
}

impl DriftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Normal => "normal",
            DriftStatus::Warning => "warning",
            DriftStatus::Critical => "critical",
        }
    }
}

/// Bins of the drift histograms, over [−1, 1].
pub const DRIFT_BINS: usize = 10;

/// `D(current ‖ baseline)` in nats over [`DRIFT_BINS`] equal bins on
/// [−1, 1] (values outside are clamped), each count plus one.
pub fn kl_divergence(baseline: &[f64], current: &[f64]) -> f64 {
    let p = histogram(current);
    let q = histogram(baseline);
    p.iter()
        .zip(&q)
        .map(|(p, q)| if *p > 0.0 { p * (p / q).ln() } else { 0.0 })
        .sum()
}

/// The drift verdict for a divergence.
pub fn drift_status(kl: f64, params: &Params) -> DriftStatus {
    if kl >= params.kl_tau_critical {
        DriftStatus::Critical
    } else if kl >= params.kl_tau_warning {
        DriftStatus::Warning
    } else {
        DriftStatus::Normal
    }
}

fn histogram(sample: &[f64]) -> [f64; DRIFT_BINS] {
    let mut counts = [1.0; DRIFT_BINS];
    for x in sample {
        let x = if x.is_finite() {
            x.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        // [−1, 1] onto 0..BINS; 1.0 falls in the last bin.
        let bin = (((x + 1.0) / 2.0) * DRIFT_BINS as f64) as usize;
        counts[bin.min(DRIFT_BINS - 1)] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    counts.map(|c| c / total)
}

/// The standard normal CDF, `Φ(x)`, from `erfc` (fractional error below
/// 1.2e-7, the Chebyshev fit of Numerical Recipes' `erfcc`).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal quantile `Φ⁻¹(p)` for `0 < p < 1` (Acklam's
/// rational approximation, relative error below 1.2e-9); ±∞ at the ends.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[cfg(test)]
mod tests;

//! Approvals (`README.md`, "Approvals"): how many wait, how they end, how
//! long people take, and how many calls ran on one. How many were asked
//! for is `aegis_decisions_total{outcome="require_approval"}`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// How approvals end (the `outcome` label): a closed set.
pub const OUTCOMES: [&str; 3] = ["approved", "denied", "expired"];

/// How a hold of a call for its approval ended (the `outcome` label of
/// `aegis_approval_holds_ended_total`): a closed set.
pub const HOLD_ENDINGS: [&str; 8] = [
    "released",
    "refused",
    "denied",
    "expired",
    "consumed",
    "timed_out",
    "shutdown",
    "agent_gone",
];

/// Seconds from a request to its decision: a minute to a day.
const DECISION_BUCKETS: [f64; 12] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

#[derive(Debug, Clone)]
pub struct ApprovalMetrics {
    /// Approvals waiting for votes, as of the last sweep.
    pub pending: IntGauge,
    /// By outcome ([`OUTCOMES`]).
    pub decided: IntCounterVec,
    /// Seconds from the request to the vote that approved or denied it.
    pub decision_seconds: Histogram,
    /// Calls that ran on an approval (each consumed it).
    pub released: IntCounter,
    /// Webhook events by result (`delivered`, `failed`, `dropped`).
    pub webhooks: IntCounterVec,
    /// Calls held open for their approval now (`approval.mode: hold`).
    pub held: IntGauge,
    /// Holds that ended, by how ([`HOLD_ENDINGS`]).
    pub holds_ended: IntCounterVec,
}

impl ApprovalMetrics {
    pub(super) fn new(registry: &Registry) -> Result<ApprovalMetrics, prometheus::Error> {
        let metrics = ApprovalMetrics {
            pending: IntGauge::new(
                "aegis_approvals_pending",
                "Approvals waiting for votes, as of the sidecar's last expiry sweep (every 5 s).",
            )?,
            decided: IntCounterVec::new(
                Opts::new(
                    "aegis_approvals_decided_total",
                    "Approvals that ended, by outcome (approved, denied, expired).",
                ),
                &["outcome"],
            )?,
            decision_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "aegis_approval_decision_seconds",
                    "Seconds from an approval's request to the vote that approved or denied it.",
                )
                .buckets(DECISION_BUCKETS.to_vec()),
            )?,
            released: IntCounter::new(
                "aegis_approvals_released_total",
                "Calls that ran on an approval (each one consumed it).",
            )?,
            webhooks: IntCounterVec::new(
                Opts::new(
                    "aegis_approval_webhooks_total",
                    "Approval webhook events, by result (delivered; failed after every retry; \
                     dropped, the queue being full).",
                ),
                &["result"],
            )?,
            held: IntGauge::new(
                "aegis_approval_held_calls",
                "Tool calls held open for their approval now (approval mode hold).",
            )?,
            holds_ended: IntCounterVec::new(
                Opts::new(
                    "aegis_approval_holds_ended_total",
                    "Holds of tool calls for approval that ended, by how: released (forwarded), \
                     refused (decided again and refused), denied, expired, consumed (used by \
                     another call), timed_out, shutdown, agent_gone.",
                ),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(metrics.pending.clone()))?;
        registry.register(Box::new(metrics.decided.clone()))?;
        registry.register(Box::new(metrics.decision_seconds.clone()))?;
        registry.register(Box::new(metrics.released.clone()))?;
        registry.register(Box::new(metrics.webhooks.clone()))?;
        registry.register(Box::new(metrics.held.clone()))?;
        registry.register(Box::new(metrics.holds_ended.clone()))?;
        for ending in HOLD_ENDINGS {
            metrics.holds_ended.with_label_values(&[ending]);
        }
        for result in ["delivered", "failed", "dropped"] {
            metrics.webhooks.with_label_values(&[result]);
        }
        for outcome in OUTCOMES {
            metrics.decided.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }
}

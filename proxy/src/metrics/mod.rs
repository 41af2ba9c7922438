//! Prometheus metrics: one [`Metrics`] value owns its registry and is passed
//! to whoever records (no global registry).
//!
//! Names are `aegis_<noun>_<unit>`; label values come only from closed sets
//! (event types, error kinds, routes, status codes, reload results) — never
//! ids, paths or free text.

mod approvals;
mod ledger;
mod mcp;

use std::sync::Arc;
use std::time::Duration;

use crate::identity::Failure;
use crate::identity::jwks::JwksReload;
use aegis_policy::{Outcome, Reason, ReloadOutcome};
pub use approvals::ApprovalMetrics;
pub use ledger::LedgerMetrics;
pub use mcp::McpMetrics;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Request latency buckets, 100 µs to 30 s.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// Every metric the sidecar exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub ledger: Arc<LedgerMetrics>,
    pub api_requests: IntCounterVec,
    pub api_request_duration: HistogramVec,
    /// Failed or timed-out TLS handshakes, by listener (`mcp`, `admin`,
    /// `metrics`, `forward`).
    pub tls_handshake_failures: IntCounterVec,
    /// Connections closed before their first request, by listener and
    /// reason (`header_timeout`, `made_room`).
    pub listener_connections_closed: IntCounterVec,
    /// Connections open now, by listener.
    pub listener_connections_open: IntGaugeVec,
    decisions: IntCounterVec,
    decision_duration: Histogram,
    pub manifest: ManifestMetrics,
    pub mcp: McpMetrics,
    pub egress: EgressMetrics,
    pub auth: AuthMetrics,
    pub identity: IdentityMetrics,
    pub approvals: ApprovalMetrics,
    /// Answers of the seed systems' decision APIs, by API and answer
    /// ([`DECISION_API_ANSWERS`]).
    pub decision_api: IntCounterVec,
}

/// The `api` and `answer` labels of `aegis_decision_api_answers_total`: a
/// closed set (each API's answers, lower-case).
pub const DECISION_API_ANSWERS: [(&str, &[&str]); 4] = [
    (
        "aegislib",
        &["allow", "deny", "sanitize", "approval_needed"],
    ),
    ("aegislib_status", &["allow", "deny", "approval_needed"]),
    (
        "propose",
        &["allow", "deny", "escalate", "require_confirmation"],
    ),
    ("governance", &["proceed", "pause", "halt", "escalate"]),
];

/// Who requests act for (`crate::identity`): refusals by listener and
/// reason, and JWK Set reloads.
#[derive(Debug, Clone)]
pub struct IdentityMetrics {
    /// By listener (`mcp`, `forward`) and reason ([`Failure::as_str`]).
    failures: IntCounterVec,
    /// By result (`reloaded`, `unchanged`, `failed`).
    jwks_reloads: IntCounterVec,
}

impl IdentityMetrics {
    fn new(registry: &Registry) -> Result<IdentityMetrics, prometheus::Error> {
        let metrics = IdentityMetrics {
            failures: IntCounterVec::new(
                Opts::new(
                    "aegis_identity_failures_total",
                    "Requests refused because their identity could not be established, by listener and reason.",
                ),
                &["listener", "reason"],
            )?,
            jwks_reloads: IntCounterVec::new(
                Opts::new(
                    "aegis_identity_jwks_reloads_total",
                    "JWK Set file reloads, by result (reloaded, unchanged, failed: the last good set stays live).",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.jwks_reloads.clone()))?;
        for result in ["reloaded", "unchanged", "failed"] {
            metrics.jwks_reloads.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// Counts one refused request.
    pub fn failure(&self, listener: &'static str, failure: Failure) {
        self.failures
            .with_label_values(&[listener, failure.as_str()])
            .inc();
    }

    /// Counts one JWK Set reload.
    pub fn jwks_reload(&self, outcome: &JwksReload) {
        self.jwks_reloads
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}

/// The admin API's credentials: refusals and token file reloads.
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    /// Refused requests, by route and reason (`missing`, `invalid`,
    /// `forbidden`).
    failures: IntCounterVec,
    /// Token entries re-read, by result (`reloaded`, `unchanged`,
    /// `failed`: the entry is disabled).
    pub token_reloads: IntCounterVec,
}

impl AuthMetrics {
    fn new(registry: &Registry) -> Result<AuthMetrics, prometheus::Error> {
        let metrics = AuthMetrics {
            failures: IntCounterVec::new(
                Opts::new(
                    "aegis_api_auth_failures_total",
                    "Admin/API requests refused for their credential, by route and reason (missing, invalid, forbidden).",
                ),
                &["route", "reason"],
            )?,
            token_reloads: IntCounterVec::new(
                Opts::new(
                    "aegis_api_token_reloads_total",
                    "Admin token entries re-read from their files, by result (reloaded, unchanged, failed: entry disabled).",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.token_reloads.clone()))?;
        Ok(metrics)
    }

    /// Exports every `(route, reason)` and every token reload `result` at
    /// 0, so a rate() sees the first one; `routes` are the protected
    /// routes' names (the label sets are the admin server's).
    pub fn init(
        &self,
        routes: impl Iterator<Item = &'static str>,
        reasons: &[&'static str],
        reload_results: &[&'static str],
    ) {
        for route in routes {
            for reason in reasons {
                self.failures.with_label_values(&[route, reason]);
            }
        }
        for result in reload_results {
            self.token_reloads.with_label_values(&[result]);
        }
    }

    /// Counts one refused request; `route` is the route's metric name and
    /// `reason` one of the admin server's refusal reasons.
    pub fn failed(&self, route: &str, reason: &'static str) {
        self.failures.with_label_values(&[route, reason]).inc();
    }
}

/// The MCP reverse proxy; `upstream` labels are configured names (a closed set).
/// The live manifest and its reloads; recorded by the watcher thread, the
/// SIGHUP handler and the reload endpoint.
#[derive(Debug, Clone)]
pub struct ManifestMetrics {
    generation: IntGauge,
    /// One counter per result (`reloaded`, `unchanged`, `failed`).
    reloads: IntCounterVec,
    last_reload_success: IntGauge,
}

impl ManifestMetrics {
    /// The live manifest's generation (0: none loaded).
    pub fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Counts one reload attempt; `not_configured` is not an attempt.
    pub fn record_reload(&self, outcome: &ReloadOutcome) {
        let live = match outcome {
            ReloadOutcome::Reloaded(live) | ReloadOutcome::Unchanged(live) => live,
            ReloadOutcome::Failed(_) => {
                self.reloads.with_label_values(&[outcome.as_str()]).inc();
                self.last_reload_success.set(0);
                return;
            }
            ReloadOutcome::NotConfigured => return,
        };
        self.reloads.with_label_values(&[outcome.as_str()]).inc();
        self.last_reload_success.set(1);
        self.set_generation(live.generation);
    }
}

/// The egress forward proxy (`crate::egress`).
#[derive(Debug, Clone)]
pub struct EgressMetrics {
    /// By kind (`connect`, `http`), outcome (`allow`, `deny`, `error`) and
    /// reason (a reason code, or a closed error kind).
    pub attempts: IntCounterVec,
    /// Bytes through CONNECT tunnels, by direction (`up`: agent to
    /// destination; `down`: back).
    pub tunnel_bytes: IntCounterVec,
    /// CONNECT tunnels open now.
    pub active_tunnels: IntGauge,
}

impl EgressMetrics {
    fn new(registry: &Registry) -> Result<EgressMetrics, prometheus::Error> {
        let metrics = EgressMetrics {
            attempts: IntCounterVec::new(
                Opts::new(
                    "aegis_egress_attempts_total",
                    "Egress attempts through the forward proxy, by kind (connect, http), outcome and reason.",
                ),
                &["kind", "outcome", "reason"],
            )?,
            tunnel_bytes: IntCounterVec::new(
                Opts::new(
                    "aegis_egress_tunnel_bytes_total",
                    "Bytes through CONNECT tunnels, by direction (up: agent to destination, down: back).",
                ),
                &["direction"],
            )?,
            active_tunnels: IntGauge::new(
                "aegis_egress_active_tunnels",
                "CONNECT tunnels open now.",
            )?,
        };
        registry.register(Box::new(metrics.attempts.clone()))?;
        registry.register(Box::new(metrics.tunnel_bytes.clone()))?;
        registry.register(Box::new(metrics.active_tunnels.clone()))?;
        for direction in ["up", "down"] {
            metrics.tunnel_bytes.with_label_values(&[direction]);
        }
        Ok(metrics)
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "aegis_api_requests_total",
                "Admin/API requests, by route and status code.",
            ),
            &["route", "code"],
        )?;
        let api_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "aegis_api_request_duration_seconds",
                "Admin/API request latency, by route.",
            )
            .buckets(vec![
                0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            &["route"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "aegis_policy_decisions_total",
                "Policy decisions, by outcome and reason.",
            ),
            &["outcome", "reason"],
        )?;
        let decision_duration = Histogram::with_opts(
            HistogramOpts::new(
                "aegis_policy_decision_duration_seconds",
                "Time to decide one proposal.",
            )
            .buckets(vec![
                0.000_000_5,
                0.000_001,
                0.000_002_5,
                0.000_005,
                0.000_01,
                0.000_05,
                0.000_1,
                0.001,
            ]),
        )?;
        let manifest_generation = IntGauge::new(
            "aegis_manifest_generation",
            "Generation of the live manifest: 1 at start-up, +1 per reload that changed it; 0 when none is loaded.",
        )?;
        let manifest_reloads = IntCounterVec::new(
            Opts::new(
                "aegis_manifest_reloads_total",
                "Manifest reload attempts, by result (reloaded, unchanged, failed).",
            ),
            &["result"],
        )?;
        let manifest_last_reload_success = IntGauge::new(
            "aegis_manifest_last_reload_success",
            "1 when the latest manifest load or reload succeeded, 0 when it failed (the previous manifest stays live).",
        )?;
        // Every result is exported from the start, so a rate() sees the first failure.
        for result in ["reloaded", "unchanged", "failed"] {
            manifest_reloads.with_label_values(&[result]);
        }
        manifest_last_reload_success.set(1);
        let ledger = Arc::new(LedgerMetrics::new(&registry)?);
        let mcp = McpMetrics::new(&registry)?;
        let egress = EgressMetrics::new(&registry)?;
        let identity = IdentityMetrics::new(&registry)?;
        let auth = AuthMetrics::new(&registry)?;
        let approvals = ApprovalMetrics::new(&registry)?;
        let build_info = IntGauge::with_opts(
            Opts::new(
                "aegis_build_info",
                "Always 1; the version label says which build runs.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);

        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(api_request_duration.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(decision_duration.clone()))?;
        registry.register(Box::new(manifest_generation.clone()))?;
        registry.register(Box::new(manifest_reloads.clone()))?;
        registry.register(Box::new(manifest_last_reload_success.clone()))?;
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "aegis_tls_handshake_failures_total",
                "TLS handshakes on a listener that failed or timed out, by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;
        let listener_connections_closed = IntCounterVec::new(
            Opts::new(
                "aegis_listener_connections_closed_total",
                "Connections closed before their first request: no whole request head within \
                 the header timeout (reason header_timeout), or the oldest such connection \
                 closed to make room at the listener's cap (made_room).",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(listener_connections_closed.clone()))?;
        let listener_connections_open = IntGaugeVec::new(
            Opts::new(
                "aegis_listener_connections_open",
                "Connections open now on each listener (TLS handshakes included).",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(listener_connections_open.clone()))?;
        let decision_api = IntCounterVec::new(
            Opts::new(
                "aegis_decision_api_answers_total",
                "Answers of the seed clients' decision APIs (aegislib's /v1/decision and its \
                 status polls, propose, the governance /evaluate), by API and answer.",
            ),
            &["api", "answer"],
        )?;
        for (api, answers) in DECISION_API_ANSWERS {
            for answer in answers {
                decision_api.with_label_values(&[api, answer]);
            }
        }
        registry.register(Box::new(decision_api.clone()))?;
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            registry,
            ledger,
            api_requests,
            api_request_duration,
            tls_handshake_failures,
            listener_connections_closed,
            listener_connections_open,
            decisions,
            decision_duration,
            manifest: ManifestMetrics {
                generation: manifest_generation,
                reloads: manifest_reloads,
                last_reload_success: manifest_last_reload_success,
            },
            mcp,
            egress,
            identity,
            auth,
            approvals,
            decision_api,
        })
    }

    /// Counts one policy decision.
    pub fn record_decision(&self, outcome: Outcome, reason: Reason, took: Duration) {
        self.decisions
            .with_label_values(&[outcome.as_str(), reason.as_str()])
            .inc();
        self.decision_duration.observe(took.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! The MCP listener's metrics (`aegis_mcp_*`). Their closed label sets
//! are filled in by the listener when it starts (`mcp::McpState::new`).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::LATENCY_BUCKETS;

#[derive(Debug, Clone)]
pub struct McpMetrics {
    /// By upstream, HTTP method and status code.
    pub requests: IntCounterVec,
    /// Whole request, by upstream: until the answer's headers (streams
    /// continue after).
    pub request_duration: HistogramVec,
    /// Until the upstream's answer headers arrived, by upstream.
    pub upstream_duration: HistogramVec,
    /// Tool calls by upstream, outcome, reason and whether enforced.
    pub tool_calls: IntCounterVec,
    /// How forwarded calls ended, by upstream and result (ok, tool_error,
    /// withheld, timeout, upstream_error, malformed, no_answer, agent_gone).
    pub tool_results: IntCounterVec,
    /// Calls the ledger could not record, by what happened (fail_closed: not
    /// forwarded; fail_open: forwarded unrecorded).
    pub ledger_failures: IntCounterVec,
    /// Requests refused whole, by reason (`mcp::error::Failure::LABELS`).
    pub refused_requests: IntCounterVec,
    /// Requests the front door refused, by reason (`host`, `origin`).
    pub front_door_refusals: IntCounterVec,
    /// Answers seen on resumed GET streams, by outcome (`settled`,
    /// `replayed`, `dropped`, `too_large`) — see `mcp::resume`.
    pub resumed_answers: IntCounterVec,
    /// Requests whose POST stream ended early, waiting for a resumed stream.
    pub awaiting_resumption: IntGauge,
    /// Requests being handled (POSTs; GET streams are not counted).
    pub in_flight: IntGauge,
    /// Sessions active in memory (not yet idle-evicted); set when scraped.
    pub active_sessions: IntGauge,
}

impl McpMetrics {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<McpMetrics> {
        let mcp = McpMetrics {
            refused_requests: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_refused_requests_total",
                    "MCP requests refused whole (nothing forwarded), by reason.",
                ),
                &["reason"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_requests_total",
                    "MCP requests, by upstream, HTTP method and status code.",
                ),
                &["upstream", "method", "code"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "aegis_mcp_request_duration_seconds",
                    "MCP request latency until the answer starts, by upstream.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["upstream"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "aegis_mcp_upstream_duration_seconds",
                    "Time until the upstream's answer headers, by upstream.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["upstream"],
            )?,
            tool_calls: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_tool_calls_total",
                    "tools/call decisions, by upstream, outcome, reason and enforced (false in shadow mode).",
                ),
                &["upstream", "outcome", "reason", "enforced"],
            )?,
            tool_results: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_tool_results_total",
                    "How forwarded tools/call ended, by upstream and result.",
                ),
                &["upstream", "result"],
            )?,
            ledger_failures: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_ledger_failures_total",
                    "tools/call the ledger could not record, by mode (fail_closed: refused; fail_open: forwarded unrecorded).",
                ),
                &["mode"],
            )?,
            front_door_refusals: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_front_door_refusals_total",
                    "MCP requests refused before routing for their Host or Origin header (DNS rebinding), by reason.",
                ),
                &["reason"],
            )?,
            resumed_answers: IntCounterVec::new(
                Opts::new(
                    "aegis_mcp_resumed_answers_total",
                    "JSON-RPC answers on GET streams, by outcome: settled (a waiting request's answer, recorded before relaying), replayed (an answer already settled, sent again), dropped (answering nothing waiting: not relayed), too_large (over mcp.limits.max_response_bytes).",
                ),
                &["outcome"],
            )?,
            awaiting_resumption: IntGauge::new(
                "aegis_mcp_awaiting_resumption",
                "Requests whose POST event stream ended before their answer, waiting for the client to resume the stream (GET + Last-Event-ID).",
            )?,
            in_flight: IntGauge::new(
                "aegis_mcp_in_flight_requests",
                "MCP POST requests being handled.",
            )?,
            active_sessions: IntGauge::new(
                "aegis_mcp_active_sessions",
                "Sessions held in memory (used within mcp.session_idle_ms).",
            )?,
        };
        registry.register(Box::new(mcp.requests.clone()))?;
        registry.register(Box::new(mcp.request_duration.clone()))?;
        registry.register(Box::new(mcp.upstream_duration.clone()))?;
        registry.register(Box::new(mcp.tool_calls.clone()))?;
        registry.register(Box::new(mcp.tool_results.clone()))?;
        registry.register(Box::new(mcp.ledger_failures.clone()))?;
        registry.register(Box::new(mcp.refused_requests.clone()))?;
        registry.register(Box::new(mcp.front_door_refusals.clone()))?;
        registry.register(Box::new(mcp.resumed_answers.clone()))?;
        registry.register(Box::new(mcp.awaiting_resumption.clone()))?;
        registry.register(Box::new(mcp.in_flight.clone()))?;
        registry.register(Box::new(mcp.active_sessions.clone()))?;
        Ok(mcp)
    }
}

//! How an admitted attempt ended: `TOOL_RESULT` (tainting the session, like
//! any tool's output) or, with `forward.results_taint: false`,
//! `TOOL_CALL_EXECUTED`, which the session reducer counts as bookkeeping
//! only. (A manifest can also exempt the tools by name:
//! `policy.non_tainting_tools: [net.connect, net.http]`.)
//!
//! No content is kept: the proxy streams what it carries (a CONNECT
//! tunnel's bytes are TLS anyway) and counts it, so the payload says
//! `"kept": "none"` ([`results::KEPT_NOTHING`]) whatever `mcp.results`
//! chooses for `net.http` / `net.connect`.

use std::time::Duration;

use aegis_ledger::EventType;

use super::Admitted;
use super::EgressState;
use crate::gate::record;
use crate::results;

/// The facts of one attempt's end.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// A closed set: `closed`, `idle_timeout`, `shutdown`, `error`,
    /// `unresolved`, `connect_failed`, `timeout`, `incomplete`, `ok`.
    pub status: &'static str,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration: Duration,
    /// The destination's HTTP status (absolute-form requests).
    pub http_status: Option<u16>,
}

impl Ending {
    /// An attempt that never carried a byte.
    pub fn failed(status: &'static str, duration: Duration) -> Ending {
        Ending {
            status,
            bytes_up: 0,
            bytes_down: 0,
            duration,
            http_status: None,
        }
    }
}

/// Records `ending` (the bytes already moved).
pub async fn finish(state: &EgressState, admitted: &Admitted, ending: Ending) {
    let event_type = if state.config.results_taint {
        EventType::ToolResult
    } else {
        EventType::ToolCallExecuted
    };
    let payload = record::egress_result(record::EgressEnd {
        tool_name: admitted.target.kind.tool_name(),
        call_id: &admitted.call_id,
        proposal_seq: admitted.verdict.proposal_seq,
        status: ending.status,
        bytes_up: ending.bytes_up,
        bytes_down: ending.bytes_down,
        duration_ms: u64::try_from(ending.duration.as_millis()).unwrap_or(u64::MAX),
        http_status: ending.http_status,
        kept: results::KEPT_NOTHING,
    });
    // A ledger failure is logged by the gate, and the session's next
    // decision records the loss (which taints).
    state
        .gate
        .record_result(
            &admitted.identity,
            admitted.verdict.proposal_seq,
            admitted.target.kind.tool_name(),
            event_type,
            payload,
        )
        .await;
}

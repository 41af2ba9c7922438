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
use serde_json::json;

use super::EgressState;
use super::admit::Admitted;
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

/// Records `ending`; a ledger failure is logged (the bytes already moved).
pub async fn finish(state: &EgressState, admitted: &Admitted, ending: Ending) {
    let event_type = if state.config.results_taint {
        EventType::ToolResult
    } else {
        EventType::ToolCallExecuted
    };
    let mut payload = json!({
        "tool_name": admitted.target.kind.tool_name(),
        "call_id": admitted.call_id,
        "proposal_seq": admitted.verdict.proposal_seq,
        "transport": "egress",
        "status": ending.status,
        "bytes_up": ending.bytes_up,
        "bytes_down": ending.bytes_down,
        "duration_ms": u64::try_from(ending.duration.as_millis()).unwrap_or(u64::MAX),
        "kept": results::KEPT_NOTHING,
    });
    if let Some(code) = ending.http_status {
        payload["http_status"] = json!(code);
    }
    if let Err(e) = state
        .gate
        .record(&admitted.identity, event_type, payload)
        .await
    {
        tracing::error!(
            session = %admitted.identity.session_id,
            call_id = %admitted.call_id,
            error = %e,
            "cannot record the end of an egress attempt"
        );
    }
}

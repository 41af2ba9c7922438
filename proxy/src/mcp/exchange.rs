//! One POST's state on its way through, owned by the request side: built
//! as its messages are admitted ([`super::admit`]), then handed to the
//! answer side, which takes from it what each answer settles.

use std::sync::Arc;

use bytes::Bytes;
use std::time::{Duration, Instant};

use aegis_policy::manifest::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS};
use http::{Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant as Deadline;

use super::McpState;
use super::answers::{self, Outgoing};
use super::body::ProxyBody;
use super::held::Held;
use super::inputs::Read;
use super::jsonrpc::Id;
use super::upstream::Upstream;
use crate::gate::Verdict;
use crate::identity::Identity;

/// One POST's slot among `mcp.limits.max_in_flight`, counted in
/// `aegis_mcp_in_flight_requests` until dropped — when its answer has been
/// relayed, not when the handler returns.
#[derive(Debug)]
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl InFlight {
    pub fn new(permit: OwnedSemaphorePermit, gauge: prometheus::IntGauge) -> InFlight {
        gauge.inc();
        InFlight {
            _permit: permit,
            gauge,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A forwarded `tools/call` waiting for its answer.
#[derive(Debug, Clone)]
pub struct Call {
    pub id: Id,
    pub tool_name: String,
    /// `None` when the call went upstream unrecorded (ledger down, `fail_open`).
    pub proposal_seq: Option<u64>,
    pub decision_seq: Option<u64>,
    pub manifest_sha256: String,
    /// The decision (in shadow mode, possibly a refusal that was forwarded).
    pub outcome: &'static str,
    pub reason: &'static str,
    pub max_output_bytes: u64,
    pub timeout: Duration,
}

impl Call {
    pub fn new(id: Id, tool_name: &str, verdict: &Verdict) -> Call {
        // Shadow mode forwards refused calls: they run under the defaults.
        let (max_output_bytes, timeout_ms) = verdict
            .decision
            .constraints
            .map_or((DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS), |c| {
                (c.max_output_bytes, c.timeout_ms)
            });
        Call {
            id,
            tool_name: tool_name.to_owned(),
            proposal_seq: Some(verdict.proposal_seq),
            decision_seq: Some(verdict.decision_seq),
            manifest_sha256: verdict.manifest_sha256().to_owned(),
            outcome: verdict.decision.outcome.as_str(),
            reason: verdict.decision.reason.as_str(),
            max_output_bytes,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    pub fn unrecorded(id: Id, tool_name: &str) -> Call {
        Call {
            id,
            tool_name: tool_name.to_owned(),
            proposal_seq: None,
            decision_seq: None,
            manifest_sha256: String::new(),
            outcome: "unrecorded",
            reason: "",
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }
}

/// One POST on its way through.
#[derive(Debug)]
pub struct Exchange {
    pub state: Arc<McpState>,
    pub upstream: Arc<Upstream>,
    pub identity: Identity,
    pub started: Instant,
    /// Held until the answer is fully relayed (the shutdown drain waits for
    /// it; the in-flight gauge counts it).
    pub permit: InFlight,
    pub batch: bool,
    /// Forwarded `tools/call` requests.
    pub calls: Vec<Call>,
    /// Forwarded `tools/list` requests (their answers are filtered).
    pub tools_list: Vec<Id>,
    /// Forwarded `resources/read` and `prompts/get` requests (their answers
    /// are recorded and taint, see [`super::inputs`]).
    pub reads: Vec<Read>,
    /// Ids of the answers seen so far (on an SSE stream).
    pub answered: Vec<Id>,
    /// Answers made by the sidecar (denials, malformed calls).
    pub local: Vec<Outgoing>,
    /// Ids of every forwarded request.
    pub forwarded_requests: Vec<Id>,
    /// The call held for its approval (a POST of that one message).
    pub held: Option<Held>,
    /// Admitted messages `policy.sanitize` rewrote: where each starts in
    /// the body, and the text forwarded instead ([`super::admit::upstream_body`]).
    pub rewrites: Vec<(usize, Bytes)>,
}

impl Exchange {
    pub fn new(
        state: Arc<McpState>,
        upstream: Arc<Upstream>,
        identity: Identity,
        started: Instant,
        permit: InFlight,
        batch: bool,
    ) -> Exchange {
        Exchange {
            state,
            upstream,
            identity,
            started,
            permit,
            batch,
            calls: Vec::new(),
            tools_list: Vec::new(),
            reads: Vec::new(),
            answered: Vec::new(),
            local: Vec::new(),
            forwarded_requests: Vec::new(),
            held: None,
            rewrites: Vec::new(),
        }
    }

    /// Whether any forwarded message is a request (an answer is due).
    pub fn expects_answer(&self) -> bool {
        !self.forwarded_requests.is_empty()
    }

    /// Whether the answer must be read (something in it is settled,
    /// filtered or joined by the sidecar's own answers).
    pub fn inspects(&self) -> bool {
        !self.calls.is_empty()
            || !self.tools_list.is_empty()
            || !self.reads.is_empty()
            || !self.local.is_empty()
    }

    /// Nothing was forwarded: the sidecar's own answers are the answer.
    pub fn local_only(self) -> Response<ProxyBody> {
        if self.local.is_empty() {
            // Only notifications or responses, all consumed: accepted.
            return answers::accepted();
        }
        self.json_answer(Vec::new())
    }

    /// The sidecar's answers plus `answers`, as one JSON body (an array for
    /// a batch).
    pub fn json_answer(mut self, mut answers: Vec<Outgoing>) -> Response<ProxyBody> {
        answers.append(&mut self.local);
        answers::json_response(StatusCode::OK, answers::body(answers, self.batch))
    }

    pub fn take_call(&mut self, id: &Id) -> Option<Call> {
        let at = self.calls.iter().position(|c| &c.id == id)?;
        Some(self.calls.swap_remove(at))
    }

    pub fn take_read(&mut self, id: &Id) -> Option<Read> {
        let at = self.reads.iter().position(|r| &r.id == id)?;
        Some(self.reads.swap_remove(at))
    }

    /// The earliest deadline of the calls still waiting.
    pub fn deadline(&self) -> Option<Deadline> {
        self.calls
            .iter()
            .map(|c| Deadline::from_std(self.started) + c.timeout)
            .min()
    }

    /// The deadline of the whole answer: the calls', else the upstream's.
    pub fn answer_deadline(&self) -> Deadline {
        self.deadline()
            .unwrap_or_else(|| Deadline::now() + self.upstream.timeout)
    }
}

//! The answer side: send a POST's admitted messages upstream, relay the
//! answer (JSON or SSE) to the agent, and settle each forwarded
//! `tools/call` — its result recorded (`TOOL_RESULT`, committed before the
//! agent sees it, so the taint is in place for the next call), cut at the
//! decision's `timeout_ms`, withheld over its `max_output_bytes`, or its
//! failure recorded (`ERROR_RAISED`) and answered as a JSON-RPC error.
//!
//! SSE answers are relayed event by event: each event's bytes go to the
//! agent, exactly as received, as soon as the event is complete (`id:`,
//! `retry:`, comments and empty priming events included). Only the event
//! carrying a call's result can be replaced, and only a `tools/list`
//! result is rewritten (filtered). `resources/read` and `prompts/get`
//! answers are recorded before they are relayed ([`super::inputs`]). A
//! stream that ends before its answers, having carried an event id, ends
//! untouched and hands what still waits to [`super::resume`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aegis_ledger::EventType;
use aegis_policy::manifest::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant as Deadline;

use super::answers;
use super::answers::Outgoing;
use super::enforce::Verdict;
use super::identity::Identity;
use super::inputs::{self, Read};
use super::jsonrpc::{Id, codes};
use super::resume;
use super::server::{McpState, error_response, json_response};
use super::sse::{Mark, SseEvent, SseParser};
use super::tools_list;
use super::upstream::{self, Upstream};
use crate::results::Answer;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every answer to the agent.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Events buffered between the relay task and the agent's connection.
pub(super) const RELAY_QUEUE: usize = 32;

pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

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
pub struct Pending {
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

impl Pending {
    pub fn new(id: Id, tool_name: &str, verdict: &Verdict) -> Pending {
        // Shadow mode forwards refused calls: they run under the defaults.
        let (max_output_bytes, timeout_ms) = verdict
            .decision
            .constraints
            .map_or((DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS), |c| {
                (c.max_output_bytes, c.timeout_ms)
            });
        Pending {
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

    pub fn unrecorded(id: Id, tool_name: &str) -> Pending {
        Pending {
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
    pub calls: Vec<Pending>,
    /// Forwarded `tools/list` requests (their answers are filtered).
    pub tools_list: Vec<Id>,
    /// Forwarded `resources/read` and `prompts/get` requests (their answers
    /// are recorded and taint, see [`inputs`]).
    pub reads: Vec<Read>,
    /// Ids of the answers seen so far (on an SSE stream).
    pub answered: Vec<Id>,
    /// Answers made by the sidecar (denials, malformed calls).
    pub local: Vec<Outgoing>,
    /// Ids of every forwarded request.
    pub forwarded_requests: Vec<Id>,
    pub expects_answer: bool,
}

/// How a forwarded call ended.
pub(super) enum Ending {
    /// The upstream's answer: the message, its size in bytes and SHA-256.
    Answered {
        message: Value,
        size: usize,
        sha256: [u8; 32],
    },
    /// An answer too large to hold or pass: its size, SHA-256 and first bytes.
    TooLarge {
        size: usize,
        sha256: [u8; 32],
        head: Bytes,
    },
    /// Cut at the decision's `timeout_ms`.
    TimedOut,
    /// The upstream failed: a closed `kind`, and what happened.
    Failed { kind: &'static str, detail: String },
}

impl Exchange {
    pub fn new(
        state: Arc<McpState>,
        upstream: Arc<Upstream>,
        identity: Identity,
        started: Instant,
        permit: InFlight,
    ) -> Exchange {
        Exchange {
            state,
            upstream,
            identity,
            started,
            permit,
            batch: false,
            calls: Vec::new(),
            tools_list: Vec::new(),
            reads: Vec::new(),
            answered: Vec::new(),
            local: Vec::new(),
            forwarded_requests: Vec::new(),
            expects_answer: false,
        }
    }

    /// Nothing was forwarded: the sidecar's own answers are the answer.
    pub fn local_only(self) -> Response<ProxyBody> {
        if self.local.is_empty() {
            // Only notifications or responses, all consumed: accepted.
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::ACCEPTED;
            return response;
        }
        self.json_answer(Vec::new())
    }

    /// The sidecar's answers plus `answers`, as one JSON body (an array for
    /// a batch).
    fn json_answer(mut self, mut answers: Vec<Outgoing>) -> Response<ProxyBody> {
        answers.append(&mut self.local);
        json_response(StatusCode::OK, answers::body(answers, self.batch))
    }

    fn find_call(&mut self, id: &Id) -> Option<Pending> {
        let at = self.calls.iter().position(|c| &c.id == id)?;
        Some(self.calls.swap_remove(at))
    }

    fn find_read(&mut self, id: &Id) -> Option<Read> {
        let at = self.reads.iter().position(|r| &r.id == id)?;
        Some(self.reads.swap_remove(at))
    }

    /// What this exchange's endings are recorded against.
    pub(super) fn recorder(&self) -> Recorder<'_> {
        Recorder {
            state: &self.state,
            upstream: &self.upstream,
            identity: &self.identity,
            started: self.started,
        }
    }

    async fn settle(&self, call: &Pending, ending: Ending) -> Option<Outgoing> {
        self.recorder().call(call, ending).await
    }
}

/// Who and where a forwarded request was for: what its ending is recorded
/// against (the POST's exchange, or after its stream ended early, the
/// resumed stream that brought the answer).
#[derive(Debug, Clone, Copy)]
pub(super) struct Recorder<'a> {
    pub state: &'a Arc<McpState>,
    pub upstream: &'a Upstream,
    pub identity: &'a Identity,
    pub started: Instant,
}

impl Recorder<'_> {
    /// Records how `call` ended and returns what the agent gets instead of
    /// the upstream's answer, if anything.
    pub(super) async fn call(&self, call: &Pending, ending: Ending) -> Option<Outgoing> {
        let upstream = self.upstream.name.as_str();
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut base = json!({
            "tool_name": call.tool_name,
            "call_id": call.id.to_value(),
            "proposal_seq": call.proposal_seq,
            "upstream": upstream,
            "duration_ms": elapsed_ms,
        });
        if let Some(text) = call.id.inexact_text() {
            base["call_id_text"] = json!(text);
        }
        // What the record keeps of the answer (`mcp.results`); the agent's
        // answer is never changed by it.
        let (results, capture) = (
            &self.state.config.results,
            self.state.config.result_capture_bytes,
        );
        let (event_type, result_label, replacement) = match ending {
            Ending::Answered {
                message,
                size,
                sha256,
            } => {
                let rpc_error = message.get("error");
                let is_error = rpc_error.is_some()
                    || message
                        .get("result")
                        .and_then(|r| r.get("isError"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                base["is_error"] = json!(is_error);
                base["size_bytes"] = json!(size);
                base["sha256"] = json!(hex(&sha256));
                let over = u64::try_from(size).unwrap_or(u64::MAX) > call.max_output_bytes;
                let recorded = message.get("result").or(rpc_error).unwrap_or(&Value::Null);
                let answer = Answer::Whole {
                    value: recorded,
                    size,
                };
                results.record(&call.tool_name, answer, capture, &mut base);
                let live = self.state.manifests.current();
                let trust = live.as_deref().map(|l| &l.manifest.policy.trusted_content);
                inputs::describe_tool_result(upstream, recorded, trust, &mut base);
                if over {
                    base["withheld"] = json!(true);
                    let text = format!(
                        "Result withheld by policy: the tool's answer is {size} bytes, over the manifest's limit of {} bytes (max_output_bytes).",
                        call.max_output_bytes
                    );
                    (
                        EventType::ToolResult,
                        "withheld",
                        Some(answers::tool_error(
                            &call.id,
                            text,
                            self.meta(call, "withheld"),
                        )),
                    )
                } else {
                    let label = if is_error { "tool_error" } else { "ok" };
                    (EventType::ToolResult, label, None)
                }
            }
            Ending::TooLarge { size, sha256, head } => {
                base["is_error"] = json!(false);
                base["size_bytes"] = json!(size);
                base["sha256"] = json!(hex(&sha256));
                base["withheld"] = json!(true);
                results.record(&call.tool_name, Answer::Head(&head), capture, &mut base);
                let text = format!(
                    "Result withheld by policy: the tool's answer is {size} bytes, over the limit of {} bytes.",
                    call.max_output_bytes
                        .min(self.state.config.max_response_bytes as u64)
                );
                (
                    EventType::ToolResult,
                    "withheld",
                    Some(answers::tool_error(
                        &call.id,
                        text,
                        self.meta(call, "withheld"),
                    )),
                )
            }
            Ending::TimedOut => {
                let ms = call.timeout.as_millis();
                base["error"] = json!("timeout");
                base["message"] = json!(format!(
                    "no answer within {ms} ms (timeout_ms); the call was cut"
                ));
                (
                    EventType::ErrorRaised,
                    "timeout",
                    Some(self.timed_out(call)),
                )
            }
            Ending::Failed { kind, detail } => {
                base["error"] = json!(kind);
                base["message"] = json!(detail);
                let answer = answers::error(
                    Some(&call.id),
                    codes::INTERNAL_ERROR,
                    &format!("the tool server failed: {}", for_agent(kind)),
                    Some(json!({"upstream": upstream, "kind": kind, "tool": call.tool_name})),
                );
                (EventType::ErrorRaised, kind, Some(answer))
            }
        };
        let seq = if call.proposal_seq.is_some() {
            match self
                .state
                .gate
                .record(self.identity, event_type, base)
                .await
            {
                Ok(appended) => Some(appended.seq),
                Err(e) => {
                    tracing::error!(error = %e, tool = %call.tool_name, "the call's result could not be recorded");
                    None
                }
            }
        } else {
            None
        };
        self.state
            .metrics
            .mcp
            .tool_results
            .with_label_values(&[upstream, result_label])
            .inc();
        tracing::info!(
            upstream,
            tool = %call.tool_name,
            session = %self.identity.session_id,
            outcome = call.outcome,
            reason = call.reason,
            result = result_label,
            decision_seq = call.decision_seq,
            seq,
            latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "tool call"
        );
        replacement
    }

    /// What the agent gets for a call cut at its `timeout_ms`.
    pub(super) fn timed_out(&self, call: &Pending) -> Outgoing {
        let ms = call.timeout.as_millis();
        let text = format!(
            "Timed out by policy: the tool did not answer within {ms} ms (timeout_ms); the call was cut."
        );
        answers::tool_error(&call.id, text, self.meta(call, "timeout"))
    }

    pub(super) fn meta(&self, call: &Pending, what: &str) -> Value {
        json!({
            "outcome": call.outcome,
            "reason": call.reason,
            "seq": call.decision_seq,
            "manifest_sha256": call.manifest_sha256,
            "enforcement": what,
        })
    }

    /// Records a read's answer (`TOOL_RESULT` with `source`, trusted or
    /// not by the live manifest) before the agent gets it. The answer is
    /// never changed.
    pub(super) async fn read(&self, read: &Read, message: &Value, size: usize, sha256: [u8; 32]) {
        let upstream = self.upstream.name.as_str();
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let rpc_error = message.get("error");
        let answer = message.get("result").or(rpc_error).unwrap_or(&Value::Null);
        let mut payload = json!({
            "call_id": read.id.to_value(),
            "upstream": upstream,
            "is_error": rpc_error.is_some(),
            "size_bytes": size,
            "sha256": hex(&sha256),
            "duration_ms": elapsed_ms,
        });
        if let Some(text) = read.id.inexact_text() {
            payload["call_id_text"] = json!(text);
        }
        let live = self.state.manifests.current();
        let trust = live.as_deref().map(|l| &l.manifest.policy.trusted_content);
        read.describe(upstream, answer, trust, &mut payload);
        let trusted = payload["trusted"] == json!(true);
        let (results, capture) = (
            &self.state.config.results,
            self.state.config.result_capture_bytes,
        );
        results.record(
            read.source.method(),
            Answer::Whole {
                value: answer,
                size,
            },
            capture,
            &mut payload,
        );
        let seq = match self
            .state
            .gate
            .record(self.identity, EventType::ToolResult, payload)
            .await
        {
            Ok(appended) => Some(appended.seq),
            Err(e) => {
                tracing::error!(error = %e, source = read.source.method(), "a read's answer could not be recorded");
                None
            }
        };
        tracing::info!(
            upstream,
            source = read.source.method(),
            session = %self.identity.session_id,
            trusted,
            seq,
            "content read"
        );
    }
}

impl Exchange {
    /// Settles every call still waiting with `ending` (a closed kind).
    async fn settle_rest(&mut self, ending: impl Fn() -> Ending) -> Vec<Outgoing> {
        let calls = std::mem::take(&mut self.calls);
        let mut out = Vec::new();
        for call in &calls {
            if let Some(answer) = self.settle(call, ending()).await {
                out.push(answer);
            }
        }
        out
    }

    /// The earliest deadline of the calls still waiting.
    fn deadline(&self) -> Option<Deadline> {
        self.calls
            .iter()
            .map(|c| Deadline::from_std(self.started) + c.timeout)
            .min()
    }

    /// Answers for forwarded requests that are not tool calls, when the
    /// upstream failed before answering.
    fn failed_requests(&self, kind: &'static str) -> Vec<Outgoing> {
        self.forwarded_requests
            .iter()
            .filter(|id| !self.calls.iter().any(|c| &c.id == *id))
            .map(|id| {
                answers::error(
                    Some(id),
                    codes::INTERNAL_ERROR,
                    &format!("the upstream MCP server failed: {}", for_agent(kind)),
                    Some(json!({"upstream": self.upstream.name, "kind": kind})),
                )
            })
            .collect()
    }

    /// The upstream failed before answering: every forwarded call is
    /// settled, every forwarded request gets a JSON-RPC error.
    async fn fail(
        mut self,
        kind: &'static str,
        detail: String,
        timed_out: bool,
    ) -> Response<ProxyBody> {
        tracing::warn!(upstream = %self.upstream.name, kind, %detail, "upstream failed");
        let mut out = self.failed_requests(kind);
        let d = detail.clone();
        out.extend(
            self.settle_rest(|| {
                if timed_out {
                    Ending::TimedOut
                } else {
                    Ending::Failed {
                        kind,
                        detail: d.clone(),
                    }
                }
            })
            .await,
        );
        if out.is_empty() && self.local.is_empty() {
            let status = if timed_out {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            return error_response(
                status,
                None,
                codes::INTERNAL_ERROR,
                &format!("the upstream MCP server failed: {}", for_agent(kind)),
                Some(json!({"upstream": self.upstream.name, "kind": kind})),
            );
        }
        self.json_answer(out)
    }
}

/// What the agent is told of an upstream failure of `kind`: never the
/// upstream's URL, address or error chain (those are internal topology; the
/// log and the ledger's `ERROR_RAISED` keep them), only what happened.
fn for_agent(kind: &str) -> &'static str {
    match kind {
        "unreachable" => "the upstream MCP server is unreachable",
        "timeout" => "the upstream MCP server did not answer in time",
        "status" => "the upstream MCP server answered with an HTTP error",
        "malformed" => "the upstream MCP server's answer is not a valid JSON-RPC message",
        "no_answer" => "the upstream MCP server's answer did not include this request's answer",
        "bad_request" => "the request could not be sent to the upstream MCP server",
        "too_large" => "the upstream MCP server's answer exceeds mcp.limits.max_response_bytes",
        _ => "the upstream MCP server failed",
    }
}

/// Sends the admitted messages upstream and relays the answer.
pub async fn forward(exchange: Exchange, parts: Parts, body: Bytes) -> Response<ProxyBody> {
    let state = exchange.state.clone();
    let upstream = exchange.upstream.clone();
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.target(parts.uri.query()));
    if let Some(h) = builder.headers_mut() {
        *h = upstream::request_headers(parts.headers, &upstream, &state.config.identity);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let request = match builder.body(Full::new(body)) {
        Ok(request) => request,
        Err(e) => return exchange.fail("bad_request", e.to_string(), false).await,
    };
    let headers_deadline = exchange
        .deadline()
        .unwrap_or_else(|| Deadline::now() + upstream.timeout);
    let sent = Instant::now();
    let response =
        match tokio::time::timeout_at(headers_deadline, upstream.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let detail = format!("{} is unreachable: {}", upstream.url, error_chain(&e));
                return exchange.fail("unreachable", detail, false).await;
            }
            Err(_) => {
                let detail = format!("{} did not answer in time", upstream.url);
                let tool_deadline = !exchange.calls.is_empty();
                return exchange.fail("timeout", detail, tool_deadline).await;
            }
        };
    state
        .metrics
        .mcp
        .upstream_duration
        .with_label_values(&[upstream.name.as_str()])
        .observe(sent.elapsed().as_secs_f64());
    answer(exchange, response).await
}

/// Relays the upstream's answer to a POST.
async fn answer(mut exchange: Exchange, response: Response<Incoming>) -> Response<ProxyBody> {
    let status = response.status();
    let inspect = !exchange.calls.is_empty()
        || !exchange.tools_list.is_empty()
        || !exchange.reads.is_empty()
        || !exchange.local.is_empty();
    if !inspect {
        // Streams to the end holding the request's slot.
        return passthrough(response, Some(exchange.permit));
    }
    if status.is_server_error() {
        let detail = format!("{} answered HTTP {status}", exchange.upstream.url);
        return exchange.fail("status", detail, false).await;
    }
    if !status.is_success() {
        // A client error is MCP's to interpret (404: the session is gone,
        // re-initialize), so it passes; the calls it ended are recorded.
        let detail = format!("{} answered HTTP {status}", exchange.upstream.url);
        exchange
            .settle_rest(|| Ending::Failed {
                kind: "status",
                detail: detail.clone(),
            })
            .await;
        return passthrough(response, None);
    }
    if status == StatusCode::ACCEPTED || !exchange.expects_answer {
        if exchange.expects_answer {
            let detail = "the upstream accepted the requests without answering them".to_owned();
            return exchange.fail("no_answer", detail, false).await;
        }
        return exchange.json_or_accepted(response);
    }
    if upstream::is_encoded(response.headers()) {
        let detail = "the upstream's answer is compressed (Content-Encoding), which the sidecar cannot inspect".to_owned();
        return exchange.fail("malformed", detail, false).await;
    }
    match upstream::media_type(response.headers()).as_deref() {
        Some("text/event-stream") => relay_sse(exchange, response),
        Some("application/json") => relay_json(exchange, response).await,
        other => {
            let detail = format!(
                "the upstream answered with Content-Type {:?}, not JSON or SSE",
                other.unwrap_or("none")
            );
            exchange.fail("malformed", detail, false).await
        }
    }
}

impl Exchange {
    /// Only notifications went upstream: the sidecar's answers, or the
    /// upstream's own 202.
    fn json_or_accepted(self, response: Response<Incoming>) -> Response<ProxyBody> {
        if self.local.is_empty() {
            return passthrough(response, None);
        }
        self.json_answer(Vec::new())
    }
}

/// The upstream's answer as is (headers minus hop-by-hop ones), streamed.
/// `hold` travels with the body until it is fully sent.
fn passthrough(response: Response<Incoming>, hold: Option<InFlight>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    parts.headers = upstream::response_headers(parts.headers, false);
    let body = Holding { body, _hold: hold }
        .map_err(BoxError::from)
        .boxed_unsync();
    Response::from_parts(parts, body)
}

/// A body that keeps something alive (a permit) until it ends.
struct Holding<B> {
    body: B,
    _hold: Option<InFlight>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Holding<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// GET (a held-open SSE stream, or a resumed one) and DELETE (end the
/// session). A GET's event stream is relayed event by event, its answers
/// settling what waits for them ([`resume`]); anything else passes.
pub async fn pass(
    state: &Arc<McpState>,
    upstream: &Arc<Upstream>,
    identity: &Identity,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, _body) = req.into_parts();
    let get = parts.method == http::Method::GET;
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.target(parts.uri.query()));
    if let Some(h) = builder.headers_mut() {
        *h = upstream::request_headers(parts.headers, upstream, &state.config.identity);
    }
    let request = match builder.body(Full::new(Bytes::new())) {
        Ok(request) => request,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                codes::INVALID_REQUEST,
                &e.to_string(),
                None,
            );
        }
    };
    let response = match tokio::time::timeout(upstream.timeout, upstream.client.request(request))
        .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %upstream.name, url = %upstream.url, error = %error_chain(&e), "upstream unreachable");
            return error_response(
                StatusCode::BAD_GATEWAY,
                None,
                codes::INTERNAL_ERROR,
                for_agent("unreachable"),
                Some(json!({"upstream": upstream.name, "kind": "unreachable"})),
            );
        }
        Err(_) => {
            tracing::warn!(upstream = %upstream.name, url = %upstream.url, "upstream did not answer in time");
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                None,
                codes::INTERNAL_ERROR,
                for_agent("timeout"),
                Some(json!({"upstream": upstream.name, "kind": "timeout"})),
            );
        }
    };
    let sse = upstream::media_type(response.headers()).as_deref() == Some("text/event-stream");
    if get && response.status().is_success() && sse {
        if upstream::is_encoded(response.headers()) {
            tracing::warn!(upstream = %upstream.name, "a GET event stream is compressed; refused");
            return error_response(
                StatusCode::BAD_GATEWAY,
                None,
                codes::INTERNAL_ERROR,
                for_agent("malformed"),
                Some(json!({"upstream": upstream.name, "kind": "malformed"})),
            );
        }
        return resume::relay_stream(state.clone(), upstream, identity, response);
    }
    // A held-open stream ends when the sidecar shuts down.
    let (mut parts, body) = response.into_parts();
    parts.headers = upstream::response_headers(parts.headers, false);
    let shutdown = state.shutdown.clone();
    let body = UntilShutdown {
        body,
        shutdown: Box::pin(async move {
            let mut shutdown = shutdown;
            let _ = shutdown.wait_for(|stop| *stop).await;
        }),
    }
    .map_err(BoxError::from)
    .boxed_unsync();
    Response::from_parts(parts, body)
}

/// A body that ends early when shutdown begins.
struct UntilShutdown<B> {
    body: B,
    shutdown: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for UntilShutdown<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// A JSON answer: read whole (bounded), settle the calls it answers,
/// filter `tools/list`, add the sidecar's own answers.
async fn relay_json(mut exchange: Exchange, response: Response<Incoming>) -> Response<ProxyBody> {
    let limit = exchange.state.config.max_response_bytes;
    // A JSON answer is one message: it must complete within the calls'
    // timeout, or the upstream's when no call waits for it.
    let deadline = exchange
        .deadline()
        .unwrap_or_else(|| Deadline::now() + exchange.upstream.timeout);
    let timed_out_call = !exchange.calls.is_empty();
    let (parts, mut body) = response.into_parts();
    let mut buf = BytesMut::new();
    let mut size = 0usize;
    let mut hasher = Sha256::new();
    loop {
        let next = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(next) => next,
            Err(_) => {
                let detail = "the answer did not complete in time".to_owned();
                return exchange.fail("timeout", detail, timed_out_call).await;
            }
        };
        match next {
            None => break,
            Some(Err(e)) => {
                let detail = format!("the answer broke off: {e}");
                return exchange.fail("malformed", detail, false).await;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    size += data.len();
                    hasher.update(&data);
                    if size <= limit {
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    if size > limit {
        let sha256: [u8; 32] = hasher.finalize().into();
        let mut out = Vec::new();
        out.extend(exchange.failed_requests("too_large"));
        let head = buf.freeze();
        out.extend(
            exchange
                .settle_rest(|| Ending::TooLarge {
                    size,
                    sha256,
                    head: head.clone(),
                })
                .await,
        );
        return exchange.json_answer(out);
    }
    let bytes = buf.freeze();
    let whole_sha: [u8; 32] = hasher.finalize().into();
    let (mut messages, single) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(items)) => (items, false),
        Ok(item @ Value::Object(_)) => (vec![item], true),
        Ok(_) | Err(_) => {
            let detail = "the upstream's JSON answer is not a JSON-RPC message or batch".to_owned();
            return exchange.fail("malformed", detail, false).await;
        }
    };
    let mut changed = false;
    // What replaces each message, if anything (parallel to `messages`).
    let mut replaced: Vec<Option<Outgoing>> = Vec::with_capacity(messages.len());
    for message in &mut messages {
        replaced.push(None);
        let Some(id) = message.get("id").and_then(id_of) else {
            continue;
        };
        if let Some(call) = exchange.find_call(&id) {
            let (size, sha256) = if single {
                (bytes.len(), whole_sha)
            } else {
                let own = serde_json::to_vec(message).unwrap_or_default();
                (own.len(), Sha256::digest(&own).into())
            };
            let ending = Ending::Answered {
                message: message.clone(),
                size,
                sha256,
            };
            if let Some(replacement) = exchange.settle(&call, ending).await {
                if let Some(slot) = replaced.last_mut() {
                    *slot = Some(replacement);
                }
                changed = true;
            }
        } else if let Some(read) = exchange.find_read(&id) {
            let (size, sha256) = if single {
                (bytes.len(), whole_sha)
            } else {
                let own = serde_json::to_vec(message).unwrap_or_default();
                (own.len(), Sha256::digest(&own).into())
            };
            exchange.recorder().read(&read, message, size, sha256).await;
        } else if exchange.tools_list.contains(&id) {
            changed |= filter_tools(&exchange, message);
        }
    }
    let unanswered = exchange
        .settle_rest(|| Ending::Failed {
            kind: "no_answer",
            detail: "the upstream's answer did not include this call".into(),
        })
        .await;
    changed |= !unanswered.is_empty();
    if !changed && exchange.local.is_empty() {
        let mut response = Response::from_parts(parts, full(bytes));
        *response.headers_mut() =
            upstream::response_headers(std::mem::take(response.headers_mut()), false);
        drop(exchange);
        return response;
    }
    let mut headers = upstream::response_headers(parts.headers, true);
    let mut out: Vec<Outgoing> = messages
        .iter()
        .zip(replaced)
        .map(|(m, r)| r.unwrap_or_else(|| answers::from_value(m, &exchange.forwarded_requests)))
        .collect();
    out.extend(unanswered);
    let answer = if single && exchange.local.is_empty() {
        answers::body(out.pop().into_iter().collect(), false)
    } else {
        out.append(&mut exchange.local);
        answers::body(out, true)
    };
    let mut response = json_response(parts.status, answer);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *response.headers_mut() = headers;
    response
}

/// Filters a `tools/list` answer; `true` when it changed (a tool removed,
/// a public cache scope made private).
fn filter_tools(exchange: &Exchange, message: &mut Value) -> bool {
    filter_tools_with(&exchange.state.manifests, message)
}

/// [`filter_tools`] with the live manifest of `manifests`.
pub(super) fn filter_tools_with(
    manifests: &aegis_policy::ManifestStore,
    message: &mut Value,
) -> bool {
    let Some(live) = manifests.current() else {
        // No manifest: every call is refused; offer nothing.
        return tools_list::filter(message, |_| false).changed();
    };
    tools_list::filter(message, |name| live.compiled.declares(name)).changed()
}

fn id_of(value: &Value) -> Option<Id> {
    Id::from_value(value)
}

/// An SSE answer: relayed event by event from a task, while the calls it
/// answers are settled.
fn relay_sse(exchange: Exchange, response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let (tx, rx) = mpsc::channel::<Bytes>(RELAY_QUEUE);
    let headers = upstream::response_headers(parts.headers, true);
    tokio::spawn(sse_task(exchange, body, tx));
    let mut response = Response::new(ChannelBody { rx }.boxed_unsync());
    *response.status_mut() = parts.status;
    *response.headers_mut() = headers;
    response
}

/// The relay task's state for the event being read.
enum Current {
    /// Buffering the event's bytes until it is complete.
    Buffer,
    /// Too large to hold, and no call waits for it: passed on as it comes.
    Pass,
    /// Too large, and a call waits for it: dropped; the call's answer is
    /// replaced once the event ends.
    Skip,
}

async fn sse_task(mut exchange: Exchange, mut body: Incoming, tx: mpsc::Sender<Bytes>) {
    // Answers the sidecar made (denials in a batch) go first.
    for answer in std::mem::take(&mut exchange.local) {
        if tx.send(answers::sse_event(&answer)).await.is_err() {
            return agent_gone(exchange, false).await;
        }
    }
    let limit = exchange.state.config.max_response_bytes;
    let mut parser = SseParser::new(limit);
    let mut raw = BytesMut::new();
    let mut current = Current::Buffer;
    let (mut events, mut marks) = (Vec::<SseEvent>::new(), Vec::<Mark>::new());
    loop {
        let next = match exchange.deadline() {
            Some(at) => match tokio::time::timeout_at(at, body.frame()).await {
                Ok(next) => next,
                Err(_) => {
                    // Cut: the upstream body is dropped with this task.
                    let out = exchange.settle_rest(|| Ending::TimedOut).await;
                    send_all(&tx, out).await;
                    return;
                }
            },
            None => body.frame().await,
        };
        let chunk = match next {
            None => break,
            Some(Err(e)) => {
                let detail = format!("the event stream broke off: {e}");
                let out = exchange
                    .settle_rest(|| Ending::Failed {
                        kind: "malformed",
                        detail: detail.clone(),
                    })
                    .await;
                send_all(&tx, out).await;
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        events.clear();
        marks.clear();
        parser.feed_framed(&chunk, &mut events, &mut marks);
        let mut start = 0;
        for mark in &marks {
            let piece = chunk.slice(start..mark.offset);
            start = mark.offset;
            let block = match current {
                Current::Buffer => {
                    raw.extend_from_slice(&piece);
                    Some(raw.split().freeze())
                }
                Current::Pass => {
                    if tx.send(piece).await.is_err() {
                        return agent_gone(exchange, parser.last_event_id().is_some()).await;
                    }
                    None
                }
                Current::Skip => None,
            };
            let skipped = matches!(current, Current::Skip);
            current = Current::Buffer;
            let event = mark.event.and_then(|i| events.get(i));
            let out = match (block, event) {
                (Some(block), Some(event)) => on_event(&mut exchange, block, event).await,
                (Some(block), None) => Some(block),
                (None, Some(event)) if skipped => {
                    // The oversized event: settle the call it answered.
                    on_oversized(&mut exchange, event).await
                }
                (None, _) => None,
            };
            if let Some(out) = out
                && tx.send(out).await.is_err()
            {
                return agent_gone(exchange, parser.last_event_id().is_some()).await;
            }
        }
        let rest = chunk.slice(start..);
        match current {
            Current::Buffer => {
                raw.extend_from_slice(&rest);
                // Reads wait too: their answer must be read whole to be
                // recorded, so one over the limit is not passed on.
                let waiting = exchange
                    .calls
                    .iter()
                    .map(|c| c.max_output_bytes)
                    .chain(exchange.reads.first().map(|_| limit as u64))
                    .max();
                match waiting {
                    Some(max) if parser.pending_data_len() as u64 > max.min(limit as u64) => {
                        raw.clear();
                        current = Current::Skip;
                    }
                    None if raw.len() > limit => {
                        let held = raw.split().freeze();
                        if tx.send(held).await.is_err() {
                            return agent_gone(exchange, parser.last_event_id().is_some()).await;
                        }
                        current = Current::Pass;
                    }
                    _ => {}
                }
            }
            Current::Pass => {
                if !rest.is_empty() && tx.send(rest).await.is_err() {
                    return agent_gone(exchange, parser.last_event_id().is_some()).await;
                }
            }
            Current::Skip => {}
        }
    }
    // An unterminated last event is not an event (WHATWG): not relayed, so
    // no client can take an answer from it that was never settled.
    drop(raw);
    // Ended before its answers: a stream that can be resumed (it carried an
    // event id) ends untouched, and what waits is kept for the resumed one.
    if parser.last_event_id().is_some() {
        match resume::adopt(exchange) {
            None => return,
            Some(back) => exchange = back,
        }
    }
    let out = exchange
        .settle_rest(|| Ending::Failed {
            kind: "no_answer",
            detail: "the event stream ended without this call's answer".into(),
        })
        .await;
    send_all(&tx, out).await;
}

/// One complete event: what the agent gets for it.
async fn on_event(exchange: &mut Exchange, block: Bytes, event: &SseEvent) -> Option<Bytes> {
    if !event.is_complete() || event.data.is_empty() {
        return Some(block);
    }
    let Ok(mut message) = serde_json::from_slice::<Value>(&event.data) else {
        return Some(block);
    };
    if let Some(items) = message.as_array() {
        // A batch in one event: its answers cannot be settled one by one,
        // so one holding an answer is not relayed (the calls it answered
        // end without an answer).
        let answers = items
            .iter()
            .any(|m| m.get("result").is_some() || m.get("error").is_some());
        return (!answers).then_some(block);
    }
    let is_response = message.get("result").is_some() || message.get("error").is_some();
    let Some(id) = message.get("id").and_then(id_of).filter(|_| is_response) else {
        return Some(block);
    };
    exchange.answered.push(id.clone());
    if let Some(read) = exchange.find_read(&id) {
        exchange
            .recorder()
            .read(&read, &message, event.data_len, event.data_sha256)
            .await;
        return Some(block);
    }
    if let Some(call) = exchange.find_call(&id) {
        let ending = Ending::Answered {
            message: message.clone(),
            size: event.data_len,
            sha256: event.data_sha256,
        };
        return match exchange.settle(&call, ending).await {
            Some(replacement) => Some(answers::sse_event(&replacement)),
            None => Some(block),
        };
    }
    if exchange.tools_list.contains(&id) && filter_tools(exchange, &mut message) {
        let message = answers::from_value(&message, &exchange.forwarded_requests);
        return Some(answers::sse_event(&message));
    }
    Some(block)
}

/// An event too large to hold: if it answered a waiting call or read (the
/// only one waiting, or the one whose id its first bytes name), that answer
/// is replaced: a call's by a withheld-result tool error (recorded), a
/// read's by a JSON-RPC error (nothing of it reached the agent).
async fn on_oversized(exchange: &mut Exchange, event: &SseEvent) -> Option<Bytes> {
    let only = exchange.calls.len() + exchange.reads.len() == 1;
    let names = |id: &Id| only || mentions_id(&event.data, id);
    if let Some(at) = exchange.calls.iter().position(|c| names(&c.id)) {
        let call = exchange.calls.swap_remove(at);
        return exchange
            .settle(&call, too_large(event))
            .await
            .map(|answer| answers::sse_event(&answer));
    }
    let at = exchange.reads.iter().position(|r| names(&r.id))?;
    let read = exchange.reads.swap_remove(at);
    Some(answers::sse_event(&too_large_error(
        &exchange.upstream.name,
        &read.id,
    )))
}

pub(super) fn too_large(event: &SseEvent) -> Ending {
    Ending::TooLarge {
        size: event.data_len,
        sha256: event.data_sha256,
        head: Bytes::copy_from_slice(&event.data[..event.data.len().min(64 * 1024)]),
    }
}

/// What a request gets in place of an answer too large to inspect.
pub(super) fn too_large_error(upstream: &str, id: &Id) -> Outgoing {
    answers::error(
        Some(id),
        codes::INTERNAL_ERROR,
        &format!("the upstream MCP server failed: {}", for_agent("too_large")),
        Some(json!({"upstream": upstream, "kind": "too_large"})),
    )
}

/// Whether `data` (the first bytes of a JSON-RPC message) has an `"id"`
/// member whose value is `id`'s exact text: `"id"`, optional whitespace, `:`,
/// optional whitespace, the id, then a delimiter (so `1` is not `12`).
pub(super) fn mentions_id(data: &[u8], id: &Id) -> bool {
    let raw = id.raw().get().as_bytes();
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut from = 0;
    while let Some(at) = find(&data[from..], b"\"id\"") {
        let mut i = from + at + 4;
        from = i;
        while data.get(i).is_some_and(is_ws) {
            i += 1;
        }
        if data.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while data.get(i).is_some_and(is_ws) {
            i += 1;
        }
        if data[i..].starts_with(raw)
            && data
                .get(i + raw.len())
                .is_none_or(|b| is_ws(b) || matches!(b, b',' | b'}'))
        {
            return true;
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn send_all(tx: &mpsc::Sender<Bytes>, answers: Vec<Outgoing>) {
    for answer in answers {
        if tx.send(answers::sse_event(&answer)).await.is_err() {
            return;
        }
    }
}

/// The agent hung up mid-stream: what still waits is kept for a resumed
/// stream when this one can be resumed, else its calls are recorded as
/// ended so.
async fn agent_gone(exchange: Exchange, resumable: bool) {
    let mut exchange = if resumable {
        match resume::adopt(exchange) {
            None => return,
            Some(back) => back,
        }
    } else {
        exchange
    };
    exchange
        .settle_rest(|| Ending::Failed {
            kind: "agent_gone",
            detail: "the agent closed the connection before the answer".into(),
        })
        .await;
}

/// The relay task's events, as a response body.
pub(super) struct ChannelBody {
    pub rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error and its causes, for a one-line message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(text: &str) -> Id {
        Id::from_value(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
    }

    #[test]
    fn an_oversized_events_id_is_found_by_its_exact_text() {
        let data = br#"{"jsonrpc":"2.0", "id" : 12 ,"result":{"content":[{"text":"xxxx"#;
        assert!(mentions_id(data, &id("12")));
        assert!(!mentions_id(data, &id("1")), "1 is not 12");
        assert!(!mentions_id(data, &id("\"12\"")));
        assert!(mentions_id(br#"{"id":"a-b","result":1}"#, &id("\"a-b\"")));
        assert!(mentions_id(br#"{"result":1,"id":7}"#, &id("7")));
        // A member named like it, or a value quoting it, is not the id.
        assert!(!mentions_id(br#"{"idx":7,"x":"\"id\":7"#, &id("8")));
        assert!(!mentions_id(br#"{"id""#, &id("7")));
        assert!(!mentions_id(b"", &id("7")));
    }
}

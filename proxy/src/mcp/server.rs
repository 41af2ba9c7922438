//! The MCP listener: Streamable HTTP at `/mcp/{upstream}` (and `/mcp` for
//! the default upstream). Every request's identity is resolved first
//! ([`super::identity`]; refused: 401 or 403, nothing forwarded or
//! recorded). POSTs are read whole (bounded), every `tools/call` in them is
//! decided and recorded before anything is sent upstream, and the answer is
//! relayed back ([`super::relay`]). A GET's event stream is inspected for
//! answers to requests whose POST stream ended early ([`super::resume`]);
//! DELETE passes through untouched.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_policy::{ManifestStore, Outcome};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::answers::{self, DecisionRecord};
use super::enforce::{CallRequest, Gate, SANITIZER_META_KEY};
use super::front_door::{FrontDoor, Refusal};
use super::identity::{self, Identity, IdentityError};
use super::inputs::Read;
use super::jsonrpc::{self, Body, Id, Kind, Message, codes};
use super::relay::{self, Exchange, InFlight, Pending, ProxyBody, full};
use super::resume::Resumable;
use super::upstream::{self, Upstream};
use crate::config::McpConfig;
use crate::identity::Resolver;
use crate::listener::{Listener, accept_loop};
use crate::metrics::Metrics;
use crate::peer::Peer;

/// Longest wait for a request's headers: a slow client cannot hold a slot.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a POST body once its headers arrived.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The 2026-07-28 headers that repeat the body's method and name.
const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

/// What every MCP request may use.
#[derive(Debug)]
pub struct McpState {
    pub gate: Gate,
    pub manifests: ManifestStore,
    pub metrics: Metrics,
    pub config: McpConfig,
    /// Who each request acts for (shared with the egress proxy).
    pub identity: Arc<Resolver>,
    /// `ledger.fail_open`: forward calls the ledger could not record.
    pub fail_open: bool,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub default_upstream: Option<Arc<Upstream>>,
    /// POSTs being handled; a full set answers 503. Shutdown waits for
    /// every permit to come back (the drain).
    pub in_flight: Arc<Semaphore>,
    /// Turns true on shutdown: held-open GET streams end.
    pub shutdown: watch::Receiver<bool>,
    /// `Host` and `Origin` rules, checked before anything else.
    pub front_door: FrontDoor,
    /// Requests whose POST stream ended early, waiting for a resumed one.
    pub resumable: Resumable,
}

impl McpState {
    pub fn new(
        gate: Gate,
        manifests: ManifestStore,
        metrics: Metrics,
        config: McpConfig,
        identity: Arc<Resolver>,
        fail_open: bool,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<McpState> {
        let mut upstreams = HashMap::new();
        let plain = upstream::client(None);
        for u in &config.upstreams {
            let upstream = Upstream::new(u, &plain).ok_or_else(|| {
                anyhow::anyhow!("upstream {}: the URL {} has no host", u.name, u.url)
            })?;
            upstreams.insert(u.name.clone(), Arc::new(upstream));
        }
        let default_upstream = config
            .default_upstream
            .as_ref()
            .and_then(|name| upstreams.get(name).cloned());
        let front_door = FrontDoor::new(
            config.listen,
            &config.allowed_hosts,
            &config.allowed_origins,
        );
        Ok(McpState {
            gate,
            manifests,
            metrics,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            front_door,
            config,
            identity,
            fail_open,
            upstreams,
            default_upstream,
            shutdown,
            resumable: Resumable::default(),
        })
    }
}

/// Serves until `shutdown` turns true; then stops accepting and lets open
/// connections finish for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<McpState>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = crate::listener::http_builder(HEADER_READ_TIMEOUT);
    let listener = Listener {
        tcp: listener,
        name: "mcp",
        tls: state.config.tls.as_ref().map(|tls| tls.rustls().into()),
        max_connections: state.config.max_connections,
        nodelay: true,
        handshake_failures: state
            .metrics
            .tls_handshake_failures
            .with_label_values(&["mcp"]),
    };
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, req).await) }
        })
    };
    accept_loop(listener, builder, service, &graceful, shutdown).await;
    // Requests in flight finish (their answers stream to the end); idle
    // keep-alive connections close now.
    let in_flight = state.in_flight.clone();
    let max = u32::try_from(state.config.max_in_flight).unwrap_or(u32::MAX);
    let drained = async {
        graceful.shutdown().await;
        let _ = in_flight.acquire_many(max).await;
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            ?drain,
            "mcp requests still in flight after the shutdown grace period"
        );
    }
}

/// Routes one request and records its metrics.
async fn handle(state: &Arc<McpState>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    // Every request proves who it is before anything else happens to it
    // (GET streams, DELETE and unknown paths included: an anonymous client
    // learns nothing, not even the upstreams' names).
    let routed = route(state, req.uri().path());
    // Before anything else: a page the user's browser opened must not get
    // in through a rebound DNS name or a foreign origin.
    if let Err(refusal) = state.front_door.check(req.uri(), req.headers()) {
        let response = front_door_refused(refusal);
        state
            .metrics
            .mcp
            .front_door_refusals
            .with_label_values(&[refusal.as_str()])
            .inc();
        let label = routed.as_ref().map_or("unknown", |u| u.name.as_str());
        count(state, label, &method, &response, started);
        return response;
    }
    let peer = req.extensions().get::<Arc<Peer>>();
    let identity = match identity::resolve(&state.identity, req.headers(), peer) {
        Ok(identity) => identity,
        Err(e) => {
            let response = identity_refused(&e);
            let label = routed.as_ref().map_or("unknown", |u| u.name.as_str());
            count(state, label, &method, &response, started);
            return response;
        }
    };
    let Some(upstream) = routed else {
        let known: Vec<&str> = state.upstreams.keys().map(String::as_str).collect();
        let response = error_response(
            StatusCode::NOT_FOUND,
            None,
            codes::INVALID_REQUEST,
            &format!("no such MCP endpoint: {}", req.uri().path()),
            Some(json!({"upstreams": known, "default": state.config.default_upstream})),
        );
        count(state, "unknown", &method, &response, started);
        return response;
    };
    let response = match method {
        Method::POST => match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let permit = InFlight::new(permit, state.metrics.mcp.in_flight.clone());
                post(state, &upstream, req, identity, permit).await
            }
            Err(_) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                codes::INTERNAL_ERROR,
                "the sidecar is at its in-flight request limit; retry",
                Some(json!({"max_in_flight": state.config.max_in_flight})),
            ),
        },
        Method::GET | Method::DELETE => relay::pass(state, &upstream, &identity, req).await,
        _ => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                codes::INVALID_REQUEST,
                &format!("{method} is not part of MCP's Streamable HTTP transport"),
                None,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            response
        }
    };
    count(state, &upstream.name, &method, &response, started);
    response
}

fn count(
    state: &McpState,
    upstream: &str,
    method: &Method,
    response: &Response<ProxyBody>,
    started: Instant,
) {
    let m = &state.metrics.mcp;
    m.requests
        .with_label_values(&[upstream, method_label(method), response.status().as_str()])
        .inc();
    m.request_duration
        .with_label_values(&[upstream])
        .observe(started.elapsed().as_secs_f64());
}

/// `403` for a request the front door turned away; it says which header.
fn front_door_refused(refusal: Refusal) -> Response<ProxyBody> {
    let message = match refusal {
        Refusal::Host => {
            "the Host header names no host this MCP listener serves (mcp.allowed_hosts): refused to prevent DNS rebinding"
        }
        Refusal::Origin => {
            "the Origin header is not an allowed origin (mcp.allowed_origins): refused to prevent DNS rebinding"
        }
    };
    error_response(
        StatusCode::FORBIDDEN,
        None,
        codes::INVALID_REQUEST,
        message,
        Some(json!({"reason": refusal.as_str()})),
    )
}

/// The `method` label: the standard methods by name, anything else `other`
/// (a client can send any token as a method; each must not become a new
/// metric series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// `/mcp` → the default upstream; `/mcp/{name}` → that one.
fn route(state: &McpState, path: &str) -> Option<Arc<Upstream>> {
    let rest = path.strip_prefix("/mcp")?;
    match rest.trim_end_matches('/') {
        "" => state.default_upstream.clone(),
        named => {
            let name = named.strip_prefix('/')?;
            state.upstreams.get(name).cloned()
        }
    }
}

/// A JSON-RPC error as the whole answer.
pub fn error_response(
    status: StatusCode,
    id: Option<&Id>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response<ProxyBody> {
    json_response(
        status,
        answers::body(vec![answers::error(id, code, message, data)], false),
    )
}

/// `body` (JSON text) as the whole answer.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a request whose identity was refused: 401 with a Bearer
/// challenge for a missing or bad JWT (RFC 6750 §3), 403 for a client
/// certificate that names no principal. The reason is a closed set; the
/// token is never echoed.
fn identity_refused(error: &IdentityError) -> Response<ProxyBody> {
    let reason = error.failure.as_str();
    let data = Some(json!({"reason": reason}));
    if !error.failure.is_authentication() {
        return error_response(
            StatusCode::FORBIDDEN,
            None,
            codes::INVALID_REQUEST,
            "the client certificate does not name a principal (mcp.identity.mtls)",
            data,
        );
    }
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        None,
        codes::INVALID_REQUEST,
        "a valid bearer token is required (mcp.identity.jwt)",
        data,
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// One POST: read, parse, decide every `tools/call`, forward the rest.
async fn post(
    state: &Arc<McpState>,
    upstream: &Arc<Upstream>,
    req: Request<Incoming>,
    identity: Identity,
    permit: InFlight,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    if !is_json(&parts.headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            codes::INVALID_REQUEST,
            "a POST body must be JSON (Content-Type: application/json)",
            None,
        );
    }
    let limit = state.config.max_body_bytes;
    let bytes =
        match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    codes::INVALID_REQUEST,
                    &format!(
                        "the request body is larger than {limit} bytes (mcp.limits.max_body_bytes)"
                    ),
                    None,
                );
            }
            Ok(Err(e)) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    None,
                    codes::INVALID_REQUEST,
                    &format!("the request body could not be read: {e}"),
                    None,
                );
            }
            Err(_) => {
                return error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    None,
                    codes::INVALID_REQUEST,
                    &format!(
                        "the request body did not arrive within {} s",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                    None,
                );
            }
        };
    // Refused whole (nothing forwarded, nothing recorded): a body that is
    // not JSON-RPC, with duplicate member names, a `tools/call` without an
    // id, or colliding request ids in a batch (see `jsonrpc`).
    let body = match jsonrpc::parse(&bytes) {
        Ok(body) => body,
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, None, e.code, &e.message, None);
        }
    };
    if let Err(message) = check_method_headers(&parts.headers, &body) {
        let id = match &body {
            Body::Single(m) => request_id(m),
            Body::Batch(_) => None,
        };
        return error_response(
            StatusCode::BAD_REQUEST,
            id,
            codes::HEADER_MISMATCH,
            &message,
            None,
        );
    }
    let mut exchange = Exchange::new(state.clone(), upstream.clone(), identity, started, permit);
    exchange.batch = matches!(body, Body::Batch(_));
    let messages = match body {
        Body::Single(m) => vec![m],
        Body::Batch(ms) => ms,
    };
    let total = messages.len();
    let mut forward = Vec::with_capacity(total);
    for message in messages {
        if admit(state, &mut exchange, &message).await {
            forward.push(message);
        }
    }
    if forward.is_empty() {
        return exchange.local_only();
    }
    // Unchanged bodies go upstream byte for byte; a batch with some
    // messages kept back is the others' own text (what was decided).
    let upstream_body = if forward.len() == total {
        bytes
    } else {
        admitted_text(&bytes, &forward)
    };
    let expects_answer = forward
        .iter()
        .any(|m| matches!(m.kind, Kind::Request { .. }));
    exchange.forwarded_requests = forward.iter().filter_map(request_id).cloned().collect();
    exchange.expects_answer = expects_answer;
    relay::forward(exchange, parts, upstream_body).await
}

/// Decides one message of a POST: `true` to forward it; otherwise its
/// answer is kept in `exchange` (a denial, a malformed call, a call the
/// ledger could not record).
async fn admit(state: &McpState, exchange: &mut Exchange, message: &Message) -> bool {
    if message.method() == Some("tools/list")
        && let Kind::Request { id, .. } = &message.kind
    {
        exchange.tools_list.push(id.clone());
    }
    if let Some(read) = Read::of(message) {
        exchange.reads.push(read);
        return true;
    }
    let Some(call) = message.tool_call() else {
        return true;
    };
    let call = match call {
        Ok(call) => call,
        Err(e) => {
            let id = request_id(message);
            exchange
                .local
                .push(answers::error(id, codes::INVALID_PARAMS, &e.message, None));
            return false;
        }
    };
    let enforce = state.config.enforce;
    let sanitizer_key = message
        .value
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(SANITIZER_META_KEY))
        .and_then(Value::as_str);
    let call_id = call.id.to_value();
    let request = CallRequest {
        identity: &exchange.identity,
        upstream: &exchange.upstream.name,
        call_id: &call_id,
        call_id_text: call.id.inexact_text(),
        tool_name: call.name,
        args: call.arguments,
        sanitizer_key,
        enforce,
    };
    let manifest = state.manifests.current();
    let verdict = match state.gate.decide_and_record(request, manifest).await {
        Ok(verdict) => verdict,
        Err(e) => {
            let fail_open = state.fail_open && e.may_fail_open();
            let mode = if fail_open {
                "fail_open"
            } else {
                "fail_closed"
            };
            state
                .metrics
                .mcp
                .ledger_failures
                .with_label_values(&[mode])
                .inc();
            tracing::error!(
                upstream = %exchange.upstream.name,
                tool = call.name,
                session = %exchange.identity.session_id,
                error = %e,
                mode,
                "tool call could not be recorded"
            );
            if fail_open {
                exchange
                    .calls
                    .push(Pending::unrecorded(call.id.clone(), call.name));
                return true;
            }
            exchange.local.push(answers::error(
                Some(call.id),
                codes::INTERNAL_ERROR,
                "the sidecar could not record this tool call, so it was not run",
                Some(json!({"reason": e.kind(), "detail": e.to_string()})),
            ));
            return false;
        }
    };
    let decision = verdict.decision;
    state
        .metrics
        .record_decision(decision.outcome, decision.reason, verdict.decide_time);
    state
        .metrics
        .mcp
        .tool_calls
        .with_label_values(&[
            exchange.upstream.name.as_str(),
            decision.outcome.as_str(),
            decision.reason.as_str(),
            if enforce { "true" } else { "false" },
        ])
        .inc();
    if verdict.forwards(enforce) {
        if decision.outcome != Outcome::Allow {
            tracing::info!(
                upstream = %exchange.upstream.name,
                tool = call.name,
                session = %exchange.identity.session_id,
                outcome = decision.outcome.as_str(),
                reason = decision.reason.as_str(),
                seq = verdict.decision_seq,
                "shadow mode: tool call would be refused; forwarded"
            );
        }
        exchange
            .calls
            .push(Pending::new(call.id.clone(), call.name, &verdict));
        return true;
    }
    tracing::info!(
        upstream = %exchange.upstream.name,
        tool = call.name,
        session = %exchange.identity.session_id,
        outcome = decision.outcome.as_str(),
        reason = decision.reason.as_str(),
        seq = verdict.decision_seq,
        approval_id = verdict.approval_id.as_deref(),
        latency_us = u64::try_from(exchange.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "tool call refused"
    );
    exchange.local.push(answers::not_forwarded(
        call.id,
        &decision,
        DecisionRecord {
            seq: verdict.decision_seq,
            manifest_sha256: verdict.manifest_sha256(),
        },
        verdict.approval_id.as_deref(),
    ));
    false
}

/// The batch of `forward`'s messages, each as the text it had in `body`.
fn admitted_text(body: &Bytes, forward: &[Message]) -> Bytes {
    let len = forward.iter().map(|m| m.span.len() + 1).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, message) in forward.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(body.get(message.span.clone()).unwrap_or_default());
    }
    out.push(b']');
    out.into()
}

fn request_id(message: &Message) -> Option<&Id> {
    match &message.kind {
        Kind::Request { id, .. } => Some(id),
        _ => None,
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    upstream::media_type(headers).is_some_and(|t| t == "application/json")
}

/// MCP 2026-07-28 repeats a request's method (and the tool, prompt or
/// resource it names) in `Mcp-Method` / `Mcp-Name` headers, for routing.
/// The sidecar decides on the body; a header that disagrees with it would
/// let an intermediary route on one call and the server run another, so it
/// is refused, never forwarded.
fn check_method_headers(headers: &HeaderMap, body: &Body) -> Result<(), String> {
    let method = header_text(headers, MCP_METHOD)?;
    let name = header_text(headers, MCP_NAME)?;
    if method.is_none() && name.is_none() {
        return Ok(());
    }
    let Body::Single(message) = body else {
        return Err(
            "Mcp-Method / Mcp-Name headers describe one message; this body is a batch".into(),
        );
    };
    let body_method = message.method();
    if let Some(method) = method
        && body_method != Some(method)
    {
        return Err(format!(
            "the Mcp-Method header ({method:?}) does not match the body's method ({:?})",
            body_method.unwrap_or("none")
        ));
    }
    if let Some(name) = name {
        let name = decode_header_value(name).ok_or_else(|| {
            format!("the Mcp-Name header ({name:?}) is not valid =?base64?...?= text")
        })?;
        let name = name.as_str();
        let params = message.value.get("params");
        let body_name = match body_method {
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => {
                params.and_then(|p| p.get("uri"))
            }
            _ => params.and_then(|p| p.get("name")),
        }
        .and_then(Value::as_str);
        if body_name != Some(name) {
            return Err(format!(
                "the Mcp-Name header ({name:?}) does not match the body ({:?})",
                body_name.unwrap_or("none")
            ));
        }
    }
    Ok(())
}

/// A header value as MCP 2026-07-28 sends it: as is, or `=?base64?<b64>?=`
/// when the text is not plain printable ASCII. `None` when the encoded form
/// does not decode to UTF-8.
fn decode_header_value(value: &str) -> Option<String> {
    use base64::Engine as _;
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| format!("the {name} header is not visible ASCII")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(text: &str) -> Body {
        jsonrpc::parse(text.as_bytes()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn method_headers_must_agree_with_the_body() {
        let call = body(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
        );
        assert!(check_method_headers(&HeaderMap::new(), &call).is_ok());
        let agree = headers(&[(MCP_METHOD, "tools/call"), (MCP_NAME, "echo")]);
        assert!(check_method_headers(&agree, &call).is_ok());
        let other_tool = headers(&[(MCP_METHOD, "tools/call"), (MCP_NAME, "read_file")]);
        assert!(
            check_method_headers(&other_tool, &call)
                .unwrap_err()
                .contains("Mcp-Name")
        );
        let other_method = headers(&[(MCP_METHOD, "tools/list")]);
        assert!(
            check_method_headers(&other_method, &call)
                .unwrap_err()
                .contains("Mcp-Method")
        );
        let read = body(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        );
        let uri = headers(&[(MCP_METHOD, "resources/read"), (MCP_NAME, "file:///a")]);
        assert!(check_method_headers(&uri, &read).is_ok());
        // Names that are not plain ASCII travel base64-encoded.
        let unicode =
            body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"résumé"}}"#);
        let encoded = headers(&[
            (MCP_METHOD, "tools/call"),
            (MCP_NAME, "=?base64?csOpc3Vtw6k=?="),
        ]);
        assert!(check_method_headers(&encoded, &unicode).is_ok());
        let wrong = headers(&[
            (MCP_METHOD, "tools/call"),
            (MCP_NAME, "=?base64?ZWNobw==?="),
        ]);
        assert!(check_method_headers(&wrong, &unicode).is_err());
        let broken = headers(&[(MCP_NAME, "=?base64?!!?=")]);
        assert!(check_method_headers(&broken, &unicode).is_err());
        let batch = body(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        assert!(check_method_headers(&headers(&[(MCP_METHOD, "ping")]), &batch).is_err());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&HeaderMap::new()));
    }
}

//! Sending what was admitted upstream and choosing how its answer comes
//! back: an HTTP error or a missing answer settles every call as failed;
//! JSON and SSE answers are relayed ([`super::relay`]); an answer nothing
//! needs to inspect streams through untouched. Also GET (a held-open or
//! resumed event stream, [`super::resume`]) and DELETE.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::McpState;
use super::body::{BoxError, Holding, ProxyBody, UntilShutdown};
use super::error::{Failure, UpstreamKind};
use super::exchange::{Exchange, InFlight};
use super::relay;
use super::resume;
use super::settle::Ending;
use super::upstream::{self, Upstream};
use crate::identity::Identity;

/// Sends the admitted messages (`body`) upstream and relays the answer.
pub async fn forward(exchange: Exchange, parts: Parts, body: Bytes) -> Response<ProxyBody> {
    let upstream = exchange.upstream.clone();
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.target(parts.uri.query()));
    if let Some(h) = builder.headers_mut() {
        *h = upstream::request_headers(parts.headers, &upstream, &exchange.state.config.identity);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let request = match builder.body(Full::new(body)) {
        Ok(request) => request,
        Err(e) => {
            return exchange
                .fail(UpstreamKind::BadRequest, e.to_string(), false)
                .await;
        }
    };
    let deadline = exchange.answer_deadline();
    let sent = Instant::now();
    let response = match tokio::time::timeout_at(deadline, upstream.client.request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let detail = format!("{} is unreachable: {}", upstream.url, error_chain(&e));
            return exchange
                .fail(UpstreamKind::Unreachable, detail, false)
                .await;
        }
        Err(_) => {
            let detail = format!("{} did not answer in time", upstream.url);
            let call_deadline = !exchange.calls.is_empty();
            return exchange
                .fail(UpstreamKind::Timeout, detail, call_deadline)
                .await;
        }
    };
    exchange
        .state
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
    if !exchange.inspects() {
        // Streams to the end holding the request's slot.
        return passthrough(response, Some(exchange.permit));
    }
    if status.is_server_error() {
        let detail = format!("{} answered HTTP {status}", exchange.upstream.url);
        return exchange.fail(UpstreamKind::Status, detail, false).await;
    }
    if !status.is_success() {
        // A client error is MCP's to interpret (404: the session is gone,
        // re-initialize), so it passes; the calls it ended are recorded.
        let detail = format!("{} answered HTTP {status}", exchange.upstream.url);
        exchange
            .settle_rest(|| Ending::Failed {
                kind: UpstreamKind::Status,
                detail: detail.clone(),
            })
            .await;
        return passthrough(response, None);
    }
    let expects_answer = exchange.expects_answer();
    if status == StatusCode::ACCEPTED || !expects_answer {
        if expects_answer {
            let detail = "the upstream accepted the requests without answering them".to_owned();
            return exchange.fail(UpstreamKind::NoAnswer, detail, false).await;
        }
        // Only notifications went upstream: the sidecar's answers, or the
        // upstream's own 202.
        if exchange.local.is_empty() {
            return passthrough(response, None);
        }
        return exchange.json_answer(Vec::new());
    }
    if upstream::is_encoded(response.headers()) {
        let detail = "the upstream's answer is compressed (Content-Encoding), which the sidecar cannot inspect".to_owned();
        return exchange.fail(UpstreamKind::Malformed, detail, false).await;
    }
    match upstream::media_type(response.headers()).as_deref() {
        Some("text/event-stream") => relay::stream::relay(exchange, response),
        Some("application/json") => relay::json::relay(exchange, response).await,
        other => {
            let detail = format!(
                "the upstream answered with Content-Type {:?}, not JSON or SSE",
                other.unwrap_or("none")
            );
            exchange.fail(UpstreamKind::Malformed, detail, false).await
        }
    }
}

/// The upstream's answer as is (headers minus hop-by-hop ones), streamed.
/// `hold` travels with the body until it is fully sent.
fn passthrough(response: Response<Incoming>, hold: Option<InFlight>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    parts.headers = upstream::response_headers(parts.headers, false);
    let body = Holding { body, hold }
        .map_err(BoxError::from)
        .boxed_unsync();
    Response::from_parts(parts, body)
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
    let failed = |kind| Failure::Upstream {
        upstream: upstream.name.clone(),
        kind,
    };
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.target(parts.uri.query()));
    if let Some(h) = builder.headers_mut() {
        *h = upstream::request_headers(parts.headers, upstream, &state.config.identity);
    }
    let Ok(request) = builder.body(Full::new(Bytes::new())) else {
        return failed(UpstreamKind::BadRequest).response(None);
    };
    let response = match tokio::time::timeout(upstream.timeout, upstream.client.request(request))
        .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %upstream.name, url = %upstream.url, error = %error_chain(&e), "upstream unreachable");
            return failed(UpstreamKind::Unreachable).response(None);
        }
        Err(_) => {
            tracing::warn!(upstream = %upstream.name, url = %upstream.url, "upstream did not answer in time");
            return failed(UpstreamKind::Timeout).response(None);
        }
    };
    let sse = upstream::media_type(response.headers()).as_deref() == Some("text/event-stream");
    if get && response.status().is_success() && sse {
        if upstream::is_encoded(response.headers()) {
            tracing::warn!(upstream = %upstream.name, "a GET event stream is compressed; refused");
            return failed(UpstreamKind::Malformed).response(None);
        }
        return resume::stream::relay(state.clone(), upstream, identity, response);
    }
    // A held-open stream ends when the sidecar shuts down, once the calls
    // in flight have answered.
    let (mut parts, body) = response.into_parts();
    parts.headers = upstream::response_headers(parts.headers, false);
    let shutdown = state.streams_end.clone();
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

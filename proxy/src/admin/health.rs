//! Liveness, readiness and the metrics scrape.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::AdminState;
use super::error::json_response;

/// How long readiness waits for the ledger writer to answer.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long readiness waits for a TCP connection to an upstream.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness: the process answers.
pub fn healthz() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// Readiness: the ledger writer is running, its files are the ones it
/// opened, and a commit succeeds now (`LedgerHandle::probe`): false while
/// the disk is full or the file was deleted underneath, true again as soon
/// as a probe or a call records.
pub async fn readyz(state: &AdminState) -> Response<Full<Bytes>> {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        );
    }
    let ledger = tokio::time::timeout(READY_PROBE_TIMEOUT, state.ledger.probe()).await;
    if let Ok(Ok(())) = ledger
        && let Some(unreachable) = unreachable_upstream(state).await
    {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "error": unreachable}),
        );
    }
    match ledger {
        Ok(Ok(())) if state.warnings.is_empty() => {
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        }
        // Ready, with what the operator should know (dev mode, say).
        Ok(Ok(())) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "warnings": &*state.warnings}),
        ),
        Ok(Err(e)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "error": e}),
        ),
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "error": "the ledger writer did not answer within 2 s"}),
        ),
    }
}

/// The first upstream readiness cannot connect to, said in words
/// (`mcp.ready_checks_upstreams`; every upstream is tried at once).
async fn unreachable_upstream(state: &AdminState) -> Option<String> {
    let mut checks = tokio::task::JoinSet::new();
    for (name, authority) in state.upstream_checks.iter() {
        let (name, authority) = (name.clone(), authority.clone());
        checks.spawn(async move {
            match tokio::time::timeout(
                UPSTREAM_PROBE_TIMEOUT,
                tokio::net::TcpStream::connect(&authority),
            )
            .await
            {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("upstream {name} ({authority}) is unreachable: {e}")),
                Err(_) => Some(format!(
                    "upstream {name} ({authority}) did not accept a connection within 1 s"
                )),
            }
        });
    }
    let mut first = None;
    while let Some(done) = checks.join_next().await {
        if let Ok(Some(why)) = done {
            first.get_or_insert(why);
        }
    }
    first
}

/// Prometheus text exposition; gauges sampled now.
pub fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    let ledger = &state.metrics.ledger;
    ledger
        .queue_depth
        .set(i64::try_from(state.ledger.queue_depth()).unwrap_or(i64::MAX));
    let sessions = i64::try_from(state.ledger.sessions().len()).unwrap_or(i64::MAX);
    ledger.sessions_in_memory.set(sessions);
    state.metrics.mcp.active_sessions.set(sessions);
    let mut response = Response::new(Full::new(Bytes::from(state.metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

//! Absolute-form requests (`GET http://host/path`): forwarded through a
//! pooled client to exactly the address that was checked (the URL's host
//! becomes the IP; `Host` keeps the name the agent asked for), hop-by-hop
//! headers removed both ways (RFC 9110 §7.6.1) and the sidecar's own
//! `x-aegis-*` headers on the way out, the answer streamed back.
//! The attempt's result is recorded when the answer's body ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Admitted;
use super::answer::EgressError;
use super::body::CountedBody;
use super::record::{self, Ending};
use super::{EgressBody, EgressState};

/// Idle pooled connections to destinations are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The pooled client all forwarded requests share.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, CountedBody<Incoming>>;

pub fn client(connect_timeout: Duration) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Forwards `req` to `admitted`'s first checked address.
pub async fn forward(
    state: &Arc<EgressState>,
    req: Request<Incoming>,
    admitted: Admitted,
) -> Result<Response<EgressBody>, EgressError> {
    let (mut parts, body) = req.into_parts();
    let (Some(addr), Some(authority)) = (admitted.addrs.first(), parts.uri.authority()) else {
        return Err(EgressError::Unreachable("no address".to_owned()));
    };
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| EgressError::BadRequest("the URL's authority is not a header value".into()))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(format!("http://{addr}{path}"))
        .map_err(|e| EgressError::BadRequest(format!("cannot rewrite the URL: {e}")))?;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // The sidecar's own headers (and every other `x-aegis-*` unless
    // trusted) stop here; the JWT rode in Proxy-Authorization, hop-by-hop.
    state
        .identity
        .config()
        .strip_for_destination(&mut parts.headers);
    parts.headers.insert(header::HOST, host);

    let up = Arc::new(AtomicU64::new(0));
    let request = Request::from_parts(parts, CountedBody::new(body, up.clone(), None));
    let waited = tokio::time::timeout(state.config.idle_timeout, state.client.request(request));
    let response = match waited.await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let ending = Ending::failed("connect_failed", admitted.started.elapsed());
            record::finish(state, &admitted, ending).await;
            return Err(EgressError::Unreachable(format!("{addr}: {e}")));
        }
        Err(_) => {
            let ending = Ending::failed("timeout", admitted.started.elapsed());
            record::finish(state, &admitted, ending).await;
            return Err(EgressError::Timeout(format!(
                "no answer within {:?}",
                state.config.idle_timeout
            )));
        }
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let http_status = parts.status.as_u16();
    let down = Arc::new(AtomicU64::new(0));
    let on_end = {
        let state = state.clone();
        let down = down.clone();
        Box::new(move |complete: bool| {
            let tasks = state.tasks.clone();
            tasks.spawn(async move {
                let ending = Ending {
                    status: if complete { "ok" } else { "incomplete" },
                    bytes_up: up.load(Ordering::Relaxed),
                    bytes_down: down.load(Ordering::Relaxed),
                    duration: admitted.started.elapsed(),
                    http_status: Some(http_status),
                };
                record::finish(&state, &admitted, ending).await;
            });
        })
    };
    let body = CountedBody::new(body, down, Some(on_end)).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1):
/// `Connection` and every header it names, and the fixed list below.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
            ("x-end-to-end", "kept"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-end-to-end"]);
    }
}

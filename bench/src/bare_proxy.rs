//! The bare proxy: the least a reverse proxy does for one extra hop, to
//! measure the sidecar against. An HTTP/1.1 server that forwards each
//! request unchanged to a fixed upstream through a pooled `hyper_util`
//! client and streams the answer back: no parsing, no policy, no ledger.
//!
//! Per request: the path is looked up in the route table (exact match; 404
//! otherwise) and replaced by the upstream's URL, the query kept; hop-by-hop
//! headers (RFC 9110 §7.6.1, and those named in `Connection`) are removed
//! both ways and `Host` becomes the upstream's; the request body goes up as
//! it arrives and the answer's body comes back frame by frame as it arrives
//! (an SSE stream is relayed, never buffered). An upstream that cannot be
//! reached answers 502; one that sends no headers within
//! [`UPSTREAM_TIMEOUT`], 504.
//!
//! Loopback benchmarking only: no connection limit, no TLS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long the upstream may take to send its answer's headers.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the old `Keep-Alive` and
/// `Proxy-Connection`): they describe one connection, not the message.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// What the proxy answers: the upstream's streamed body, or its own.
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// A running bare proxy. Dropping it leaves it serving until its runtime
/// ends; [`BareProxy::shutdown`] stops accepting.
#[derive(Debug)]
pub struct BareProxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

/// Where one path is forwarded.
#[derive(Debug, Clone)]
struct Target {
    authority: Authority,
    host: HeaderValue,
    path: PathAndQuery,
}

#[derive(Debug)]
struct Shared {
    /// Request path → upstream. Read-only once serving.
    routes: HashMap<String, Target>,
    client: Client<HttpConnector, Incoming>,
}

impl BareProxy {
    /// Binds 127.0.0.1:0 and serves on the current runtime; a request for
    /// path `p` goes to the URL `routes` gives for `p` (`http` only).
    pub async fn start(routes: &[(String, String)]) -> anyhow::Result<BareProxy> {
        let routes = routes
            .iter()
            .map(|(path, url)| Ok((path.clone(), target(url)?)))
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        let mut connector = HttpConnector::new();
        // Small requests must not wait for a full segment, as the load
        // generator and the sidecar do.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let shared = Arc::new(Shared { routes, client });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the bare proxy")?;
        let addr = listener.local_addr().context("bare proxy address")?;
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(BareProxy { addr, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (connections already open end with the runtime).
    pub fn shutdown(self) {
        self.accept.abort();
    }
}

fn target(url: &str) -> anyhow::Result<Target> {
    let uri: Uri = url.parse().with_context(|| format!("upstream URL {url}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "upstream URL {url}: only http"
    );
    let authority = uri
        .authority()
        .cloned()
        .with_context(|| format!("upstream URL {url} has no host"))?;
    let host = HeaderValue::from_str(authority.as_str()).context("upstream host")?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Ok(Target {
        authority,
        host,
        path,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |request| forward(Arc::clone(&shared), request));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One request, forwarded; every failure is an answer.
async fn forward(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(target) = shared.routes.get(request.uri().path()) else {
        return Ok(own_answer(StatusCode::NOT_FOUND));
    };
    let (mut parts, body) = request.into_parts();
    let Ok(uri) = upstream_uri(target, parts.uri.query()) else {
        return Ok(own_answer(StatusCode::BAD_REQUEST));
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::HOST, target.host.clone());
    let sent = shared.client.request(Request::from_parts(parts, body));
    match tokio::time::timeout(UPSTREAM_TIMEOUT, sent).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Ok(Err(_)) => Ok(own_answer(StatusCode::BAD_GATEWAY)),
        Err(_) => Ok(own_answer(StatusCode::GATEWAY_TIMEOUT)),
    }
}

/// The upstream's URL for a request with `query`.
fn upstream_uri(target: &Target, query: Option<&str>) -> Result<Uri, http::Error> {
    let path_and_query = match query {
        Some(query) => format!("{}?{query}", target.path.path()),
        None => target.path.path().to_owned(),
    };
    Uri::builder()
        .scheme("http")
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
}

/// Removes the hop-by-hop headers, and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

fn own_answer(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-trace"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-trace", "1"),
            ("content-type", "application/json"),
            ("x-aegis-session-id", "s-1"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-aegis-session-id"]);
    }

    #[test]
    fn the_path_is_mapped_and_the_query_kept() {
        let target = target("http://127.0.0.1:4000/mcp").unwrap();
        assert_eq!(
            upstream_uri(&target, None).unwrap(),
            "http://127.0.0.1:4000/mcp"
        );
        assert_eq!(
            upstream_uri(&target, Some("a=1")).unwrap(),
            "http://127.0.0.1:4000/mcp?a=1"
        );
        assert!(super::target("https://example.com/").is_err());
    }
}

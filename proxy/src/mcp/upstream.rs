//! The tool servers behind the sidecar: pooled HTTP(S) clients, and how a
//! request and its answer cross the sidecar (which headers pass, which are
//! the sidecar's own, which are set for the upstream).
//!
//! Plain `http://` upstreams share one client (and its pool); each
//! `https://` upstream has its own, since each has its own TLS settings
//! (trusted CAs, client certificate, SNI name).

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Uri};
use http_body_util::Full;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{UpstreamConfig, UpstreamTls};
use crate::identity::IdentityConfig;

/// Longest wait for a TCP connection to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A pooled client for upstreams: plain HTTP, or HTTPS with one upstream's
/// TLS settings.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for `https://` upstreams with `tls` (HTTP/2 or HTTP/1.1, by
/// ALPN), or, with `None`, for plain `http://` upstreams only.
pub fn client(tls: Option<&UpstreamTls>) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // The TCP connector must let `https://` through to the TLS layer; a
    // plain client refuses it, so it can never speak unverified TLS.
    http.enforce_http(tls.is_none());
    let connector = match tls {
        Some(tls) => {
            let builder = HttpsConnectorBuilder::new()
                .with_tls_config((*tls.rustls()).clone())
                .https_only();
            let builder = match &tls.server_name {
                Some(name) => {
                    builder.with_server_name_resolver(FixedServerNameResolver::new(name.clone()))
                }
                None => builder,
            };
            builder.enable_http1().enable_http2().wrap_connector(http)
        }
        None => {
            // Never used to make a TLS connection (`enforce_http` refuses
            // https), but the connector type needs a configuration.
            let unused = crate::tls::client_config(rustls::RootCertStore::empty(), None)
                .expect("a client configuration without roots or certificates always builds");
            HttpsConnectorBuilder::new()
                .with_tls_config(unused)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        }
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// One upstream, ready to forward to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub url: Uri,
    /// What `Host` is set to.
    pub authority: Authority,
    pub timeout: Duration,
    /// Extra headers (credentials), values marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The client that reaches it: `plain` for `http://`, its own for
    /// `https://`.
    pub client: HttpClient,
}

impl Upstream {
    /// `None` when the URL has no authority (configuration validation
    /// refuses such URLs first).
    pub fn new(config: &UpstreamConfig, plain: &HttpClient) -> Option<Upstream> {
        let authority = config.url.authority()?.clone();
        let client = match &config.tls {
            Some(tls) => client(Some(tls)),
            None => plain.clone(),
        };
        Some(Upstream {
            name: config.name.clone(),
            url: config.url.clone(),
            authority,
            timeout: config.timeout,
            headers: config
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.value().clone()))
                .collect(),
            client,
        })
    }

    /// The upstream URL for a request whose query string was `query`: the
    /// configured URL's path, the agent's query (MCP uses none, but a tool
    /// server may).
    pub fn target(&self, query: Option<&str>) -> Uri {
        let Some(query) = query else {
            return self.url.clone();
        };
        let path = self.url.path();
        let joined = match self.url.query() {
            Some(own) => format!("{path}?{own}&{query}"),
            None => format!("{path}?{query}"),
        };
        let mut parts = self.url.clone().into_parts();
        match joined.parse() {
            Ok(pq) => {
                parts.path_and_query = Some(pq);
                Uri::from_parts(parts).unwrap_or_else(|_| self.url.clone())
            }
            Err(_) => self.url.clone(),
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and others that describe one
/// connection, never forwarded in either direction.
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

/// Removes hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// The headers sent upstream: the agent's, minus hop-by-hop ones, the
/// sidecar's own identity headers, every other `x-aegis-*` header (unless
/// `mcp.identity.trust_headers`) and the JWT's header once the sidecar
/// consumed it (unless `mcp.identity.jwt.forward`), with `Host` set to the
/// upstream's, the
/// body's length left to the client, compression refused (the sidecar reads
/// answers), and the upstream's extra headers. `Mcp-Session-Id`,
/// `MCP-Protocol-Version`, `Last-Event-ID`, `Accept` and the rest pass
/// unchanged.
pub fn request_headers(
    mut headers: HeaderMap,
    upstream: &Upstream,
    identity: &IdentityConfig,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    identity.strip_for_mcp_upstream(&mut headers);
    if let Ok(host) = HeaderValue::from_str(upstream.authority.as_str()) {
        headers.insert(header::HOST, host);
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    for (name, value) in &upstream.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// The headers sent back to the agent: the upstream's minus hop-by-hop ones
/// (`content-length` too when the sidecar rewrites the body).
pub fn response_headers(mut headers: HeaderMap, body_rewritten: bool) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    if body_rewritten {
        headers.remove(header::CONTENT_LENGTH);
    }
    headers
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    Some(essence)
}

/// Whether the body is encoded (compressed) in a way the sidecar cannot read.
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn upstream() -> Upstream {
        Upstream {
            name: "tools".into(),
            url: "http://10.0.0.7:9000/mcp".parse().unwrap(),
            authority: "10.0.0.7:9000".parse().unwrap(),
            timeout: Duration::from_secs(30),
            headers: vec![(
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer s3cret"),
            )],
            client: client(None),
        }
    }

    #[test]
    fn request_headers_keep_mcp_headers_and_set_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8081"));
        h.insert("mcp-session-id", HeaderValue::from_static("abc"));
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-11-25"),
        );
        h.insert("last-event-id", HeaderValue::from_static("42"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-drop-me"),
        );
        h.insert("x-drop-me", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert("x-aegis-session-id", HeaderValue::from_static("s1"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer agent"),
        );
        let out = request_headers(h, &upstream(), &IdentityConfig::default());
        assert_eq!(out[header::HOST], "10.0.0.7:9000");
        assert_eq!(out["mcp-session-id"], "abc");
        assert_eq!(out["mcp-protocol-version"], "2025-11-25");
        assert_eq!(out["last-event-id"], "42");
        assert_eq!(out[header::ACCEPT_ENCODING], "identity");
        assert_eq!(out[header::AUTHORIZATION], "Bearer s3cret");
        for gone in [
            "connection",
            "x-drop-me",
            "content-length",
            "x-aegis-session-id",
        ] {
            assert!(!out.contains_key(gone), "{gone} was forwarded");
        }
    }

    #[test]
    fn own_headers_and_a_consumed_jwt_never_reach_the_upstream() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("x-aegis-session-id", "s1"),
            ("x-aegis-tenant-id", "t"),
            ("x-aegis-anything", "1"),
            ("authorization", "Bearer agent.jwt.here"),
            ("x-other", "kept"),
        ] {
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut no_extra = upstream();
        no_extra.headers.clear();
        let jwt = crate::identity::JwtConfig {
            jwks_file: "/dev/null".into(),
            issuer: "i".into(),
            audience: "a".into(),
            header: header::AUTHORIZATION,
            forward: false,
            leeway: Duration::from_secs(60),
            claims: crate::identity::ClaimNames::default(),
        };
        let consuming = IdentityConfig {
            jwt: Some(jwt.clone()),
            ..IdentityConfig::default()
        };
        let out = request_headers(h.clone(), &no_extra, &consuming);
        let mut left: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept-encoding", "host", "x-other"]);

        // jwt.forward: true passes the token on; trust_headers: true passes
        // x-aegis-* (but never the sidecar's own three).
        let passing = IdentityConfig {
            jwt: Some(crate::identity::JwtConfig {
                forward: true,
                ..jwt
            }),
            trust_headers: true,
            ..IdentityConfig::default()
        };
        let out = request_headers(h, &no_extra, &passing);
        assert_eq!(out[header::AUTHORIZATION], "Bearer agent.jwt.here");
        assert_eq!(out["x-aegis-anything"], "1");
        assert!(!out.contains_key("x-aegis-session-id"));
        assert!(!out.contains_key("x-aegis-tenant-id"));
    }

    #[test]
    fn response_headers_drop_hop_by_hop_and_length_when_rewritten() {
        let mut h = HeaderMap::new();
        h.insert("mcp-session-id", HeaderValue::from_static("abc"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        let kept = response_headers(h.clone(), false);
        assert_eq!(kept[header::CONTENT_LENGTH], "10");
        assert!(!kept.contains_key(header::TRANSFER_ENCODING));
        let rewritten = response_headers(h, true);
        assert!(!rewritten.contains_key(header::CONTENT_LENGTH));
        assert_eq!(rewritten["mcp-session-id"], "abc");
    }

    #[test]
    fn targets_keep_the_configured_path_and_add_the_query() {
        let u = upstream();
        assert_eq!(u.target(None).to_string(), "http://10.0.0.7:9000/mcp");
        assert_eq!(
            u.target(Some("a=1")).to_string(),
            "http://10.0.0.7:9000/mcp?a=1"
        );
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Text/Event-Stream; charset=utf-8"),
        );
        assert_eq!(media_type(&h).as_deref(), Some("text/event-stream"));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(is_encoded(&h));
    }
}

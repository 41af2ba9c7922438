//! `fetch_url`: one HTTP GET, plain http only, bounded in time and size.
//!
//! The tool the sidecar's egress rules are shown on: it fetches whatever it
//! is asked to, so the policy in front of it has to decide.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ToolOutput;

/// The whole fetch, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The body kept; the rest is cut off (and said so).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A pooled HTTP/1 client, built once.
pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(FETCH_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// `fetch_url`: `HTTP <status>`, a blank line, then the body as text.
pub(crate) async fn get(client: &HttpClient, url: &str) -> ToolOutput<'static> {
    let uri = match check(url) {
        Ok(uri) => uri,
        Err(why) => return ToolOutput::error(format!("fetch_url: {why}")),
    };
    match tokio::time::timeout(FETCH_TIMEOUT, fetch(client, uri)).await {
        Ok(Ok(text)) => ToolOutput::ok(text),
        Ok(Err(why)) => ToolOutput::error(format!("fetch_url {url}: {why}")),
        Err(_) => ToolOutput::error(format!(
            "fetch_url {url}: no complete answer within {} s",
            FETCH_TIMEOUT.as_secs()
        )),
    }
}

fn check(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("only http:// URLs are fetched, not {other}://")),
        None => return Err("the URL needs http://".to_owned()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(uri)
}

async fn fetch(client: &HttpClient, uri: Uri) -> Result<String, String> {
    let request = Request::get(uri)
        .header(
            http::header::USER_AGENT,
            concat!("aegis-demo-upstream/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut kept: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY_BYTES - kept.len();
            if data.len() > room {
                kept.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            kept.extend_from_slice(&data);
        }
    }
    let mut text = format!("HTTP {status}\n\n{}", String::from_utf8_lossy(&kept));
    if truncated {
        text.push_str(&format!("\n[body truncated at {MAX_BODY_BYTES} bytes]"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls() {
        assert!(check("http://127.0.0.1:9/x").is_ok());
        for bad in [
            "https://example.com/",
            "ftp://x/",
            "/relative",
            "not a url",
            "http:///x",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}

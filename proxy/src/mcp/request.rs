//! The request side's first stages, free of the gate: the POST body read
//! (bounded in size and time), its `Mcp-Method` / `Mcp-Name` headers checked
//! against it, the path routed to an upstream, the metric label of the
//! method.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::McpState;
use super::error::Failure;
use super::jsonrpc::Body;
use super::upstream::{self, Upstream};

/// Longest wait for a POST body once its headers arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The 2026-07-28 headers that repeat the body's method and name.
const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

/// A POST's body, whole: JSON, at most `limit` bytes, within
/// [`BODY_READ_TIMEOUT`].
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, Failure> {
    if !is_json(headers) {
        return Err(Failure::NotJson);
    }
    // A declared length over the limit is refused before a byte of the body
    // is read (an unparsable one is hyper's to refuse: it never gets here).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Failure::BodyTooLarge { limit });
    }
    match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Failure::BodyTooLarge { limit })
        }
        Ok(Err(e)) => Err(Failure::BodyUnreadable(e.to_string())),
        Err(_) => Err(Failure::BodyTimeout(BODY_READ_TIMEOUT)),
    }
}

/// `/mcp` → the default upstream; `/mcp/{name}` → that one.
pub fn route(state: &McpState, path: &str) -> Option<Arc<Upstream>> {
    let rest = path.strip_prefix("/mcp")?;
    match rest.trim_end_matches('/') {
        "" => state.default_upstream.clone(),
        named => {
            let name = named.strip_prefix('/')?;
            state.upstreams.get(name).cloned()
        }
    }
}

/// The refusal of a path that names no upstream.
pub fn no_route(state: &McpState, path: &str) -> Failure {
    Failure::NoRoute {
        path: path.to_owned(),
        upstreams: state.upstreams.keys().cloned().collect(),
        default: state.config.default_upstream.clone(),
    }
}

/// The `method` label: the standard methods by name, anything else `other`
/// (a client can send any token as a method; each must not become a new
/// metric series).
pub fn method_label(method: &Method) -> &'static str {
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

fn is_json(headers: &HeaderMap) -> bool {
    upstream::media_type(headers).is_some_and(|t| t == "application/json")
}

/// MCP 2026-07-28 repeats a request's method (and the tool, prompt or
/// resource it names) in `Mcp-Method` / `Mcp-Name` headers, for routing.
/// The sidecar decides on the body; a header that disagrees with it would
/// let an intermediary route on one call and the server run another, so it
/// is refused, never forwarded.
pub fn check_method_headers(headers: &HeaderMap, body: &Body) -> Result<(), String> {
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
    use http::HeaderValue;

    use super::*;
    use crate::mcp::jsonrpc;

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

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}

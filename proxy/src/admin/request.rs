//! Reading requests: bounded bodies, content types, query strings.

use std::collections::HashMap;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::ApiError;

/// Reads a JSON request body of at most `limit` bytes.
pub async fn json_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match content_type.as_deref() {
        Some(ct) if is_json(ct) => {}
        Some(ct) => return Err(ApiError::UnsupportedMediaType(format!("{ct:?}"))),
        None => return Err(ApiError::UnsupportedMediaType("none".into())),
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Reads a JSON object body of at most `limit` bytes, refusing duplicate
/// member names anywhere inside ([`crate::json::object`]).
pub async fn json_object(
    req: Request<Incoming>,
    limit: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let body = json_body(req, limit).await?;
    crate::json::object(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not a JSON object: {e}")))
}

fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The query string's parameters; a repeated or unknown parameter is an error.
pub fn query<B>(req: &Request<B>, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {name:?} (expected {})",
                known.join(", ")
            )));
        }
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(ApiError::BadRequest(format!(
                "query parameter {name:?} is repeated"
            )));
        }
    }
    Ok(params)
}

/// A required, non-empty query parameter.
pub fn required(params: &HashMap<String, String>, name: &str) -> Result<String, ApiError> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::BadRequest(format!("query parameter {name} is required")))
}

/// Percent-decodes one path segment.
pub fn path_segment(raw: &str) -> Result<String, ApiError> {
    let decoded: String =
        form_urlencoded::parse(format!("x={}", raw.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
    if decoded.is_empty() {
        return Err(ApiError::BadRequest(
            "the session id in the path is empty".into(),
        ));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
    }

    #[test]
    fn path_segments_are_percent_decoded_but_plus_is_literal() {
        assert_eq!(path_segment("sess%2F1").unwrap(), "sess/1");
        assert_eq!(path_segment("a+b").unwrap(), "a+b");
        assert_eq!(path_segment("caf%C3%A9").unwrap(), "café");
        assert!(path_segment("").is_err());
    }

    #[test]
    fn queries_refuse_unknown_and_repeated_parameters() {
        let req = |q: &str| Request::get(format!("/v1/events?{q}")).body(()).unwrap();
        let p = query(&req("tenant_id=a%20b&limit=5"), &["tenant_id", "limit"]).unwrap();
        assert_eq!(p["tenant_id"], "a b");
        assert!(
            query(&req("tenant=x"), &["tenant_id"])
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
        assert!(
            query(&req("limit=1&limit=2"), &["limit"])
                .unwrap_err()
                .to_string()
                .contains("repeated")
        );
        assert!(required(&p, "session_id").is_err());
    }
}

//! JSON that refuses duplicate member names, at any depth. `serde_json`
//! keeps the last of two equal names silently, other parsers keep the
//! first: two parsers would read two different documents from the same
//! bytes (RFC 8259 §4 calls such JSON "unpredictable"). Used where the
//! sidecar decides on bytes that someone else reads again: a JOSE header
//! or a claims set (RFC 7515 §5.2 and RFC 7519 §4: reject them), and every
//! MCP message ([`crate::mcp::jsonrpc`]).
//!
//! The value itself is the ledger's [`StrictValue`] (the one the envelope
//! API parses payloads with): one pass, each object's names checked as its
//! map is built, no memory beyond the parsed value; nesting bounded by
//! `serde_json`'s recursion limit (128).
//! A refused duplicate is a data error (`serde_json::Error::is_data`), a
//! text that is not JSON a syntax or EOF error.

use aegis_ledger::canon::StrictValue;
use serde::Deserialize as _;
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON object (nothing after it but whitespace),
/// refusing duplicate member names anywhere inside.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let StrictValue(value) = StrictValue::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(object(br#"{"a":1,"b":[1,{"c":null}]}"#).is_ok());
        assert!(
            object(br#"{"a":1,"a":2}"#)
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(object(br#"{"x":{"a":1,"a":1}}"#).is_err());
        assert!(object(br#"[{"a":1}]"#).is_err(), "not an object");
        assert!(object(br#"{"a":1} {}"#).is_err(), "trailing data");
        assert!(object(b"{\"a\":1}\r\n").is_ok(), "trailing whitespace");
        assert_eq!(object(br#"{"n":1.5,"m":-2}"#).unwrap()["n"], 1.5);
    }
}

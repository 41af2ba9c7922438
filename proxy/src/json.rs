//! JSON that refuses duplicate member names, at any depth. `serde_json`
//! keeps the last of two equal names silently, other parsers keep the
//! first: two parsers would read two different documents from the same
//! bytes (RFC 8259 §4 calls such JSON "unpredictable"). Used where the
//! sidecar decides on bytes that someone else reads again: a JOSE header
//! or a claims set (RFC 7515 §5.2 and RFC 7519 §4: reject them), and every
//! MCP message ([`crate::mcp::jsonrpc`]).
//!
//! One pass, linear in the input: each object's names are checked as its
//! map is built (the map is what the caller gets anyway), so the check
//! costs a lookup per member and no memory beyond the parsed value.
//! Nesting is bounded by `serde_json`'s recursion limit (128).
//! A refused duplicate is a data error (`serde_json::Error::is_data`), a
//! text that is not JSON a syntax or EOF error.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON object (nothing after it but whitespace),
/// refusing duplicate member names anywhere inside.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(value) = Strict::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".to_owned()),
    }
}

/// A JSON value read by [`StrictVisitor`]: deserialise it instead of a
/// [`Value`] to refuse duplicate member names.
pub(crate) struct Strict(pub(crate) Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                // Not the name itself: it is the sender's text, and errors
                // end up in logs.
                return Err(de::Error::custom("a member name appears twice"));
            }
            let Strict(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(object(br#"{"a":1,"b":[1,{"c":null}]}"#).is_ok());
        assert!(object(br#"{"a":1,"a":2}"#).unwrap_err().contains("twice"));
        assert!(object(br#"{"x":{"a":1,"a":1}}"#).is_err());
        assert!(object(br#"[{"a":1}]"#).is_err(), "not an object");
        assert!(object(br#"{"a":1} {}"#).is_err(), "trailing data");
        assert!(object(b"{\"a\":1}\r\n").is_ok(), "trailing whitespace");
        assert_eq!(object(br#"{"n":1.5,"m":-2}"#).unwrap()["n"], 1.5);
    }
}

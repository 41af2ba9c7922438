//! RFC 8785 (JSON Canonicalization Scheme) — the only place JSON is canonicalised.
//!
//! Every hash in the ledger is SHA-256 over bytes produced here, so this module is
//! the contract of `spec/envelope.md`:
//!
//! - object members sorted by their names' UTF-16 code units;
//! - no insignificant whitespace;
//! - numbers as IEEE-754 doubles in ECMAScript `Number.prototype.toString` form
//!   (integers beyond ±2^53 are hashed in their double form);
//! - strings with the minimal escaping of RFC 8785 §3.2.2.2: `"` `\` and the
//!   C0 controls, everything else as raw UTF-8.
//!
//! Input is parsed strictly ([`parse`]): duplicate member names are refused, since
//! two readers of the same bytes could otherwise disagree on what was hashed.

use std::cmp::Ordering;

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Where canonical bytes go: a buffer, or straight into a hasher.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for sha2::Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        sha2::Digest::update(self, bytes);
    }
}

/// A JSON text that is not acceptable input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// Parses JSON text strictly: valid JSON, no duplicate member names, no
/// trailing content. Numbers keep their double value exactly (serde_json's
/// `float_roundtrip`).
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict
        .deserialize(&mut de)
        .map_err(|e| ParseError(e.to_string()))?;
    de.end().map_err(|e| ParseError(e.to_string()))?;
    Ok(value)
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value);
    out
}

/// Writes the canonical form of `value` into `out`.
pub fn write_value<S: Sink + ?Sized>(out: &mut S, value: &Value) {
    match value {
        Value::Null => out.put(b"null"),
        Value::Bool(true) => out.put(b"true"),
        Value::Bool(false) => out.put(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_value(out, item);
            }
            out.put(b"]");
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object<S: Sink + ?Sized>(out: &mut S, map: &Map<String, Value>) {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // serde_json's map iterates in code-point order, which differs from UTF-16
    // order only when supplementary characters meet U+E000..U+FFFF; the sort
    // below is linear on input that is already in order.
    members.sort_by(|a, b| cmp_utf16(a.0, b.0));
    out.put(b"{");
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        write_str(out, name);
        out.put(b":");
        write_value(out, value);
    }
    out.put(b"}");
}

/// Orders two strings by their UTF-16 code units (RFC 8785 §3.2.3).
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let mut a_units = a.encode_utf16();
    let mut b_units = b.encode_utf16();
    loop {
        match (a_units.next(), b_units.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => return x.cmp(&y),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
        }
    }
}

/// Largest integer magnitude whose decimal form equals its ECMAScript form.
const EXACT_INT: u64 = 1 << 53;

fn write_number<S: Sink + ?Sized>(out: &mut S, n: &Number) {
    if let Some(u) = n.as_u64() {
        write_u64_as_double(out, u);
    } else if let Some(i) = n.as_i64() {
        write_i64_as_double(out, i);
    } else {
        // Not an integer: serde_json holds it as a finite f64.
        write_double(out, n.as_f64().unwrap_or(0.0));
    }
}

/// Writes an unsigned integer as RFC 8785 numbers it: as the double nearest to it.
pub fn write_u64_as_double<S: Sink + ?Sized>(out: &mut S, u: u64) {
    if u <= EXACT_INT {
        write_decimal(out, u);
    } else {
        write_double(out, u as f64);
    }
}

/// Writes a signed integer as RFC 8785 numbers it: as the double nearest to it.
pub fn write_i64_as_double<S: Sink + ?Sized>(out: &mut S, i: i64) {
    if i.unsigned_abs() <= EXACT_INT {
        if i < 0 {
            out.put(b"-");
        }
        write_decimal(out, i.unsigned_abs());
    } else {
        write_double(out, i as f64);
    }
}

fn write_decimal<S: Sink + ?Sized>(out: &mut S, mut u: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.put(&buf[at..]);
}

fn write_double<S: Sink + ?Sized>(out: &mut S, f: f64) {
    if f == 0.0 {
        // Both zeros print as "0" in ECMAScript.
        out.put(b"0");
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.put(buf.format_finite(f).as_bytes());
}

/// Writes `s` as a JSON string with RFC 8785's minimal escaping.
pub fn write_str<S: Sink + ?Sized>(out: &mut S, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.put(&bytes[start..i]);
        if escape.is_empty() {
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.put(escape);
        }
        start = i + 1;
    }
    out.put(&bytes[start..]);
    out.put(b"\"");
}

/// Deserialises any JSON value into `serde_json::Value`, refusing duplicate
/// member names.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

/// A JSON value that refuses duplicate member names at any depth:
/// deserialise it instead of a [`Value`] wherever bytes are decided on that
/// another parser reads again (serde_json keeps the last of two equal names,
/// others the first; RFC 8259 §4). [`parse`] is it, on a whole text.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
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
            .ok_or_else(|| E::custom("number out of range"))
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
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {name:?}"
                )));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests;

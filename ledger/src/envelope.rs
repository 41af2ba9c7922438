//! Envelopes and their hash (`spec/envelope.md`, "The preimage and the hash").
//!
//! The preimage is the JCS form of `{tenant_id, user_id, session_id, seq,
//! ts_unix_ms, event_type, payload, prev_hash?}` with `prev_hash` as an array of
//! 32 integers. Its member names are fixed ASCII, so their canonical order is
//! fixed too and the preimage is streamed straight into SHA-256 around the
//! payload's canonical bytes.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::canon::{self, Sink};
use crate::digest::Digest;
use crate::event::EventType;

/// An envelope's payload: the exact JSON text received (what is stored and
/// served back), its parsed value, and its canonical bytes (what is hashed).
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    text: String,
    value: Value,
    canonical: Vec<u8>,
}

impl Payload {
    /// Reads a payload from JSON text, strictly (see [`canon::parse`]).
    pub fn from_text(text: &str) -> Result<Payload, canon::ParseError> {
        let value = canon::parse(text)?;
        let canonical = canon::to_vec(&value);
        Ok(Payload {
            text: text.trim().to_owned(),
            value,
            canonical,
        })
    }

    /// A payload built in code; its stored text is serde_json's rendering.
    pub fn from_value(value: Value) -> Payload {
        let canonical = canon::to_vec(&value);
        Payload {
            text: value.to_string(),
            value,
            canonical,
        }
    }

    pub fn null() -> Payload {
        Payload::from_value(Value::Null)
    }

    /// The JSON text as received and stored.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The RFC 8785 bytes that enter the hash.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// The stored text and the canonical bytes, dropping the parsed value.
    pub fn into_parts(self) -> (String, Vec<u8>) {
        (self.text, self.canonical)
    }

    /// `payload.tool_name` when it is a string: indexed for listing by tool.
    pub fn tool_name(&self) -> Option<&str> {
        self.value.get("tool_name").and_then(Value::as_str)
    }
}

/// The fields that enter an envelope's hash.
#[derive(Debug, Clone, Copy)]
pub struct Preimage<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub seq: u64,
    pub ts_unix_ms: i64,
    pub event_type: &'a str,
    /// The payload's canonical bytes.
    pub payload: &'a [u8],
    /// Required exactly when `seq > 0`; ignored (not hashed) at `seq = 0`.
    pub prev_hash: Option<&'a Digest>,
}

impl Preimage<'_> {
    /// Writes the canonical preimage. Members in JCS order: event_type,
    /// payload, prev_hash, seq, session_id, tenant_id, ts_unix_ms, user_id.
    pub fn write<S: Sink + ?Sized>(&self, out: &mut S) {
        out.put(b"{\"event_type\":");
        canon::write_str(out, self.event_type);
        out.put(b",\"payload\":");
        out.put(self.payload);
        if let (true, Some(prev)) = (self.seq > 0, self.prev_hash) {
            out.put(b",\"prev_hash\":");
            write_byte_array(out, prev);
        }
        out.put(b",\"seq\":");
        canon::write_u64_as_double(out, self.seq);
        out.put(b",\"session_id\":");
        canon::write_str(out, self.session_id);
        out.put(b",\"tenant_id\":");
        canon::write_str(out, self.tenant_id);
        out.put(b",\"ts_unix_ms\":");
        canon::write_i64_as_double(out, self.ts_unix_ms);
        out.put(b",\"user_id\":");
        canon::write_str(out, self.user_id);
        out.put(b"}");
    }

    /// The canonical preimage bytes (for tests and diagnostics).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.payload.len());
        self.write(&mut out);
        out
    }

    /// SHA-256 of the canonical preimage.
    pub fn hash(&self) -> Digest {
        let mut hasher = Sha256::new();
        self.write(&mut hasher);
        Digest(hasher.finalize().into())
    }
}

/// Writes a digest as the JSON array of its 32 byte values, in one piece (the
/// hasher is fed one slice rather than 64 small ones).
fn write_byte_array<S: Sink + ?Sized>(out: &mut S, digest: &Digest) {
    // "[" + 32 numbers of at most 3 digits + 31 commas + "]"
    let mut buf = [0u8; 2 + 32 * 3 + 31];
    let mut at = 0;
    buf[at] = b'[';
    at += 1;
    for (i, &byte) in digest.0.iter().enumerate() {
        if i > 0 {
            buf[at] = b',';
            at += 1;
        }
        if byte >= 100 {
            buf[at] = b'0' + byte / 100;
            at += 1;
        }
        if byte >= 10 {
            buf[at] = b'0' + byte / 10 % 10;
            at += 1;
        }
        buf[at] = b'0' + byte % 10;
        at += 1;
    }
    buf[at] = b']';
    out.put(&buf[..=at]);
}

/// A sealed envelope: every field of the contract, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub tenant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub seq: u64,
    pub ts_unix_ms: i64,
    pub event_type: EventType,
    pub payload: Payload,
    /// `None` exactly at `seq = 0`.
    pub prev_hash: Option<Digest>,
    pub hash: Digest,
}

impl Envelope {
    pub fn preimage(&self) -> Preimage<'_> {
        Preimage {
            tenant_id: &self.tenant_id,
            user_id: &self.user_id,
            session_id: &self.session_id,
            seq: self.seq,
            ts_unix_ms: self.ts_unix_ms,
            event_type: self.event_type.as_str(),
            payload: self.payload.canonical(),
            prev_hash: self.prev_hash.as_ref(),
        }
    }

    /// Recomputes the hash from the other fields.
    pub fn compute_hash(&self) -> Digest {
        self.preimage().hash()
    }
}

#[cfg(test)]
mod tests;

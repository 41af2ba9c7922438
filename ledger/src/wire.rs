//! The JSON wire form of the Aegis event API (`POST /v1/events` bodies in,
//! listings and exports out). `hash`/`prev_hash` are lowercase hex on output and
//! hex, base64 or integer arrays on input (`spec/envelope.md`, "Wire form").

use serde::Serialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::append::{AppendRequest, NewEvent, Origin, Seal, now_unix_ms};
use crate::canon;
use crate::digest::{Digest, json_kind};
use crate::envelope::Payload;
use crate::stored::StoredEnvelope;

/// Why a request body is not an acceptable envelope. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

const FIELDS: &str =
    "tenant_id, user_id, session_id, seq, ts_unix_ms, event_type, payload, prev_hash, hash";

/// Reads a `POST /v1/events` body.
pub fn parse_append(body: &[u8]) -> Result<AppendRequest, WireError> {
    let text =
        std::str::from_utf8(body).map_err(|e| WireError(format!("body is not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let members = de
        .deserialize_map(Members)
        .map_err(|e| WireError(format!("body is not a valid JSON object: {e}")))?;
    de.end()
        .map_err(|e| WireError(format!("body is not a valid JSON object: {e}")))?;

    let mut fields = Fields::default();
    for (name, raw) in members {
        fields.set(&name, &raw)?;
    }
    fields.into_request()
}

#[derive(Default)]
struct Fields {
    tenant_id: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
    seq: Option<u64>,
    ts_unix_ms: Option<i64>,
    event_type: Option<String>,
    payload: Option<Payload>,
    prev_hash: Option<Digest>,
    hash: Option<Digest>,
}

impl Fields {
    fn set(&mut self, name: &str, raw: &RawValue) -> Result<(), WireError> {
        if name == "payload" {
            let payload =
                Payload::from_text(raw.get()).map_err(|e| WireError(format!("payload: {e}")))?;
            self.payload = Some(payload);
            return Ok(());
        }
        let value = canon::parse(raw.get()).map_err(|e| WireError(format!("{name}: {e}")))?;
        let wrong = |want: &str| {
            WireError(format!(
                "{name}: expected {want}, got {}",
                json_kind(&value)
            ))
        };
        match name {
            "tenant_id" | "user_id" | "session_id" | "event_type" => {
                let Value::String(s) = &value else {
                    return Err(wrong("a string"));
                };
                let slot = match name {
                    "tenant_id" => &mut self.tenant_id,
                    "user_id" => &mut self.user_id,
                    "session_id" => &mut self.session_id,
                    _ => &mut self.event_type,
                };
                *slot = Some(s.clone());
            }
            "seq" => {
                self.seq = Some(
                    value
                        .as_u64()
                        .filter(|n| *n <= i64::MAX as u64)
                        .ok_or_else(|| wrong("a non-negative integer"))?,
                );
            }
            "ts_unix_ms" => {
                self.ts_unix_ms = Some(value.as_i64().ok_or_else(|| wrong("an integer"))?);
            }
            "prev_hash" | "hash" => {
                let digest = match &value {
                    Value::Null => None,
                    v => Some(Digest::from_json(v).map_err(|e| WireError(format!("{name}: {e}")))?),
                };
                if name == "hash" {
                    self.hash = digest;
                } else {
                    self.prev_hash = digest;
                }
            }
            other => {
                return Err(WireError(format!(
                    "unknown field {other:?} (an envelope has {FIELDS})"
                )));
            }
        }
        Ok(())
    }

    fn into_request(self) -> Result<AppendRequest, WireError> {
        let tenant_id = self
            .tenant_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WireError("tenant_id is required and must not be empty".into()))?;
        let session_id = self
            .session_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WireError("session_id is required and must not be empty".into()))?;
        let event_type = self
            .event_type
            .ok_or_else(|| WireError("event_type is required".into()))?
            .parse()
            .map_err(|e| WireError(format!("event_type: {e}")))?;
        let seal = match (self.seq, self.prev_hash, self.hash) {
            (None, None, None) => Seal::AtHead,
            (None, _, _) => {
                return Err(WireError(
                    "seq is required when prev_hash or hash is given".into(),
                ));
            }
            (Some(seq), prev_hash, None) => Seal::Expect { seq, prev_hash },
            (Some(seq), prev_hash, Some(hash)) => {
                if self.ts_unix_ms.is_none() {
                    return Err(WireError(
                        "ts_unix_ms is required when hash is given".into(),
                    ));
                }
                Seal::Client {
                    seq,
                    prev_hash,
                    hash,
                }
            }
        };
        Ok(AppendRequest {
            event: NewEvent {
                tenant_id,
                user_id: self.user_id.unwrap_or_default(),
                session_id,
                ts_unix_ms: self.ts_unix_ms.unwrap_or_else(now_unix_ms),
                event_type,
                payload: self.payload.unwrap_or_else(Payload::null),
            },
            seal,
            // Whatever a client sends, it is a client's envelope.
            origin: Origin::Client,
        })
    }
}

/// The members of a JSON object in order, refusing duplicates.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(String, Box<RawValue>)> = Vec::with_capacity(9);
        while let Some(name) = map.next_key::<String>()? {
            if members.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format_args!("duplicate field {name:?}")));
            }
            let raw = map.next_value()?;
            members.push((name, raw));
        }
        Ok(members)
    }
}

/// An envelope as the API shows it.
#[derive(Serialize)]
struct WireEnvelope<'a> {
    tenant_id: &'a str,
    user_id: &'a str,
    session_id: &'a str,
    seq: i64,
    ts_unix_ms: i64,
    event_type: &'a str,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_hash: Option<String>,
    hash: String,
}

impl StoredEnvelope {
    /// Renders the stored row in wire form: the payload's stored text verbatim,
    /// hashes as hex. A payload that is not JSON (a tampered row) is shown as a
    /// JSON string rather than hidden.
    pub fn to_wire_json(&self) -> Box<RawValue> {
        let fallback;
        let payload: &RawValue = match serde_json::from_str::<&RawValue>(&self.payload) {
            Ok(raw) => raw,
            Err(_) => {
                fallback = serde_json::value::to_raw_value(&self.payload)
                    .unwrap_or_else(|_| RawValue::NULL.to_owned());
                &fallback
            }
        };
        let wire = WireEnvelope {
            tenant_id: &self.tenant_id,
            user_id: &self.user_id,
            session_id: &self.session_id,
            seq: self.seq,
            ts_unix_ms: self.ts_unix_ms,
            event_type: &self.event_type,
            payload,
            prev_hash: self.prev_hash.as_deref().map(hex::encode),
            hash: hex::encode(&self.hash),
        };
        serde_json::value::to_raw_value(&wire).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }
}

#[cfg(test)]
mod tests;

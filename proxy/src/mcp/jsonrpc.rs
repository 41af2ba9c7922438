//! JSON-RPC 2.0 messages as MCP sends them over Streamable HTTP: one message
//! or a batch (a JSON array) per POST body.
//!
//! What is decided is what is forwarded. Every message keeps its parsed
//! value untouched (ids, params, unknown members) and the span of its text
//! in the body, so that what goes upstream is the bytes that were decided
//! (a batch with some calls refused is the admitted messages' own text,
//! joined); classification only reads it. A batch is inspected message by
//! message — a `tools/call` inside a batch is decided like a single one.
//!
//! Bodies a tool server could read differently from the sidecar are refused
//! whole with -32600 Invalid Request, never forwarded and never rewritten:
//!
//! - **Duplicate member names, at any depth** ([`crate::json`]). `serde_json`
//!   keeps the last of two equal names, many servers keep the first: the
//!   sidecar would decide `{"name":"echo","name":"delete_everything"}` as
//!   one tool while the server runs the other. RFC 8259 §4 calls such JSON
//!   "unpredictable". Refusing, rather than re-serialising the parsed value,
//!   keeps the forwarded bytes exactly the decided bytes: a re-serialised
//!   body would change what a client signed or hashed, and no real client
//!   sends duplicates.
//! - **A `tools/call` without an id** (a notification). It would run
//!   upstream with no answer to decide, replace or record. MCP's Streamable
//!   HTTP transport answers a notification it does not accept with an HTTP
//!   error status and a JSON-RPC error without an id: 400, `"id": null`.
//! - **Two requests of one batch with colliding ids.** Answers are matched
//!   to calls by id; two calls sharing one would have their results
//!   recorded under each other's tool. Ids collide when a server could take
//!   them for one: strings by their decoded text (`"a"` and `"\u0061"`),
//!   numbers by their value as a double (`1`, `1.0` and `1e0`, and two long
//!   integers that round to the same double — what a JavaScript server
//!   sees). A string never collides with a number. Responses (a client
//!   answering the server) carry the server's ids and are not compared.
//!
//! Ids are kept as the exact text sent ([`Id::raw`]): the sidecar's own
//! answers (denials, errors) echo a 30-digit id byte for byte, where a
//! parsed number would come back as `1.2345678901234568e29`.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use aegis_ledger::canon::StrictValue as Strict;

/// JSON-RPC error codes used by the proxy.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The upstream failed (refused, timed out, bad status, malformed answer).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The method exists but its params are wrong.
    pub const INVALID_PARAMS: i64 = -32602;
    /// MCP 2026-07-28: an `Mcp-Method`/`Mcp-Name` header disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A JSON-RPC id: a string or a number, kept as the exact text sent.
/// Two ids are equal when a server could take them for one (see the
/// module docs): `1` equals `1.0`, `"a"` equals `"\u0061"`.
#[derive(Clone)]
pub struct Id {
    raw: Box<RawValue>,
    key: Key,
}

/// What an id means, for comparing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// The bits of the id's value as a double (`-0` as `0`).
    Number(u64),
    String(String),
}

impl Id {
    /// `None` unless `raw` is a JSON string or number.
    fn from_raw(raw: &RawValue) -> Option<Id> {
        let text = raw.get();
        let key = match text.as_bytes().first()? {
            b'"' => Key::String(serde_json::from_str(text).ok()?),
            b'-' | b'0'..=b'9' => {
                let n: f64 = serde_json::from_str(text).ok()?;
                Key::Number(if n == 0.0 { 0 } else { n.to_bits() })
            }
            _ => return None,
        };
        Some(Id {
            raw: raw.to_owned(),
            key,
        })
    }

    /// The id of a parsed message (an upstream's answer); `None` unless a
    /// string or a number.
    pub fn from_value(v: &Value) -> Option<Id> {
        if !v.is_string() && !v.is_number() {
            return None;
        }
        Id::from_raw(&serde_json::value::to_raw_value(v).ok()?)
    }

    /// The id's exact text, as the client sent it.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// The id as a parsed value (for the ledger). A number beyond what a
    /// double holds exactly reads rounded here; answers use [`Id::raw`], and
    /// the ledger keeps the exact text too ([`Id::inexact_text`]).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.raw.get()).unwrap_or(Value::Null)
    }

    /// The id's exact text when [`Id::to_value`] does not write it back the
    /// same (`123456789012345678901234567890`, `1e0`); `None` for strings and
    /// numbers that round-trip. Recorded as `call_id_text`, so two long ids
    /// that round together stay apart in the ledger.
    pub fn inexact_text(&self) -> Option<&str> {
        let text = self.raw.get();
        if !matches!(self.key, Key::Number(_)) {
            return None;
        }
        let written = serde_json::to_string(&self.to_value()).ok()?;
        (written != text).then_some(text)
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.key == other.key
    }
}

impl Eq for Id {}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.raw.get())
    }
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Has a method and an id: expects a response.
    Request { id: Id, method: String },
    /// Has a method, no id.
    Notification { method: String },
    /// Has an id and a `result` or an `error` (a client answering the server).
    Response { id: Id },
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub value: Value,
    pub kind: Kind,
    /// Where the message's text is in the body: what is forwarded of it.
    pub span: Range<usize>,
}

/// A POST body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }
}

/// Why a body is not JSON-RPC; `code` is the JSON-RPC error to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub code: i64,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> ParseError {
    ParseError {
        code: codes::INVALID_REQUEST,
        message: message.into(),
    }
}

fn not_json(e: impl fmt::Display) -> ParseError {
    ParseError {
        code: codes::PARSE_ERROR,
        message: format!("the body is not JSON: {e}"),
    }
}

/// A `serde_json` error: a refused duplicate (or another data error) is an
/// invalid request; anything else means the text is not JSON.
fn from_serde(e: &serde_json::Error) -> ParseError {
    if e.is_data() {
        invalid(format!("the body is not acceptable JSON: {e}"))
    } else {
        not_json(e)
    }
}

/// Parses a POST body: one message, or a non-empty batch of them whose
/// requests' ids do not collide. Duplicate member names are refused at any
/// depth.
pub fn parse(body: &[u8]) -> Result<Body, ParseError> {
    let text = std::str::from_utf8(body).map_err(not_json)?;
    if !text.trim_start().starts_with('[') {
        return message(text, 0).map(Body::Single);
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| from_serde(&e))?;
    if items.is_empty() {
        return Err(invalid("an empty batch"));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        // The item borrows from `text`: its offset is where it starts there.
        let start = (item.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let m = message(item.get(), start)
            .map_err(|e| invalid(format!("batch item {i}: {}", e.message)))?;
        if let Kind::Request { id, .. } = &m.kind
            && !seen.insert(id.key.clone())
        {
            return Err(invalid(format!(
                "batch item {i}: its id {} is already used by another request of this batch",
                id.raw.get()
            )));
        }
        messages.push(m);
    }
    Ok(Body::Batch(messages))
}

/// One message from `text`, which starts at `offset` in the body.
fn message(text: &str, offset: usize) -> Result<Message, ParseError> {
    let span = offset..offset + text.len();
    if !text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        let Strict(_) = serde::Deserialize::deserialize(&mut de).map_err(|e| from_serde(&e))?;
        de.end().map_err(|e| from_serde(&e))?;
        return Err(invalid("a JSON-RPC message must be an object"));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let (members, id) = de
        .deserialize_map(MessageVisitor)
        .map_err(|e| from_serde(&e))?;
    de.end().map_err(|e| from_serde(&e))?;
    classify(members, id.as_deref(), span)
}

/// Reads a message's members, refusing duplicate names at any depth, and
/// keeps the exact text of its `id`.
struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = (Map<String, Value>, Option<Box<RawValue>>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Map::new();
        let mut id = None;
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                // Worded as the nested values' refusal is (the ledger's
                // `StrictValue`), so a client sees one message.
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {name:?}"
                )));
            }
            let value = if name == "id" {
                let raw: &'de RawValue = map.next_value()?;
                let Strict(value) = serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
                id = Some(raw.to_owned());
                value
            } else {
                map.next_value::<Strict>()?.0
            };
            members.insert(name, value);
        }
        Ok((members, id))
    }
}

fn classify(
    fields: Map<String, Value>,
    raw_id: Option<&RawValue>,
    span: Range<usize>,
) -> Result<Message, ParseError> {
    if fields.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    let id = match raw_id {
        None => None,
        Some(raw) => {
            Some(Id::from_raw(raw).ok_or_else(|| invalid("\"id\" must be a string or a number"))?)
        }
    };
    let kind = match (fields.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => Kind::Request {
            id,
            method: method.clone(),
        },
        (Some(Value::String(method)), None) if method == "tools/call" => {
            return Err(invalid(
                "a tools/call needs an \"id\": it is decided and answered, never run as a notification",
            ));
        }
        (Some(Value::String(method)), None) => Kind::Notification {
            method: method.clone(),
        },
        (Some(_), _) => return Err(invalid("\"method\" must be a string")),
        (None, Some(id)) if fields.contains_key("result") || fields.contains_key("error") => {
            Kind::Response { id }
        }
        (None, _) => {
            return Err(invalid(
                "a message needs a \"method\", or an \"id\" with a \"result\" or \"error\"",
            ));
        }
    };
    if let Some(params) = fields.get("params")
        && !params.is_object()
        && !params.is_array()
    {
        return Err(invalid("\"params\" must be an object or an array"));
    }
    Ok(Message {
        value: Value::Object(fields),
        kind,
        span,
    })
}

/// A `tools/call` request, read from its params.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolCall<'a> {
    pub id: &'a Id,
    pub name: &'a str,
    /// `params.arguments`, `null` when absent.
    pub arguments: &'a Value,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    fn params(&self) -> Option<&Map<String, Value>> {
        self.value.get("params").and_then(Value::as_object)
    }

    /// `Some` for a `tools/call` request: its tool name and arguments, or
    /// why it is malformed (a call without a string `name` is never forwarded).
    pub fn tool_call(&self) -> Option<Result<ToolCall<'_>, ParseError>> {
        let Kind::Request { id, method } = &self.kind else {
            return None;
        };
        if method != "tools/call" {
            return None;
        }
        let params = self.params();
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Some(Err(invalid("tools/call needs params.name, a string")));
        };
        let arguments = params
            .and_then(|p| p.get("arguments"))
            .unwrap_or(&Value::Null);
        if !arguments.is_null() && !arguments.is_object() {
            return Some(Err(invalid(
                "tools/call params.arguments must be an object",
            )));
        }
        Some(Ok(ToolCall {
            id,
            name,
            arguments,
        }))
    }
}

#[cfg(test)]
mod tests;

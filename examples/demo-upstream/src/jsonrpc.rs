//! JSON-RPC 2.0: reading a POST body, writing answers.
//!
//! Parsing borrows from the body (ids, methods and params are slices of it)
//! so the hot path allocates only the item list. Answers are written straight
//! into one output buffer, which may already hold an SSE event's prefix.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON that is not JSON.
pub(crate) const PARSE_ERROR: i32 = -32700;
/// JSON that is not a JSON-RPC message.
pub(crate) const INVALID_REQUEST: i32 = -32600;
/// A method this server does not have.
pub(crate) const METHOD_NOT_FOUND: i32 = -32601;
/// Params that do not fit the method (a missing or unknown tool name).
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// Our own failure.
pub(crate) const INTERNAL_ERROR: i32 = -32603;

/// One POST body.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    /// Sent as a JSON array: answered with an array (JSON mode).
    pub batch: bool,
    pub items: Vec<Item<'a>>,
}

/// One message of a body.
#[derive(Debug)]
pub(crate) enum Item<'a> {
    /// Has an `id`: gets an answer.
    Request(Request<'a>),
    /// No `id`: gets none.
    Notification { method: Cow<'a, str> },
    /// The client answering a server request (this server sends none):
    /// accepted and ignored.
    Response,
    /// A batch member that is not a valid message: answered with -32600.
    Invalid {
        id: Option<Cow<'a, RawValue>>,
        why: &'static str,
    },
}

/// A JSON-RPC request, borrowed from the body or owned (for an SSE task).
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    /// A string or a number, kept exactly as sent.
    pub id: Cow<'a, RawValue>,
    pub method: Cow<'a, str>,
    /// An object or an array, when present and not null.
    pub params: Option<Cow<'a, RawValue>>,
}

impl Item<'_> {
    /// Whether this item gets an answer (a response or an error).
    pub(crate) fn wants_answer(&self) -> bool {
        matches!(self, Item::Request(_) | Item::Invalid { .. })
    }

    /// The same item, owning its data (to move into a spawned task).
    pub(crate) fn into_owned(self) -> Item<'static> {
        match self {
            Item::Request(r) => Item::Request(Request {
                id: Cow::Owned(r.id.into_owned()),
                method: Cow::Owned(r.method.into_owned()),
                params: r.params.map(|p| Cow::Owned(p.into_owned())),
            }),
            Item::Notification { method } => Item::Notification {
                method: Cow::Owned(method.into_owned()),
            },
            Item::Response => Item::Response,
            Item::Invalid { id, why } => Item::Invalid {
                id: id.map(|id| Cow::Owned(id.into_owned())),
                why,
            },
        }
    }
}

/// Why a body cannot be answered message by message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    /// Not JSON at all: -32700.
    #[error("{0}")]
    NotJson(serde_json::Error),
    /// JSON, but not a message or a non-empty batch: -32600.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Reads a body: one message or a batch.
pub(crate) fn parse(body: &[u8]) -> Result<Incoming<'_>, ParseError> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let raw: Vec<&RawValue> = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
            if raw.is_empty() {
                return Err(ParseError::Invalid("an empty batch"));
            }
            let items = raw.into_iter().map(item).collect();
            Ok(Incoming { batch: true, items })
        }
        Some(b'{') => match serde_json::from_slice::<RawMessage<'_>>(body) {
            Ok(raw) => match classify(raw) {
                Item::Invalid { why, .. } => Err(ParseError::Invalid(why)),
                item => Ok(Incoming {
                    batch: false,
                    items: vec![item],
                }),
            },
            Err(e) if e.is_data() => Err(ParseError::Invalid("not a JSON-RPC message")),
            Err(e) => Err(ParseError::NotJson(e)),
        },
        _ => match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => Err(ParseError::Invalid("not an object or an array")),
            Err(e) => Err(ParseError::NotJson(e)),
        },
    }
}

/// One batch member (already known to be well-formed JSON).
fn item(raw: &RawValue) -> Item<'_> {
    if !raw.get().starts_with('{') {
        return Item::Invalid {
            id: None,
            why: "a batch member that is not an object",
        };
    }
    match serde_json::from_str::<RawMessage<'_>>(raw.get()) {
        Ok(message) => classify(message),
        Err(_) => Item::Invalid {
            id: None,
            why: "not a JSON-RPC message",
        },
    }
}

/// What serde reads of a message: members as slices of the body.
#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    error: Option<&'a RawValue>,
}

fn classify(raw: RawMessage<'_>) -> Item<'_> {
    let id = raw.id.filter(|id| is_valid_id(id));
    let invalid = |why| Item::Invalid {
        id: id.map(Cow::Borrowed),
        why,
    };
    if raw.jsonrpc.as_deref() != Some("2.0") {
        return invalid("`jsonrpc` must be \"2.0\"");
    }
    if raw.id.is_some() && id.is_none() {
        return invalid("`id` must be a string or a number");
    }
    let params = match raw.params {
        Some(p) if p.get() == "null" => None,
        Some(p) if p.get().starts_with(['{', '[']) => Some(Cow::Borrowed(p)),
        Some(_) => return invalid("`params` must be an object or an array"),
        None => None,
    };
    match (raw.method, id) {
        (Some(method), Some(id)) => Item::Request(Request {
            id: Cow::Borrowed(id),
            method,
            params,
        }),
        (Some(method), None) => Item::Notification { method },
        (None, Some(_)) if raw.result.is_some() || raw.error.is_some() => Item::Response,
        (None, _) => invalid("a message needs a `method`, or a `result` or `error`"),
    }
}

fn is_valid_id(id: &RawValue) -> bool {
    id.get()
        .as_bytes()
        .first()
        .is_some_and(|b| *b == b'"' || *b == b'-' || b.is_ascii_digit())
}

/// A member that is present, kept raw (`null` included).
fn raw_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A string member, borrowed unless it holds escapes.
fn borrowed_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    d.deserialize_str(Text).map(Some)
}

/// Appends `{"jsonrpc":"2.0","id":…,"result":…}`.
pub(crate) fn write_result(out: &mut Vec<u8>, id: &RawValue, result: &impl Serialize) {
    let start = out.len();
    open(out, Some(id));
    out.extend_from_slice(b",\"result\":");
    if serde_json::to_writer(&mut *out, result).is_err() {
        // Our result types always serialise; should one not, say so.
        out.truncate(start);
        write_error(
            out,
            Some(id),
            INTERNAL_ERROR,
            "the result could not be serialised",
        );
        return;
    }
    out.push(b'}');
}

/// Appends a result that is already JSON text.
pub(crate) fn write_raw_result(out: &mut Vec<u8>, id: &RawValue, result: &str) {
    open(out, Some(id));
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result.as_bytes());
    out.push(b'}');
}

/// Appends `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}`
/// (`id: null` when there is none).
pub(crate) fn write_error(out: &mut Vec<u8>, id: Option<&RawValue>, code: i32, message: &str) {
    #[derive(Serialize)]
    struct ErrorObject<'a> {
        code: i32,
        message: &'a str,
    }
    open(out, id);
    out.extend_from_slice(b",\"error\":");
    if serde_json::to_writer(&mut *out, &ErrorObject { code, message }).is_err() {
        // A struct of an integer and a string always serialises.
        out.extend_from_slice(b"{\"code\":-32603,\"message\":\"internal error\"}");
    }
    out.push(b'}');
}

/// Appends a notification `{"jsonrpc":"2.0","method":…,"params":…}`.
pub(crate) fn write_notification(out: &mut Vec<u8>, method: &str, params: &impl Serialize) {
    #[derive(Serialize)]
    struct Notification<'a, P> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a P,
    }
    let message = Notification {
        jsonrpc: "2.0",
        method,
        params,
    };
    if serde_json::to_writer(&mut *out, &message).is_err() {
        // Our params types always serialise; an empty object keeps it valid.
        out.extend_from_slice(b"{}");
    }
}

fn open(out: &mut Vec<u8>, id: Option<&RawValue>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.map_or("null", RawValue::get).as_bytes());
}

#[cfg(test)]
#[path = "jsonrpc_tests.rs"]
mod tests;

//! JSON-RPC 2.0 messages as MCP sends them over Streamable HTTP: one message
//! or a batch (a JSON array) per POST body.
//!
//! Every message keeps its parsed value untouched (ids, params, unknown
//! members), so that what is forwarded is what was received; classification
//! only reads it. A batch is inspected message by message — a `tools/call`
//! inside a batch is decided like a single one.

use serde_json::{Map, Value};

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

/// A JSON-RPC id: a string or a number, kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Number(serde_json::Number),
    String(String),
}

impl Id {
    fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::Number(n) => Some(Id::Number(n.clone())),
            Value::String(s) => Some(Id::String(s.clone())),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::Number(n.clone()),
            Id::String(s) => Value::String(s.clone()),
        }
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

/// Parses a POST body: one message, or a non-empty batch of them.
pub fn parse(body: &[u8]) -> Result<Body, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError {
        code: codes::PARSE_ERROR,
        message: format!("the body is not JSON: {e}"),
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(invalid("an empty batch")),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                classify(item).map_err(|e| invalid(format!("batch item {i}: {}", e.message)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Body::Batch),
        other => classify(other).map(Body::Single),
    }
}

fn classify(value: Value) -> Result<Message, ParseError> {
    let Value::Object(fields) = &value else {
        return Err(invalid("a JSON-RPC message must be an object"));
    };
    if fields.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    let id = match fields.get("id") {
        None => None,
        Some(v) => {
            Some(Id::from_value(v).ok_or_else(|| invalid("\"id\" must be a string or a number"))?)
        }
    };
    let kind = match (fields.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => Kind::Request {
            id,
            method: method.clone(),
        },
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
    Ok(Message { value, kind })
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn one(body: &str) -> Message {
        match parse(body.as_bytes()).unwrap() {
            Body::Single(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_are_classified_and_kept_as_sent() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/w"},"_meta":{"progressToken":1}}}"#,
        );
        let call = m.tool_call().unwrap().unwrap();
        assert_eq!(
            (call.name, call.arguments),
            ("read_file", &json!({"path": "/w"}))
        );
        assert_eq!(call.id, &Id::Number(7.into()));
        assert_eq!(
            m.value["params"]["_meta"],
            json!({"progressToken": 1}),
            "unknown members kept"
        );

        let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(
            n.kind,
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert!(n.tool_call().is_none());
        let r = one(r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#);
        assert_eq!(
            r.kind,
            Kind::Response {
                id: Id::String("s-1".into())
            }
        );
        let list = one(r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#);
        assert_eq!(list.method(), Some("tools/list"));
        assert!(list.tool_call().is_none());
    }

    #[test]
    fn batches_are_inspected_message_by_message() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                       {"jsonrpc":"2.0","method":"notifications/progress","params":{}},
                       {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b","arguments":{}}}]"#;
        let Body::Batch(messages) = parse(body.as_bytes()).unwrap() else {
            panic!()
        };
        let calls: Vec<&str> = messages
            .iter()
            .filter_map(|m| m.tool_call())
            .map(|c| c.unwrap().name)
            .collect();
        assert_eq!(calls, ["a", "b"]);
    }

    #[test]
    fn bad_bodies_get_the_right_code() {
        let cases = [
            ("{", codes::PARSE_ERROR, "not JSON"),
            ("[]", codes::INVALID_REQUEST, "empty batch"),
            ("7", codes::INVALID_REQUEST, "must be an object"),
            (
                r#"{"id":1,"method":"x"}"#,
                codes::INVALID_REQUEST,
                "jsonrpc",
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                codes::INVALID_REQUEST,
                "jsonrpc",
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
                codes::INVALID_REQUEST,
                "\"id\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                codes::INVALID_REQUEST,
                "\"method\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1}"#,
                codes::INVALID_REQUEST,
                "needs a \"method\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
                codes::INVALID_REQUEST,
                "\"params\"",
            ),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"x"},5]"#,
                codes::INVALID_REQUEST,
                "batch item 1",
            ),
        ];
        for (body, code, needle) in cases {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, code, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }

    #[test]
    fn malformed_tool_calls_are_errors_not_forwards() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
        ] {
            assert!(one(body).tool_call().unwrap().is_err(), "{body}");
        }
    }
}

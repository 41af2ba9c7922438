//! The `tools/call` the MCP end-to-end bench sends, and how its answer is
//! checked.

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use serde_json::Value;

use super::{Answering, Endpoint};
use crate::load::{Answer, Workload};

/// `tools/call echo {text}` under the stateless protocol revision (no
/// `initialize`, no MCP session), one sidecar session per connection
/// (`x-aegis-session-id: {session_prefix}-{conn}`). Each call's text is
/// different, so loop detection never sees two identical calls.
#[derive(Debug)]
pub struct EchoCall {
    host: HeaderValue,
    path: String,
    session_prefix: String,
    answering: Answering,
}

impl EchoCall {
    pub fn new(endpoint: &Endpoint, answering: Answering, session_prefix: String) -> EchoCall {
        EchoCall {
            host: HeaderValue::from_str(&endpoint.addr.to_string())
                .expect("a socket address is a valid header value"),
            path: endpoint.path.clone(),
            session_prefix,
            answering,
        }
    }

    fn text(conn: usize, seq: u64) -> String {
        format!("bench call {conn}-{seq}")
    }
}

impl Workload for EchoCall {
    fn request(&self, conn: usize, seq: u64) -> Request<Full<Bytes>> {
        let text = EchoCall::text(conn, seq);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{seq},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
        );
        super::stateless_post(
            &self.path,
            &self.host,
            &format!("{}-{conn}", self.session_prefix),
            body,
        )
    }

    fn check(&self, conn: usize, seq: u64, answer: &Answer) -> Result<(), &'static str> {
        if !answer.status.is_success() {
            return Err("http_status");
        }
        let content_type = answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let message = match self.answering {
            Answering::Json if content_type.starts_with("application/json") => {
                serde_json::from_slice::<Value>(&answer.body).map_err(|_| "not_json")?
            }
            Answering::Sse if content_type.starts_with("text/event-stream") => {
                sse_answer(&answer.body, seq)?
            }
            _ => return Err("content_type"),
        };
        if message["id"].as_u64() != Some(seq) {
            return Err("wrong_id");
        }
        if message.get("error").is_some() {
            return Err("jsonrpc_error");
        }
        let result = &message["result"];
        if result["isError"].as_bool() == Some(true) {
            return Err(if result["_meta"]["aegis/decision"].is_object() {
                "denied"
            } else {
                "tool_error"
            });
        }
        let echoed = result["content"][0]["text"].as_str().unwrap_or("");
        if !echoed.contains(&EchoCall::text(conn, seq)) {
            return Err("wrong_result");
        }
        Ok(())
    }
}

/// The JSON-RPC message answering `id` among an SSE body's events.
fn sse_answer(body: &[u8], id: u64) -> Result<Value, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "not_utf8")?;
    let normalised = text.replace("\r\n", "\n");
    for event in normalised.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() || data.iter().all(|d| d.is_empty()) {
            continue;
        }
        let message: Value = serde_json::from_str(&data.join("\n")).map_err(|_| "not_json")?;
        if message["id"].as_u64() == Some(id)
            && (message.get("result").is_some() || message.get("error").is_some())
        {
            return Ok(message);
        }
    }
    Err("no_answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_answer_among_sse_events() {
        let body = b"id: 1\ndata:\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        let message = sse_answer(body, 7).expect("answer found");
        assert_eq!(message["id"], 7);
        assert_eq!(sse_answer(body, 8), Err("no_answer"));
    }
}

//! The `tools/call`s of the `scenarios` bench: `big`, whose result is a
//! given number of bytes, and a call of a tool the manifest does not
//! declare, which the sidecar refuses. Each answer is checked in full.

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::answer::{self, Shape};
use super::{Answering, Endpoint};
use crate::load::{Answer, Workload};

/// How many different sizes a session's `big` calls cycle through. Loop
/// detection denies the third identical call (same tool, same arguments)
/// within the last 20, and `big` takes no argument but its size: so call
/// `seq` asks for `bytes − seq mod 16` (a 1 KiB call for 1,009–1,024
/// bytes), and no size repeats more than twice in any 20 calls.
pub const SIZE_SPREAD: u64 = 16;

/// The text a refusal's content starts with (the sidecar's `answers.rs`).
const REFUSAL_PREFIX: &str = "Denied by policy";

/// The undeclared tool called; the demo server has it, the manifest not.
const UNDECLARED_TOOL: &str = "delete_everything";

/// What a [`ToolCall`] asks for, and so what its answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallKind {
    /// `big {"bytes": n}`, n up to `bytes` (see [`SIZE_SPREAD`]): a
    /// successful result of exactly n bytes of `x`.
    Big { bytes: u64 },
    /// `delete_everything {"call": "<conn>-<seq>"}`: refused by policy —
    /// HTTP 200, a result with `isError: true` and a text starting
    /// "Denied by policy". (The arguments differ per call, so the refusal
    /// is always for the undeclared tool, never for a loop.)
    Undeclared,
}

/// `tools/call` under the stateless protocol revision (no `initialize`, no
/// MCP session), one sidecar session per connection
/// (`x-aegis-session-id: {session_prefix}-{conn}`).
#[derive(Debug)]
pub struct ToolCall {
    host: HeaderValue,
    path: String,
    session_prefix: String,
    answering: Answering,
    kind: ToolCallKind,
}

impl ToolCall {
    /// Calls to `endpoint`, whose tool server answers with `answering`.
    pub fn new(
        endpoint: &Endpoint,
        answering: Answering,
        kind: ToolCallKind,
        session_prefix: String,
    ) -> ToolCall {
        ToolCall {
            host: HeaderValue::from_str(&endpoint.addr.to_string())
                .expect("a socket address is a valid header value"),
            path: endpoint.path.clone(),
            session_prefix,
            answering,
            kind,
        }
    }

    /// The size call `seq` asks `big` for.
    pub fn big_bytes(bytes: u64, seq: u64) -> u64 {
        bytes.saturating_sub(seq % SIZE_SPREAD)
    }

    fn body(&self, conn: usize, seq: u64) -> String {
        let (name, arguments) = match self.kind {
            ToolCallKind::Big { bytes } => (
                "big",
                format!(r#"{{"bytes":{}}}"#, ToolCall::big_bytes(bytes, seq)),
            ),
            ToolCallKind::Undeclared => (UNDECLARED_TOOL, format!(r#"{{"call":"{conn}-{seq}"}}"#)),
        };
        format!(
            r#"{{"jsonrpc":"2.0","id":{seq},"method":"tools/call","params":{{"name":"{name}","arguments":{arguments}}}}}"#
        )
    }
}

impl Workload for ToolCall {
    fn request(&self, conn: usize, seq: u64) -> Request<Full<Bytes>> {
        super::stateless_post(
            &self.path,
            &self.host,
            &format!("{}-{conn}", self.session_prefix),
            self.body(conn, seq),
        )
    }

    fn check(&self, _conn: usize, seq: u64, answer: &Answer) -> Result<(), &'static str> {
        if answer.status != StatusCode::OK {
            return Err("http_status");
        }
        let shape = answer::shape(answer).ok_or("content_type")?;
        let expected = match self.answering {
            Answering::Json => Shape::Json,
            Answering::Sse => Shape::Sse,
        };
        // A refusal is the sidecar's own answer: JSON whatever the tool
        // server would have sent.
        if shape != expected && self.kind != ToolCallKind::Undeclared {
            return Err("content_type");
        }
        let message = answer::message(&answer.body, shape, seq)?;
        if message.id != Some(seq) {
            return Err("wrong_id");
        }
        if message.error.is_some() {
            return Err("jsonrpc_error");
        }
        let result = message.result.ok_or("no_result")?;
        let text = result.text();
        match self.kind {
            ToolCallKind::Big { bytes } => {
                if result.is_error {
                    return Err(if text.starts_with(REFUSAL_PREFIX) {
                        "denied"
                    } else {
                        "tool_error"
                    });
                }
                if text.len() as u64 != ToolCall::big_bytes(bytes, seq) {
                    return Err("wrong_size");
                }
                if !text.bytes().all(|b| b == b'x') {
                    return Err("wrong_result");
                }
            }
            ToolCallKind::Undeclared => {
                if !result.is_error || !text.starts_with(REFUSAL_PREFIX) {
                    return Err("not_refused");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use http::header;

    fn answer(content_type: &'static str, body: String) -> Answer {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Answer {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body),
        }
    }

    fn call(answering: Answering, kind: ToolCallKind) -> ToolCall {
        let endpoint = Endpoint {
            addr: "127.0.0.1:9".parse().unwrap(),
            path: "/mcp/json".to_owned(),
        };
        ToolCall::new(&endpoint, answering, kind, "s".to_owned())
    }

    fn result(id: u64, is_error: bool, text: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":{is_error}}}}}"#
        )
    }

    #[test]
    fn no_size_repeats_three_times_in_twenty_calls() {
        let sizes: Vec<u64> = (0..100).map(|seq| ToolCall::big_bytes(1024, seq)).collect();
        assert_eq!(sizes[0], 1024);
        assert!(sizes.iter().all(|&n| (1009..=1024).contains(&n)));
        for window in sizes.windows(20) {
            for n in window {
                assert!(window.iter().filter(|&m| m == n).count() <= 2);
            }
        }
    }

    #[test]
    fn a_big_answer_must_have_the_exact_size() {
        let big = call(Answering::Json, ToolCallKind::Big { bytes: 20 });
        let body = big.body(0, 3);
        assert!(
            body.contains(r#""name":"big","arguments":{"bytes":17}"#),
            "{body}"
        );
        let good = answer("application/json", result(3, false, &"x".repeat(17)));
        assert_eq!(big.check(0, 3, &good), Ok(()));
        let short = answer("application/json", result(3, false, &"x".repeat(16)));
        assert_eq!(big.check(0, 3, &short), Err("wrong_size"));
        assert_eq!(big.check(0, 4, &good), Err("wrong_id"));
        let sse = answer(
            "text/event-stream",
            format!("data: {}\n\n", result(3, false, "x")),
        );
        assert_eq!(big.check(0, 3, &sse), Err("content_type"));
        let denied = answer(
            "application/json",
            result(3, true, "Denied by policy (X): no."),
        );
        assert_eq!(big.check(0, 3, &denied), Err("denied"));
    }

    #[test]
    fn an_undeclared_call_must_be_refused() {
        let deny = call(Answering::Sse, ToolCallKind::Undeclared);
        assert!(deny.body(2, 5).contains(r#""arguments":{"call":"2-5"}"#));
        let refused = answer(
            "application/json",
            result(5, true, "Denied by policy (TOOL_NOT_DECLARED): no."),
        );
        assert_eq!(deny.check(2, 5, &refused), Ok(()));
        let ran = answer(
            "application/json",
            result(5, false, "deleted nothing (demo)"),
        );
        assert_eq!(deny.check(2, 5, &ran), Err("not_refused"));
        let failed = answer("application/json", result(5, true, "invalid arguments"));
        assert_eq!(deny.check(2, 5, &failed), Err("not_refused"));
    }
}

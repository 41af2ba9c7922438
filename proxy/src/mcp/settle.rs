//! Settling a forwarded request once its answer (or its failure) is known:
//! a call's result recorded (`TOOL_RESULT`: the session's next decision
//! waits until it is durable, so its taint applies to the next call), cut
//! at the decision's `timeout_ms`, withheld over its `max_output_bytes`, or
//! its failure recorded (`ERROR_RAISED`) and answered as a JSON-RPC error;
//! a read's content recorded before the agent gets it ([`super::inputs`]).

use std::sync::Arc;
use std::time::Instant;

use aegis_ledger::EventType;
use bytes::Bytes;
use serde_json::{Value, json};

use super::McpState;
use super::answers::{self, Outgoing};
use super::error::{Failure, UpstreamKind};
use super::exchange::{Call, Exchange};
use super::inputs::{self, Read};
use super::jsonrpc::Id;
use super::sse::SseEvent;
use super::upstream::Upstream;
use crate::gate::record::{self, Answered};
use crate::identity::Identity;
use crate::results::Answer;

/// How a forwarded call ended.
#[derive(Debug)]
pub enum Ending {
    /// The upstream's answer: the message, its size in bytes and SHA-256.
    Answered {
        message: Value,
        size: usize,
        sha256: [u8; 32],
    },
    /// An answer too large to hold or pass: its size, SHA-256 and first bytes.
    TooLarge {
        size: usize,
        sha256: [u8; 32],
        head: Bytes,
    },
    /// Cut at the decision's `timeout_ms`.
    TimedOut,
    /// The upstream failed: how, and what happened (for the log and ledger).
    Failed { kind: UpstreamKind, detail: String },
}

impl Ending {
    /// The ending of a call whose answer was an event too large to inspect.
    pub fn too_large(event: &SseEvent) -> Ending {
        Ending::TooLarge {
            size: event.data_len,
            sha256: event.data_sha256,
            head: Bytes::copy_from_slice(&event.data[..event.data.len().min(64 * 1024)]),
        }
    }
}

/// Who and where a forwarded request was for: what its ending is recorded
/// against (the POST's exchange, or after its stream ended early, the
/// resumed stream that brought the answer).
#[derive(Debug, Clone, Copy)]
pub struct Recorder<'a> {
    pub state: &'a Arc<McpState>,
    pub upstream: &'a Upstream,
    pub identity: &'a Identity,
    pub started: Instant,
}

impl<'a> Recorder<'a> {
    pub fn of(exchange: &'a Exchange) -> Recorder<'a> {
        Recorder {
            state: &exchange.state,
            upstream: &exchange.upstream,
            identity: &exchange.identity,
            started: exchange.started,
        }
    }

    fn answered<'b>(&self, id: &'b Id, call_id: &'b Value) -> Answered<'b>
    where
        'a: 'b,
    {
        Answered {
            call_id,
            call_id_text: id.inexact_text(),
            upstream: self.upstream.name.as_str(),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Records how `call` ended and returns what the agent gets instead of
    /// the upstream's answer, if anything.
    pub async fn call(&self, call: &Call, ending: Ending) -> Option<Outgoing> {
        let upstream = self.upstream.name.as_str();
        let call_id = call.id.to_value();
        let mut payload = record::call_result(
            self.answered(&call.id, &call_id),
            &call.tool_name,
            call.proposal_seq,
        );
        // What the record keeps of the answer (`mcp.results`); the agent's
        // answer is never changed by it.
        let config = &self.state.config;
        let (results, capture) = (&config.results, config.result_capture_bytes);
        let (event_type, result_label, replacement) = match ending {
            Ending::Answered {
                message,
                size,
                sha256,
            } => {
                let rpc_error = message.get("error");
                let is_error = rpc_error.is_some()
                    || message
                        .get("result")
                        .and_then(|r| r.get("isError"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                payload["is_error"] = json!(is_error);
                payload["size_bytes"] = json!(size);
                payload["sha256"] = json!(hex(&sha256));
                let over = u64::try_from(size).unwrap_or(u64::MAX) > call.max_output_bytes;
                let recorded = message.get("result").or(rpc_error).unwrap_or(&Value::Null);
                let answer = Answer::Whole {
                    value: recorded,
                    size,
                };
                results.record(&call.tool_name, answer, capture, &mut payload);
                let live = self.state.manifests.current();
                let trust = live.as_deref().map(|l| &l.manifest.policy.trusted_content);
                inputs::describe_tool_result(upstream, recorded, trust, &mut payload);
                if over {
                    payload["withheld"] = json!(true);
                    let text = format!(
                        "Result withheld by policy: the tool's answer is {size} bytes, over the manifest's limit of {} bytes (max_output_bytes).",
                        call.max_output_bytes
                    );
                    let answer = answers::tool_error(&call.id, text, meta(call, "withheld"));
                    (EventType::ToolResult, "withheld", Some(answer))
                } else {
                    let label = if is_error { "tool_error" } else { "ok" };
                    (EventType::ToolResult, label, None)
                }
            }
            Ending::TooLarge { size, sha256, head } => {
                payload["is_error"] = json!(false);
                payload["size_bytes"] = json!(size);
                payload["sha256"] = json!(hex(&sha256));
                payload["withheld"] = json!(true);
                results.record(&call.tool_name, Answer::Head(&head), capture, &mut payload);
                let text = format!(
                    "Result withheld by policy: the tool's answer is {size} bytes, over the limit of {} bytes.",
                    call.max_output_bytes.min(config.max_response_bytes as u64)
                );
                let answer = answers::tool_error(&call.id, text, meta(call, "withheld"));
                (EventType::ToolResult, "withheld", Some(answer))
            }
            Ending::TimedOut => {
                let ms = call.timeout.as_millis();
                payload["error"] = json!("timeout");
                payload["message"] = json!(format!(
                    "no answer within {ms} ms (timeout_ms); the call was cut"
                ));
                (EventType::ErrorRaised, "timeout", Some(timed_out(call)))
            }
            Ending::Failed { kind, detail } => {
                payload["error"] = json!(kind.as_str());
                payload["message"] = json!(detail);
                let failure = Failure::Upstream {
                    upstream: upstream.to_owned(),
                    kind,
                };
                let answer = answers::error(
                    Some(&call.id),
                    failure.code(),
                    &format!("the tool server failed: {}", kind.for_agent()),
                    Some(
                        json!({"upstream": upstream, "kind": kind.as_str(), "tool": call.tool_name}),
                    ),
                );
                (EventType::ErrorRaised, kind.as_str(), Some(answer))
            }
        };
        let seq = match call.proposal_seq {
            Some(proposal_seq) => {
                self.state
                    .gate
                    .record_result(
                        self.identity,
                        proposal_seq,
                        &call.tool_name,
                        event_type,
                        payload,
                    )
                    .await
            }
            None => None,
        };
        self.state
            .metrics
            .mcp
            .tool_results
            .with_label_values(&[upstream, result_label])
            .inc();
        tracing::info!(
            upstream,
            tool = %call.tool_name,
            session = %self.identity.session_id,
            outcome = call.outcome,
            reason = call.reason,
            result = result_label,
            decision_seq = call.decision_seq,
            seq,
            latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "tool call"
        );
        replacement
    }

    /// Records a read's answer (`TOOL_RESULT` with `source`, trusted or
    /// not by the live manifest) before the agent gets it. The answer is
    /// never changed.
    pub async fn read(&self, read: &Read, message: &Value, size: usize, sha256: [u8; 32]) {
        let upstream = self.upstream.name.as_str();
        let rpc_error = message.get("error");
        let answer = message.get("result").or(rpc_error).unwrap_or(&Value::Null);
        let call_id = read.id.to_value();
        let mut payload = record::read_result(
            self.answered(&read.id, &call_id),
            rpc_error.is_some(),
            size,
            &hex(&sha256),
        );
        let live = self.state.manifests.current();
        let trust = live.as_deref().map(|l| &l.manifest.policy.trusted_content);
        read.describe(upstream, answer, trust, &mut payload);
        let trusted = payload["trusted"] == json!(true);
        let config = &self.state.config;
        config.results.record(
            read.source.method(),
            Answer::Whole {
                value: answer,
                size,
            },
            config.result_capture_bytes,
            &mut payload,
        );
        let seq = match self
            .state
            .gate
            .record(self.identity, EventType::ToolResult, payload)
            .await
        {
            Ok(appended) => Some(appended.seq),
            Err(e) => {
                tracing::error!(error = %e, source = read.source.method(), "a read's answer could not be recorded");
                None
            }
        };
        tracing::info!(
            upstream,
            source = read.source.method(),
            session = %self.identity.session_id,
            trusted,
            seq,
            "content read"
        );
    }
}

/// What the agent gets for a call cut at its `timeout_ms`.
pub fn timed_out(call: &Call) -> Outgoing {
    let ms = call.timeout.as_millis();
    let text = format!(
        "Timed out by policy: the tool did not answer within {ms} ms (timeout_ms); the call was cut."
    );
    answers::tool_error(&call.id, text, meta(call, "timeout"))
}

fn meta(call: &Call, what: &str) -> Value {
    json!({
        "outcome": call.outcome,
        "reason": call.reason,
        "seq": call.decision_seq,
        "manifest_sha256": call.manifest_sha256,
        "enforcement": what,
    })
}

/// What a request gets in place of an answer too large to inspect.
pub fn too_large_error(upstream: &str, id: &Id) -> Outgoing {
    Failure::Upstream {
        upstream: upstream.to_owned(),
        kind: UpstreamKind::TooLarge,
    }
    .answer(Some(id))
}

impl Exchange {
    /// Settles every call still waiting with `ending`.
    pub async fn settle_rest(&mut self, ending: impl Fn() -> Ending) -> Vec<Outgoing> {
        let calls = std::mem::take(&mut self.calls);
        let mut out = Vec::new();
        for call in &calls {
            if let Some(answer) = Recorder::of(self).call(call, ending()).await {
                out.push(answer);
            }
        }
        out
    }

    /// Settles `call` with `ending`.
    pub async fn settle(&self, call: &Call, ending: Ending) -> Option<Outgoing> {
        Recorder::of(self).call(call, ending).await
    }

    /// Answers for forwarded requests that are not tool calls, when the
    /// upstream failed before answering.
    pub fn failed_requests(&self, kind: UpstreamKind) -> Vec<Outgoing> {
        let failure = Failure::Upstream {
            upstream: self.upstream.name.clone(),
            kind,
        };
        self.forwarded_requests
            .iter()
            .filter(|id| !self.calls.iter().any(|c| &c.id == *id))
            .map(|id| failure.answer(Some(id)))
            .collect()
    }

    /// The upstream failed before answering: every forwarded call is
    /// settled (as timed out when `kind` is a call's deadline passing),
    /// every forwarded request gets a JSON-RPC error.
    pub async fn fail(
        mut self,
        kind: UpstreamKind,
        detail: String,
        call_deadline: bool,
    ) -> http::Response<super::body::ProxyBody> {
        tracing::warn!(upstream = %self.upstream.name, kind = kind.as_str(), %detail, "upstream failed");
        let mut out = self.failed_requests(kind);
        let rest = self
            .settle_rest(|| {
                if call_deadline {
                    Ending::TimedOut
                } else {
                    Ending::Failed {
                        kind,
                        detail: detail.clone(),
                    }
                }
            })
            .await;
        out.extend(rest);
        if out.is_empty() && self.local.is_empty() {
            return Failure::Upstream {
                upstream: self.upstream.name.clone(),
                kind,
            }
            .response(None);
        }
        self.json_answer(out)
    }
}

/// Whether `data` (the first bytes of a JSON-RPC message) has an `"id"`
/// member whose value is `id`'s exact text: `"id"`, optional whitespace, `:`,
/// optional whitespace, the id, then a delimiter (so `1` is not `12`).
pub fn mentions_id(data: &[u8], id: &Id) -> bool {
    let raw = id.raw().get().as_bytes();
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut from = 0;
    while let Some(at) = find(&data[from..], b"\"id\"") {
        let mut i = from + at + 4;
        from = i;
        while data.get(i).is_some_and(is_ws) {
            i += 1;
        }
        if data.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while data.get(i).is_some_and(is_ws) {
            i += 1;
        }
        if data[i..].starts_with(raw)
            && data
                .get(i + raw.len())
                .is_none_or(|b| is_ws(b) || matches!(b, b',' | b'}'))
        {
            return true;
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(text: &str) -> Id {
        Id::from_value(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
    }

    #[test]
    fn an_oversized_events_id_is_found_by_its_exact_text() {
        let data = br#"{"jsonrpc":"2.0", "id" : 12 ,"result":{"content":[{"text":"xxxx"#;
        assert!(mentions_id(data, &id("12")));
        assert!(!mentions_id(data, &id("1")), "1 is not 12");
        assert!(!mentions_id(data, &id("\"12\"")));
        assert!(mentions_id(br#"{"id":"a-b","result":1}"#, &id("\"a-b\"")));
        assert!(mentions_id(br#"{"result":1,"id":7}"#, &id("7")));
        // A member named like it, or a value quoting it, is not the id.
        assert!(!mentions_id(br#"{"idx":7,"x":"\"id\":7"#, &id("8")));
        assert!(!mentions_id(br#"{"id""#, &id("7")));
        assert!(!mentions_id(b"", &id("7")));
    }
}

//! The session reducer: what a session has consumed, derived only from its
//! envelopes, deterministically (the snapshot fields of `README.md`, "The
//! ledger"; `ARCHITECTURE.md`, "The ledger").
//!
//! - A **step** is one agent action — a proposed tool call, a model call, a
//!   memory read or write, a handoff — not one ledger row: the sidecar's own
//!   bookkeeping (ALLOWED, RESULT, ...) never counts.
//! - **Tool calls consumed** are proposals that were not refused: each
//!   `TOOL_CALL_PROPOSED` counts, less each `TOOL_CALL_DENIED` and
//!   `APPROVAL_REQUESTED` (those calls never ran). With `max_tool_calls: 12`
//!   twelve calls can be forwarded; the decision for the thirteenth sees 12.
//!   A call that runs on an approval is a proposal of its own and counts.
//! - **Wall time** runs from the session's first envelope.
//! - **Taint**: `TOOL_RESULT` (unless [`SessionRules::result_taints`] exempts
//!   its tool) and `MEMORY_READ` taint the session; `TERMINATION` clears
//!   taint, the tool history and any loop violation. A `TOOL_RESULT` whose
//!   payload `source` is `resources/read` or `prompts/get` (content the agent
//!   read, not a tool's result) taints unless its payload says `"trusted":
//!   true`; one with `"untrusted_content": true` (a tool result embedding an
//!   untrusted resource) taints whatever its tool. The sidecar decides both
//!   from the manifest when it records them.
//! - **Sanitizer keys** are registered by a `POLICY_DECISION` envelope whose
//!   payload is `{"action": "register_sanitizer", "sanitizer_key": "<key>"}`.
//! - **Open calls**: a call the sidecar let run (`TOOL_CALL_ALLOWED`, or a
//!   refusal recorded with `"enforced": false` in shadow mode) is open until
//!   an envelope names its `proposal_seq` as settled: its `TOOL_RESULT`,
//!   `TOOL_CALL_EXECUTED` or `ERROR_RAISED`. An `ERROR_RAISED` with `"error":
//!   "result_not_recorded"` (the sidecar restarted, or failed to record a
//!   result, after the call ran) taints: what the tool returned reached the
//!   agent unrecorded, so it is treated like any untrusted result. At most
//!   [`MAX_OPEN_CALLS`] are tracked per session (the oldest forgotten).
//! - **Loops**: each proposal enters a bounded history of (tool, digest of the
//!   canonical arguments); a [`SessionRules`] (the policy crate's) examines it
//!   and a violation it reports holds until `TERMINATION`. A proposal held
//!   for approval (an enforced `APPROVAL_REQUESTED` naming it) leaves the
//!   history again, with any loop it completed: an agent asking again while
//!   a human decides is not looping.
//!
//! The state can be stored beside the chain and read back ([`summary`]), so
//! that a rebuild folds only the envelopes after it.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::canon;
use crate::event::EventType;

/// Payload `action` of the envelope that registers a sanitizer key.
pub const REGISTER_SANITIZER_ACTION: &str = "register_sanitizer";

/// The `error` of an `ERROR_RAISED` that says a call ran but its result was
/// never recorded; it taints the session.
pub const RESULT_NOT_RECORDED: &str = "result_not_recorded";

/// The member of a `TOOL_CALL_ALLOWED` payload saying the client runs the
/// call itself (the decision APIs): `true` there, the call never opens.
pub const DELEGATED: &str = "delegated";

/// Open calls tracked per session (see the module docs).
pub const MAX_OPEN_CALLS: usize = 256;

/// Proposals kept for loop detection when no detector asks for more.
pub const DEFAULT_HISTORY_WINDOW: usize = 20;

/// Identifies a [`SessionRules`]' answers (see [`SessionRules::fingerprint`]).
pub type RulesFingerprint = [u8; 32];

/// One proposed tool call, as loop detection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub seq: u64,
    pub tool_name: Box<str>,
    /// The first 16 bytes of SHA-256 over the canonical `args`: equal
    /// arguments in any member order or spacing give equal digests.
    pub args_digest: [u8; 16],
}

impl ToolCall {
    /// Digest of a call's arguments (`payload.args`, `null` when absent).
    pub fn digest_args(args: &Value) -> [u8; 16] {
        let mut hasher = Sha256::new();
        canon::write_value(&mut hasher, args);
        let full: [u8; 32] = hasher.finalize().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// The most recent proposals of a session, oldest first, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolHistory {
    calls: VecDeque<ToolCall>,
    capacity: usize,
}

impl ToolHistory {
    pub fn new(capacity: usize) -> ToolHistory {
        ToolHistory {
            calls: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    pub fn push(&mut self, call: ToolCall) {
        if self.capacity == 0 {
            return;
        }
        if self.calls.len() == self.capacity {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ToolCall> + ExactSizeIterator {
        self.calls.iter()
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn clear(&mut self) {
        self.calls.clear();
    }
}

/// A loop found in a session's proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopViolation {
    /// Plain words, shown in snapshots (`loop_violation`) and denials.
    pub description: String,
    /// The seqs of the proposals that form the loop.
    pub seqs: Vec<u64>,
}

impl LoopViolation {
    /// The description with the seqs of the calls that form the loop, as
    /// snapshots show it: `"... (seqs 4, 7, 9)"`.
    pub fn to_text(&self) -> String {
        let seqs: Vec<String> = self.seqs.iter().map(u64::to_string).collect();
        format!("{} (seqs {})", self.description, seqs.join(", "))
    }
}

/// The manifest-dependent parts of the reducer, supplied by the proxy from
/// the live manifest: loop detection and which tools' results taint. The
/// ledger keeps the history and the verdicts.
pub trait SessionRules: Send + Sync + fmt::Debug + 'static {
    /// How many recent proposals to keep for [`SessionRules::detect`].
    fn window(&self) -> usize;
    /// Looks at the history right after a proposal joined it.
    fn detect(&self, history: &ToolHistory) -> Option<LoopViolation>;
    /// Whether a `TOOL_RESULT` of `tool_name` (its payload's `tool_name`,
    /// when it has one) taints the session. Every result does by default.
    fn result_taints(&self, tool_name: Option<&str>) -> bool {
        let _ = tool_name;
        true
    }

    /// Identifies these rules: two rules with the same fingerprint must give
    /// the same answers to every call above. A stored session summary is
    /// used only by rules with the fingerprint it was folded under, so that
    /// a rebuild always equals folding every envelope under the rules of
    /// now. `None` (the default): no summary is stored or used, and every
    /// rebuild reads every envelope.
    fn fingerprint(&self) -> Option<RulesFingerprint> {
        None
    }
}

/// Keeps the history, never reports a loop, every result taints.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSessionRules;

impl SessionRules for DefaultSessionRules {
    fn window(&self) -> usize {
        DEFAULT_HISTORY_WINDOW
    }

    fn detect(&self, _: &ToolHistory) -> Option<LoopViolation> {
        None
    }

    fn fingerprint(&self) -> Option<RulesFingerprint> {
        let mut hasher = Sha256::new();
        hasher.update(b"aegis-ledger/default-session-rules/v1\0");
        hasher.update((DEFAULT_HISTORY_WINDOW as u64).to_le_bytes());
        Some(hasher.finalize().into())
    }
}

/// A call that ran (or runs) and has no recorded end yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCall {
    pub proposal_seq: u64,
    pub tool_name: Box<str>,
    /// When it was decided.
    pub decided_unix_ms: i64,
}

/// What one envelope does to its session, extracted from it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub seq: u64,
    pub ts_unix_ms: i64,
    pub effect: Effect,
}

/// The reducer's view of an event type and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Model call, memory write, handoff: one step.
    Step,
    /// A memory read: one step, and it taints.
    TaintingStep,
    /// A proposed tool call: one step, one tool call, one history entry.
    Proposal {
        tool_name: Box<str>,
        args_digest: [u8; 16],
    },
    /// A proposal that will not run (denied).
    Refusal,
    /// A proposal held for a human's approval: it did not run, and it
    /// leaves the loop history (asking again while an approval waits is
    /// how approval works, not a loop; the call that runs on the approval
    /// is a proposal of its own).
    Held { proposal_seq: Option<u64> },
    /// A call let run: open until settled.
    Allowed(OpenCall),
    /// A refusal recorded but not applied (shadow mode): it counts as a
    /// refusal, and the call runs, so it is open until settled.
    ShadowRefusal(OpenCall),
    /// A tool result (of the payload's `tool_name`, when given): taints,
    /// unless the rules exempt that tool.
    ToolResult {
        tool: Option<Box<str>>,
        settles: Option<u64>,
    },
    /// Content read into the session (a resource, a prompt, a result
    /// embedding an untrusted resource): taints when `taints`.
    Content { taints: bool, settles: Option<u64> },
    /// A call's end without a result (`ERROR_RAISED`, `TOOL_CALL_EXECUTED`):
    /// taints when the result ran unrecorded.
    Settled { proposal_seq: u64, taints: bool },
    /// End of the session's task: clears taint, history and loop violation.
    Termination,
    /// A sanitizer key registered for the session.
    Sanitizer(String),
    /// Bookkeeping that changes nothing but the wall clock.
    None,
}

impl Observation {
    pub fn new(seq: u64, ts_unix_ms: i64, event_type: EventType, payload: &Value) -> Observation {
        use EventType::*;
        let settles = payload.get("proposal_seq").and_then(Value::as_u64);
        let open = || {
            settles.map(|proposal_seq| OpenCall {
                proposal_seq,
                tool_name: payload
                    .get("tool_name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                decided_unix_ms: ts_unix_ms,
            })
        };
        let effect = match event_type {
            ModelCallStarted | MemoryWrite | HandoffRequested => Effect::Step,
            MemoryRead => Effect::TaintingStep,
            ToolCallProposed => Effect::Proposal {
                tool_name: payload
                    .get("tool_name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                args_digest: ToolCall::digest_args(payload.get("args").unwrap_or(&Value::Null)),
            },
            // A delegated call runs in the client (the decision APIs): no
            // result will settle it, so it never opens.
            ToolCallAllowed if payload.get(DELEGATED) == Some(&Value::Bool(true)) => Effect::None,
            ToolCallAllowed => open().map_or(Effect::None, Effect::Allowed),
            ToolCallDenied | ApprovalRequested => {
                match open().filter(|_| payload.get("enforced") == Some(&Value::Bool(false))) {
                    Some(call) => Effect::ShadowRefusal(call),
                    None if event_type == ApprovalRequested => Effect::Held {
                        proposal_seq: settles,
                    },
                    None => Effect::Refusal,
                }
            }
            ToolResult => match payload.get("source").and_then(Value::as_str) {
                Some("resources/read" | "prompts/get") => Effect::Content {
                    taints: payload.get("trusted") != Some(&Value::Bool(true)),
                    settles: None,
                },
                _ if payload.get("untrusted_content") == Some(&Value::Bool(true)) => {
                    Effect::Content {
                        taints: true,
                        settles,
                    }
                }
                _ => Effect::ToolResult {
                    tool: payload
                        .get("tool_name")
                        .and_then(Value::as_str)
                        .map(Into::into),
                    settles,
                },
            },
            ErrorRaised | ToolCallExecuted => match settles {
                Some(proposal_seq) => Effect::Settled {
                    proposal_seq,
                    taints: event_type == ErrorRaised
                        && payload.get("error").and_then(Value::as_str)
                            == Some(RESULT_NOT_RECORDED),
                },
                None => Effect::None,
            },
            Termination => Effect::Termination,
            PolicyDecision => match (
                payload.get("action").and_then(Value::as_str),
                payload.get("sanitizer_key").and_then(Value::as_str),
            ) {
                (Some(REGISTER_SANITIZER_ACTION), Some(key)) if !key.is_empty() => {
                    Effect::Sanitizer(key.to_owned())
                }
                _ => Effect::None,
            },
            ModelCallFinished | ApprovalDecided | HandoffCompleted | CheckpointCreated => {
                Effect::None
            }
        };
        Observation {
            seq,
            ts_unix_ms,
            effect,
        }
    }
}

/// A session's consumption, as of its last applied envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    first_ts_unix_ms: Option<i64>,
    steps: u64,
    proposals: u64,
    refusals: u64,
    tainted: bool,
    sanitized_keys: Vec<String>,
    history: ToolHistory,
    loop_violation: Option<LoopViolation>,
    /// Calls that ran with no recorded end yet, oldest first.
    open: VecDeque<OpenCall>,
}

impl SessionState {
    pub fn new(detector: &dyn SessionRules) -> SessionState {
        SessionState {
            history: ToolHistory::new(detector.window()),
            ..SessionState::default()
        }
    }

    /// Folds one envelope into the state. Envelopes must come in seq order.
    pub fn apply(&mut self, obs: &Observation, detector: &dyn SessionRules) {
        self.first_ts_unix_ms.get_or_insert(obs.ts_unix_ms);
        match &obs.effect {
            Effect::Step => self.steps += 1,
            Effect::TaintingStep => {
                self.steps += 1;
                self.tainted = true;
            }
            Effect::Proposal {
                tool_name,
                args_digest,
            } => {
                self.steps += 1;
                self.proposals += 1;
                self.history.push(ToolCall {
                    seq: obs.seq,
                    tool_name: tool_name.clone(),
                    args_digest: *args_digest,
                });
                if self.loop_violation.is_none() {
                    self.loop_violation = detector.detect(&self.history);
                }
            }
            Effect::Refusal => self.refusals += 1,
            Effect::Held { proposal_seq } => {
                self.refusals += 1;
                if let Some(seq) = *proposal_seq
                    && self.history.calls.back().is_some_and(|c| c.seq == seq)
                {
                    self.history.calls.pop_back();
                    // A loop its proposal completed is not one any more.
                    if self
                        .loop_violation
                        .as_ref()
                        .is_some_and(|v| v.seqs.contains(&seq))
                    {
                        self.loop_violation = None;
                    }
                }
            }
            Effect::Allowed(call) => self.open(call),
            Effect::ShadowRefusal(call) => {
                self.refusals += 1;
                self.open(call);
            }
            Effect::ToolResult { tool, settles } => {
                if detector.result_taints(tool.as_deref()) {
                    self.tainted = true;
                }
                self.settle(*settles);
            }
            Effect::Content { taints, settles } => {
                self.tainted |= taints;
                self.settle(*settles);
            }
            Effect::Settled {
                proposal_seq,
                taints,
            } => {
                self.tainted |= taints;
                self.settle(Some(*proposal_seq));
            }
            Effect::Termination => {
                self.tainted = false;
                self.history.clear();
                self.loop_violation = None;
            }
            Effect::Sanitizer(key) => {
                if let Err(at) = self.sanitized_keys.binary_search(key) {
                    self.sanitized_keys.insert(at, key.clone());
                }
            }
            Effect::None => {}
        }
    }

    fn open(&mut self, call: &OpenCall) {
        if self.open.len() >= MAX_OPEN_CALLS {
            self.open.pop_front();
        }
        self.open.push_back(call.clone());
    }

    fn settle(&mut self, proposal_seq: Option<u64>) {
        if let Some(seq) = proposal_seq
            && let Some(at) = self.open.iter().position(|c| c.proposal_seq == seq)
        {
            self.open.remove(at);
        }
    }

    /// Calls that ran and have no recorded end yet, oldest first.
    pub fn open_calls(&self) -> impl ExactSizeIterator<Item = &OpenCall> {
        self.open.iter()
    }

    pub fn steps_consumed(&self) -> u64 {
        self.steps
    }

    pub fn tool_calls_consumed(&self) -> u64 {
        self.proposals.saturating_sub(self.refusals)
    }

    /// Milliseconds since the session's first envelope (0 before any).
    pub fn wall_time_ms(&self, now_unix_ms: i64) -> u64 {
        self.first_ts_unix_ms
            .map(|first| u64::try_from(now_unix_ms.saturating_sub(first)).unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn is_tainted(&self) -> bool {
        self.tainted
    }

    pub fn has_sanitizer_key(&self, key: &str) -> bool {
        self.sanitized_keys
            .binary_search_by(|k| k.as_str().cmp(key))
            .is_ok()
    }

    pub fn history(&self) -> &ToolHistory {
        &self.history
    }

    pub fn loop_violation(&self) -> Option<&LoopViolation> {
        self.loop_violation.as_ref()
    }

    /// The Aegis snapshot at `now_unix_ms`.
    pub fn snapshot(&self, now_unix_ms: i64) -> Snapshot {
        Snapshot {
            steps_consumed: self.steps_consumed(),
            tool_calls_consumed: self.tool_calls_consumed(),
            wall_time_ms: self.wall_time_ms(now_unix_ms),
            is_tainted: self.tainted,
            sanitized_keys: self.sanitized_keys.clone(),
            loop_violation: self
                .loop_violation
                .as_ref()
                .map(LoopViolation::to_text)
                .unwrap_or_default(),
        }
    }
}

/// The Aegis session snapshot (`GET /v1/sessions/{id}/snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub steps_consumed: u64,
    pub tool_calls_consumed: u64,
    pub wall_time_ms: u64,
    pub is_tainted: bool,
    pub sanitized_keys: Vec<String>,
    /// Empty when there is none; else what repeats and the seqs involved.
    pub loop_violation: String,
}

pub mod summary;
#[cfg(test)]
mod tests;

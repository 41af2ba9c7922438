//! What the ledger's `TOOL_RESULT` keeps of a tool's result (`mcp.results`):
//! `full` (the first `mcp.limits.result_capture_bytes`, in clear), `hash`
//! (no content: the size and SHA-256 the caller records anyway) or `redact`
//! (like `full`, every match of the [`redact`] patterns replaced by
//! `[REDACTED]` before the cut, so no match can straddle it). The choice is
//! per tool name, over a default.
//!
//! Who calls it: `mcp/settle.rs`, settling a forwarded `tools/call`
//! ([`ResultsConfig::record`]); `egress/record.rs`, which carries bytes it
//! never holds and so records [`KEPT_NOTHING`] whatever is configured.
//!
//! What it must never do: change what the agent receives (it only writes
//! the ledger payload, from a borrowed answer), or keep anything under
//! `hash`. Its work is linear in the answer, which the caller has already
//! bounded by `mcp.limits.max_response_bytes`.
//!
//! The payload says what was kept: `"kept": "full" | "hash" | "redact"` and,
//! for `redact`, `"redactions": n` (0 when nothing matched: then the record
//! is exactly what `full` keeps).

pub mod redact;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

pub use redact::{DEFAULT_REDACT_PATTERNS, PatternError, REDACTED, Redactor};

/// What `TOOL_RESULT` keeps of one tool's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// The first `result_capture_bytes`, in clear.
    #[default]
    Full,
    /// Size and SHA-256 only: no content.
    Hash,
    /// Like `Full`, with every pattern match replaced by `[REDACTED]`.
    Redact,
}

impl Keep {
    pub const ALL: [Keep; 3] = [Keep::Full, Keep::Hash, Keep::Redact];

    /// The config value, and the payload's `kept`: a public vocabulary.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Full => "full",
            Keep::Hash => "hash",
            Keep::Redact => "redact",
        }
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Keep {
    type Err = String;

    /// `full`, `hash` or `redact`, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = s.trim().to_ascii_lowercase();
        Keep::ALL
            .into_iter()
            .find(|keep| keep.as_str() == word)
            .ok_or_else(|| format!("expected \"full\", \"hash\" or \"redact\", got {s:?}"))
    }
}

/// The egress proxy's `kept`: it streams what it carries and holds none of
/// it, so its `TOOL_RESULT` has byte counts only, whatever `mcp.results` says.
pub const KEPT_NOTHING: &str = "none";

/// The validated `mcp.results`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsConfig {
    /// For tools not in `tools`.
    pub keep: Keep,
    /// Per tool name (exact), overriding `keep`.
    pub tools: BTreeMap<String, Keep>,
    /// What `redact` replaces.
    pub redactor: Redactor,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        ResultsConfig {
            keep: Keep::default(),
            tools: BTreeMap::new(),
            redactor: Redactor::builtin(),
        }
    }
}

/// A tool's answer, as the caller holds it.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// The answer message's `result` (or `error`), and the message's size.
    Whole { value: &'a Value, size: usize },
    /// The first bytes of an answer too large to hold whole.
    Head(&'a [u8]),
}

impl ResultsConfig {
    /// What is kept of `tool`'s results.
    pub fn keep_for(&self, tool: &str) -> Keep {
        self.tools.get(tool).copied().unwrap_or(self.keep)
    }

    /// Adds to `payload` (a JSON object) what is kept of `tool`'s `answer`:
    /// `kept`, and under `full`/`redact` `result` (the whole, when it fits in
    /// `capture` bytes) or `result_prefix` (cut at a character boundary) with
    /// `truncated`; under `redact`, `redactions` too. Size and SHA-256 are
    /// the caller's, of the whole unredacted answer.
    pub fn record(&self, tool: &str, answer: Answer<'_>, capture: usize, payload: &mut Value) {
        let keep = self.keep_for(tool);
        payload["kept"] = json!(keep.as_str());
        match keep {
            Keep::Hash => {}
            Keep::Full => keep_full(answer, capture, payload),
            Keep::Redact => self.keep_redacted(answer, capture, payload),
        }
    }

    /// The whole text is redacted first, then cut: a secret across the cut
    /// is replaced whole.
    fn keep_redacted(&self, answer: Answer<'_>, capture: usize, payload: &mut Value) {
        let text: Cow<'_, str> = match answer {
            Answer::Whole { value, .. } => {
                Cow::Owned(serde_json::to_string(value).unwrap_or_default())
            }
            Answer::Head(head) => String::from_utf8_lossy(head),
        };
        let (redacted, count) = self.redactor.redact(&text);
        payload["redactions"] = json!(count);
        if count == 0 {
            // Exactly what `full` keeps (its text already made).
            return match answer {
                Answer::Whole { size, .. } if size > capture => {
                    payload["result_prefix"] = json!(prefix(&text, capture));
                    payload["truncated"] = json!(true);
                }
                _ => keep_full(answer, capture, payload),
            };
        }
        if let Answer::Whole { .. } = answer
            && redacted.len() <= capture
            && let Ok(value) = serde_json::from_str::<Value>(&redacted)
        {
            payload["result"] = value;
            return;
        }
        // Still JSON text, but a match across its syntax (or the cut) may
        // have left it unparseable: kept as text.
        payload["result_prefix"] = json!(prefix(&redacted, capture));
        if redacted.len() > capture || matches!(answer, Answer::Head(_)) {
            payload["truncated"] = json!(true);
        }
    }
}

/// `full`: the result itself when the answer fits in `capture`, else the
/// first `capture` bytes of its JSON text.
fn keep_full(answer: Answer<'_>, capture: usize, payload: &mut Value) {
    match answer {
        Answer::Whole { value, size } if size <= capture => {
            payload["result"] = value.clone();
        }
        Answer::Whole { value, .. } => {
            let text = serde_json::to_string(value).unwrap_or_default();
            payload["result_prefix"] = json!(prefix(&text, capture));
            payload["truncated"] = json!(true);
        }
        Answer::Head(head) => {
            let head = String::from_utf8_lossy(&head[..head.len().min(capture)]);
            payload["result_prefix"] = json!(prefix(&head, capture));
            payload["truncated"] = json!(true);
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

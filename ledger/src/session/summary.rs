//! A session's state as stored beside its chain (the ledger's
//! `session_summaries` table): what a rebuild starts from, folding only the
//! envelopes after it (`ARCHITECTURE.md`, "The ledger").
//!
//! The text is JSON of a fixed shape with a format number. Reading it back
//! checks everything the reducer relies on (the history's bound and order,
//! the open calls' bound, sorted sanitizer keys, nothing newer than the
//! summary's seq): a summary that fails is not used, and the session is
//! rebuilt from every envelope instead.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{
    LoopViolation, MAX_OPEN_CALLS, OpenCall, SessionRules, SessionState, ToolCall, ToolHistory,
};

/// The shape below and the reducer's rules (the module docs of
/// `crate::session`); another number is refused, and the session rebuilt
/// from every envelope. Raise it whenever either changes: a state folded
/// by other rules is not this build's state.
/// 2: a proposal held for approval leaves the loop history.
const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: u32,
    first_ts_unix_ms: Option<i64>,
    steps: u64,
    proposals: u64,
    refusals: u64,
    tainted: bool,
    sanitized_keys: Vec<String>,
    history_capacity: usize,
    /// `(seq, tool_name, args_digest as hex)`, oldest first.
    history: Vec<(u64, String, String)>,
    /// `(description, seqs)`.
    loop_violation: Option<(String, Vec<u64>)>,
    /// `(proposal_seq, tool_name, decided_unix_ms)`, oldest first.
    open: Vec<(u64, String, i64)>,
}

/// Why a stored summary cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session summary unusable: {0}")]
pub struct Unusable(String);

fn unusable(reason: impl Into<String>) -> Unusable {
    Unusable(reason.into())
}

impl SessionState {
    /// The stored form of this state.
    pub fn to_summary(&self) -> String {
        let stored = Stored {
            format: FORMAT,
            first_ts_unix_ms: self.first_ts_unix_ms,
            steps: self.steps,
            proposals: self.proposals,
            refusals: self.refusals,
            tainted: self.tainted,
            sanitized_keys: self.sanitized_keys.clone(),
            history_capacity: self.history.capacity,
            history: self
                .history
                .iter()
                .map(|c| (c.seq, c.tool_name.to_string(), hex(&c.args_digest)))
                .collect(),
            loop_violation: self
                .loop_violation
                .as_ref()
                .map(|v| (v.description.clone(), v.seqs.clone())),
            open: self
                .open
                .iter()
                .map(|c| (c.proposal_seq, c.tool_name.to_string(), c.decided_unix_ms))
                .collect(),
        };
        // A struct of strings and integers always serializes.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads back a state stored by [`SessionState::to_summary`] after the
    /// envelope at `through_seq`, for a fold under `rules`.
    pub fn from_summary(
        text: &str,
        through_seq: u64,
        rules: &dyn SessionRules,
    ) -> Result<SessionState, Unusable> {
        let stored: Stored =
            serde_json::from_str(text).map_err(|e| unusable(format!("not its JSON shape: {e}")))?;
        if stored.format != FORMAT {
            return Err(unusable(format!(
                "format {} (this build reads {FORMAT})",
                stored.format
            )));
        }
        if stored.history_capacity != rules.window() {
            return Err(unusable(format!(
                "history window {} (the rules keep {})",
                stored.history_capacity,
                rules.window()
            )));
        }
        if stored.history.len() > stored.history_capacity {
            return Err(unusable("more history than its window"));
        }
        if stored.open.len() > MAX_OPEN_CALLS {
            return Err(unusable("more open calls than are tracked"));
        }
        if !stored.sanitized_keys.windows(2).all(|w| w[0] < w[1])
            || stored.sanitized_keys.iter().any(String::is_empty)
        {
            return Err(unusable("sanitizer keys not sorted, unique and non-empty"));
        }
        // (An open call's seq is what its payloads named, not checked.)
        let mut seqs = stored.history.iter().map(|h| h.0).chain(
            stored
                .loop_violation
                .iter()
                .flat_map(|v| v.1.iter().copied()),
        );
        if seqs.any(|seq| seq > through_seq) {
            return Err(unusable(format!("names a seq after {through_seq}")));
        }
        if !stored.history.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(unusable("history not in seq order"));
        }
        let mut history = ToolHistory::new(stored.history_capacity);
        for (seq, tool_name, digest) in stored.history {
            let args_digest =
                unhex(&digest).ok_or_else(|| unusable("an args digest is not 32 hex digits"))?;
            history.push(ToolCall {
                seq,
                tool_name: tool_name.into(),
                args_digest,
            });
        }
        Ok(SessionState {
            first_ts_unix_ms: stored.first_ts_unix_ms,
            steps: stored.steps,
            proposals: stored.proposals,
            refusals: stored.refusals,
            tainted: stored.tainted,
            sanitized_keys: stored.sanitized_keys,
            history,
            loop_violation: stored
                .loop_violation
                .map(|(description, seqs)| LoopViolation { description, seqs }),
            open: stored
                .open
                .into_iter()
                .map(|(proposal_seq, tool_name, decided_unix_ms)| OpenCall {
                    proposal_seq,
                    tool_name: tool_name.into(),
                    decided_unix_ms,
                })
                .collect::<VecDeque<_>>(),
        })
    }
}

fn hex(bytes: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(32), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;

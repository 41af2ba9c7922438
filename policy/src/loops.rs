//! Loop detection over a session's recent proposals (rule 4 of
//! [`decide`](mod@crate::decide): `LOOP_DETECTED`).
//!
//! Two rules, checked in this order on the newest proposal:
//!
//! 1. **Identical calls**: the newest call (same tool name *and* same
//!    canonical-arguments digest) occurs at least `identical_calls` times
//!    within the last `identical_window` calls, itself included. Default: the
//!    third identical call within the last 20.
//! 2. **Repeated sequence**: for a length `L` in `min_sequence..=max_sequence`
//!    (default 3–7), the last `2L` tool names form two equal consecutive
//!    blocks (`A..Z A..Z`). Arguments are ignored, and a block made of a
//!    single tool name is not a sequence (repeating one tool is rule 1's
//!    business). The shortest matching `L` is reported.
//!
//! The crate has no dependency on the ledger: the input is [`CallKey`], a
//! borrowed view of one recorded proposal, given oldest first. The ledger's
//! `SessionRules` trait is implemented by a thin adapter in the proxy crate,
//! which keeps [`LoopRules::window`] proposals of history.

use crate::manifest::LoopSettings;

/// One recorded proposal, as loop detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey<'a> {
    pub seq: u64,
    pub tool_name: &'a str,
    /// Digest of the canonical arguments: equal arguments, equal digests.
    pub args_digest: [u8; 16],
}

/// A loop found in the recent proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// Plain words, e.g. "read_file called 3 times with identical arguments
    /// within the last 20 calls".
    pub description: String,
    /// The seqs of the proposals that form the loop, oldest first.
    pub seqs: Vec<u64>,
}

/// Loop thresholds, compiled from [`LoopSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopRules {
    identical_calls: usize,
    identical_window: usize,
    min_sequence: usize,
    max_sequence: usize,
}

impl Default for LoopRules {
    fn default() -> Self {
        LoopRules::new(&LoopSettings::default())
    }
}

impl From<&LoopSettings> for LoopRules {
    fn from(settings: &LoopSettings) -> Self {
        LoopRules::new(settings)
    }
}

impl LoopRules {
    /// Compiles validated settings. Values the manifest validation would
    /// reject are clamped rather than trusted: `identical_calls >= 2`,
    /// `identical_window >= identical_calls`, `min_sequence >= 2`,
    /// `max_sequence >= min_sequence`.
    pub fn new(settings: &LoopSettings) -> LoopRules {
        let identical_calls = settings.identical_calls.max(2);
        let min_sequence = settings.min_sequence.max(2);
        LoopRules {
            identical_calls,
            identical_window: settings.identical_window.max(identical_calls),
            min_sequence,
            max_sequence: settings.max_sequence.max(min_sequence),
        }
    }

    /// The thresholds, in a fixed order (`identical_calls`,
    /// `identical_window`, `min_sequence`, `max_sequence`): rules with equal
    /// parameters detect alike, which is what a fingerprint of them needs.
    pub fn parameters(&self) -> [usize; 4] {
        [
            self.identical_calls,
            self.identical_window,
            self.min_sequence,
            self.max_sequence,
        ]
    }

    /// How many recent proposals the caller must keep for [`Self::detect`]:
    /// `max(identical_window, 2 * max_sequence)`.
    pub fn window(&self) -> usize {
        self.identical_window.max(2 * self.max_sequence)
    }

    /// Looks for a loop ending at the newest call. `calls` are the session's
    /// recent proposals oldest first, the newest one last.
    pub fn detect(&self, calls: &[CallKey<'_>]) -> Option<Loop> {
        self.detect_view(View {
            head: calls,
            next: None,
        })
    }

    /// Whether `next`, not yet recorded, would complete a loop after
    /// `history` (oldest first). Same answer as [`Self::detect`] on
    /// `history` followed by `next`, without building that list.
    pub fn detect_with(&self, history: &[CallKey<'_>], next: CallKey<'_>) -> Option<Loop> {
        self.detect_view(View {
            head: history,
            next: Some(next),
        })
    }

    fn detect_view(&self, calls: View<'_, '_>) -> Option<Loop> {
        self.identical(calls).or_else(|| self.sequence(calls))
    }

    fn identical(&self, calls: View<'_, '_>) -> Option<Loop> {
        let n = calls.len();
        let newest = calls.get(n.checked_sub(1)?)?;
        let start = n.saturating_sub(self.identical_window);
        let same = |c: &CallKey<'_>| {
            c.tool_name == newest.tool_name && c.args_digest == newest.args_digest
        };
        let count = (start..n)
            .filter_map(|i| calls.get(i))
            .filter(|c| same(c))
            .count();
        if count < self.identical_calls {
            return None;
        }
        let seqs = (start..n)
            .filter_map(|i| calls.get(i))
            .filter(|c| same(c))
            .map(|c| c.seq)
            .collect();
        Some(Loop {
            description: format!(
                "{} called {} times with identical arguments within the last {} calls",
                newest.tool_name, count, self.identical_window
            ),
            seqs,
        })
    }

    fn sequence(&self, calls: View<'_, '_>) -> Option<Loop> {
        let n = calls.len();
        let len = (self.min_sequence..=self.max_sequence).find(|&l| {
            n >= 2 * l && repeated_block(calls, n - 2 * l, l) && has_two_names(calls, n - l, l)
        })?;
        let first = n - 2 * len;
        let mut names = String::new();
        for i in (n - len)..n {
            if let Some(c) = calls.get(i) {
                if !names.is_empty() {
                    names.push_str(", ");
                }
                names.push_str(c.tool_name);
            }
        }
        let description = format!("the sequence {names} ({len} calls) was repeated twice in a row");
        let seqs = (first..n)
            .filter_map(|i| calls.get(i))
            .map(|c| c.seq)
            .collect();
        Some(Loop { description, seqs })
    }
}

/// Whether the names at `start..start+len` equal those at
/// `start+len..start+2*len`.
fn repeated_block(calls: View<'_, '_>, start: usize, len: usize) -> bool {
    (0..len).all(
        |i| match (calls.get(start + i), calls.get(start + len + i)) {
            (Some(a), Some(b)) => a.tool_name == b.tool_name,
            _ => false,
        },
    )
}

/// Whether the names at `start..start+len` are not all the same.
fn has_two_names(calls: View<'_, '_>, start: usize, len: usize) -> bool {
    let Some(first) = calls.get(start) else {
        return false;
    };
    (1..len).any(|i| {
        calls
            .get(start + i)
            .is_some_and(|c| c.tool_name != first.tool_name)
    })
}

/// Recorded calls, optionally followed by one not yet recorded.
#[derive(Clone, Copy)]
struct View<'s, 'a> {
    head: &'s [CallKey<'a>],
    next: Option<CallKey<'a>>,
}

impl<'a> View<'_, 'a> {
    fn len(&self) -> usize {
        self.head.len() + usize::from(self.next.is_some())
    }

    fn get(&self, i: usize) -> Option<CallKey<'a>> {
        match self.head.get(i) {
            Some(c) => Some(*c),
            None if i == self.head.len() => self.next,
            None => None,
        }
    }
}

#[cfg(test)]
mod tests;

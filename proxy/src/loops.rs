//! The session reducer's manifest-dependent rules, from the live manifest:
//! adapts `aegis_policy` (which knows nothing of the ledger) to
//! `aegis_ledger::SessionRules`, which the reducer consults for every recorded
//! envelope.
//!
//! - Loops: `policy.loops` thresholds, checked after each recorded proposal;
//!   a violation is kept in the session's state until `TERMINATION` and shows
//!   in snapshots as `loop_violation`.
//! - Taint: results of the tools in `policy.non_tainting_tools` do not taint.

use aegis_ledger::{LoopViolation, SessionRules, ToolHistory};
use aegis_policy::loops::{CallKey, LoopRules};
use aegis_policy::store::ManifestStore;

/// The live manifest's `policy.loops` and `policy.non_tainting_tools`
/// (defaults without a manifest: default loop rules, every result taints).
#[derive(Debug, Clone)]
pub struct ManifestSessionRules {
    manifests: ManifestStore,
}

impl ManifestSessionRules {
    pub fn new(manifests: ManifestStore) -> ManifestSessionRules {
        ManifestSessionRules { manifests }
    }

    fn with_rules<R>(&self, f: impl FnOnce(&LoopRules) -> R) -> R {
        match self.manifests.current() {
            Some(live) => f(live.compiled.loop_rules()),
            None => f(&LoopRules::default()),
        }
    }
}

impl SessionRules for ManifestSessionRules {
    fn window(&self) -> usize {
        self.with_rules(LoopRules::window)
    }

    fn detect(&self, history: &ToolHistory) -> Option<LoopViolation> {
        let calls: Vec<CallKey<'_>> = history
            .iter()
            .map(|call| CallKey {
                seq: call.seq,
                tool_name: &call.tool_name,
                args_digest: call.args_digest,
            })
            .collect();
        self.with_rules(|rules| rules.detect(&calls))
            .map(|found| LoopViolation {
                description: found.description,
                seqs: found.seqs,
            })
    }

    fn result_taints(&self, tool_name: Option<&str>) -> bool {
        let (Some(tool), Some(live)) = (tool_name, self.manifests.current()) else {
            return true;
        };
        !live
            .manifest
            .policy
            .non_tainting_tools
            .iter()
            .any(|t| t == tool)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aegis_ledger::ToolCall;

    fn history(calls: &[(&str, u8)]) -> ToolHistory {
        let mut h = ToolHistory::new(20);
        for (seq, (tool, arg)) in calls.iter().enumerate() {
            h.push(ToolCall {
                seq: seq as u64,
                tool_name: (*tool).into(),
                args_digest: [*arg; 16],
            });
        }
        h
    }

    #[test]
    fn reports_loops_with_the_default_rules_without_a_manifest() {
        let loops = ManifestSessionRules::new(ManifestStore::empty());
        assert_eq!(loops.window(), LoopRules::default().window());
        assert!(
            loops
                .detect(&history(&[("read", 1), ("read", 1)]))
                .is_none()
        );
        let found = loops
            .detect(&history(&[
                ("read", 1),
                ("other", 2),
                ("read", 1),
                ("read", 1),
            ]))
            .unwrap();
        assert_eq!(found.seqs, [0, 2, 3]);
        assert!(found.description.contains("read"), "{}", found.description);
    }
}

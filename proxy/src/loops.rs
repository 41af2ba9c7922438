//! Loop detection for the ledger's session reducer, with the live manifest's
//! thresholds: adapts `aegis_policy::loops` (which knows nothing of the
//! ledger) to `aegis_ledger::LoopDetector` (which the reducer calls after
//! every recorded proposal). A violation it reports is kept in the session's
//! state until `TERMINATION`, and shows in snapshots as `loop_violation`.

use aegis_ledger::{LoopDetector, LoopViolation, ToolHistory};
use aegis_policy::loops::{CallKey, LoopRules};
use aegis_policy::store::ManifestStore;

/// The live manifest's `policy.loops` (defaults without a manifest).
#[derive(Debug, Clone)]
pub struct ManifestLoops {
    manifests: ManifestStore,
}

impl ManifestLoops {
    pub fn new(manifests: ManifestStore) -> ManifestLoops {
        ManifestLoops { manifests }
    }

    fn with_rules<R>(&self, f: impl FnOnce(&LoopRules) -> R) -> R {
        match self.manifests.current() {
            Some(live) => f(live.compiled.loop_rules()),
            None => f(&LoopRules::default()),
        }
    }
}

impl LoopDetector for ManifestLoops {
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
        let loops = ManifestLoops::new(ManifestStore::empty());
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

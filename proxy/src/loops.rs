//! The session reducer's manifest-dependent rules, from the live manifest:
//! adapts `aegis_policy` (which knows nothing of the ledger) to
//! `aegis_ledger::SessionRules`, which the reducer consults for every recorded
//! envelope.
//!
//! - Loops: `policy.loops` thresholds, checked after each recorded proposal;
//!   a violation is kept in the session's state until `TERMINATION` and shows
//!   in snapshots as `loop_violation`.
//! - Taint: results of the tools in `policy.non_tainting_tools` do not taint.
//! - Fingerprint: a digest of both, so that a session summary folded under
//!   one manifest's rules is not used under another's.

use aegis_ledger::{LoopViolation, RulesFingerprint, SessionRules, ToolHistory};
use aegis_policy::loops::{CallKey, LoopRules};
use aegis_policy::store::ManifestStore;
use sha2::{Digest as _, Sha256};

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

    /// SHA-256 over the loop thresholds and the sorted, deduplicated
    /// non-tainting tools (each length-prefixed): what the three answers
    /// above depend on, and nothing else.
    fn fingerprint(&self) -> Option<RulesFingerprint> {
        let live = self.manifests.current();
        let mut hasher = Sha256::new();
        hasher.update(b"aegis-proxy/manifest-session-rules/v1\0");
        let parameters = match &live {
            Some(live) => live.compiled.loop_rules().parameters(),
            None => LoopRules::default().parameters(),
        };
        for p in parameters {
            hasher.update((p as u64).to_le_bytes());
        }
        let mut exempt: Vec<&str> = live
            .as_ref()
            .map(|l| {
                l.manifest
                    .policy
                    .non_tainting_tools
                    .iter()
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        exempt.sort_unstable();
        exempt.dedup();
        for tool in exempt {
            hasher.update((tool.len() as u64).to_le_bytes());
            hasher.update(tool.as_bytes());
        }
        Some(hasher.finalize().into())
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

    #[test]
    fn the_fingerprint_follows_the_loop_and_taint_rules_and_nothing_else() {
        const EXAMPLE: &str = include_str!("../../configs/manifests/example.yaml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.yaml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let store = ManifestStore::open(&path).unwrap();
        let rules = ManifestSessionRules::new(store.clone());
        let fingerprint = |text: &str| {
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(
                    store.reload(),
                    aegis_policy::store::ReloadOutcome::Reloaded(_)
                ),
                "the edited manifest loads"
            );
            rules.fingerprint().unwrap()
        };
        let original = rules.fingerprint().unwrap();
        assert_ne!(
            Some(original),
            ManifestSessionRules::new(ManifestStore::empty()).fingerprint()
        );

        // Another manifest whose loop and taint rules are the same.
        let commented = format!("# another revision\n{EXAMPLE}");
        assert_eq!(fingerprint(&commented), original);
        // Each rule the reducer consults.
        let looser = EXAMPLE.replace("identical_calls: 3", "identical_calls: 4");
        assert_ne!(fingerprint(&looser), original);
        let window = EXAMPLE.replace("identical_window: 20", "identical_window: 30");
        assert_ne!(fingerprint(&window), original);
        let exempt = EXAMPLE.replace(
            "non_tainting_tools: [read_file]",
            "non_tainting_tools: [read_file, write_file]",
        );
        let exempt_fp = fingerprint(&exempt);
        assert_ne!(exempt_fp, original);
        let reordered = EXAMPLE.replace(
            "non_tainting_tools: [read_file]",
            "non_tainting_tools: [write_file, read_file]",
        );
        assert_eq!(fingerprint(&reordered), exempt_fp);
        assert_eq!(fingerprint(EXAMPLE), original);
    }
}

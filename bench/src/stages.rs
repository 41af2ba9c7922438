//! Where a sidecar run's time went, from the sidecar's own metrics: the
//! Prometheus text it serves on `/metrics` (read in-process with
//! `Metrics::render`) before and after a run, subtracted.
//!
//! Only sums and counts are used (no buckets), so what comes out are means
//! over the run: the ledger's commits (how many, how long, how many
//! envelopes each), the time to the upstream's answer headers, the time to
//! the start of the sidecar's answer, and the policy decision.

use std::collections::BTreeMap;

use serde::Serialize;

/// Every sample of a Prometheus text exposition, summed over labels, by
/// sample name (`aegis_ledger_commit_duration_seconds_sum`, …).
#[derive(Debug, Clone, Default)]
pub struct Samples(BTreeMap<String, f64>);

impl Samples {
    /// Parses the text format; comment lines and unparsable lines are skipped.
    pub fn parse(text: &str) -> Samples {
        let mut sums = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let mut name = line[..name_end].to_owned();
            // Histogram buckets keep their bound: `x_bucket{le="0.001"}`.
            if name.ends_with("_bucket")
                && let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next())
            {
                name = format!("{name}{{le=\"{le}\"}}");
            }
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            *sums.entry(name).or_insert(0.0) += value;
        }
        Samples(sums)
    }

    /// `name`'s value (0 when absent).
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// `self − before`, sample by sample.
    pub fn since(&self, before: &Samples) -> Samples {
        Samples(
            self.0
                .iter()
                .map(|(name, v)| (name.clone(), v - before.get(name)))
                .collect(),
        )
    }
}

/// Means over one run (microseconds), from the difference of two scrapes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stages {
    /// Ledger group commits, and envelopes committed.
    pub commits: f64,
    pub envelopes: f64,
    pub envelopes_per_commit: f64,
    /// One group commit on the writer thread.
    pub commit_us: f64,
    /// Commits that took longer than 2.5 ms (a WAL checkpoint, or a stall).
    pub slow_commits: f64,
    /// Commits that took longer than 100 ms: every call waiting on the
    /// ledger waited that long.
    pub stalled_commits: f64,
    /// Until the upstream's answer headers.
    pub upstream_us: f64,
    /// Until the sidecar's answer starts.
    pub request_us: f64,
    /// One policy decision.
    pub decision_us: f64,
    /// `tools/call` decided.
    pub tool_calls: f64,
}

impl Stages {
    pub fn from_delta(d: &Samples) -> Stages {
        let mean_us = |name: &str| {
            let count = d.get(&format!("{name}_count"));
            if count > 0.0 {
                d.get(&format!("{name}_sum")) / count * 1e6
            } else {
                0.0
            }
        };
        let commits = d.get("aegis_ledger_commit_batch_envelopes_count");
        let envelopes = d.get("aegis_ledger_commit_batch_envelopes_sum");
        Stages {
            commits,
            envelopes,
            envelopes_per_commit: if commits > 0.0 {
                envelopes / commits
            } else {
                0.0
            },
            commit_us: mean_us("aegis_ledger_commit_duration_seconds"),
            slow_commits: commits
                - d.get("aegis_ledger_commit_duration_seconds_bucket{le=\"0.0025\"}"),
            stalled_commits: commits
                - d.get("aegis_ledger_commit_duration_seconds_bucket{le=\"0.1\"}"),
            upstream_us: mean_us("aegis_mcp_upstream_duration_seconds"),
            request_us: mean_us("aegis_mcp_request_duration_seconds"),
            decision_us: mean_us("aegis_policy_decision_duration_seconds"),
            tool_calls: d.get("aegis_mcp_tool_calls_total"),
        }
    }
}

impl Stages {
    /// Field by field, the median over `all`.
    pub fn median(all: &[Stages]) -> Stages {
        let m = |f: fn(&Stages) -> f64| median(all.iter().map(f).collect());
        Stages {
            commits: m(|s| s.commits),
            envelopes: m(|s| s.envelopes),
            envelopes_per_commit: m(|s| s.envelopes_per_commit),
            commit_us: m(|s| s.commit_us),
            slow_commits: m(|s| s.slow_commits),
            stalled_commits: m(|s| s.stalled_commits),
            upstream_us: m(|s| s.upstream_us),
            request_us: m(|s| s.request_us),
            decision_us: m(|s| s.decision_us),
            tool_calls: m(|s| s.tool_calls),
        }
    }
}

/// The median (the mean of the middle two for an even count; 0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_labels_and_subtracts() {
        let before =
            Samples::parse("# HELP x\nx_sum{a=\"1\"} 1.5\nx_sum{a=\"2\"} 0.5\nx_count 2\n");
        let after = Samples::parse(
            "x_sum{a=\"1\"} 3\nx_sum{a=\"2\"} 1\nx_count 5\ny 7\nx_bucket{le=\"0.5\"} 4\nx_bucket{le=\"1\"} 5\n",
        );
        let d = after.since(&before);
        assert_eq!(d.get("x_sum"), 2.0);
        assert_eq!(d.get("x_count"), 3.0);
        assert_eq!(d.get("y"), 7.0);
        assert_eq!(d.get("z"), 0.0);
        assert_eq!(d.get("x_bucket{le=\"0.5\"}"), 4.0);
    }
}

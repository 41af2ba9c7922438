//! Where a sidecar run's time went, from the sidecar's own metrics: the
//! Prometheus text it serves on `/metrics` (read in-process with
//! `Metrics::render`) before and after a run, subtracted.
//!
//! Only sums and counts are used (no buckets), so what comes out are means
//! over the run: the ledger's commits (how many, how long, how many
//! envelopes each), the time to the upstream's answer headers, the time to
//! the start of the sidecar's answer, and the policy decision. The WAL's
//! checkpoints are also counted by the thread that ran them, and the
//! writer's are timed from their histogram's buckets (the appends behind
//! them waited that long).

use std::collections::BTreeMap;

use serde::Serialize;

/// The histogram of WAL checkpoints, labelled `by` the thread that ran them.
const CHECKPOINTS: &str = "aegis_ledger_checkpoint_duration_seconds";

/// Every sample of a Prometheus text exposition, summed over labels, by
/// sample name (`aegis_ledger_commit_duration_seconds_sum`, …). A sample
/// with a `by` label is also kept per value of it
/// (`x_count{by="writer"}`, `x_bucket{by="writer",le="0.01"}`): which
/// thread ran a checkpoint is the point of counting them.
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
            let base = &line[..name_end];
            // Histogram buckets keep their bound: `x_bucket{le="0.001"}`.
            let le = label(line, "le").filter(|_| base.ends_with("_bucket"));
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            let name = match le {
                Some(le) => format!("{base}{{le=\"{le}\"}}"),
                None => base.to_owned(),
            };
            *sums.entry(name).or_insert(0.0) += value;
            if let Some(by) = label(line, "by") {
                let name = match le {
                    Some(le) => format!("{base}{{by=\"{by}\",le=\"{le}\"}}"),
                    None => format!("{base}{{by=\"{by}\"}}"),
                };
                *sums.entry(name).or_insert(0.0) += value;
            }
        }
        Samples(sums)
    }

    /// The cumulative buckets of the histogram `name` whose other labels
    /// are `labels` (`by="writer",` or empty), by upper bound, ascending
    /// (`+Inf` last).
    fn buckets(&self, name: &str, labels: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{{labels}le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, &count)| {
                let bound = key[prefix.len()..].strip_suffix("\"}")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
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

/// The value of `key="…"` in a sample line's labels.
fn label<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let labels = &line[line.find('{')? + 1..line.find('}')?];
    labels.split(',').find_map(|pair| {
        let value = pair.trim().strip_prefix(key)?.strip_prefix("=\"")?;
        value.strip_suffix('"')
    })
}

/// The `q` quantile of a histogram's cumulative `buckets`, as Prometheus'
/// `histogram_quantile` estimates it: linear within the bucket it falls
/// in (0 when empty; the highest finite bound when it falls in `+Inf`).
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return lower;
            }
            let within = count - below;
            let share = if within > 0.0 {
                (rank - below) / within
            } else {
                1.0
            };
            return lower + (bound - lower) * share;
        }
        (lower, below) = (bound, count);
    }
    lower
}

/// The upper bound of the lowest bucket holding every observation: what
/// the largest one was at most (the highest finite bound when some fell in
/// `+Inf`; 0 when empty).
fn max_bound(buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    if total <= 0.0 {
        return 0.0;
    }
    let mut finite = 0.0;
    for &(bound, count) in buckets {
        if bound.is_infinite() {
            break;
        }
        finite = bound;
        if count >= total {
            return bound;
        }
    }
    finite
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
    /// The run's length, s, warm-up included (set by the caller; 0 when
    /// unknown): what the counts are over.
    pub seconds: f64,
    /// WAL checkpoints by the background thread (appends went on) and by
    /// the ledger writer (every append queued behind it waited).
    pub checkpoints_background: f64,
    pub checkpoints_writer: f64,
    /// The writer's checkpoints, µs: mean, median (estimated within its
    /// histogram bucket), and the largest at most (a bucket's bound).
    pub writer_checkpoint_us: f64,
    pub writer_checkpoint_p50_us: f64,
    pub writer_checkpoint_max_us: f64,
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
        let checkpoints = |by: &str| d.get(&format!("{CHECKPOINTS}_count{{by=\"{by}\"}}"));
        let checkpoints_writer = checkpoints("writer");
        let writer_buckets = d.buckets(CHECKPOINTS, "by=\"writer\",");
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
            seconds: 0.0,
            checkpoints_background: checkpoints("background"),
            checkpoints_writer,
            writer_checkpoint_us: if checkpoints_writer > 0.0 {
                d.get(&format!("{CHECKPOINTS}_sum{{by=\"writer\"}}")) / checkpoints_writer * 1e6
            } else {
                0.0
            },
            writer_checkpoint_p50_us: quantile(&writer_buckets, 0.5) * 1e6,
            writer_checkpoint_max_us: max_bound(&writer_buckets) * 1e6,
        }
    }

    /// The same, over a run of `seconds`.
    pub fn over(self, seconds: f64) -> Stages {
        Stages { seconds, ..self }
    }

    /// `count` per 10 s of the run (0 when its length is unknown).
    pub fn per_10s(&self, count: f64) -> f64 {
        if self.seconds > 0.0 {
            count / self.seconds * 10.0
        } else {
            0.0
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
            seconds: m(|s| s.seconds),
            checkpoints_background: m(|s| s.checkpoints_background),
            checkpoints_writer: m(|s| s.checkpoints_writer),
            writer_checkpoint_us: m(|s| s.writer_checkpoint_us),
            writer_checkpoint_p50_us: m(|s| s.writer_checkpoint_p50_us),
            writer_checkpoint_max_us: m(|s| s.writer_checkpoint_max_us),
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

    #[test]
    fn checkpoints_are_counted_by_thread_and_the_writers_timed_from_buckets() {
        let text = |writer: [u32; 4], background: u32| {
            let mut out = String::new();
            let bounds = ["0.005", "0.01", "0.025", "+Inf"];
            for (bound, n) in bounds.iter().zip(writer) {
                out += &format!("{CHECKPOINTS}_bucket{{by=\"writer\",le=\"{bound}\"}} {n}\n");
                out += &format!(
                    "{CHECKPOINTS}_bucket{{by=\"background\",le=\"{bound}\"}} {background}\n"
                );
            }
            out += &format!(
                "{CHECKPOINTS}_sum{{by=\"writer\"}} {}\n",
                0.012 * f64::from(writer[3])
            );
            out += &format!("{CHECKPOINTS}_count{{by=\"writer\"}} {}\n", writer[3]);
            out += &format!("{CHECKPOINTS}_sum{{by=\"background\"}} 1\n");
            out += &format!("{CHECKPOINTS}_count{{by=\"background\"}} {background}\n");
            out
        };
        let before = Samples::parse(&text([1, 1, 1, 1], 3));
        // Four more by the writer: none under 5 ms, two under 10, all under 25.
        let after = Samples::parse(&text([1, 3, 5, 5], 10));
        let stages = Stages::from_delta(&after.since(&before)).over(2.0);
        assert_eq!(stages.checkpoints_writer, 4.0);
        assert_eq!(stages.checkpoints_background, 7.0);
        assert!((stages.writer_checkpoint_us - 12_000.0).abs() < 1e-6);
        // The median falls at the top of the 5–10 ms bucket.
        assert!((stages.writer_checkpoint_p50_us - 10_000.0).abs() < 1e-6);
        assert!((stages.writer_checkpoint_max_us - 25_000.0).abs() < 1e-6);
        assert_eq!(stages.per_10s(stages.checkpoints_writer), 20.0);
        // Summed over `by`, as before.
        assert_eq!(after.get(&format!("{CHECKPOINTS}_count")), 15.0);
    }

    #[test]
    fn quantiles_of_empty_or_overflowing_histograms() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(max_bound(&[(0.01, 0.0), (f64::INFINITY, 0.0)]), 0.0);
        let over = [(0.01, 1.0), (f64::INFINITY, 3.0)];
        assert_eq!(quantile(&over, 0.5), 0.01);
        assert_eq!(max_bound(&over), 0.01);
        let first = [(0.01, 4.0), (f64::INFINITY, 4.0)];
        assert!((quantile(&first, 0.5) - 0.005).abs() < 1e-12);
    }
}

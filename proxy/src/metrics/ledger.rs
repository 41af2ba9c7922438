//! The ledger's metrics, recorded by its writer thread through
//! [`LedgerObserver`].

use std::time::Duration;

use aegis_ledger::{AppendError, CheckpointBy, EventType, LedgerObserver};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Ledger metrics, recorded by the writer thread through [`LedgerObserver`].
#[derive(Debug)]
pub struct LedgerMetrics {
    /// One counter per event type, resolved once (the writer's hot path).
    appends: Vec<IntCounter>,
    append_errors: IntCounterVec,
    commit_duration: Histogram,
    commit_batch: Histogram,
    checkpoint_duration: HistogramVec,
    /// Set when scraped.
    pub queue_depth: IntGauge,
    /// Set when scraped.
    pub sessions_in_memory: IntGauge,
    /// 1 while the writer can record, 0 from a failed commit or probe (or
    /// a ledger file replaced underneath) until one succeeds.
    writable: IntGauge,
}

impl LedgerMetrics {
    pub(super) fn new(registry: &Registry) -> Result<LedgerMetrics, prometheus::Error> {
        let appends_total = IntCounterVec::new(
            Opts::new(
                "aegis_ledger_appends_total",
                "Envelopes committed to the ledger, by event type.",
            ),
            &["event_type"],
        )?;
        let append_errors = IntCounterVec::new(
            Opts::new(
                "aegis_ledger_append_errors_total",
                "Appends refused or failed, by kind (invalid, hash_mismatch, conflict, storage, closed).",
            ),
            &["kind"],
        )?;
        let commit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "aegis_ledger_commit_duration_seconds",
                "Time to place, insert and commit one group of appends.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 1.0,
            ]),
        )?;
        let commit_batch = Histogram::with_opts(
            HistogramOpts::new(
                "aegis_ledger_commit_batch_envelopes",
                "Envelopes per group commit.",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )?;
        let checkpoint_duration = HistogramVec::new(
            HistogramOpts::new(
                "aegis_ledger_checkpoint_duration_seconds",
                "WAL checkpoints, by the thread that ran them: background (appends go on) or writer (appends wait).",
            )
            .buckets(vec![
                0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5,
            ]),
            &["by"],
        )?;
        let queue_depth = IntGauge::new(
            "aegis_ledger_queue_depth",
            "Appends waiting for the ledger writer.",
        )?;
        let sessions_in_memory = IntGauge::new(
            "aegis_ledger_sessions_in_memory",
            "Sessions whose state is held in memory.",
        )?;
        let writable = IntGauge::new(
            "aegis_ledger_writable",
            "1 while the ledger can record; 0 from a failed commit or readiness probe (disk full, \
             I/O error, read-only, the file deleted or replaced underneath) until one succeeds.",
        )?;
        writable.set(1);
        registry.register(Box::new(writable.clone()))?;
        registry.register(Box::new(appends_total.clone()))?;
        registry.register(Box::new(append_errors.clone()))?;
        registry.register(Box::new(commit_duration.clone()))?;
        registry.register(Box::new(commit_batch.clone()))?;
        registry.register(Box::new(checkpoint_duration.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(sessions_in_memory.clone()))?;
        let appends = EventType::ALL
            .iter()
            .map(|t| appends_total.with_label_values(&[t.as_str()]))
            .collect();
        Ok(LedgerMetrics {
            appends,
            append_errors,
            commit_duration,
            commit_batch,
            checkpoint_duration,
            queue_depth,
            sessions_in_memory,
            writable,
        })
    }
}

impl LedgerObserver for LedgerMetrics {
    fn committed(&self, event_types: &[EventType], duration: Duration) {
        for t in event_types {
            // `appends` is in `EventType::ALL` order, which is declaration order.
            if let Some(counter) = self.appends.get(*t as usize) {
                counter.inc();
            }
        }
        self.commit_duration.observe(duration.as_secs_f64());
        self.commit_batch.observe(event_types.len() as f64);
    }

    fn writable(&self, writable: bool) {
        self.writable.set(i64::from(writable));
    }

    fn rejected(&self, error: &AppendError) {
        let kind = match error {
            AppendError::Invalid(_) => "invalid",
            AppendError::HashMismatch { .. } => "hash_mismatch",
            AppendError::Conflict { .. } => "conflict",
            AppendError::WrongKind { .. } => "wrong_session_kind",
            AppendError::Approval(_) => "approval",
            AppendError::Storage(_) => "storage",
            AppendError::Closed => "closed",
        };
        self.append_errors.with_label_values(&[kind]).inc();
    }

    fn checkpointed(&self, by: CheckpointBy, duration: Duration) {
        self.checkpoint_duration
            .with_label_values(&[by.as_str()])
            .observe(duration.as_secs_f64());
    }
}

//! Chain verification (`spec/envelope.md`, "Verification").
//!
//! For each session, in seq order: seq starts at 0 with no gaps; every field
//! is well formed; `prev_hash` is absent at 0 and equals the previous hash
//! after; the recomputed hash equals the stored one. The first failure is
//! reported with its seq and why. Rows stream through one at a time, so memory
//! stays constant however long the session.
//!
//! A hash chain cannot reveal that its newest envelopes were cut off; signed
//! checkpoints over the whole ledger, not built yet, would close that hole
//! (`spec/envelope.md`, "Verification").

use std::ops::ControlFlow;

use crate::digest::Digest;
use crate::store::{LedgerReader, StoreError};
use crate::stored::StoredEnvelope;

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub reason: String,
}

/// The verdict on one session's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    pub tenant_id: String,
    pub session_id: String,
    /// Envelopes stored for the session.
    pub envelopes: u64,
    /// `None` when the chain verifies.
    pub failure: Option<Failure>,
}

impl SessionReport {
    pub fn is_valid(&self) -> bool {
        self.failure.is_none()
    }
}

/// Checks one session's rows, fed in seq order.
#[derive(Debug)]
pub struct ChainCheck {
    tenant_id: String,
    session_id: String,
    expected_seq: u64,
    prev: Option<Digest>,
    envelopes: u64,
    failure: Option<Failure>,
}

impl ChainCheck {
    pub fn new(tenant_id: &str, session_id: &str) -> ChainCheck {
        ChainCheck {
            tenant_id: tenant_id.to_owned(),
            session_id: session_id.to_owned(),
            expected_seq: 0,
            prev: None,
            envelopes: 0,
            failure: None,
        }
    }

    /// Checks the next row.
    pub fn push(&mut self, row: &StoredEnvelope) {
        self.envelopes += 1;
        if self.failure.is_none()
            && let Err(failure) = self.check(row)
        {
            self.failure = Some(failure);
        }
    }

    fn check(&mut self, row: &StoredEnvelope) -> Result<(), Failure> {
        let expected = self.expected_seq;
        let fail = |seq: u64, reason: String| Failure { seq, reason };
        match u64::try_from(row.seq) {
            Ok(seq) if seq == expected => {}
            Ok(seq) if seq > expected => {
                return Err(fail(
                    expected,
                    format!("seq {expected} is missing (the next stored seq is {seq})"),
                ));
            }
            _ => {
                return Err(fail(
                    expected,
                    format!("seq {} is out of order where {expected} belongs", row.seq),
                ));
            }
        }
        let env = row
            .to_envelope()
            .map_err(|e| fail(expected, format!("malformed envelope: {e}")))?;
        let recomputed = env.compute_hash();
        if recomputed != env.hash {
            return Err(fail(
                expected,
                format!(
                    "hash mismatch: stored {}, recomputed {recomputed}",
                    env.hash
                ),
            ));
        }
        match (expected, env.prev_hash, self.prev) {
            (0, None, _) => {}
            (0, Some(_), _) => return Err(fail(0, "prev_hash is present at seq 0".into())),
            (_, None, _) => return Err(fail(expected, "prev_hash is missing".into())),
            (_, Some(stored), Some(prev)) if stored != prev => {
                return Err(fail(
                    expected,
                    format!(
                        "prev_hash {stored} does not link to the hash of seq {} ({prev})",
                        expected - 1
                    ),
                ));
            }
            _ => {}
        }
        if row.tool_name.as_deref() != env.payload.tool_name() {
            return Err(fail(
                expected,
                "the indexed tool_name column does not match payload.tool_name".into(),
            ));
        }
        self.prev = Some(env.hash);
        self.expected_seq += 1;
        Ok(())
    }

    pub fn finish(self) -> SessionReport {
        SessionReport {
            tenant_id: self.tenant_id,
            session_id: self.session_id,
            envelopes: self.envelopes,
            failure: self.failure,
        }
    }
}

/// Totals over a whole database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifySummary {
    pub sessions: u64,
    pub envelopes: u64,
    pub invalid_sessions: u64,
}

impl LedgerReader {
    /// Verifies one session; `None` when it has no envelopes.
    pub fn verify_session(
        &self,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Option<SessionReport>, StoreError> {
        let mut check = ChainCheck::new(tenant_id, session_id);
        self.for_each_in_session(tenant_id, session_id, |row| {
            check.push(&row);
            ControlFlow::Continue(())
        })?;
        let report = check.finish();
        Ok((report.envelopes > 0).then_some(report))
    }

    /// Verifies every session (optionally only one tenant's), calling
    /// `report` for each as it is finished.
    pub fn verify_all(
        &self,
        tenant_id: Option<&str>,
        mut report: impl FnMut(SessionReport),
    ) -> Result<VerifySummary, StoreError> {
        let mut summary = VerifySummary::default();
        let mut current: Option<ChainCheck> = None;
        let mut finish = |check: ChainCheck, summary: &mut VerifySummary| {
            let r = check.finish();
            summary.sessions += 1;
            summary.envelopes += r.envelopes;
            if !r.is_valid() {
                summary.invalid_sessions += 1;
            }
            report(r);
        };
        self.for_each(|row| {
            if tenant_id.is_some_and(|t| t != row.tenant_id) {
                return ControlFlow::Continue(());
            }
            let same = current
                .as_ref()
                .is_some_and(|c| c.tenant_id == row.tenant_id && c.session_id == row.session_id);
            if !same {
                if let Some(done) = current.take() {
                    finish(done, &mut summary);
                }
                current = Some(ChainCheck::new(&row.tenant_id, &row.session_id));
            }
            if let Some(check) = current.as_mut() {
                check.push(&row);
            }
            ControlFlow::Continue(())
        })?;
        if let Some(done) = current.take() {
            finish(done, &mut summary);
        }
        Ok(summary)
    }
}

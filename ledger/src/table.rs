//! Live session state, in memory.
//!
//! Who touches it: the writer thread is the only one that inserts or changes
//! an entry (after each commit, so an entry only ever reflects committed
//! envelopes); readers take short looks. The lock is a `std::sync::Mutex` held
//! for a map lookup or one batch of reducer steps, never across I/O or
//! `.await`. A session missing here (never seen, or seen before a restart) is
//! rebuilt from the ledger.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::append::{Head, SessionKind};
use crate::session::{RulesFingerprint, SessionState, Snapshot};

/// A session's chain head and reduced state.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub head: Head,
    /// Who may write the session (fixed by its first envelope).
    pub kind: SessionKind,
    pub state: SessionState,
    /// When the writer last appended to the session (its clock, Unix ms);
    /// what idle eviction goes by.
    pub last_used_unix_ms: i64,
    /// The rules every envelope in `state` was folded under (`None`: rules
    /// without a fingerprint, or the rules changed while it was folded): a
    /// summary is stored only for a state folded under one set of rules.
    pub(crate) folded_under: Option<RulesFingerprint>,
    /// The seq the session's stored summary was taken after, if it has one
    /// that its rules can use.
    pub(crate) summarized_seq: Option<u64>,
}

impl SessionEntry {
    /// Envelopes in the chain after its stored summary (all of them when it
    /// has none): what a rebuild would fold.
    pub(crate) fn unsummarized(&self) -> u64 {
        let from = self.summarized_seq.map_or(0, |s| s + 1);
        (self.head.seq + 1).saturating_sub(from)
    }

    /// The fingerprint to store this state's summary under, when one is
    /// due: the state was folded under the rules of now (`rules`) alone, and
    /// at least `every` envelopes came after its last summary.
    pub(crate) fn summary_due(
        &self,
        rules: Option<&RulesFingerprint>,
        every: u64,
    ) -> Option<RulesFingerprint> {
        let rules = *rules?;
        (every > 0 && self.folded_under == Some(rules) && self.unsummarized() >= every)
            .then_some(rules)
    }

    /// What the writer needs at the session's first envelope in a batch.
    pub(crate) fn batch_start(&self, rules: Option<&RulesFingerprint>, every: u64) -> BatchStart {
        BatchStart {
            head: self.head,
            kind: self.kind,
            summary: self
                .summary_due(rules, every)
                .map(|fingerprint| (self.state.to_summary(), fingerprint)),
        }
    }
}

/// A session as the writer finds it at its first envelope in a batch: its
/// head and kind, and its state's stored form when a summary is due.
#[derive(Debug)]
pub(crate) struct BatchStart {
    pub(crate) head: Head,
    pub(crate) kind: SessionKind,
    pub(crate) summary: Option<(String, RulesFingerprint)>,
}

/// Sessions of one tenant by id.
pub(crate) type TenantSessions = HashMap<Box<str>, SessionEntry>;

/// Sessions by tenant, then session id (nested so lookups borrow `&str`).
#[derive(Debug, Default)]
pub struct SessionTable {
    tenants: Mutex<HashMap<Box<str>, TenantSessions>>,
}

impl SessionTable {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, TenantSessions>> {
        // A panic while holding the lock cannot leave an entry half-updated in
        // a way later readers would misread (updates are whole-value), so a
        // poisoned lock is still usable.
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session's head, if it is in memory.
    pub fn head(&self, tenant_id: &str, session_id: &str) -> Option<Head> {
        self.head_and_kind(tenant_id, session_id)
            .map(|(head, _)| head)
    }

    /// The session's head and kind, if it is in memory.
    pub fn head_and_kind(&self, tenant_id: &str, session_id: &str) -> Option<(Head, SessionKind)> {
        self.lock()
            .get(tenant_id)
            .and_then(|s| s.get(session_id))
            .map(|e| (e.head, e.kind))
    }

    /// [`SessionEntry::batch_start`] of the session, if it is in memory.
    pub(crate) fn batch_start(
        &self,
        (tenant_id, session_id): (&str, &str),
        rules: Option<&RulesFingerprint>,
        every: u64,
    ) -> Option<BatchStart> {
        self.lock()
            .get(tenant_id)
            .and_then(|s| s.get(session_id))
            .map(|e| e.batch_start(rules, every))
    }

    /// A copy of the session's head and state, if it is in memory (head and
    /// state always belong together: both as of the same commit).
    pub fn entry(&self, tenant_id: &str, session_id: &str) -> Option<SessionEntry> {
        self.lock()
            .get(tenant_id)
            .and_then(|s| s.get(session_id))
            .cloned()
    }

    /// Runs `f` on the session's in-memory state, if present.
    pub fn with_state<R>(
        &self,
        tenant_id: &str,
        session_id: &str,
        f: impl FnOnce(&SessionState) -> R,
    ) -> Option<R> {
        self.lock()
            .get(tenant_id)
            .and_then(|s| s.get(session_id))
            .map(|e| f(&e.state))
    }

    pub fn snapshot(
        &self,
        tenant_id: &str,
        session_id: &str,
        now_unix_ms: i64,
    ) -> Option<Snapshot> {
        self.with_state(tenant_id, session_id, |s| s.snapshot(now_unix_ms))
    }

    /// Drops sessions not appended to after `cutoff_unix_ms`; returns how
    /// many. Only the writer thread calls this (between batches), so no batch
    /// in flight can lose an entry it placed; an evicted session is rebuilt
    /// from the ledger on its next use.
    pub(crate) fn evict_idle(&self, cutoff_unix_ms: i64) -> usize {
        let mut tenants = self.lock();
        let mut evicted = 0;
        tenants.retain(|_, sessions| {
            let before = sessions.len();
            sessions.retain(|_, entry| entry.last_used_unix_ms > cutoff_unix_ms);
            evicted += before - sessions.len();
            !sessions.is_empty()
        });
        evicted
    }

    /// Sessions held in memory.
    pub fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

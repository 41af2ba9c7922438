//! # aegis-ledger
//!
//! The sidecar's memory: an append-only, per-session hash chain of envelopes
//! in SQLite, that an auditor can verify offline.
//!
//! - [`canon`]: RFC 8785 canonical JSON — the only place JSON is canonicalised.
//! - [`Envelope`], [`Preimage`]: the contract of `spec/envelope.md`
//!   (SHA-256 over the canonical preimage, `prev_hash` as a byte array).
//! - [`wire`]: the Aegis `/v1/events` JSON forms, in and out.
//! - [`Ledger`]: the SQLite store — one writer thread with group commit
//!   ([`LedgerHandle`] talks to it), read-only [`LedgerReader`]s.
//! - [`SessionState`]: the deterministic reducer behind session snapshots and
//!   budgets, kept live in a [`SessionTable`] and rebuilt from the ledger.
//! - [`verify`]: full recomputation of every chain.
//!
//! What it must never do: acknowledge an append before it is committed; hash
//! anything but the canonical preimage; let the chain order differ from the
//! commit order (one writer sequences every append). It knows nothing of HTTP
//! or Prometheus: the proxy crate serves it and observes it through
//! [`LedgerObserver`].
//!
//! The request path that ends here is described in the repository's
//! `ARCHITECTURE.md` ("One tools/call, start to finish"; "The ledger").

pub mod append;
pub mod approval;
pub mod canon;
mod config;
pub mod digest;
pub mod envelope;
pub mod event;
pub mod session;
mod store;
pub mod stored;
pub mod table;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod verify;
pub mod wire;

pub use append::{
    AppendError, AppendRequest, Appended, Head, NewEvent, Origin, Seal, SessionKind, now_unix_ms,
};
pub use approval::{Approval, ApprovalState, Vote, VoteKind, VoteRefused};
pub use config::{
    DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY, DEFAULT_SUMMARY_EVERY, LedgerConfig,
    ParseSynchronousError, Synchronous,
};
pub use digest::Digest;
pub use envelope::{Envelope, Payload, Preimage};
pub use event::{EventType, UnknownEventType};
pub use session::{
    DefaultSessionRules, LoopViolation, RulesFingerprint, SessionRules, SessionState, Snapshot,
    ToolCall, ToolHistory,
};
pub use store::{
    APPLICATION_ID, ApprovalQuery, CheckpointBy, Ledger, LedgerBuilder, LedgerHandle,
    LedgerObserver, LedgerReader, ListQuery, NoObserver, Page, Queued, SCHEMA_VERSION, StoreError,
};
pub use stored::StoredEnvelope;
pub use table::{SessionEntry, SessionTable};
pub use verify::{ChainCheck, Failure, SessionReport, VerifySummary};

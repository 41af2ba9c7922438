//! # aegis-policy
//!
//! The sidecar's judgement: given one proposed tool call, the session's state
//! and the agent's capability manifest, decide allow / deny / require
//! approval. It does no I/O (no tokio, no hyper, no SQLite), so decisions are
//! pure functions that take microseconds.
//!
//! This first stage holds the decision vocabulary shared by every surface —
//! outcomes and Aegis's reason codes — whose strings are a public,
//! append-only contract (ledger rows, metric labels, API answers). The
//! manifest model and `decide()` follow (DESIGN.md, "Policy semantics").

mod reason;

pub use reason::{Outcome, Reason};

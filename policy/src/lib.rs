//! # aegis-policy
//!
//! The sidecar's judgement: given one proposed tool call, the session's state
//! and the agent's capability manifest, decide allow / deny / require
//! approval. It does no I/O (no tokio, no hyper, no SQLite) outside
//! [`store`], so decisions are pure functions that take microseconds.
//!
//! - [`manifest`]: `aegis.dev/manifest/v0.1` (JSON or YAML), validated with
//!   every problem reported by its field path.
//! - [`domain`]: network destinations and domain allowlists (normalisation,
//!   IDNA, wildcards) — where egress bypasses are stopped.
//! - [`decide`](mod@decide): Aegis's rule order (`README.md`, "Policy
//!   decisions") over a manifest compiled once.
//! - [`loops`]: loop detection over a session's recent proposals.
//! - [`paths`]: lexical normalisation of path arguments and the
//!   filesystem-roots check (`FS_DENY`).
//! - [`rate`]: per-tool token buckets (`RATE_LIMITED`).
//! - [`sanitize`]: rewrites of a call's arguments (`policy.sanitize`).
//! - [`trust`]: which resources and prompts do not taint
//!   (`policy.trusted_content`).
//! - [`conformance`]: the Aegis conformance packs and the Aegis decide request.
//! - [`store`]: the live manifest behind `ArcSwap`, reloaded from its file
//!   (directory watch, SIGHUP, API) — with [`watch`], the only modules that
//!   do I/O.
//! - [`watch`]: the file watch (also the proxy's, for its key and token
//!   files).
//! - [`Outcome`], [`Reason`]: the decision vocabulary, whose strings are a
//!   public, append-only contract (ledger rows, metric labels, API answers).

pub mod conformance;
pub mod decide;
pub mod domain;
pub mod governance;
pub mod loops;
pub mod manifest;
pub mod paths;
pub mod rate;
mod reason;
pub mod sanitize;
pub mod store;
pub mod trust;
pub mod watch;

pub use decide::{CompiledManifest, Constraints, Decision, Proposal, SessionFacts, decide};
pub use manifest::{ApprovalMode, ApprovalRule, FsAccess, FsPathRule, Manifest, ManifestError};
pub use reason::{Outcome, Reason};
pub use store::{
    LoadedManifest, ManifestLoadError, ManifestStatus, ManifestStore, ReloadOutcome, WatchGuard,
};

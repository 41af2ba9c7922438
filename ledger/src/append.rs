//! Append requests and their outcomes.
//!
//! Three ways to append, chosen by what the caller supplies:
//! - nothing of the chain ([`Seal::AtHead`]): the ledger seals the event at the
//!   session's head — how the proxy itself records;
//! - `seq` (and optionally `prev_hash`) without `hash` ([`Seal::Expect`]): the
//!   ledger seals it, provided the session's head is still where the caller
//!   believes (optimistic concurrency);
//! - a client-sealed envelope ([`Seal::Client`], the Aegis SDK's way): its hash
//!   must match ours and it must extend the head exactly.

use crate::digest::Digest;
use crate::envelope::{Payload, Preimage};
use crate::event::EventType;

/// Longest tenant, user or session id accepted, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// An event to record, before it is placed in its session's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub tenant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub ts_unix_ms: i64,
    pub event_type: EventType,
    pub payload: Payload,
}

/// How an event is placed in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// At the session's head, whatever it is.
    AtHead,
    /// At `seq`, only if that is the next one (and `prev_hash`, when given, is the head).
    Expect { seq: u64, prev_hash: Option<Digest> },
    /// Sealed by the client: `hash` must be the hash of the event at `seq` after `prev_hash`.
    Client {
        seq: u64,
        prev_hash: Option<Digest>,
        hash: Digest,
    },
}

/// One append.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub event: NewEvent,
    pub seal: Seal,
}

/// A session's newest envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Digest,
}

/// What the caller gets once the append is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: Digest,
}

/// Why an append was not recorded. Shaped by what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The request itself is wrong; retrying it cannot help.
    #[error("{0}")]
    Invalid(String),
    /// A client-sealed envelope whose hash is not the hash of its fields.
    #[error("hash mismatch at seq {seq}: expected {expected}, received {received}")]
    HashMismatch {
        seq: u64,
        expected: Digest,
        received: Digest,
    },
    /// The envelope does not extend the session's current head; `head` says
    /// where the chain is so the client can resume.
    #[error("chain conflict: {reason}")]
    Conflict { reason: String, head: Option<Head> },
    /// The database could not record it (disk full, I/O error...).
    #[error("ledger storage error: {0}")]
    Storage(String),
    /// The ledger is shutting down.
    #[error("ledger is closed")]
    Closed,
}

impl AppendRequest {
    /// An event sealed at its session's head.
    pub fn at_head(event: NewEvent) -> AppendRequest {
        AppendRequest {
            event,
            seal: Seal::AtHead,
        }
    }

    /// Everything that can be checked without the chain: ids, and a client
    /// seal's shape and hash. Done by the caller, off the writer thread.
    pub fn check(&self) -> Result<(), AppendError> {
        let e = &self.event;
        for (name, value) in [("tenant_id", &e.tenant_id), ("session_id", &e.session_id)] {
            if value.is_empty() {
                return Err(AppendError::Invalid(format!(
                    "{name} is required and must not be empty"
                )));
            }
        }
        for (name, value) in [
            ("tenant_id", &e.tenant_id),
            ("user_id", &e.user_id),
            ("session_id", &e.session_id),
        ] {
            if value.len() > MAX_ID_LEN {
                return Err(AppendError::Invalid(format!(
                    "{name} is {} bytes long; at most {MAX_ID_LEN} are allowed",
                    value.len()
                )));
            }
        }
        let (seq, prev_hash) = match self.seal {
            Seal::AtHead => return Ok(()),
            Seal::Expect { seq, prev_hash } | Seal::Client { seq, prev_hash, .. } => {
                (seq, prev_hash)
            }
        };
        if seq > i64::MAX as u64 {
            return Err(AppendError::Invalid(format!("seq {seq} is out of range")));
        }
        if seq == 0 && prev_hash.is_some() {
            return Err(AppendError::Invalid(
                "prev_hash must be absent at seq 0".into(),
            ));
        }
        if let Seal::Client {
            seq,
            prev_hash,
            hash,
        } = self.seal
        {
            if seq > 0 && prev_hash.is_none() {
                return Err(AppendError::Invalid(format!(
                    "prev_hash is required for a sealed envelope at seq {seq}"
                )));
            }
            let expected = self.preimage(seq, prev_hash.as_ref()).hash();
            if expected != hash {
                return Err(AppendError::HashMismatch {
                    seq,
                    expected,
                    received: hash,
                });
            }
        }
        Ok(())
    }

    /// The preimage of this event placed at `seq` after `prev_hash`.
    pub fn preimage<'a>(&'a self, seq: u64, prev_hash: Option<&'a Digest>) -> Preimage<'a> {
        let e = &self.event;
        Preimage {
            tenant_id: &e.tenant_id,
            user_id: &e.user_id,
            session_id: &e.session_id,
            seq,
            ts_unix_ms: e.ts_unix_ms,
            event_type: e.event_type.as_str(),
            payload: e.payload.canonical(),
            prev_hash,
        }
    }
}

impl From<Appended> for Head {
    fn from(a: Appended) -> Head {
        Head {
            seq: a.seq,
            hash: a.hash,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

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
//!
//! Every append also says who writes it ([`Origin`]), and every session is of
//! one [`SessionKind`], fixed by its first envelope: sessions the sidecar
//! enforces are written only by the sidecar (and an operator), sessions SDK
//! clients record through `/v1/events` only by clients (and an operator).
//! The writer refuses any other mix ([`AppendError::WrongKind`]), so nothing a
//! client appends can change an enforced session's budgets or taint.

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

/// Who writes an envelope; stored with it (the `origin` column, not hashed:
/// the hashed fields are the Aegis contract's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The inline proxy (MCP or egress) recording what it decided and saw.
    Sidecar,
    /// An SDK client through `POST /v1/events`.
    Client,
    /// An operator action taken through the API (a sanitizer registration):
    /// into an existing session of either kind, never starting one.
    Operator,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Sidecar => "sidecar",
            Origin::Client => "client",
            Origin::Operator => "operator",
        }
    }

    /// The stored form back; `None` for anything else.
    pub fn parse(stored: &str) -> Option<Origin> {
        match stored {
            "sidecar" => Some(Origin::Sidecar),
            "client" => Some(Origin::Client),
            "operator" => Some(Origin::Operator),
            _ => None,
        }
    }
}

/// Who may write a session, fixed by its first envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// Enforced inline: written only by the sidecar (and operators).
    Sidecar,
    /// Recorded by SDK clients through `/v1/events` (and operators).
    Client,
}

impl SessionKind {
    /// As the snapshot shows it: `"sidecar"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Sidecar => "sidecar",
            SessionKind::Client => "client",
        }
    }

    /// The kind of a session whose first envelope has the stored `origin`.
    /// Sessions recorded before origins were stored (`None`), or started by
    /// anything but a client, are sidecar-owned: a client can never append
    /// to a session it cannot prove it started.
    pub fn from_first(origin: Option<Origin>) -> SessionKind {
        match origin {
            Some(Origin::Client) => SessionKind::Client,
            Some(Origin::Sidecar | Origin::Operator) | None => SessionKind::Sidecar,
        }
    }

    /// Whether `origin` may append to a session of this kind.
    pub fn admits(self, origin: Origin) -> bool {
        matches!(
            (self, origin),
            (_, Origin::Operator)
                | (SessionKind::Sidecar, Origin::Sidecar)
                | (SessionKind::Client, Origin::Client)
        )
    }
}

impl std::fmt::Display for SessionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionKind::Sidecar => "sidecar-owned",
            SessionKind::Client => "client-recorded",
        })
    }
}

/// One append.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub event: NewEvent,
    pub seal: Seal,
    pub origin: Origin,
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
    /// The session is of a kind this origin may not write (a client
    /// appending to a sidecar-owned session, or the reverse), or an operator
    /// action names a session that does not exist (`kind` is `None`).
    #[error("{reason}")]
    WrongKind {
        reason: String,
        kind: Option<SessionKind>,
    },
    /// It would change an approval against its rules (a vote on a closed
    /// approval or by an identity that voted, a call released by an
    /// approval that does not release it); nothing of its group was
    /// recorded.
    #[error("{0}")]
    Approval(String),
    /// The database could not record it (disk full, I/O error...).
    #[error("ledger storage error: {0}")]
    Storage(String),
    /// The ledger is shutting down.
    #[error("ledger is closed")]
    Closed,
}

impl AppendRequest {
    /// An event sealed at its session's head, written by a client (the
    /// origin with the fewest rights; see [`AppendRequest::by`]).
    pub fn at_head(event: NewEvent) -> AppendRequest {
        AppendRequest {
            event,
            seal: Seal::AtHead,
            origin: Origin::Client,
        }
    }

    /// The same append, written by `origin`.
    pub fn by(self, origin: Origin) -> AppendRequest {
        AppendRequest { origin, ..self }
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

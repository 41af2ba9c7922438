//! Rows as stored: what listing, export and verification read back.
//!
//! Deliberately unvalidated — a row may have been tampered with, and the
//! verifier must be able to say exactly how.

use crate::digest::Digest;
use crate::envelope::{Envelope, Payload};

/// One `envelopes` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Insertion order across all sessions (SQLite rowid).
    pub id: i64,
    pub tenant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub seq: i64,
    pub ts_unix_ms: i64,
    pub event_type: String,
    /// The indexed copy of `payload.tool_name` (not hashed).
    pub tool_name: Option<String>,
    /// The payload's exact JSON text.
    pub payload: String,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
    /// Who wrote it (`sidecar`, `client`, `operator`; not hashed); `None`
    /// for rows recorded before origins were stored.
    pub origin: Option<String>,
}

/// Why a stored row is not a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowError(pub String);

impl StoredEnvelope {
    /// Validates the row's fields into an [`Envelope`] (without checking its hash).
    pub fn to_envelope(&self) -> Result<Envelope, RowError> {
        let seq =
            u64::try_from(self.seq).map_err(|_| RowError(format!("negative seq {}", self.seq)))?;
        let event_type = self
            .event_type
            .parse()
            .map_err(|e| RowError(format!("{e}")))?;
        let payload = Payload::from_text(&self.payload)
            .map_err(|e| RowError(format!("payload is not valid JSON: {e}")))?;
        let hash = Digest::from_slice(&self.hash)
            .ok_or_else(|| RowError(format!("hash is {} bytes, not 32", self.hash.len())))?;
        let prev_hash =
            match &self.prev_hash {
                None => None,
                Some(bytes) => Some(Digest::from_slice(bytes).ok_or_else(|| {
                    RowError(format!("prev_hash is {} bytes, not 32", bytes.len()))
                })?),
            };
        Ok(Envelope {
            tenant_id: self.tenant_id.clone(),
            user_id: self.user_id.clone(),
            session_id: self.session_id.clone(),
            seq,
            ts_unix_ms: self.ts_unix_ms,
            event_type,
            payload,
            prev_hash,
            hash,
        })
    }
}

//! Test support (feature `test-support`): damaging a ledger file the way an
//! attacker with write access to it could, so that tests in every crate can
//! prove verification catches it. Never compiled into the sidecar.

use std::path::Path;

use rusqlite::{Connection, params};

/// One way to damage one stored envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// One byte of the payload text changed (the JSON stays valid).
    Payload,
    /// One bit of the stored hash flipped.
    Hash,
    /// One bit of the stored prev_hash flipped (seq must be > 0).
    PrevHash,
    /// The seq moved far past the end.
    Seq,
    /// One byte of user_id changed.
    UserId,
    /// The row deleted.
    Delete,
    /// The row's seq swapped with the next row's.
    Reorder,
}

impl Tamper {
    pub const ALL: &'static [Tamper] = &[
        Tamper::Payload,
        Tamper::Hash,
        Tamper::PrevHash,
        Tamper::Seq,
        Tamper::UserId,
        Tamper::Delete,
        Tamper::Reorder,
    ];
}

/// Applies `how` to envelope `seq` of the session, directly in the file.
/// Returns the seq verification must report as the first bad one.
pub fn tamper(
    path: &Path,
    tenant: &str,
    session: &str,
    seq: i64,
    how: Tamper,
) -> rusqlite::Result<i64> {
    let conn = Connection::open(path)?;
    let key = params![tenant, session, seq];
    let where_ = "WHERE tenant_id = ?1 AND session_id = ?2 AND seq = ?3";
    match how {
        Tamper::Payload => {
            let text: String = conn.query_row(
                &format!("SELECT payload FROM envelopes {where_}"),
                key,
                |r| r.get(0),
            )?;
            let mut bytes = text.into_bytes();
            // The last lowercase letter or digit: inside a string or number
            // in the payloads tests write, so the JSON stays valid.
            if let Some(b) = bytes
                .iter_mut()
                .rev()
                .find(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                *b = match *b {
                    b'z' => b'y',
                    b'9' => b'8',
                    other => other + 1,
                };
            }
            let text = String::from_utf8(bytes).unwrap_or_default();
            conn.execute(
                &format!("UPDATE envelopes SET payload = ?4 {where_}"),
                params![tenant, session, seq, text],
            )?;
        }
        Tamper::Hash | Tamper::PrevHash => {
            let column = if how == Tamper::Hash {
                "hash"
            } else {
                "prev_hash"
            };
            let mut bytes: Vec<u8> = conn.query_row(
                &format!("SELECT {column} FROM envelopes {where_}"),
                key,
                |r| r.get(0),
            )?;
            if let Some(b) = bytes.get_mut(7) {
                *b ^= 0x01;
            }
            conn.execute(
                &format!("UPDATE envelopes SET {column} = ?4 {where_}"),
                params![tenant, session, seq, bytes],
            )?;
        }
        Tamper::Seq => {
            conn.execute(
                &format!("UPDATE envelopes SET seq = seq + 1000000 {where_}"),
                key,
            )?;
        }
        Tamper::UserId => {
            conn.execute(
                &format!("UPDATE envelopes SET user_id = CASE user_id WHEN '' THEN 'x' ELSE substr(user_id, 1, length(user_id) - 1) || char(unicode(substr(user_id, -1)) + 1) END {where_}"),
                key,
            )?;
        }
        Tamper::Delete => {
            conn.execute(&format!("DELETE FROM envelopes {where_}"), key)?;
        }
        Tamper::Reorder => {
            let swap = "UPDATE envelopes SET seq = ?4 WHERE tenant_id = ?1 AND session_id = ?2 AND seq = ?3";
            let parked = i64::MAX;
            conn.execute(swap, params![tenant, session, seq, parked])?;
            conn.execute(swap, params![tenant, session, seq + 1, seq])?;
            conn.execute(swap, params![tenant, session, parked, seq + 1])?;
        }
    }
    Ok(seq)
}

/// The ledger file's write lock, held by another connection until dropped:
/// a running sidecar's commits wait behind it (and give up after the
/// writer's busy timeout), while its reads go on. Lets a test stop the
/// sidecar between two commits of one call, e.g. after the proposal and
/// before the result.
#[derive(Debug)]
pub struct WriteLock {
    conn: Connection,
}

impl WriteLock {
    /// Takes the lock, waiting up to `wait` for a commit in progress.
    pub fn take(path: &Path, wait: std::time::Duration) -> rusqlite::Result<WriteLock> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(wait)?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(WriteLock { conn })
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Nothing was written: the transaction ends without a trace.
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

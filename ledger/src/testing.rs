//! Test support (feature `test-support`): damaging a ledger file the way an
//! attacker with write access to it could, so that tests in every crate can
//! prove verification catches it. Never compiled into the sidecar.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted when dropped,
/// for disk-full tests; `None` (with the reason printed on stderr, so a
/// skipped test says why) where mounting is not allowed.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts it read-only (`false`) or read-write (`true`).
    pub fn set_writable(&self, writable: bool) {
        let mode = if writable { "remount,rw" } else { "remount,ro" };
        let status = Command::new("mount")
            .args(["-o", mode])
            .arg(self.dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -o {mode} failed: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system under `dir` with one file until it is full.
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("the filler file");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Small writes for what a 64 KiB one could not fit.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    let _ = file.sync_all();
    filler
}

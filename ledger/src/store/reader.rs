//! Reading the ledger: listing with pagination, streaming a session, rebuilding
//! session state. Every call is blocking (SQLite): async callers run it on a
//! blocking thread (`tokio::task::spawn_blocking`), never on a worker.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use rusqlite::{Connection, OpenFlags, Row, ToSql, params_from_iter};
use sha2::{Digest as _, Sha256};

use super::approvals::{self, ApprovalQuery};
use super::{StoreError, schema};
use crate::approval::{Approval, ApprovalState};
use crate::event::EventType;
use crate::session::{DefaultSessionRules, SessionRules};
use crate::stored::StoredEnvelope;
use crate::table::SessionEntry;

const COLUMNS: &str = "id, tenant_id, user_id, session_id, seq, ts_unix_ms, event_type, tool_name, payload, prev_hash, hash, origin";

/// Idle read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

/// Read-only access to a ledger file.
#[derive(Debug, Clone)]
pub struct LedgerReader {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    path: PathBuf,
    /// `immutable=1`: for a copy that nothing writes (see [`LedgerReader::open_offline`]).
    immutable: bool,
    idle: Mutex<Vec<Connection>>,
    detector: Arc<dyn SessionRules>,
}

impl LedgerReader {
    pub(super) fn live(path: PathBuf, detector: Arc<dyn SessionRules>) -> LedgerReader {
        LedgerReader {
            inner: Arc::new(Pool {
                path,
                immutable: false,
                idle: Mutex::new(Vec::new()),
                detector,
            }),
        }
    }

    /// Opens a ledger file read-only, e.g. an auditor's copy. When SQLite
    /// cannot open it read-only in place (no `-shm` file and a read-only
    /// directory), it is opened as immutable, which reads the main file alone.
    pub fn open_offline(path: &Path) -> Result<LedgerReader, StoreError> {
        if !path.is_file() {
            return Err(StoreError::BadQuery(format!(
                "no ledger file at {}",
                path.display()
            )));
        }
        for immutable in [false, true] {
            let reader = LedgerReader {
                inner: Arc::new(Pool {
                    path: path.to_owned(),
                    immutable,
                    idle: Mutex::new(Vec::new()),
                    detector: Arc::new(DefaultSessionRules),
                }),
            };
            match reader.with_conn(schema::check_readable) {
                Ok(()) => return Ok(reader),
                Err(StoreError::Sqlite(e)) if !immutable => {
                    // Immutable mode reads the main file only: never let it
                    // silently skip envelopes still in the WAL.
                    if let Some(wal) = pending_wal(path) {
                        return Err(StoreError::BadQuery(format!(
                            "cannot open {} read-only ({e}), and its WAL {} holds envelopes \
                             not yet in the main file; verify a copy in a writable directory",
                            path.display(),
                            wal.display()
                        )));
                    }
                    tracing::debug!(error = %e, "read-only open failed; retrying as immutable");
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::BadQuery(format!(
            "cannot open {} read-only",
            path.display()
        )))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let pool = &self.inner;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = if pool.immutable {
            Connection::open_with_flags(file_uri(&pool.path, "immutable=1"), flags)?
        } else {
            Connection::open_with_flags(file_uri(&pool.path, "mode=ro"), flags)?
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        super::stable_plans(&conn)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) fn with_conn<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = f(&conn);
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// One page of envelopes.
    pub fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        query.check()?;
        let after = match &query.page_token {
            Some(token) => query.decode_token(token)?,
            None => -1,
        };
        let mut sql = format!("SELECT {COLUMNS} FROM envelopes WHERE tenant_id = ?");
        let mut args: Vec<&dyn ToSql> = vec![&query.tenant_id];
        let order = if let Some(session) = &query.session_id {
            sql.push_str(" AND session_id = ?");
            args.push(session);
            "seq"
        } else {
            "id"
        };
        if let Some(event_type) = &query.event_type {
            sql.push_str(" AND event_type = ?");
            args.push(event_type);
        }
        if let Some(tool) = &query.tool_name {
            sql.push_str(" AND tool_name = ?");
            args.push(tool);
        }
        let limit = i64::from(query.limit) + 1;
        sql.push_str(&format!(" AND {order} > ? ORDER BY {order} LIMIT ?"));
        args.push(&after);
        args.push(&limit);

        let mut envelopes = self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), stored_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        let next_page_token = if envelopes.len() > query.limit as usize {
            envelopes.truncate(query.limit as usize);
            envelopes.last().map(|last| {
                let key = if query.session_id.is_some() {
                    last.seq
                } else {
                    last.id
                };
                query.encode_token(key)
            })
        } else {
            None
        };
        Ok(Page {
            envelopes,
            next_page_token,
        })
    }

    /// Streams a session's envelopes in seq order, in one read transaction,
    /// without holding them all in memory. `visit` can stop early.
    pub fn for_each_in_session(
        &self,
        tenant_id: &str,
        session_id: &str,
        visit: impl FnMut(StoredEnvelope) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| scan_session(conn, tenant_id, session_id, visit))
    }

    /// Streams every envelope ordered by (tenant, session, seq).
    pub fn for_each(
        &self,
        mut visit: impl FnMut(StoredEnvelope) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM envelopes ORDER BY tenant_id, session_id, seq"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                if visit(stored_from_row(row)?).is_break() {
                    break;
                }
            }
            Ok(())
        })
    }

    /// The envelope at `seq` of a session, if there is one.
    pub fn envelope(
        &self,
        tenant_id: &str,
        session_id: &str,
        seq: u64,
    ) -> Result<Option<StoredEnvelope>, StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM envelopes WHERE tenant_id = ?1 AND session_id = ?2 AND seq = ?3"
            ))?;
            let mut rows = stmt.query(rusqlite::params![tenant_id, session_id, seq])?;
            Ok(match rows.next()? {
                Some(row) => Some(stored_from_row(row)?),
                None => None,
            })
        })
    }

    /// One approval by id.
    pub fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        self.with_conn(|conn| approvals::get(conn, id))
    }

    /// Approvals matching `query`, oldest request first, and the cursor
    /// of the next page (`None`: this is the last).
    pub fn approvals(
        &self,
        query: &ApprovalQuery,
    ) -> Result<(Vec<Approval>, Option<i64>), StoreError> {
        let limit = query.limit.clamp(1, 1000);
        let mut rows = self.with_conn(|conn| {
            approvals::list(
                conn,
                &ApprovalQuery {
                    limit: limit + 1,
                    ..query.clone()
                },
            )
        })?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more.then(|| rows.last().map(|(rowid, _)| *rowid)).flatten();
        Ok((rows.into_iter().map(|(_, a)| a).collect(), next))
    }

    /// The oldest unexpired approval of this call in `state` at
    /// `now_unix_ms`: `Approved`, the one that can release it; `Pending`,
    /// the one it waits on. `args_digest`: SHA-256 hex of the call's
    /// canonical arguments.
    pub fn approval_for_call(
        &self,
        session: (&str, &str),
        tool_name: &str,
        args_digest: &str,
        state: ApprovalState,
        now_unix_ms: i64,
    ) -> Result<Option<Approval>, StoreError> {
        self.with_conn(|conn| {
            approvals::for_call(conn, session, tool_name, args_digest, state, now_unix_ms)
        })
    }

    /// Approvals recorded pending or approved whose expiry has passed (at
    /// most `limit`, the longest overdue first).
    pub fn overdue_approvals(
        &self,
        now_unix_ms: i64,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        self.with_conn(|conn| approvals::overdue(conn, now_unix_ms, limit))
    }

    /// Approvals waiting for votes at `now_unix_ms`: of one session, or all.
    pub fn pending_approvals(
        &self,
        session: Option<(&str, &str)>,
        now_unix_ms: i64,
    ) -> Result<u64, StoreError> {
        self.with_conn(|conn| approvals::pending_count(conn, session, now_unix_ms))
    }

    /// Rebuilds a session's head and state from its stored summary and the
    /// envelopes after it, or from every envelope (`None` when it has none;
    /// see `rebuild`).
    pub fn load_session(
        &self,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let detector = self.inner.detector.clone();
        self.with_conn(|conn| super::rebuild::load_session(conn, tenant_id, session_id, &*detector))
    }
}

/// The database's WAL file, when it exists and holds frames.
fn pending_wal(path: &Path) -> Option<PathBuf> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    std::fs::metadata(&wal)
        .is_ok_and(|m| m.len() > 0)
        .then_some(wal)
}

/// `file:` URI for `path` with a query, escaping what URIs reserve.
fn file_uri(path: &Path, query: &str) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

fn scan_session(
    conn: &Connection,
    tenant_id: &str,
    session_id: &str,
    mut visit: impl FnMut(StoredEnvelope) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM envelopes WHERE tenant_id = ?1 AND session_id = ?2 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([tenant_id, session_id])?;
    while let Some(row) = rows.next()? {
        if visit(stored_from_row(row)?).is_break() {
            break;
        }
    }
    Ok(())
}

fn stored_from_row(row: &Row<'_>) -> rusqlite::Result<StoredEnvelope> {
    Ok(StoredEnvelope {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        user_id: row.get(2)?,
        session_id: row.get(3)?,
        seq: row.get(4)?,
        ts_unix_ms: row.get(5)?,
        event_type: row.get(6)?,
        tool_name: row.get(7)?,
        payload: row.get(8)?,
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
        origin: row.get(11)?,
    })
}

/// A listing request (`GET /v1/events`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub tenant_id: String,
    pub session_id: Option<String>,
    pub event_type: Option<String>,
    pub tool_name: Option<String>,
    /// Page size; the caller caps it.
    pub limit: u32,
    /// Where the previous page ended: the opaque `NextToken` it returned.
    pub page_token: Option<String>,
}

/// A page of envelopes; `next_page_token` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub envelopes: Vec<StoredEnvelope>,
    pub next_page_token: Option<String>,
}

impl ListQuery {
    fn check(&self) -> Result<(), StoreError> {
        if self.tenant_id.is_empty() {
            return Err(StoreError::BadQuery("tenant_id is required".into()));
        }
        if self.limit == 0 {
            return Err(StoreError::BadQuery("limit must be at least 1".into()));
        }
        if let Some(t) = &self.event_type {
            t.parse::<EventType>()
                .map_err(|e| StoreError::BadQuery(format!("event_type: {e}")))?;
        }
        Ok(())
    }

    /// A short digest of the filters, so a token only continues its own query.
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            Some(self.tenant_id.as_str()),
            self.session_id.as_deref(),
            self.event_type.as_deref(),
            self.tool_name.as_deref(),
        ] {
            match part {
                Some(s) => {
                    h.update([1]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                None => h.update([0]),
            }
        }
        hex::encode(&h.finalize()[..6])
    }

    fn encode_token(&self, after: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("v1.{}.{after}", self.fingerprint()))
    }

    fn decode_token(&self, token: &str) -> Result<i64, StoreError> {
        let bad = |why: &str| StoreError::BadQuery(format!("page_token {why}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad("is not a token this server issued"))?;
        let text =
            String::from_utf8(bytes).map_err(|_| bad("is not a token this server issued"))?;
        let mut parts = text.split('.');
        let (Some("v1"), Some(fingerprint), Some(after), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not a token this server issued"));
        };
        if fingerprint != self.fingerprint() {
            return Err(bad("belongs to a listing with other filters"));
        }
        after
            .parse()
            .map_err(|_| bad("is not a token this server issued"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_wal_counts_only_when_it_holds_frames() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        assert_eq!(pending_wal(&db), None);
        std::fs::write(dir.path().join("l.db-wal"), b"").unwrap();
        assert_eq!(pending_wal(&db), None);
        std::fs::write(dir.path().join("l.db-wal"), b"frames").unwrap();
        assert_eq!(pending_wal(&db), Some(dir.path().join("l.db-wal")));
    }

    #[test]
    fn uris_escape_what_sqlite_would_read_as_uri_syntax() {
        assert_eq!(
            file_uri(Path::new("/a b/c?d#e%f.db"), "mode=ro"),
            "file:/a b/c%3fd%23e%25f.db?mode=ro"
        );
    }
}

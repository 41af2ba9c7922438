//! Rebuilding a session's head and state after a restart or an eviction,
//! and the stored summaries that make it short (`ARCHITECTURE.md`, "The
//! ledger").
//!
//! The writer stores a long session's state in `session_summaries` every
//! `summary_every` envelopes, in the transaction of a batch, naming the seq
//! and hash it was taken at and the fingerprint of the rules it was folded
//! under. A rebuild starts from that state and folds only the envelopes
//! after it, when all of this holds; otherwise it folds every envelope, as
//! it always did:
//! - the rules of now have a fingerprint, and it is the summary's;
//! - the summary reads back ([`SessionState::from_summary`]);
//! - the envelope at its seq is there, with its hash.
//!
//! Either way the result is the same: the fold of every envelope under the
//! rules of now (a property test compares the two).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::append::{Head, Origin, SessionKind};
use crate::digest::Digest;
use crate::event::EventType;
use crate::session::{Observation, RulesFingerprint, SessionRules, SessionState};
use crate::table::SessionEntry;

/// The schema version that added `session_summaries`.
const SUMMARIES_SINCE: i64 = 5;

/// A stored summary, as read.
struct Stored {
    seq: u64,
    hash: Vec<u8>,
    rules: Vec<u8>,
    state: String,
}

/// Where a rebuild starts.
struct Start {
    state: SessionState,
    head: Option<Head>,
    /// The first seq still to fold.
    from_seq: i64,
    summarized_seq: Option<u64>,
}

/// Rebuilds a session's head and state from the ledger (`None` when it has
/// no envelopes). Rows that do not parse (which verification reports) move
/// the head but not the state.
pub(crate) fn load_session(
    conn: &Connection,
    tenant_id: &str,
    session_id: &str,
    rules: &dyn SessionRules,
) -> Result<Option<SessionEntry>, StoreError> {
    let fingerprint = rules.fingerprint();
    let start = match fingerprint {
        Some(fingerprint) => from_summary(conn, tenant_id, session_id, rules, &fingerprint)?,
        None => None,
    };
    let Start {
        mut state,
        mut head,
        from_seq,
        summarized_seq,
    } = start.unwrap_or_else(|| Start {
        state: SessionState::new(rules),
        head: None,
        from_seq: 0,
        summarized_seq: None,
    });

    let mut stmt = conn.prepare_cached(
        "SELECT seq, ts_unix_ms, event_type, payload, hash FROM envelopes \
         WHERE tenant_id = ?1 AND session_id = ?2 AND seq >= ?3 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![tenant_id, session_id, from_seq])?;
    while let Some(row) = rows.next()? {
        let Ok(seq) = u64::try_from(row.get::<_, i64>(0)?) else {
            continue;
        };
        if let Some(hash) = row.get_ref(4)?.as_blob().ok().and_then(Digest::from_slice) {
            head = Some(Head { seq, hash });
        }
        let event_type = row.get_ref(2)?.as_str().ok().map(str::parse::<EventType>);
        let payload = row.get_ref(3)?.as_str().ok().map(crate::canon::parse);
        if let (Some(Ok(event_type)), Some(Ok(payload))) = (event_type, payload) {
            let observation = Observation::new(seq, row.get(1)?, event_type, &payload);
            state.apply(&observation, rules);
        }
    }
    let Some(head) = head else {
        return Ok(None);
    };
    // The first envelope fixes the session's kind.
    let origin: Option<String> = conn
        .prepare_cached(
            "SELECT origin FROM envelopes WHERE tenant_id = ?1 AND session_id = ?2 \
             ORDER BY seq LIMIT 1",
        )?
        .query_row(params![tenant_id, session_id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(Some(SessionEntry {
        head,
        kind: SessionKind::from_first(origin.as_deref().and_then(Origin::parse)),
        state,
        last_used_unix_ms: crate::append::now_unix_ms(),
        folded_under: fingerprint,
        summarized_seq,
    }))
}

/// The start a usable summary gives, or `None` (no summary, or one these
/// rules cannot use: then every envelope is folded).
fn from_summary(
    conn: &Connection,
    tenant_id: &str,
    session_id: &str,
    rules: &dyn SessionRules,
    fingerprint: &RulesFingerprint,
) -> Result<Option<Start>, StoreError> {
    let Some(stored) = read(conn, tenant_id, session_id)? else {
        return Ok(None);
    };
    if stored.rules != fingerprint[..] {
        // A manifest change since: folded under other loop or taint rules.
        tracing::debug!(
            tenant_id,
            session_id,
            "session summary was folded under other session rules; rebuilding from every envelope"
        );
        return Ok(None);
    }
    let unusable = |reason: String| {
        tracing::warn!(
            tenant_id,
            session_id,
            seq = stored.seq,
            reason,
            "session summary does not match its chain; rebuilding from every envelope"
        );
        Ok(None)
    };
    let state = match SessionState::from_summary(&stored.state, stored.seq, rules) {
        Ok(state) => state,
        Err(e) => return unusable(e.to_string()),
    };
    let (Ok(seq), Some(hash)) = (i64::try_from(stored.seq), Digest::from_slice(&stored.hash))
    else {
        return unusable("its seq or hash is malformed".into());
    };
    let at: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT hash FROM envelopes WHERE tenant_id = ?1 AND session_id = ?2 AND seq = ?3",
        )?
        .query_row(params![tenant_id, session_id, seq], |r| r.get(0))
        .optional()?;
    match at {
        Some(at) if at == hash.0 => Ok(Some(Start {
            state,
            head: Some(Head {
                seq: stored.seq,
                hash,
            }),
            from_seq: seq + 1,
            summarized_seq: Some(stored.seq),
        })),
        Some(_) => unusable("the envelope at its seq has another hash".into()),
        None => unusable("the chain has no envelope at its seq".into()),
    }
}

fn read(
    conn: &Connection,
    tenant_id: &str,
    session_id: &str,
) -> Result<Option<Stored>, StoreError> {
    let stmt = conn.prepare_cached(
        "SELECT seq, hash, rules, state FROM session_summaries \
         WHERE tenant_id = ?1 AND session_id = ?2",
    );
    let mut stmt = match stmt {
        Ok(stmt) => stmt,
        // A file from before summaries, opened read-only (not migrated).
        Err(_) if schema_version(conn)? < SUMMARIES_SINCE => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stored = stmt
        .query_row(params![tenant_id, session_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    Ok(stored.and_then(|(seq, hash, rules, state)| {
        Some(Stored {
            seq: u64::try_from(seq).ok()?,
            hash,
            rules,
            state,
        })
    }))
}

fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Stores a session's state (`state`, [`SessionState::to_summary`]) as of
/// `head` as its summary, replacing the one before (the writer, in a
/// batch's transaction).
pub(super) fn write(
    tx: &Connection,
    tenant_id: &str,
    session_id: &str,
    head: Head,
    state: &str,
    fingerprint: &RulesFingerprint,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO session_summaries (tenant_id, session_id, seq, hash, rules, state) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (tenant_id, session_id) DO UPDATE SET \
         seq = excluded.seq, hash = excluded.hash, rules = excluded.rules, state = excluded.state",
    )?
    .execute(params![
        tenant_id,
        session_id,
        i64::try_from(head.seq).unwrap_or(i64::MAX),
        &head.hash.0[..],
        &fingerprint[..],
        state,
    ])?;
    Ok(())
}

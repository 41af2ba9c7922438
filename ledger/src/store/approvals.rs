//! The `approvals` table: written by the writer in the transaction of the
//! envelope that changes an approval (`crate::approval`), read by anyone.
//!
//! A change that would break the approval's rules is refused before its
//! envelope is placed ([`check`]), and with it the rest of the envelope's
//! group: no vote on a closed approval or by an identity that voted, no
//! call released by an approval that is not approved (or has expired, or
//! is another session's, another tool's, other arguments').

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::StoreError;
use crate::approval::{Approval, ApprovalState, Change, MAX_ARGS_SHOWN, Vote, VoteKind};

const COLUMNS: &str = "id, tenant_id, session_id, tool_name, args_digest, args, args_truncated, \
    manifest_sha256, approvals_required, proposal_seq, requested_seq, requested_unix_ms, \
    expires_unix_ms, state, votes, decided_unix_ms, consumed_seq";

/// Whether `change`, made by an envelope of (`tenant_id`, `session_id`) at
/// `ts_unix_ms`, may be recorded; a release also needs the tool and
/// argument digest of the proposal it decides (its group's), which must be
/// the approval's. `Err`: why not.
pub(super) fn check(
    tx: &Connection,
    tenant_id: &str,
    session_id: &str,
    ts_unix_ms: i64,
    change: &Change,
    proposal: Option<(&str, &[u8; 16])>,
) -> Result<(), String> {
    let id = match change {
        Change::Requested { .. } => return Ok(()),
        Change::Voted { id, .. } | Change::Expired { id } | Change::Consumed { id } => id,
    };
    let approval = get(tx, id)
        .map_err(|e| e.to_string())?
        .filter(|a| a.tenant_id == tenant_id && a.session_id == session_id)
        .ok_or_else(|| format!("approval {id} is not one of this session's"))?;
    let state = approval.state_at(ts_unix_ms);
    match change {
        Change::Requested { .. } => Ok(()),
        Change::Voted {
            approver,
            decision,
            state: leads_to,
            ..
        } => {
            let expected = approval
                .vote(approver, *decision, ts_unix_ms)
                .map_err(|e| e.to_string())?;
            if expected != *leads_to {
                return Err(format!(
                    "a {} vote on approval {id} leads to {expected}, not {leads_to}",
                    decision.as_str()
                ));
            }
            Ok(())
        }
        Change::Expired { .. } if state == ApprovalState::Expired => Ok(()),
        Change::Expired { .. } => Err(format!("approval {id} is {state}, not past its expiry")),
        Change::Consumed { .. } if state != ApprovalState::Approved => {
            Err(format!("approval {id} is {state}: it releases no call"))
        }
        Change::Consumed { .. } => match proposal {
            Some((tool, digest))
                if tool == approval.tool_name
                    && approval.args_digest.get(..32) == Some(hex::encode(digest).as_str()) =>
            {
                Ok(())
            }
            Some((tool, _)) => Err(format!(
                "approval {id} is for a call of {} with other arguments than this call of {tool}",
                approval.tool_name
            )),
            None => Err(format!(
                "approval {id} can release only the proposal recorded with it"
            )),
        },
    }
}

/// Applies `change`, made by the envelope at `seq` (already inserted).
pub(super) fn apply(
    tx: &Connection,
    tenant_id: &str,
    session_id: &str,
    seq: u64,
    ts_unix_ms: i64,
    change: &Change,
) -> Result<(), StoreError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    match change {
        Change::Requested {
            id,
            tool_name,
            args_digest,
            manifest_sha256,
            approvals_required,
            proposal_seq,
            expires_unix_ms,
        } => {
            let proposal_seq = i64::try_from(*proposal_seq).unwrap_or(i64::MAX);
            let payload: Option<String> = tx
                .prepare_cached(
                    "SELECT payload FROM envelopes \
                     WHERE tenant_id = ?1 AND session_id = ?2 AND seq = ?3",
                )?
                .query_row(params![tenant_id, session_id, proposal_seq], |r| r.get(0))
                .optional()?;
            let (args, truncated) = shown_args(payload.as_deref());
            tx.prepare_cached(
                "INSERT INTO approvals (id, tenant_id, session_id, tool_name, args_digest, args, \
                 args_truncated, manifest_sha256, approvals_required, proposal_seq, requested_seq, \
                 requested_unix_ms, expires_unix_ms, state, votes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'pending', '[]') \
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                id,
                tenant_id,
                session_id,
                tool_name,
                args_digest,
                args,
                truncated,
                manifest_sha256,
                approvals_required,
                proposal_seq,
                seq,
                ts_unix_ms,
                expires_unix_ms,
            ])?;
        }
        Change::Voted {
            id,
            approver,
            decision,
            reason,
            state,
        } => {
            tx.prepare_cached(
                "UPDATE approvals SET \
                 votes = json_insert(votes, '$[#]', json_object('approver', ?2, 'decision', ?3, \
                   'reason', ?4, 'at_unix_ms', ?5, 'seq', ?6)), \
                 state = ?7, \
                 decided_unix_ms = CASE WHEN ?7 = 'pending' THEN NULL ELSE ?5 END \
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                approver,
                decision.as_str(),
                reason,
                ts_unix_ms,
                seq,
                state.as_str()
            ])?;
        }
        Change::Expired { id } => {
            tx.prepare_cached(
                "UPDATE approvals SET state = 'expired', decided_unix_ms = ?2 WHERE id = ?1",
            )?
            .execute(params![id, ts_unix_ms])?;
        }
        Change::Consumed { id } => {
            tx.prepare_cached(
                "UPDATE approvals SET state = 'consumed', consumed_seq = ?2 WHERE id = ?1",
            )?
            .execute(params![id, seq])?;
        }
    }
    Ok(())
}

/// The arguments of a proposal payload as shown to approvers: canonical
/// JSON, cut at a character boundary within [`MAX_ARGS_SHOWN`] bytes.
fn shown_args(proposal_payload: Option<&str>) -> (String, bool) {
    let args = proposal_payload
        .and_then(|text| crate::canon::parse(text).ok())
        .and_then(|mut payload| payload.get_mut("args").map(Value::take))
        .unwrap_or(Value::Null);
    let text = String::from_utf8(crate::canon::to_vec(&args)).unwrap_or_default();
    if text.len() <= MAX_ARGS_SHOWN {
        return (text, false);
    }
    let mut end = MAX_ARGS_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// One approval by id.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<Approval>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))?;
    Ok(stmt.query_row([id], from_row).optional()?)
}

/// Which approvals to list (every filter optional), oldest request first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalQuery {
    /// The state as recorded (an expiry not yet recorded still reads
    /// pending here; [`Approval::state_at`] says what it is now).
    pub state: Option<ApprovalState>,
    pub tenant_id: Option<String>,
    pub session_id: Option<String>,
    /// Only approvals requested after this `requested_seq`-ordered cursor
    /// (the rowid of the last one of the previous page).
    pub after: Option<i64>,
    pub limit: usize,
}

pub(crate) fn list(
    conn: &Connection,
    query: &ApprovalQuery,
) -> Result<Vec<(i64, Approval)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT rowid, {COLUMNS} FROM approvals \
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR tenant_id = ?2) \
         AND (?3 IS NULL OR session_id = ?3) AND rowid > ?4 \
         ORDER BY rowid LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        params![
            query.state.map(ApprovalState::as_str),
            query.tenant_id,
            query.session_id,
            query.after.unwrap_or(0),
            i64::try_from(query.limit).unwrap_or(i64::MAX),
        ],
        |row| Ok((row.get(0)?, from_offset_row(row, 1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The oldest unexpired approval of (`tenant_id`, `session_id`,
/// `tool_name`, `args_digest`) in `state` at `now_unix_ms`, if any:
/// `approved`, the one that can release the call; `pending`, the one the
/// same call asked again joins.
pub(crate) fn for_call(
    conn: &Connection,
    (tenant_id, session_id): (&str, &str),
    tool_name: &str,
    args_digest: &str,
    state: ApprovalState,
    now_unix_ms: i64,
) -> Result<Option<Approval>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE tenant_id = ?1 AND session_id = ?2 \
         AND tool_name = ?3 AND args_digest = ?4 AND state = ?5 AND expires_unix_ms > ?6 \
         ORDER BY rowid LIMIT 1"
    ))?;
    Ok(stmt
        .query_row(
            params![
                tenant_id,
                session_id,
                tool_name,
                args_digest,
                state.as_str(),
                now_unix_ms
            ],
            from_row,
        )
        .optional()?)
}

/// Approvals recorded pending or approved whose expiry has passed, and
/// how many are pending by then (at most `limit`).
pub(crate) fn overdue(
    conn: &Connection,
    now_unix_ms: i64,
    limit: usize,
) -> Result<Vec<Approval>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE state IN ('pending', 'approved') \
         AND expires_unix_ms <= ?1 ORDER BY expires_unix_ms LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![now_unix_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
        from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Approvals recorded pending, by session (for the limit on how many one
/// session may have waiting) or in all.
pub(crate) fn pending_count(
    conn: &Connection,
    session: Option<(&str, &str)>,
    now_unix_ms: i64,
) -> Result<u64, StoreError> {
    let (tenant, session) = session.unzip();
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM approvals WHERE state = 'pending' AND expires_unix_ms > ?3 \
             AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR session_id = ?2)",
        )?
        .query_row(params![tenant, session, now_unix_ms], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Approval> {
    from_offset_row(row, 0)
}

fn from_offset_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Approval> {
    let u64_at = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(at + i)?).unwrap_or(0))
    };
    let state: String = row.get(at + 13)?;
    let votes: String = row.get(at + 14)?;
    Ok(Approval {
        id: row.get(at)?,
        tenant_id: row.get(at + 1)?,
        session_id: row.get(at + 2)?,
        tool_name: row.get(at + 3)?,
        args_digest: row.get(at + 4)?,
        args: row.get(at + 5)?,
        args_truncated: row.get(at + 6)?,
        manifest_sha256: row.get(at + 7)?,
        approvals_required: row.get(at + 8)?,
        proposal_seq: u64_at(9)?,
        requested_seq: u64_at(10)?,
        requested_unix_ms: row.get(at + 11)?,
        expires_unix_ms: row.get(at + 12)?,
        // The table's CHECK admits only these.
        state: ApprovalState::parse(&state).unwrap_or(ApprovalState::Expired),
        votes: parse_votes(&votes),
        decided_unix_ms: row.get(at + 15)?,
        consumed_seq: row
            .get::<_, Option<i64>>(at + 16)?
            .and_then(|s| u64::try_from(s).ok()),
    })
}

fn parse_votes(text: &str) -> Vec<Vote> {
    let Ok(Value::Array(votes)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    votes
        .iter()
        .filter_map(|v| {
            Some(Vote {
                approver: v.get("approver")?.as_str()?.to_owned(),
                decision: VoteKind::parse(v.get("decision")?.as_str()?)?,
                reason: v.get("reason")?.as_str()?.to_owned(),
                at_unix_ms: v.get("at_unix_ms")?.as_i64()?,
                seq: v.get("seq")?.as_u64()?,
            })
        })
        .collect()
}

//! The database schema and its migrations.
//!
//! `PRAGMA user_version` holds the schema version; each migration moves it up
//! by one, inside a transaction. `PRAGMA application_id` marks the file as an
//! aegis ledger so that the CLI refuses to "verify" some other database.

use rusqlite::Connection;

use super::StoreError;

/// `application_id` of ledger files: "AEGS".
pub const APPLICATION_ID: i64 = 0x4145_4753;

/// Migrations in order; `MIGRATIONS[n]` takes the schema from version n to n + 1.
/// Never edit one that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // v1: envelopes, one row each. Every hashed field is stored as received
    // (payload as its exact JSON text) so that any hash can be recomputed.
    // `id` is the global insertion order, used to page across sessions.
    // `tool_name` is an index-only copy of payload.tool_name (not hashed).
    r#"
    CREATE TABLE envelopes (
        id          INTEGER PRIMARY KEY,
        tenant_id   TEXT    NOT NULL,
        session_id  TEXT    NOT NULL,
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        user_id     TEXT    NOT NULL,
        ts_unix_ms  INTEGER NOT NULL,
        event_type  TEXT    NOT NULL,
        tool_name   TEXT,
        payload     TEXT    NOT NULL,
        prev_hash   BLOB,
        hash        BLOB    NOT NULL,
        UNIQUE (tenant_id, session_id, seq)
    );
    CREATE INDEX envelopes_by_tenant ON envelopes (tenant_id, id);
    CREATE INDEX envelopes_by_event_type ON envelopes (tenant_id, event_type, id);
    CREATE INDEX envelopes_by_tool ON envelopes (tenant_id, tool_name, id)
        WHERE tool_name IS NOT NULL;
    "#,
    // v2: only the chain's own index. Each secondary index cost every append
    // one more dirty 4 KiB page in the WAL (five pages per single-row commit,
    // now two); dropping them halved a commit's cost and its share of each
    // checkpoint (bench/README.md, "Fewer pages per envelope"). Listing by
    // tenant, event type or tool now walks envelopes in id order and filters:
    // the write path runs on every tool call, those queries for audits.
    r#"
    DROP INDEX envelopes_by_tenant;
    DROP INDEX envelopes_by_event_type;
    DROP INDEX envelopes_by_tool;
    "#,
    // v3: who wrote each envelope ('sidecar', 'client' or 'operator'; not
    // hashed). A session's kind is its first envelope's origin: rows from
    // before v3 keep NULL, and their sessions count as sidecar-owned (a
    // client cannot append to a session it cannot prove it started).
    r#"
    ALTER TABLE envelopes ADD COLUMN origin TEXT;
    "#,
    // v4: one row the writer rewrites when readiness is probed, so a probe
    // proves a commit can be made now (the disk has room, the file takes
    // writes), not just that the write lock is free. Not part of any chain.
    r#"
    CREATE TABLE probe (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        at_unix_ms  INTEGER NOT NULL
    );
    "#,
    // v5: each long session's state as of one of its envelopes (`seq`, whose
    // `hash` it names), folded under the session rules `rules` identifies:
    // a rebuild reads it and the envelopes after it instead of every one.
    // Derived data, not part of any chain; a row that does not match its
    // chain is ignored (and rewritten).
    r#"
    CREATE TABLE session_summaries (
        tenant_id   TEXT    NOT NULL,
        session_id  TEXT    NOT NULL,
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        hash        BLOB    NOT NULL,
        rules       BLOB    NOT NULL,
        state       TEXT    NOT NULL,
        PRIMARY KEY (tenant_id, session_id)
    );
    "#,
    // v6: human approvals, changed only by the writer in the transaction of
    // the envelope that changes them (`crate::approval`): requested by the
    // sidecar's APPROVAL_REQUESTED, voted on by operators' APPROVAL_DECIDED,
    // expired by the sidecar's, consumed by the TOOL_CALL_ALLOWED naming it.
    // `votes` is a JSON array of {approver, decision, reason, at_unix_ms, seq}.
    r#"
    CREATE TABLE approvals (
        id                  TEXT    PRIMARY KEY,
        tenant_id           TEXT    NOT NULL,
        session_id          TEXT    NOT NULL,
        tool_name           TEXT    NOT NULL,
        args_digest         TEXT    NOT NULL,
        args                TEXT    NOT NULL,
        args_truncated      INTEGER NOT NULL,
        manifest_sha256     TEXT    NOT NULL,
        approvals_required  INTEGER NOT NULL CHECK (approvals_required >= 1),
        proposal_seq        INTEGER NOT NULL,
        requested_seq       INTEGER NOT NULL,
        requested_unix_ms   INTEGER NOT NULL,
        expires_unix_ms     INTEGER NOT NULL,
        state               TEXT    NOT NULL
            CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
        votes               TEXT    NOT NULL,
        decided_unix_ms     INTEGER,
        consumed_seq        INTEGER
    );
    CREATE INDEX approvals_by_call ON approvals (tenant_id, session_id, tool_name, args_digest);
    CREATE INDEX approvals_by_state ON approvals (state, expires_unix_ms);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings a writable database up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    check_identity(conn)?;
    let mut version = user_version(conn)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        let objects: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if objects > 0 {
            return Err(StoreError::NotALedger(
                "it already holds tables that are not a ledger's".into(),
            ));
        }
    }
    while version < SCHEMA_VERSION {
        let tx = conn.transaction()?;
        let index = usize::try_from(version).unwrap_or(usize::MAX);
        tx.execute_batch(MIGRATIONS[index])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
        version += 1;
        tracing::info!(version, "ledger schema migrated");
    }
    Ok(())
}

/// Checks that a database opened read-only is a ledger this build can read.
pub fn check_readable(conn: &Connection) -> Result<(), StoreError> {
    check_identity(conn)?;
    match user_version(conn)? {
        0 => Err(StoreError::NotALedger("it has no ledger schema".into())),
        v if v > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

fn check_identity(conn: &Connection) -> Result<(), StoreError> {
    let id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if id != 0 && id != APPLICATION_ID {
        return Err(StoreError::NotALedger(format!(
            "its application_id is {id:#x}, not an aegis ledger's"
        )));
    }
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'envelopes' ORDER BY name")
            .expect("query the schema");
        stmt.query_map([], |r| r.get(0))
            .expect("read the schema")
            .collect::<Result<_, _>>()
            .expect("index names")
    }

    #[test]
    fn a_new_database_gets_the_current_schema() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
        // Only the chain's UNIQUE (tenant_id, session_id, seq) index.
        assert_eq!(indexes(&conn), ["sqlite_autoindex_envelopes_1"]);
        check_readable(&conn).expect("readable");
    }

    #[test]
    fn a_v1_ledger_moves_to_the_current_schema_keeping_its_envelopes() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.pragma_update(None, "user_version", 1).expect("v1");
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .expect("id");
        conn.execute(
            "INSERT INTO envelopes (tenant_id, session_id, seq, user_id, ts_unix_ms, event_type, payload, hash) \
             VALUES ('t', 's', 0, 'u', 1, 'TOOL_CALL_PROPOSED', '{}', x'00')",
            [],
        )
        .expect("a v1 row");
        assert_eq!(indexes(&conn).len(), 4);

        migrate(&mut conn).expect("migrate");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
        assert_eq!(indexes(&conn), ["sqlite_autoindex_envelopes_1"]);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM envelopes", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1);
        // The v1 row has no origin: its session counts as sidecar-owned.
        let origin: Option<String> = conn
            .query_row("SELECT origin FROM envelopes", [], |r| r.get(0))
            .expect("origin");
        assert_eq!(origin, None);
        // Migrating again is a no-op.
        migrate(&mut conn).expect("migrate again");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_ledger_from_a_newer_build_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}

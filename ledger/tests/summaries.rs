//! Session summaries end to end: a long session is rebuilt from its stored
//! summary and the envelopes after it, and the result is always the fold of
//! every envelope under the rules of now — also when the summary was made
//! under other rules, was folded across a rules change, or does not match
//! its chain (then it is ignored and rewritten).

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use aegis_ledger::*;
use rusqlite::{Connection, params};
use serde_json::json;

const TENANT: &str = "acme";

/// Rules whose identity can change underneath (as a manifest reload
/// would): identity 0 has no fingerprint; the window grows with it, and a
/// loop is the same tool three times in a row.
#[derive(Debug, Default)]
struct Rules(AtomicU8);

impl Rules {
    fn new(id: u8) -> Arc<Rules> {
        Arc::new(Rules(AtomicU8::new(id)))
    }

    fn set(&self, id: u8) {
        self.0.store(id, Ordering::SeqCst);
    }
}

impl SessionRules for Rules {
    fn window(&self) -> usize {
        4 + usize::from(self.0.load(Ordering::SeqCst))
    }

    fn detect(&self, history: &ToolHistory) -> Option<LoopViolation> {
        let last: Vec<&ToolCall> = history.iter().rev().take(3).collect();
        (last.len() == 3 && last.iter().all(|c| c.tool_name == last[0].tool_name)).then(|| {
            LoopViolation {
                description: format!("{} three times", last[0].tool_name),
                seqs: last.iter().rev().map(|c| c.seq).collect(),
            }
        })
    }

    fn result_taints(&self, tool_name: Option<&str>) -> bool {
        tool_name != Some("quiet")
    }

    fn fingerprint(&self) -> Option<RulesFingerprint> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            id => Some([id; 32]),
        }
    }
}

fn open(path: &Path, every: u64, rules: Arc<Rules>) -> Ledger {
    Ledger::builder(LedgerConfig {
        summary_every: every,
        ..LedgerConfig::new(path)
    })
    .session_rules(rules)
    .open()
    .unwrap()
}

/// The `n`th envelope of the test sessions: proposals, decisions, results,
/// terminations and sanitizer keys in a fixed mix.
fn nth(session: &str, n: u64) -> AppendRequest {
    let tool = ["read", "quiet", "write"][(n / 5 % 3) as usize];
    let (event_type, payload) = match n % 10 {
        0 | 3 | 6 => (
            EventType::ToolCallProposed,
            json!({"tool_name": tool, "args": {"n": n % 4}}),
        ),
        1 | 7 => (
            EventType::ToolCallAllowed,
            json!({"tool_name": tool, "proposal_seq": n - 1}),
        ),
        2 => (
            EventType::ToolResult,
            json!({"tool_name": tool, "proposal_seq": n - 2}),
        ),
        4 => (EventType::ToolCallDenied, json!({"tool_name": tool})),
        5 => (
            EventType::PolicyDecision,
            json!({"action": "register_sanitizer", "sanitizer_key": format!("k{}", n % 7)}),
        ),
        8 if n % 30 == 8 => (EventType::Termination, json!({})),
        _ => (EventType::ModelCallStarted, json!({})),
    };
    AppendRequest::at_head(NewEvent {
        tenant_id: TENANT.into(),
        user_id: "u1".into(),
        session_id: session.into(),
        ts_unix_ms: 1_700_000_000_000 + i64::try_from(n).unwrap(),
        event_type,
        payload: Payload::from_value(payload),
    })
}

/// Appends envelopes `from..to` one commit each.
fn append(ledger: &Ledger, session: &str, from: u64, to: u64) {
    let handle = ledger.handle();
    for n in from..to {
        assert_eq!(handle.append_blocking(nth(session, n)).unwrap().seq, n);
    }
}

/// The oracle: every envelope of the session folded under `rules`.
fn fold_all(ledger: &Ledger, session: &str, rules: &dyn SessionRules) -> (u64, SessionState) {
    let mut state = SessionState::new(rules);
    let mut last = None;
    ledger
        .reader()
        .for_each_in_session(TENANT, session, |row| {
            let seq = u64::try_from(row.seq).unwrap();
            let payload = canon::parse(&row.payload).unwrap();
            let event_type: EventType = row.event_type.parse().unwrap();
            state.apply(
                &aegis_ledger::session::Observation::new(seq, row.ts_unix_ms, event_type, &payload),
                rules,
            );
            last = Some(seq);
            ControlFlow::Continue(())
        })
        .unwrap();
    (last.unwrap(), state)
}

/// The stored summary's (seq, rules) for `session`, if it has one.
fn summary(path: &Path, session: &str) -> Option<(u64, Vec<u8>)> {
    let conn = Connection::open(path).unwrap();
    conn.query_row(
        "SELECT seq, rules FROM session_summaries WHERE tenant_id = ?1 AND session_id = ?2",
        params![TENANT, session],
        |r| Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap(), r.get(1)?)),
    )
    .ok()
}

fn edit(path: &Path, sql: &str) {
    let conn = Connection::open(path).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

/// Rebuilds `session` as a restart would (a fresh ledger's reader) and
/// checks it against the oracle; returns the rebuilt entry.
fn rebuilt_matches_oracle(path: &Path, session: &str, rules: &Arc<Rules>) -> SessionEntry {
    let ledger = open(path, 0, rules.clone());
    let entry = ledger
        .reader()
        .load_session(TENANT, session)
        .unwrap()
        .unwrap();
    let (head, state) = fold_all(&ledger, session, &**rules);
    assert_eq!(entry.head.seq, head);
    assert_eq!(
        entry.state, state,
        "rebuilt state differs from folding every envelope"
    );
    ledger.close();
    entry
}

#[test]
fn a_long_session_rebuilds_from_its_summary_to_the_fold_of_every_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rules = Rules::new(1);
    let ledger = open(&path, 16, rules.clone());
    append(&ledger, "s", 0, 100);
    let live = ledger.handle().sessions().entry(TENANT, "s").unwrap();
    ledger.close();

    // One commit per envelope: the summary is taken at the first envelope
    // of a batch once 16 came after the last one, as of the head before it.
    let (seq, fingerprint) = summary(&path, "s").unwrap();
    assert_eq!((seq, fingerprint), (95, vec![1; 32]));
    let entry = rebuilt_matches_oracle(&path, "s", &rules);
    assert_eq!(entry.state, live.state);
    assert_eq!(entry.head, live.head);
    assert!(entry.state.is_tainted() || entry.state.tool_calls_consumed() > 0);

    // Appending after the restart continues the chain from the rebuilt
    // head and state, and the next summary follows.
    let ledger = open(&path, 16, rules.clone());
    append(&ledger, "s", 100, 130);
    let (_, state) = fold_all(&ledger, "s", &*rules);
    assert_eq!(
        ledger.handle().sessions().entry(TENANT, "s").unwrap().state,
        state
    );
    ledger.close();
    assert_eq!(summary(&path, "s").unwrap().0, 127);
    rebuilt_matches_oracle(&path, "s", &rules);
}

#[test]
fn a_summary_that_does_not_match_its_chain_is_ignored_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rules = Rules::new(1);
    let tampered = [
        // Another hash at its seq (another chain's summary, or an edit).
        "UPDATE session_summaries SET hash = zeroblob(32)",
        // After the chain's end (the envelopes after it were cut off).
        "UPDATE session_summaries SET seq = 5000",
        // Not the reducer's shape.
        "UPDATE session_summaries SET state = '{\"format\": 1}'",
        "UPDATE session_summaries SET state = 'not json'",
        // Names a proposal after its own seq.
        "UPDATE session_summaries SET seq = 0, hash = (SELECT hash FROM envelopes WHERE seq = 0)",
    ];
    for (i, sql) in tampered.iter().enumerate() {
        let session = format!("s{i}");
        let ledger = open(&path, 8, rules.clone());
        append(&ledger, &session, 0, 40);
        ledger.close();
        let sql = format!("{sql} WHERE session_id = '{session}'");
        let sql = sql.replace(
            "WHERE seq = 0)",
            &format!("WHERE seq = 0 AND session_id = '{session}')"),
        );
        edit(&path, &sql);

        let entry = rebuilt_matches_oracle(&path, &session, &rules);
        assert_eq!(entry.head.seq, 39, "{sql}");
        // The writer, rebuilding it on the next append, stores a good one.
        let ledger = open(&path, 8, rules.clone());
        append(&ledger, &session, 40, 41);
        ledger.close();
        assert_eq!(summary(&path, &session).unwrap().0, 39, "{sql}");
        rebuilt_matches_oracle(&path, &session, &rules);
    }
}

#[test]
fn a_summary_folded_under_other_rules_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = open(&path, 8, Rules::new(1));
    append(&ledger, "s", 0, 60);
    ledger.close();
    assert_eq!(summary(&path, "s").unwrap().1, vec![1; 32]);

    // A restart under other rules (a manifest change): the window and the
    // loops differ, so only a fold of every envelope is right.
    let other = Rules::new(5);
    let entry = rebuilt_matches_oracle(&path, "s", &other);
    assert_eq!(entry.state.history().capacity(), 9);
    let ledger = open(&path, 8, other.clone());
    append(&ledger, "s", 60, 61);
    ledger.close();
    assert_eq!(summary(&path, "s").unwrap(), (59, vec![5; 32]));
    rebuilt_matches_oracle(&path, "s", &other);
}

#[test]
fn a_state_folded_across_a_rules_change_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rules = Rules::new(1);
    let ledger = open(&path, 8, rules.clone());
    append(&ledger, "s", 0, 20);
    // The manifest changes while the session is in memory: its state now
    // holds envelopes folded under both rules, which no rebuild makes.
    rules.set(2);
    append(&ledger, "s", 20, 60);
    ledger.close();
    assert_eq!(summary(&path, "s").unwrap(), (15, vec![1; 32]));
    rebuilt_matches_oracle(&path, "s", &rules);

    // Once rebuilt under the new rules alone, summaries resume.
    let ledger = open(&path, 8, rules.clone());
    append(&ledger, "s", 60, 61);
    ledger.close();
    assert_eq!(summary(&path, "s").unwrap(), (59, vec![2; 32]));
}

#[test]
fn rules_without_a_fingerprint_store_no_summary_and_summaries_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = open(&path, 8, Rules::new(0));
    append(&ledger, "a", 0, 40);
    ledger.close();
    assert_eq!(summary(&path, "a"), None);
    rebuilt_matches_oracle(&path, "a", &Rules::new(0));

    let ledger = open(&path, 0, Rules::new(1));
    append(&ledger, "b", 0, 40);
    ledger.close();
    assert_eq!(summary(&path, "b"), None);
}

#[test]
fn the_default_rules_summarise_every_1024_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let handle = ledger.handle();
    for n in 0..1100 {
        handle.append_blocking(nth("s", n)).unwrap();
    }
    ledger.close();
    assert_eq!(
        summary(&path, "s").unwrap(),
        (1023, DefaultSessionRules.fingerprint().unwrap().to_vec())
    );
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let entry = ledger.reader().load_session(TENANT, "s").unwrap().unwrap();
    assert_eq!(entry.state, fold_all(&ledger, "s", &DefaultSessionRules).1);
    assert_eq!(entry.head.seq, 1099);
}

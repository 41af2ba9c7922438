//! The waiting-request table on its own.

#![allow(clippy::unwrap_used)]
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::config::UpstreamConfig;
use crate::identity::{PrincipalSource, SessionSource};
use crate::mcp::upstream;

fn id(n: u64) -> Id {
    Id::from_value(&Value::from(n)).unwrap()
}

fn key(mcp_session: &str) -> StreamKey {
    StreamKey {
        upstream: "tools".into(),
        tenant: "t".into(),
        session: "s".into(),
        mcp_session: Some(mcp_session.into()),
    }
}

fn origin() -> Arc<Origin> {
    let config = UpstreamConfig {
        name: "tools".into(),
        url: "http://127.0.0.1:9/mcp".parse().unwrap(),
        tls: None,
        timeout: Duration::from_secs(30),
        headers: Vec::new(),
    };
    let upstream = Upstream::new(&config, &upstream::client(None)).unwrap();
    Arc::new(Origin {
        upstream: Arc::new(upstream),
        identity: Identity {
            tenant_id: "t".into(),
            user_id: String::new(),
            session_id: "s".into(),
            session_source: SessionSource::Principal,
            principal: "s".into(),
            principal_source: PrincipalSource::Config,
            mcp_session_id: Some("m".into()),
        },
        started: Instant::now(),
    })
}

fn add(table: &Resumable, key: StreamKey, serial: u64, n: u64, deadline: Deadline) {
    let mut inner = table.lock();
    inner.waiting.entry(key).or_default().push(Waiting {
        serial,
        origin: origin(),
        awaited: Awaited::Other(id(n)),
        deadline,
    });
    inner.count += 1;
}

#[tokio::test]
async fn a_waiting_request_is_claimed_once_and_only_under_its_key() {
    let table = Resumable::default();
    let later = Deadline::now() + Duration::from_secs(60);
    add(&table, key("m"), 0, 1, later);
    add(&table, key("m"), 0, 2, later);
    assert_eq!(table.waiting(), 2);
    // Another MCP session's stream cannot take it.
    assert!(matches!(table.claim(&key("other"), &id(1)), Claim::Nothing));
    assert!(matches!(table.claim(&key("m"), &id(3)), Claim::Nothing));
    let Claim::Waiting(w) = table.claim(&key("m"), &id(1)) else {
        panic!("not claimed")
    };
    assert_eq!(w.awaited.id(), &id(1));
    assert!(matches!(table.claim(&key("m"), &id(1)), Claim::Nothing));
    assert_eq!(table.waiting(), 1);
    // Remembered once settled: a replay is recognised, under its key only.
    table.remember(key("m"), id(1), Replay::Same { sha256: [7; 32] });
    assert!(matches!(
        table.claim(&key("m"), &id(1)),
        Claim::Settled(Replay::Same { sha256: [7, ..] })
    ));
    assert!(matches!(table.claim(&key("x"), &id(1)), Claim::Nothing));
}

#[tokio::test]
async fn expiry_takes_only_its_own_past_deadlines() {
    let table = Resumable::default();
    let now = Deadline::now();
    add(&table, key("m"), 1, 1, now);
    add(&table, key("m"), 1, 2, now + Duration::from_secs(60));
    add(&table, key("n"), 2, 3, now);
    assert_eq!(table.next_deadline(1), Some(now));
    let expired = table.take_expired(1, now);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].1.awaited.id(), &id(1));
    assert_eq!(table.next_deadline(1), Some(now + Duration::from_secs(60)));
    assert_eq!(table.waiting(), 2);
    assert_eq!(table.take_expired(2, now).len(), 1);
    assert_eq!(table.next_deadline(2), None);
}

#[tokio::test]
async fn remembered_answers_are_bounded() {
    let table = Resumable::default();
    for n in 0..(MAX_REMEMBERED as u64 + 10) {
        table.remember(key("m"), id(n), Replay::Filter);
    }
    assert_eq!(table.lock().remembered.len(), MAX_REMEMBERED);
    assert!(matches!(table.claim(&key("m"), &id(0)), Claim::Nothing));
    assert!(matches!(
        table.claim(&key("m"), &id(MAX_REMEMBERED as u64 + 9)),
        Claim::Settled(Replay::Filter)
    ));
}

#[test]
fn outcomes_are_the_metric_label_set() {
    assert_eq!(OUTCOMES, ["settled", "replayed", "dropped", "too_large"]);
}

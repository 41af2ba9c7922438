//! The gate on a real ledger: a call that ran and whose result never
//! reached the ledger taints its session before the next decision.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aegis_ledger::{Ledger, LedgerConfig, ListQuery};
use aegis_policy::store::LoadedManifest;
use aegis_policy::{CompiledManifest, Manifest, Outcome, Reason};
use serde_json::{Value, json};

use super::*;
use crate::identity::{PrincipalSource, SessionSource};

const HANG_GUARD: Duration = Duration::from_secs(60);

/// An agent of tenant `t` in `session` (shared by the gate's unit tests).
pub(super) fn identity_in(session: &str) -> Identity {
    Identity {
        tenant_id: "t".into(),
        user_id: "u".into(),
        session_id: session.into(),
        session_source: SessionSource::Header,
        principal: "p".into(),
        principal_source: PrincipalSource::Config,
        mcp_session_id: None,
    }
}

fn identity() -> Identity {
    identity_in("s")
}

fn manifest() -> Arc<LoadedManifest> {
    let manifest = Manifest::from_value(&json!({
        "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
        "permissions": {"tools": ["fetch", "send_email"]}, "sandbox": {"required": false},
        "integrity": {}, "policy": {"high_risk_sinks": ["send_email"]}
    }))
    .unwrap();
    Arc::new(LoadedManifest {
        compiled: CompiledManifest::new(&manifest),
        manifest,
        sha256: String::new(),
        generation: 1,
        loaded_at_unix_ms: 0,
        path: "m.json".into(),
    })
}

fn gate(ledger: &Ledger, started_unix_ms: i64) -> Gate {
    Gate {
        ledger: ledger.handle(),
        reader: ledger.reader(),
        limiters: Default::default(),
        sequencers: Default::default(),
        result_commit: ResultCommit::AfterAnswer,
        started_unix_ms,
        approvals: Default::default(),
        webhook: crate::webhook::Webhook::off(),
        waiters: Default::default(),
    }
}

async fn decide(gate: &Gate, tool: &str) -> Verdict {
    let id = identity();
    let (call_id, args) = (json!(1), json!({}));
    let call = CallRequest {
        identity: &id,
        upstream: "tools",
        call_id: &call_id,
        call_id_text: None,
        tool_name: tool,
        args: &args,
        sanitizer_key: None,
        enforce: true,
    };
    tokio::time::timeout(HANG_GUARD, gate.decide_and_record(call, Some(manifest())))
        .await
        .expect("decided")
        .expect("recorded")
}

fn chain(ledger: &Ledger) -> Vec<(String, Value)> {
    let page = ledger
        .reader()
        .list(&ListQuery {
            tenant_id: "t".into(),
            session_id: Some("s".into()),
            event_type: None,
            tool_name: None,
            limit: 100,
            page_token: None,
        })
        .unwrap();
    page.envelopes
        .iter()
        .map(|e| {
            (
                e.event_type.as_str().to_owned(),
                serde_json::from_str(&e.payload).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_left_open_by_an_earlier_process_taints_the_next_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    // The earlier process: `fetch` allowed and forwarded; it stops before
    // the result is committed.
    let first = decide(&gate(&ledger, 0), "fetch").await;
    assert_eq!(first.decision.outcome, Outcome::Allow);
    ledger.close();

    // A later process on the same ledger (it started after that decision).
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let later = gate(&ledger, aegis_ledger::now_unix_ms() + 1);
    let next = decide(&later, "send_email").await;
    assert_eq!(next.decision.outcome, Outcome::Deny);
    assert_eq!(next.decision.reason, Reason::TaintedToHighRisk);
    let events = chain(&ledger);
    let lost = events
        .iter()
        .position(|(t, p)| t == "ERROR_RAISED" && p["error"] == "result_not_recorded")
        .expect("the lost result is recorded");
    assert_eq!(events[lost].1["proposal_seq"], first.proposal_seq);
    let proposal = events
        .iter()
        .position(|(t, p)| t == "TOOL_CALL_PROPOSED" && p["tool_name"] == "send_email")
        .unwrap();
    assert!(lost < proposal, "recorded before the next call was decided");
    // Recorded once: the session's next decision finds nothing open.
    let again = decide(&later, "fetch").await;
    assert_eq!(again.decision.outcome, Outcome::Allow);
    let losses = chain(&ledger)
        .iter()
        .filter(|(t, _)| t == "ERROR_RAISED")
        .count();
    assert_eq!(losses, 1);
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_decision_sees_the_result_the_agent_already_has() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 0);
    let first = decide(&gate, "fetch").await;
    // The answer goes to the agent while its result is committed...
    let seq = gate
        .record_result(
            &identity(),
            first.proposal_seq,
            "fetch",
            EventType::ToolResult,
            json!({"tool_name": "fetch", "proposal_seq": first.proposal_seq}),
        )
        .await;
    assert_eq!(seq, None, "after_answer: not waited for");
    // ...and the session's next decision is made on it: tainted.
    let next = decide(&gate, "send_email").await;
    assert_eq!(next.decision.reason, Reason::TaintedToHighRisk);
    let events = chain(&ledger);
    let result = events.iter().position(|(t, _)| t == "TOOL_RESULT").unwrap();
    let proposal = events
        .iter()
        .position(|(t, p)| t == "TOOL_CALL_PROPOSED" && p["tool_name"] == "send_email")
        .unwrap();
    assert!(result < proposal);
    ledger.close();
}

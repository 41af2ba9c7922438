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
        context: None,
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

fn sanitizing_manifest() -> Arc<LoadedManifest> {
    let manifest = Manifest::from_value(&json!({
        "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
        "permissions": {"tools": ["net.get", "send_email"], "net": {"domains": ["ok.example"]}},
        "sandbox": {"required": true}, "integrity": {},
        "policy": {"sanitize": {
            "net.get": [{"field": "url", "set": "https://ok.example/"}],
            "send_email": [
                {"field": "cc", "drop": true, "reason": "no copies outside"},
                {"field": "limit", "clamp": {"max": 10}},
            ],
        }},
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

async fn decide_on(gate: &Gate, upstream: &str, tool: &str, args: Value) -> Verdict {
    let id = identity();
    let call_id = json!(1);
    let call = CallRequest {
        identity: &id,
        upstream,
        call_id: &call_id,
        call_id_text: None,
        tool_name: tool,
        args: &args,
        sanitizer_key: None,
        enforce: true,
        context: None,
    };
    tokio::time::timeout(
        HANG_GUARD,
        gate.decide_and_record(call, Some(sanitizing_manifest())),
    )
    .await
    .expect("decided")
    .expect("recorded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanitized_calls_are_decided_on_what_is_forwarded_and_both_digests_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 0);
    // The agent names an undeclared domain; the rule replaces it, and the
    // decision is on the replacement.
    let v = decide_on(
        &gate,
        "tools",
        "net.get",
        json!({"url": "https://evil.example/"}),
    )
    .await;
    assert_eq!(v.decision.outcome, Outcome::Allow);
    let rewrite = v.sanitized.clone().expect("rewritten");
    assert_eq!(rewrite.args, json!({"url": "https://ok.example/"}));

    let v = decide_on(
        &gate,
        "tools",
        "send_email",
        json!({"to": "a", "cc": "b", "limit": 99}),
    )
    .await;
    assert_eq!(v.decision.outcome, Outcome::Allow);
    let rewrite = v.sanitized.clone().unwrap();
    assert_eq!(rewrite.args, json!({"to": "a", "limit": 10}));
    assert_eq!(rewrite.message, "no copies outside");
    let events = chain(&ledger);
    let (_, proposed) = &events[2];
    assert_eq!(
        proposed["args"]["cc"], "b",
        "the proposal is what the agent sent"
    );
    let (kind, allowed) = &events[3];
    assert_eq!(kind, "TOOL_CALL_ALLOWED");
    let recorded = &allowed["sanitized"];
    assert_eq!(recorded["changed"], json!(["cc drop", "limit clamp"]));
    assert_eq!(
        recorded["args_sha256"],
        approval::args_digest(&json!({"to": "a", "cc": "b", "limit": 99}))
    );
    assert_eq!(
        recorded["sanitized_args_sha256"],
        approval::args_digest(&rewrite.args)
    );

    // Nothing to rewrite: no record of a rewrite.
    let v = decide_on(&gate, "tools", "send_email", json!({"to": "a"})).await;
    assert!(v.sanitized.is_none());
    assert!(chain(&ledger)[5].1.get("sanitized").is_none());
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_cannot_be_sanitized_and_rewrites_of_egress_calls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 0);
    let v = decide_on(&gate, "tools", "send_email", json!({"limit": "1000000"})).await;
    assert_eq!(v.decision.outcome, Outcome::Deny);
    assert_eq!(v.decision.reason, Reason::SanitizeRefused);
    assert!(v.sanitized.is_none());
    let denied = &chain(&ledger)[1].1;
    assert_eq!(denied["reason"], "SANITIZE_REFUSED");
    assert!(
        denied["detail"].as_str().unwrap().contains("limit"),
        "{denied}"
    );
    // The egress proxy cannot forward rewritten arguments: refused, even
    // where the rewrite would have been allowed.
    let v = decide_on(
        &gate,
        EGRESS_UPSTREAM,
        "net.get",
        json!({"url": "https://evil.example/"}),
    )
    .await;
    assert_eq!(v.decision.reason, Reason::SanitizeRefused);
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_calls_stay_closed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let v = decide_on(
        &gate(&ledger, 0),
        DECISION_API_UPSTREAM,
        "send_email",
        json!({}),
    )
    .await;
    assert_eq!(v.decision.outcome, Outcome::Allow);
    let events = chain(&ledger);
    assert_eq!(events[0].1["transport"], "decision_api");
    assert_eq!(events[1].1["delegated"], true);
    ledger.close();
    // A later process finds nothing open (the client ran the tool, and no
    // result was ever to come): nothing recorded as lost.
    let ledger = Ledger::open(LedgerConfig::new(&path)).unwrap();
    let later = gate(&ledger, aegis_ledger::now_unix_ms() + 1);
    let v = decide_on(&later, DECISION_API_UPSTREAM, "send_email", json!({})).await;
    assert_eq!(v.decision.outcome, Outcome::Allow);
    assert!(!chain(&ledger).iter().any(|(t, _)| t == "ERROR_RAISED"));
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_api_approvals_are_polled_and_never_release_an_unrewritten_call() {
    let manifest = Manifest::from_value(&json!({
        "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
        "permissions": {"tools": ["send_email"], "approval_required": ["send_email"]},
        "sandbox": {"required": false}, "integrity": {},
        "policy": {"sanitize": {"send_email": [{"field": "cc", "drop": true}]}},
    }))
    .unwrap();
    let live = Arc::new(LoadedManifest {
        compiled: CompiledManifest::new(&manifest),
        manifest,
        sha256: String::new(),
        generation: 1,
        loaded_at_unix_ms: 0,
        path: "m.json".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let mut gate = gate(&ledger, 0);
    gate.approvals.mode = aegis_policy::ApprovalMode::Hold;
    let id = identity();
    let call_id = json!("req-1");
    let ask = |upstream, args| {
        let (gate, live, id, call_id) = (&gate, live.clone(), &id, &call_id);
        async move {
            let call = CallRequest {
                identity: id,
                upstream,
                call_id,
                call_id_text: None,
                tool_name: "send_email",
                args: &args,
                sanitizer_key: None,
                enforce: true,
                context: Some(&json!({"api": "test"})),
            };
            tokio::time::timeout(HANG_GUARD, gate.decide_and_record(call, Some(live)))
                .await
                .expect("decided")
                .expect("recorded")
        }
    };
    // Nothing to rewrite: an approval the client polls for, never held.
    let v = ask(DECISION_API_UPSTREAM, json!({"to": "a"})).await;
    assert_eq!(v.decision.outcome, Outcome::RequireApproval);
    assert!(matches!(
        v.approval,
        Some(ApprovalLink::Requested {
            mode: aegis_policy::ApprovalMode::Retry,
            ..
        })
    ));
    assert_eq!(
        chain(&ledger)[0].1["client_context"],
        json!({"api": "test"})
    );
    // Rewritten: the client would run its own arguments once approved, so
    // no person is asked; refused.
    let v = ask(DECISION_API_UPSTREAM, json!({"to": "a", "cc": "b"})).await;
    assert_eq!(v.decision.outcome, Outcome::Deny);
    assert_eq!(v.decision.reason, Reason::SanitizeRefused);
    assert!(v.approval.is_none() && v.sanitized.is_none());
    let denied = &chain(&ledger)[3].1;
    assert!(
        denied["detail"].as_str().unwrap().contains("approved call"),
        "{denied}"
    );
    // Inline, the rewrite is what an approval releases: held as configured.
    let v = ask("tools", json!({"to": "a", "cc": "b"})).await;
    assert_eq!(v.decision.outcome, Outcome::RequireApproval);
    assert!(matches!(
        v.approval,
        Some(ApprovalLink::Requested {
            mode: aegis_policy::ApprovalMode::Hold,
            ..
        })
    ));
    ledger.close();
}

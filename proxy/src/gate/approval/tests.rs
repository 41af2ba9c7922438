//! The gate and the approvals store on a real ledger: a call held for
//! approval waits on one approval however often it is asked, runs once when
//! approved, and never on an approval of other arguments.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aegis_ledger::{
    AppendRequest, ApprovalState, EventType, Ledger, LedgerConfig, NewEvent, Origin, Payload,
};
use aegis_policy::store::LoadedManifest;
use aegis_policy::{CompiledManifest, Manifest, Outcome, Reason};
use serde_json::{Value, json};

use super::super::tests::identity_in;
use super::super::{CallRequest, Gate, ResultCommit, Verdict};
use super::*;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn manifest(approvers: u32) -> Arc<LoadedManifest> {
    let manifest = Manifest::from_value(&json!({
        "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
        "permissions": {"tools": ["read_file", "write_file"], "approval_required": ["write_file"]},
        "sandbox": {"required": true}, "integrity": {},
        "policy": {"approvals": {"write_file": {"approvers": approvers}}},
    }))
    .unwrap();
    Arc::new(LoadedManifest {
        compiled: CompiledManifest::new(&manifest),
        manifest,
        sha256: format!("{approvers:064}"),
        generation: 1,
        loaded_at_unix_ms: 0,
        path: "m.json".into(),
    })
}

fn gate(ledger: &Ledger, max_pending_per_session: u64) -> Gate {
    gate_limited(ledger, max_pending_per_session, 1024)
}

fn gate_limited(ledger: &Ledger, max_pending_per_session: u64, max_pending: u64) -> Gate {
    Gate {
        ledger: ledger.handle(),
        reader: ledger.reader(),
        limiters: Default::default(),
        sequencers: Default::default(),
        result_commit: ResultCommit::AfterAnswer,
        started_unix_ms: 0,
        approvals: ApprovalConfig {
            max_pending_per_session,
            max_pending,
            ..ApprovalConfig::default()
        },
        webhook: crate::webhook::Webhook::off(),
        waiters: Default::default(),
    }
}

async fn call(gate: &Gate, manifest: &Arc<LoadedManifest>, args: Value, enforce: bool) -> Verdict {
    let id = identity_in("s");
    let call_id = json!(1);
    let call = CallRequest {
        identity: &id,
        upstream: "tools",
        call_id: &call_id,
        call_id_text: None,
        tool_name: "write_file",
        args: &args,
        sanitizer_key: None,
        enforce,
        context: None,
    };
    tokio::time::timeout(
        HANG_GUARD,
        gate.decide_and_record(call, Some(manifest.clone())),
    )
    .await
    .expect("decided")
    .expect("recorded")
}

fn requested(verdict: &Verdict) -> String {
    assert_eq!(
        verdict.decision.outcome,
        Outcome::RequireApproval,
        "{verdict:?}"
    );
    match &verdict.approval {
        Some(ApprovalLink::Requested { id, .. }) => id.clone(),
        other => panic!("expected a requested approval, got {other:?}"),
    }
}

/// An operator's vote, as the approvals API records it.
async fn vote(ledger: &Ledger, id: &str, approver: &str, state: &str) {
    let event = NewEvent {
        tenant_id: "t".into(),
        user_id: "u".into(),
        session_id: "s".into(),
        ts_unix_ms: aegis_ledger::now_unix_ms(),
        event_type: EventType::ApprovalDecided,
        payload: Payload::from_value(json!({
            "approval_id": id, "decision": "approve", "approver": approver, "state": state,
        })),
    };
    ledger
        .handle()
        .append(AppendRequest::at_head(event).by(Origin::Operator))
        .await
        .unwrap();
}

fn state(ledger: &Ledger, id: &str) -> ApprovalState {
    ledger.reader().approval(id).unwrap().unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_runs_once_on_its_approval_and_never_on_one_for_other_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 16);
    let m = manifest(1);
    let args = json!({"path": "/w/a", "content": "x"});

    let first = requested(&call(&gate, &m, args.clone(), true).await);
    assert!(first.starts_with("appr-") && first.len() == 37, "{first}");
    // Asked again while it waits: the same approval, no new one.
    assert_eq!(requested(&call(&gate, &m, args.clone(), true).await), first);
    let other = requested(&call(&gate, &m, json!({"path": "/w/a", "content": "y"}), true).await);
    assert_ne!(other, first);
    assert_eq!(
        ledger
            .reader()
            .pending_approvals(None, aegis_ledger::now_unix_ms())
            .unwrap(),
        2
    );

    vote(&ledger, &first, "alice", "approved").await;
    // Other arguments still wait on their own approval.
    assert_eq!(
        requested(&call(&gate, &m, json!({"path": "/w/a", "content": "y"}), true).await),
        other
    );
    let released = call(&gate, &m, args.clone(), true).await;
    assert_eq!(released.decision.outcome, Outcome::Allow);
    assert_eq!(
        released.approval,
        Some(ApprovalLink::Released {
            id: first.clone(),
            approvers: vec!["alice".into()]
        })
    );
    assert!(released.decision.constraints.is_some());
    assert_eq!(state(&ledger, &first), ApprovalState::Consumed);
    // The same call once more needs a new approval.
    let third = requested(&call(&gate, &m, args, true).await);
    assert_ne!(third, first);
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_release_and_a_stricter_manifest_asks_again() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 16);
    let args = json!({"path": "/w/b"});

    let two = manifest(2);
    let id = requested(&call(&gate, &two, args.clone(), true).await);
    vote(&ledger, &id, "alice", "pending").await;
    assert_eq!(requested(&call(&gate, &two, args.clone(), true).await), id);
    vote(&ledger, &id, "bob", "approved").await;
    let released = call(&gate, &two, args.clone(), true).await;
    assert_eq!(released.approval_id(), Some(id.as_str()));
    assert_eq!(released.decision.outcome, Outcome::Allow);

    // Approved by one under a manifest that asked for one; the live
    // manifest now asks for two: the approval does not release the call.
    let one = manifest(1);
    let id = requested(&call(&gate, &one, args.clone(), true).await);
    vote(&ledger, &id, "alice", "approved").await;
    let stricter = call(&gate, &two, args.clone(), true).await;
    let asked = requested(&stricter);
    assert_ne!(asked, id);
    assert_eq!(state(&ledger, &id), ApprovalState::Approved);
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cannot_bury_its_humans_in_requests() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 2);
    let m = manifest(1);
    requested(&call(&gate, &m, json!({"n": 1}), true).await);
    requested(&call(&gate, &m, json!({"n": 2}), true).await);
    let third = call(&gate, &m, json!({"n": 3}), true).await;
    assert_eq!(
        (third.decision.outcome, third.decision.reason),
        (Outcome::Deny, Reason::ApprovalLimit)
    );
    assert_eq!(third.approval, None);
    // Asking again for one that waits still joins it.
    requested(&call(&gate, &m, json!({"n": 1}), true).await);
    assert_eq!(
        ledger
            .reader()
            .pending_approvals(None, aegis_ledger::now_unix_ms())
            .unwrap(),
        2
    );
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_naming_new_sessions_meets_the_limit_of_all_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate_limited(&ledger, 16, 3);
    let m = manifest(1);
    let mut outcomes = Vec::new();
    for n in 0..5 {
        let id = identity_in(&format!("s{n}"));
        let (call_id, args) = (json!(1), json!({"n": n}));
        let call = CallRequest {
            identity: &id,
            upstream: "tools",
            call_id: &call_id,
            call_id_text: None,
            tool_name: "write_file",
            args: &args,
            sanitizer_key: None,
            enforce: true,
            context: None,
        };
        let verdict =
            tokio::time::timeout(HANG_GUARD, gate.decide_and_record(call, Some(m.clone())))
                .await
                .unwrap()
                .unwrap();
        outcomes.push(verdict.decision.reason);
    }
    assert_eq!(
        outcomes,
        [
            Reason::ApprovalRequired,
            Reason::ApprovalRequired,
            Reason::ApprovalRequired,
            Reason::ApprovalLimit,
            Reason::ApprovalLimit
        ]
    );
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_is_asked_to_approve_what_the_sidecar_will_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 16);
    let id = identity_in("s");
    let (call_id, args) = (json!(1), json!({"url": "http://10.0.0.1/"}));
    let call = CallRequest {
        identity: &id,
        upstream: super::super::EGRESS_UPSTREAM,
        call_id: &call_id,
        call_id_text: None,
        tool_name: "write_file",
        args: &args,
        sanitizer_key: None,
        enforce: true,
        context: None,
    };
    // The egress proxy's SSRF guard: applies when the policy would let
    // the call run, approval or not.
    let veto = super::super::Veto {
        reason: Reason::EgressDeny,
        detail: "a private address",
        before_policy: false,
    };
    let verdict = tokio::time::timeout(
        HANG_GUARD,
        gate.decide_with_veto(call, Some(manifest(1)), Some(veto)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (verdict.decision.outcome, verdict.decision.reason),
        (Outcome::Deny, Reason::EgressDeny)
    );
    assert!(verdict.vetoed);
    assert_eq!(verdict.approval, None);
    assert_eq!(
        ledger
            .reader()
            .pending_approvals(None, aegis_ledger::now_unix_ms())
            .unwrap(),
        0
    );
    ledger.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_asks_no_human() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
    let gate = gate(&ledger, 16);
    let verdict = call(&gate, &manifest(1), json!({"n": 1}), false).await;
    assert_eq!(verdict.decision.outcome, Outcome::RequireApproval);
    assert!(verdict.forwards(false));
    assert_eq!(verdict.approval, None);
    assert_eq!(
        ledger
            .reader()
            .pending_approvals(None, aegis_ledger::now_unix_ms())
            .unwrap(),
        0
    );
    ledger.close();
}

#[test]
fn ids_are_random_and_digests_canonical() {
    let (a, b) = (new_id().unwrap(), new_id().unwrap());
    assert_ne!(a, b);
    assert_eq!(a.len(), "appr-".len() + 32);
    assert_eq!(
        args_digest(&json!({"b": 1, "a": [1, 2]})),
        args_digest(&json!({"a": [1, 2], "b": 1}))
    );
    assert_ne!(args_digest(&json!({"a": 1})), args_digest(&json!({"a": 2})));
}

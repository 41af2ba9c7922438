//! Approvals in the ledger: the `approvals` table changes only with the
//! envelopes that change it, in their transaction, and the writer refuses
//! (with its whole group) any change against an approval's rules: an
//! approval releases exactly the call it names, once, and survives a
//! restart as it was.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use aegis_ledger::*;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const TENANT: &str = "acme";
const EXPIRES: i64 = 1_700_000_100_000;
const NOW: i64 = 1_700_000_000_000;

fn open(path: &Path) -> Ledger {
    Ledger::open(LedgerConfig::new(path)).unwrap()
}

fn event(session: &str, event_type: EventType, ts: i64, payload: Value) -> NewEvent {
    NewEvent {
        tenant_id: TENANT.into(),
        user_id: "u1".into(),
        session_id: session.into(),
        ts_unix_ms: ts,
        event_type,
        payload: Payload::from_value(payload),
    }
}

fn digest(args: &Value) -> String {
    hex::encode(Sha256::digest(canon::to_vec(args)))
}

/// A sidecar proposal and its decision, as the gate commits them.
fn call(
    ledger: &Ledger,
    session: &str,
    args: &Value,
    decision: (EventType, Value),
) -> Vec<Result<Appended, AppendError>> {
    let handle = ledger.handle();
    let head = ledger
        .reader()
        .load_session(TENANT, session)
        .unwrap()
        .map(|e| e.head);
    let seq = head.map_or(0, |h| h.seq + 1);
    let proposal = AppendRequest {
        event: event(
            session,
            EventType::ToolCallProposed,
            NOW,
            json!({"tool_name": "write_file", "args": args}),
        ),
        seal: Seal::Expect {
            seq,
            prev_hash: head.map(|h| h.hash),
        },
        origin: Origin::Sidecar,
    };
    let mut payload = decision.1;
    payload["proposal_seq"] = json!(seq);
    payload["tool_name"] = json!("write_file");
    let decided = AppendRequest {
        event: event(session, decision.0, NOW, payload),
        seal: Seal::AtHead,
        origin: Origin::Sidecar,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(handle.append_group(vec![proposal, decided]))
}

fn request(ledger: &Ledger, session: &str, id: &str, args: &Value, required: u32) {
    let results = call(
        ledger,
        session,
        args,
        (
            EventType::ApprovalRequested,
            json!({
                "approval_id": id, "args_digest": digest(args), "approvals_required": required,
                "expires_unix_ms": EXPIRES, "manifest_sha256": "cd".repeat(32),
            }),
        ),
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

fn release(
    ledger: &Ledger,
    session: &str,
    id: &str,
    args: &Value,
) -> Vec<Result<Appended, AppendError>> {
    call(
        ledger,
        session,
        args,
        (EventType::ToolCallAllowed, json!({"approval_id": id})),
    )
}

fn vote(
    ledger: &Ledger,
    session: &str,
    id: &str,
    approver: &str,
    decision: &str,
    state: &str,
    ts: i64,
) -> Result<Appended, AppendError> {
    ledger.handle().append_blocking(
        AppendRequest::at_head(event(
            session,
            EventType::ApprovalDecided,
            ts,
            json!({"approval_id": id, "decision": decision, "approver": approver, "reason": format!("{approver} says {decision}"), "state": state}),
        ))
        .by(Origin::Operator),
    )
}

fn state(ledger: &Ledger, id: &str) -> ApprovalState {
    ledger.reader().approval(id).unwrap().unwrap().state
}

fn head(ledger: &Ledger, session: &str) -> u64 {
    let entry = ledger.reader().load_session(TENANT, session).unwrap();
    entry.unwrap().head.seq
}

fn refused(results: &[Result<Appended, AppendError>]) -> String {
    assert_eq!(results.len(), 2);
    for r in results {
        assert!(matches!(r, Err(AppendError::Approval(_))), "{r:?}");
    }
    results[0].as_ref().unwrap_err().to_string()
}

#[test]
fn an_approval_releases_the_call_it_names_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("ledger.db"));
    let args = json!({"path": "/w/report.txt", "content": "hello"});
    request(&ledger, "s", "appr-a", &args, 1);
    let a = ledger.reader().approval("appr-a").unwrap().unwrap();
    assert_eq!(
        (
            a.state,
            a.tool_name.as_str(),
            a.proposal_seq,
            a.requested_seq
        ),
        (ApprovalState::Pending, "write_file", 0, 1)
    );
    assert_eq!(a.args, String::from_utf8(canon::to_vec(&args)).unwrap());
    assert_eq!(a.args_digest, digest(&args));
    assert!(!a.args_truncated);

    // Not approved yet: no release, and nothing of the group recorded.
    let why = refused(&release(&ledger, "s", "appr-a", &args));
    assert!(why.contains("pending"), "{why}");
    assert_eq!(head(&ledger, "s"), 1);

    vote(
        &ledger,
        "s",
        "appr-a",
        "alice",
        "approve",
        "approved",
        NOW + 1,
    )
    .unwrap();
    let a = ledger.reader().approval("appr-a").unwrap().unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    assert_eq!(a.votes.len(), 1);
    assert_eq!((a.votes[0].approver.as_str(), a.votes[0].seq), ("alice", 2));
    assert_eq!(a.decided_unix_ms, Some(NOW + 1));
    assert!(
        ledger
            .reader()
            .approval_for_call(
                (TENANT, "s"),
                "write_file",
                &digest(&args),
                ApprovalState::Approved,
                NOW
            )
            .unwrap()
            .is_some()
    );

    // Other arguments, or another session's call: not released.
    let other = json!({"path": "/w/report.txt", "content": "HELLO"});
    let why = refused(&release(&ledger, "s", "appr-a", &other));
    assert!(why.contains("other arguments"), "{why}");
    request(&ledger, "t", "appr-t", &args, 1);
    let why = refused(&release(&ledger, "t", "appr-a", &args));
    assert!(why.contains("not one of this session"), "{why}");
    assert_eq!(head(&ledger, "s"), 2);

    // The call itself: released once.
    let results = release(&ledger, "s", "appr-a", &args);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let a = ledger.reader().approval("appr-a").unwrap().unwrap();
    assert_eq!(
        (a.state, a.consumed_seq),
        (ApprovalState::Consumed, Some(4))
    );
    let why = refused(&release(&ledger, "s", "appr-a", &args));
    assert!(why.contains("consumed"), "{why}");
    assert_eq!(head(&ledger, "s"), 4);
    ledger.close();

    // After a restart: still consumed, still refused.
    let ledger = open(&dir.path().join("ledger.db"));
    assert_eq!(state(&ledger, "appr-a"), ApprovalState::Consumed);
    let why = refused(&release(&ledger, "s", "appr-a", &args));
    assert!(why.contains("consumed"), "{why}");
    assert_eq!(head(&ledger, "s"), 4);
    assert!(
        ledger
            .reader()
            .verify_session(TENANT, "s")
            .unwrap()
            .unwrap()
            .is_valid()
    );
}

#[test]
fn two_person_approval_takes_two_distinct_approvers_and_one_deny_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("ledger.db"));
    let args = json!({"path": "/w/a"});
    request(&ledger, "s", "appr-2", &args, 2);
    vote(&ledger, "s", "appr-2", "alice", "approve", "pending", NOW).unwrap();
    assert_eq!(state(&ledger, "appr-2"), ApprovalState::Pending);
    let why = refused(&release(&ledger, "s", "appr-2", &args));
    assert!(why.contains("pending"), "{why}");
    // The same identity again counts for nothing, and says so.
    let again = vote(&ledger, "s", "appr-2", "alice", "approve", "approved", NOW).unwrap_err();
    assert!(again.to_string().contains("already voted"), "{again}");
    // A vote that claims a state its rules do not lead to is refused too.
    let wrong = vote(&ledger, "s", "appr-2", "bob", "approve", "pending", NOW).unwrap_err();
    assert!(wrong.to_string().contains("leads to approved"), "{wrong}");
    vote(&ledger, "s", "appr-2", "bob", "approve", "approved", NOW).unwrap();
    assert!(
        release(&ledger, "s", "appr-2", &args)
            .iter()
            .all(Result::is_ok)
    );

    request(&ledger, "s", "appr-3", &args, 2);
    vote(&ledger, "s", "appr-3", "alice", "approve", "pending", NOW).unwrap();
    vote(&ledger, "s", "appr-3", "bob", "deny", "denied", NOW).unwrap();
    assert_eq!(state(&ledger, "appr-3"), ApprovalState::Denied);
    let late = vote(&ledger, "s", "appr-3", "carol", "approve", "approved", NOW).unwrap_err();
    assert!(late.to_string().contains("denied"), "{late}");
    refused(&release(&ledger, "s", "appr-3", &args));
    let a = ledger.reader().approval("appr-3").unwrap().unwrap();
    assert_eq!(
        a.votes
            .iter()
            .map(|v| v.approver.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
}

#[test]
fn an_approval_expires_only_once_its_time_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("ledger.db"));
    let args = json!({"path": "/w/a"});
    request(&ledger, "s", "appr-e", &args, 1);
    let expire = |ts: i64| {
        ledger.handle().append_blocking(
            AppendRequest::at_head(event(
                "s",
                EventType::ApprovalDecided,
                ts,
                json!({"approval_id": "appr-e", "state": "expired"}),
            ))
            .by(Origin::Sidecar),
        )
    };
    let early = expire(EXPIRES - 1).unwrap_err();
    assert!(early.to_string().contains("not past its expiry"), "{early}");
    assert_eq!(
        ledger
            .reader()
            .overdue_approvals(EXPIRES - 1, 10)
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        ledger
            .reader()
            .overdue_approvals(EXPIRES, 10)
            .unwrap()
            .len(),
        1
    );
    // A vote after the expiry is refused even before it is recorded.
    let late = vote(
        &ledger, "s", "appr-e", "alice", "approve", "approved", EXPIRES,
    )
    .unwrap_err();
    assert!(late.to_string().contains("expired"), "{late}");
    expire(EXPIRES).unwrap();
    assert_eq!(state(&ledger, "appr-e"), ApprovalState::Expired);
    assert_eq!(ledger.reader().pending_approvals(None, NOW).unwrap(), 0);
}

#[test]
fn what_a_client_records_never_touches_an_approval() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("ledger.db"));
    let args = json!({"path": "/w/a"});
    request(&ledger, "s", "appr-c", &args, 1);
    // A client-recorded session of its own, saying what it likes.
    let h = ledger.handle();
    for payload in [
        json!({"approval_id": "appr-x", "tool_name": "write_file", "args_digest": digest(&args), "approvals_required": 1, "proposal_seq": 0, "expires_unix_ms": EXPIRES}),
        json!({"approval_id": "appr-c", "decision": "approve", "approver": "agent", "state": "approved"}),
    ] {
        let event_type = if payload.get("decision").is_some() {
            EventType::ApprovalDecided
        } else {
            EventType::ApprovalRequested
        };
        h.append_blocking(AppendRequest::at_head(event(
            "client", event_type, NOW, payload,
        )))
        .unwrap();
    }
    assert!(ledger.reader().approval("appr-x").unwrap().is_none());
    assert_eq!(state(&ledger, "appr-c"), ApprovalState::Pending);
    // And it cannot write the enforced session at all.
    let e = h
        .append_blocking(AppendRequest::at_head(event(
            "s",
            EventType::ApprovalDecided,
            NOW,
            json!({"approval_id": "appr-c", "decision": "approve", "approver": "agent", "state": "approved"}),
        )))
        .unwrap_err();
    assert!(matches!(e, AppendError::WrongKind { .. }), "{e:?}");
    assert_eq!(state(&ledger, "appr-c"), ApprovalState::Pending);
}

#[test]
fn long_arguments_are_shown_cut_and_listing_pages() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("ledger.db"));
    let args = json!({"content": "é".repeat(approval::MAX_ARGS_SHOWN)});
    request(&ledger, "s", "appr-long", &args, 1);
    let a = ledger.reader().approval("appr-long").unwrap().unwrap();
    assert!(a.args_truncated);
    assert!(
        a.args.len() <= approval::MAX_ARGS_SHOWN && a.args.len() > approval::MAX_ARGS_SHOWN - 2
    );
    assert_eq!(a.args_digest, digest(&args));

    for i in 0..5 {
        request(&ledger, "p", &format!("appr-p{i}"), &json!({"i": i}), 1);
    }
    let mut seen = Vec::new();
    let mut query = ApprovalQuery {
        state: Some(ApprovalState::Pending),
        session_id: Some("p".into()),
        limit: 2,
        ..ApprovalQuery::default()
    };
    loop {
        let (page, next) = ledger.reader().approvals(&query).unwrap();
        seen.extend(page.into_iter().map(|a| a.id));
        match next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("appr-p{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        ledger
            .reader()
            .pending_approvals(Some((TENANT, "p")), NOW)
            .unwrap(),
        5
    );
    assert_eq!(ledger.reader().pending_approvals(None, NOW).unwrap(), 6);
}

#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn approval(required: u32) -> Approval {
    Approval {
        id: "appr-1".into(),
        tenant_id: "t".into(),
        session_id: "s".into(),
        tool_name: "write_file".into(),
        args_digest: "ab".repeat(32),
        args: "{}".into(),
        args_truncated: false,
        manifest_sha256: "cd".repeat(32),
        approvals_required: required,
        proposal_seq: 4,
        requested_seq: 5,
        requested_unix_ms: 1_000,
        expires_unix_ms: 2_000,
        state: ApprovalState::Pending,
        votes: Vec::new(),
        decided_unix_ms: None,
        consumed_seq: None,
    }
}

fn voted(mut a: Approval, approver: &str, decision: VoteKind) -> Approval {
    a.state = a.vote(approver, decision, 1_500).unwrap();
    a.votes.push(Vote {
        approver: approver.into(),
        decision,
        reason: String::new(),
        at_unix_ms: 1_500,
        seq: 9,
    });
    a
}

#[test]
fn one_approver_approves_and_one_deny_ends_it() {
    assert_eq!(
        approval(1).vote("alice", VoteKind::Approve, 1_500),
        Ok(ApprovalState::Approved)
    );
    assert_eq!(
        approval(1).vote("alice", VoteKind::Deny, 1_500),
        Ok(ApprovalState::Denied)
    );
    let denied = voted(approval(2), "alice", VoteKind::Deny);
    assert_eq!(
        denied.vote("bob", VoteKind::Approve, 1_500),
        Err(VoteRefused::Closed {
            id: "appr-1".into(),
            state: ApprovalState::Denied
        })
    );
}

#[test]
fn two_person_approval_needs_two_distinct_identities() {
    let once = voted(approval(2), "alice", VoteKind::Approve);
    assert_eq!(once.state, ApprovalState::Pending);
    assert_eq!(once.approvals(), 1);
    assert_eq!(
        once.vote("alice", VoteKind::Approve, 1_500),
        Err(VoteRefused::AlreadyVoted {
            id: "appr-1".into(),
            approver: "alice".into()
        })
    );
    // Nor may the first approver turn it into a denial.
    assert!(once.vote("alice", VoteKind::Deny, 1_500).is_err());
    assert_eq!(
        once.vote("bob", VoteKind::Approve, 1_500),
        Ok(ApprovalState::Approved)
    );
    assert_eq!(
        once.vote("bob", VoteKind::Deny, 1_500),
        Ok(ApprovalState::Denied)
    );
    let twice = voted(once, "bob", VoteKind::Approve);
    assert!(matches!(
        twice.vote("carol", VoteKind::Approve, 1_500),
        Err(VoteRefused::Closed {
            state: ApprovalState::Approved,
            ..
        })
    ));
}

#[test]
fn past_its_expiry_an_approval_reads_expired_and_takes_no_votes() {
    let a = approval(1);
    assert_eq!(a.state_at(1_999), ApprovalState::Pending);
    assert_eq!(a.state_at(2_000), ApprovalState::Expired);
    assert!(matches!(
        a.vote("alice", VoteKind::Approve, 2_000),
        Err(VoteRefused::Closed {
            state: ApprovalState::Expired,
            ..
        })
    ));
    // An approved call not made in time expires too; final states stay.
    let approved = voted(approval(1), "alice", VoteKind::Approve);
    assert_eq!(approved.state_at(2_000), ApprovalState::Expired);
    let mut consumed = approved;
    consumed.state = ApprovalState::Consumed;
    assert_eq!(consumed.state_at(9_999), ApprovalState::Consumed);
}

#[test]
fn only_the_sidecar_and_operators_change_approvals() {
    let requested = json!({
        "approval_id": "appr-1", "tool_name": "write_file", "args_digest": "ab".repeat(32),
        "manifest_sha256": "cd".repeat(32), "approvals_required": 2, "proposal_seq": 4,
        "expires_unix_ms": 2_000,
    });
    let decided = json!({
        "approval_id": "appr-1", "decision": "approve", "approver": "alice",
        "reason": "ok", "state": "approved",
    });
    let expired = json!({"approval_id": "appr-1", "state": "expired"});
    let allowed = json!({"approval_id": "appr-1", "tool_name": "write_file"});
    use EventType::*;
    for (event_type, payload) in [
        (ApprovalRequested, &requested),
        (ApprovalDecided, &decided),
        (ApprovalDecided, &expired),
        (ToolCallAllowed, &allowed),
    ] {
        assert_eq!(Change::of(Origin::Client, event_type, payload), None);
    }
    assert!(matches!(
        Change::of(Origin::Sidecar, ApprovalRequested, &requested),
        Some(Change::Requested {
            approvals_required: 2,
            proposal_seq: 4,
            ..
        })
    ));
    // An operator cannot request, expire or release; the sidecar cannot vote.
    assert_eq!(
        Change::of(Origin::Operator, ApprovalRequested, &requested),
        None
    );
    assert_eq!(
        Change::of(Origin::Operator, ToolCallAllowed, &allowed),
        None
    );
    assert_eq!(Change::of(Origin::Sidecar, ApprovalDecided, &decided), None);
    assert!(matches!(
        Change::of(Origin::Operator, ApprovalDecided, &decided),
        Some(Change::Voted {
            state: ApprovalState::Approved,
            decision: VoteKind::Approve,
            ..
        })
    ));
    assert_eq!(
        Change::of(Origin::Sidecar, ApprovalDecided, &expired),
        Some(Change::Expired {
            id: "appr-1".into()
        })
    );
    assert_eq!(
        Change::of(Origin::Sidecar, ToolCallAllowed, &allowed),
        Some(Change::Consumed {
            id: "appr-1".into()
        })
    );
    // An allowance without an approval changes nothing.
    assert_eq!(
        Change::of(Origin::Sidecar, ToolCallAllowed, &json!({"tool_name": "x"})),
        None
    );
}

#[test]
fn malformed_approval_payloads_change_nothing() {
    use EventType::*;
    let bad_votes = [
        json!({"approval_id": "appr-1", "decision": "maybe", "approver": "a", "state": "approved"}),
        json!({"approval_id": "appr-1", "decision": "approve", "approver": "", "state": "approved"}),
        json!({"approval_id": "appr-1", "decision": "approve", "approver": "a", "state": "consumed"}),
        json!({"approval_id": "", "decision": "approve", "approver": "a", "state": "approved"}),
        json!({"approval_id": "appr-1", "decision": "approve", "approver": "a".repeat(MAX_ID_LEN + 1), "state": "approved"}),
        json!({"approval_id": 7, "decision": "approve", "approver": "a", "state": "approved"}),
    ];
    for payload in &bad_votes {
        assert_eq!(
            Change::of(Origin::Operator, ApprovalDecided, payload),
            None,
            "{payload}"
        );
    }
    let no_required = json!({
        "approval_id": "appr-1", "tool_name": "w", "args_digest": "ab", "proposal_seq": 4,
        "expires_unix_ms": 2_000, "approvals_required": 0,
    });
    assert_eq!(
        Change::of(Origin::Sidecar, ApprovalRequested, &no_required),
        None
    );
    assert_eq!(
        Change::of(
            Origin::Sidecar,
            ApprovalDecided,
            &json!({"approval_id": "a", "state": "approved"})
        ),
        None
    );
}

#[test]
fn states_and_votes_have_closed_names() {
    for state in ApprovalState::ALL {
        assert_eq!(ApprovalState::parse(state.as_str()), Some(state));
    }
    assert_eq!(ApprovalState::parse("PENDING"), None);
    assert_eq!(VoteKind::parse("approve"), Some(VoteKind::Approve));
    assert_eq!(VoteKind::parse("Approve"), None);
}

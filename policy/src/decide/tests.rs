#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::loops::CallKey;

fn manifest(permissions: Value) -> CompiledManifest {
    let m = json!({
        "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1.0.0", "publisher": "acme",
        "permissions": permissions, "sandbox": {"required": true}, "integrity": {}
    });
    CompiledManifest::new(&Manifest::from_value(&m).unwrap())
}

fn standard() -> CompiledManifest {
    manifest(json!({
        "tools": ["read_file", "net.get", "mcp.https", "exec", "write_file", "deploy"],
        "net": {"domains": ["api.example.com", "*.wiki.org"]},
        "exec": {"allowed_bins": ["ls", "git"]},
        "approval_required": ["deploy"],
        "budgets": {"max_steps": 5, "max_tool_calls": 3, "max_wall_time_ms": 1000,
                    "max_output_bytes": 100, "timeout_ms": 50}
    }))
}

/// Facts of a fresh, clean session.
fn fresh() -> SessionFacts<'static> {
    SessionFacts::default()
}

struct Row {
    name: &'static str,
    payload: Value,
    facts: SessionFacts<'static>,
    outcome: Outcome,
    reason: Reason,
}

fn row(
    name: &'static str,
    payload: Value,
    facts: SessionFacts<'static>,
    outcome: Outcome,
    reason: Reason,
) -> Row {
    Row {
        name,
        payload,
        facts,
        outcome,
        reason,
    }
}

static SANITIZED: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| vec!["k1".to_owned()]);

fn tainted() -> SessionFacts<'static> {
    SessionFacts {
        is_tainted: true,
        sanitized_keys: &SANITIZED,
        ..fresh()
    }
}

#[test]
fn every_rule_and_its_order() {
    use Outcome::{Allow, Deny, RequireApproval};
    let at = |steps, calls, wall| SessionFacts {
        steps_consumed: steps,
        tool_calls_consumed: calls,
        wall_time_ms: wall,
        ..fresh()
    };
    let looping = SessionFacts {
        loop_violation: Some("read_file repeated"),
        ..fresh()
    };
    let rows = vec![
        // 1. declared tools
        row(
            "undeclared tool",
            json!({"tool_name": "delete_all"}),
            fresh(),
            Deny,
            Reason::PermissionUndeclared,
        ),
        row(
            "declared tool",
            json!({"tool_name": "read_file", "args": {"path": "/w/a"}}),
            fresh(),
            Allow,
            Reason::Ok,
        ),
        row(
            "undeclared beats budget",
            json!({"tool_name": "delete_all"}),
            at(5, 3, 1000),
            Deny,
            Reason::PermissionUndeclared,
        ),
        // 2. egress
        row(
            "allowed exact domain",
            json!({"tool_name": "net.get", "args": {"url": "https://api.example.com/v1"}}),
            fresh(),
            Allow,
            Reason::Ok,
        ),
        row(
            "allowed subdomain",
            json!({"tool_name": "net.get", "args": {"domain": "en.wiki.org"}}),
            fresh(),
            Allow,
            Reason::Ok,
        ),
        row(
            "wildcard is not the apex",
            json!({"tool_name": "net.get", "args": {"host": "wiki.org"}}),
            fresh(),
            Deny,
            Reason::EgressDeny,
        ),
        row(
            "other domain",
            json!({"tool_name": "net.get", "args": {"url": "https://evil.com/"}}),
            fresh(),
            Deny,
            Reason::EgressDeny,
        ),
        row(
            "userinfo trick",
            json!({"tool_name": "net.get", "args": {"url": "https://api.example.com@evil.com/"}}),
            fresh(),
            Deny,
            Reason::EgressDeny,
        ),
        row(
            "no destination",
            json!({"tool_name": "net.get", "args": {}}),
            fresh(),
            Deny,
            Reason::EgressDeny,
        ),
        row(
            "mcp.https is a network tool",
            json!({"tool_name": "mcp.https", "args": {"url": "https://evil.com"}}),
            fresh(),
            Deny,
            Reason::EgressDeny,
        ),
        row(
            "egress beats budget",
            json!({"tool_name": "net.get", "args": {"url": "https://evil.com/"}}),
            at(5, 3, 1000),
            Deny,
            Reason::EgressDeny,
        ),
        // 3. budgets: consumed >= max is denied, max - 1 is allowed
        row(
            "steps max-1",
            json!({"tool_name": "read_file"}),
            at(4, 0, 0),
            Allow,
            Reason::Ok,
        ),
        row(
            "steps max",
            json!({"tool_name": "read_file"}),
            at(5, 0, 0),
            Deny,
            Reason::BudgetExceeded,
        ),
        row(
            "tool calls max-1",
            json!({"tool_name": "read_file"}),
            at(0, 2, 0),
            Allow,
            Reason::Ok,
        ),
        row(
            "tool calls max",
            json!({"tool_name": "read_file"}),
            at(0, 3, 0),
            Deny,
            Reason::BudgetExceeded,
        ),
        row(
            "wall time max-1",
            json!({"tool_name": "read_file"}),
            at(0, 0, 999),
            Allow,
            Reason::Ok,
        ),
        row(
            "wall time max",
            json!({"tool_name": "read_file"}),
            at(0, 0, 1000),
            Deny,
            Reason::BudgetExceeded,
        ),
        row(
            "budget beats loop",
            json!({"tool_name": "read_file"}),
            SessionFacts {
                steps_consumed: 5,
                ..looping
            },
            Deny,
            Reason::BudgetExceeded,
        ),
        // 4. loops
        row(
            "loop",
            json!({"tool_name": "read_file"}),
            looping,
            Deny,
            Reason::LoopDetected,
        ),
        row(
            "empty loop violation",
            json!({"tool_name": "read_file"}),
            SessionFacts {
                loop_violation: Some(""),
                ..fresh()
            },
            Allow,
            Reason::Ok,
        ),
        row(
            "loop beats taint",
            json!({"tool_name": "write_file"}),
            SessionFacts {
                is_tainted: true,
                ..looping
            },
            Deny,
            Reason::LoopDetected,
        ),
        // 5. taint
        row(
            "tainted to sink",
            json!({"tool_name": "write_file", "args": {}}),
            tainted(),
            Deny,
            Reason::TaintedToHighRisk,
        ),
        row(
            "tainted to sink, registered key",
            json!({"tool_name": "write_file", "sanitizer_key": "k1"}),
            tainted(),
            Allow,
            Reason::Ok,
        ),
        row(
            "tainted to sink, unknown key",
            json!({"tool_name": "write_file", "sanitizer_key": "k2"}),
            tainted(),
            Deny,
            Reason::TaintedToHighRisk,
        ),
        row(
            "tainted to safe tool",
            json!({"tool_name": "read_file"}),
            tainted(),
            Allow,
            Reason::Ok,
        ),
        row(
            "untainted to sink",
            json!({"tool_name": "write_file"}),
            fresh(),
            Allow,
            Reason::Ok,
        ),
        row(
            "taint beats exec",
            json!({"tool_name": "exec", "args": {"cmd": "ls"}}),
            tainted(),
            Deny,
            Reason::TaintedToHighRisk,
        ),
        // 6. exec
        row(
            "allowed bin from cmd",
            json!({"tool_name": "exec", "args": {"cmd": "ls -la /w"}}),
            fresh(),
            Allow,
            Reason::Ok,
        ),
        row(
            "allowed bin",
            json!({"tool_name": "exec", "args": {"bin": "git"}}),
            fresh(),
            Allow,
            Reason::Ok,
        ),
        row(
            "other bin",
            json!({"tool_name": "exec", "args": {"cmd": "rm -rf /"}}),
            fresh(),
            Deny,
            Reason::ExecDeny,
        ),
        row(
            "path is not the name",
            json!({"tool_name": "exec", "args": {"cmd": "/bin/ls"}}),
            fresh(),
            Deny,
            Reason::ExecDeny,
        ),
        row(
            "no binary",
            json!({"tool_name": "exec", "args": {}}),
            fresh(),
            Deny,
            Reason::ExecDeny,
        ),
        // 7. approval
        row(
            "approval",
            json!({"tool_name": "deploy"}),
            fresh(),
            RequireApproval,
            Reason::ApprovalRequired,
        ),
        row(
            "budget beats approval",
            json!({"tool_name": "deploy"}),
            at(5, 0, 0),
            Deny,
            Reason::BudgetExceeded,
        ),
    ];
    let m = standard();
    for r in rows {
        let proposal = Proposal::from_payload(&r.payload).unwrap();
        let d = decide(&proposal, &r.facts, &m);
        assert_eq!((d.outcome, d.reason), (r.outcome, r.reason), "{}", r.name);
        let constraints = (d.outcome == Outcome::Allow).then_some(Constraints {
            max_output_bytes: 100,
            timeout_ms: 50,
        });
        assert_eq!(d.constraints, constraints, "{}", r.name);
    }
}

#[test]
fn declaring_exec_is_not_enough() {
    let m = manifest(json!({"tools": ["exec"]}));
    let payload = json!({"tool_name": "exec", "args": {"cmd": "ls"}});
    let d = decide(&Proposal::from_payload(&payload).unwrap(), &fresh(), &m);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::ExecDeny));
}

#[test]
fn defaults_and_sink_override() {
    let m = manifest(json!({"tools": ["read_file", "write_file"]}));
    let payload = json!({"tool_name": "read_file"});
    let p = Proposal::from_payload(&payload).unwrap();
    let d = decide(&p, &fresh(), &m);
    assert_eq!(
        d.constraints,
        Some(Constraints {
            max_output_bytes: 1_048_576,
            timeout_ms: 30_000
        })
    );
    for (facts, reason) in [
        (
            SessionFacts {
                steps_consumed: 23,
                ..fresh()
            },
            Reason::Ok,
        ),
        (
            SessionFacts {
                steps_consumed: 24,
                ..fresh()
            },
            Reason::BudgetExceeded,
        ),
        (
            SessionFacts {
                tool_calls_consumed: 11,
                ..fresh()
            },
            Reason::Ok,
        ),
        (
            SessionFacts {
                tool_calls_consumed: 12,
                ..fresh()
            },
            Reason::BudgetExceeded,
        ),
        (
            SessionFacts {
                wall_time_ms: 119_999,
                ..fresh()
            },
            Reason::Ok,
        ),
        (
            SessionFacts {
                wall_time_ms: 120_000,
                ..fresh()
            },
            Reason::BudgetExceeded,
        ),
    ] {
        assert_eq!(decide(&p, &facts, &m).reason, reason, "{facts:?}");
    }

    // With its own sinks, read_file becomes one and write_file stops being one.
    let m = CompiledManifest::new(
        &Manifest::from_value(&json!({
            "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
            "permissions": {"tools": ["read_file", "write_file"]}, "sandbox": {"required": false},
            "integrity": {}, "policy": {"high_risk_sinks": ["read_"]}
        }))
        .unwrap(),
    );
    let read = json!({"tool_name": "read_file"});
    let write = json!({"tool_name": "write_file"});
    assert_eq!(
        decide(&Proposal::from_payload(&read).unwrap(), &tainted(), &m).reason,
        Reason::TaintedToHighRisk
    );
    assert_eq!(
        decide(&Proposal::from_payload(&write).unwrap(), &tainted(), &m).reason,
        Reason::Ok
    );
}

#[test]
fn proposals_need_a_tool_name() {
    assert!(Proposal::from_payload(&json!({"args": {}})).is_none());
    assert!(Proposal::from_payload(&json!({"tool_name": 5})).is_none());
    assert!(Proposal::from_payload(&json!(null)).is_none());
}

#[test]
fn a_call_that_would_complete_a_loop_is_denied() {
    let m = manifest(json!({"tools": ["a", "b", "c", "read_file"]}));
    let same = [7u8; 16];
    let other = [8u8; 16];
    let key = |seq, tool_name, args_digest| CallKey {
        seq,
        tool_name,
        args_digest,
    };
    let proposal = |tool: &'static str, digest| Proposal {
        tool_name: tool,
        args: &Value::Null,
        sanitizer_key: None,
        args_digest: digest,
    };
    let twice = [key(0, "read_file", same), key(1, "read_file", same)];
    let facts = SessionFacts {
        history: &twice,
        ..fresh()
    };
    assert_eq!(
        decide(&proposal("read_file", Some(same)), &facts, &m).reason,
        Reason::LoopDetected
    );
    assert_eq!(
        decide(&proposal("read_file", Some(other)), &facts, &m).reason,
        Reason::Ok
    );
    assert_eq!(
        decide(&proposal("read_file", None), &facts, &m).reason,
        Reason::Ok,
        "without the digest only a recorded loop counts"
    );
    let budget_spent = SessionFacts {
        steps_consumed: 24,
        ..facts
    };
    assert_eq!(
        decide(&proposal("read_file", Some(same)), &budget_spent, &m).reason,
        Reason::BudgetExceeded
    );

    let sequence = [
        key(0, "a", same),
        key(1, "b", same),
        key(2, "c", same),
        key(3, "a", other),
        key(4, "b", other),
    ];
    let facts = SessionFacts {
        history: &sequence,
        ..fresh()
    };
    assert_eq!(
        decide(&proposal("c", Some(other)), &facts, &m).reason,
        Reason::LoopDetected
    );
    assert_eq!(
        decide(&proposal("a", Some([9; 16])), &facts, &m).reason,
        Reason::Ok
    );
}

#[test]
fn rate_limits_take_tokens_only_from_calls_that_would_run() {
    let m = CompiledManifest::new(
        &Manifest::from_value(&json!({
            "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
            "permissions": {"tools": ["read_file", "write_file"]}, "sandbox": {"required": false},
            "integrity": {}, "policy": {"rate_limits": {"read_file": {"per_second": 1.0, "burst": 2}}}
        }))
        .unwrap(),
    );
    let limiter = m.new_rate_limiter();
    let now = std::time::Instant::now();
    let read = json!({"tool_name": "read_file"});
    let read = Proposal::from_payload(&read).unwrap();
    let limited = SessionFacts {
        rate: Some((&limiter, now)),
        ..fresh()
    };
    // Denied for its budget: no token taken.
    let spent = SessionFacts {
        steps_consumed: 24,
        ..limited
    };
    for _ in 0..5 {
        assert_eq!(decide(&read, &spent, &m).reason, Reason::BudgetExceeded);
    }
    assert_eq!(decide(&read, &limited, &m).reason, Reason::Ok);
    assert_eq!(decide(&read, &limited, &m).reason, Reason::Ok);
    assert_eq!(decide(&read, &limited, &m).reason, Reason::RateLimited);
    assert_eq!(decide(&read, &limited, &m).outcome, Outcome::Deny);
    // A second later one token is back; other tools were never limited.
    let later = SessionFacts {
        rate: Some((&limiter, now + std::time::Duration::from_secs(1))),
        ..fresh()
    };
    assert_eq!(decide(&read, &later, &m).reason, Reason::Ok);
    assert_eq!(decide(&read, &later, &m).reason, Reason::RateLimited);
    let write = json!({"tool_name": "write_file"});
    assert_eq!(
        decide(&Proposal::from_payload(&write).unwrap(), &later, &m).reason,
        Reason::Ok
    );
}

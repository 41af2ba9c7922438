#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

/// Reports a loop when the same call appears three times in the history.
#[derive(Debug)]
struct ThirdRepeat;

impl SessionRules for ThirdRepeat {
    fn window(&self) -> usize {
        5
    }

    fn detect(&self, history: &ToolHistory) -> Option<LoopViolation> {
        let last = history.iter().last()?;
        let same: Vec<u64> = history
            .iter()
            .filter(|c| c.tool_name == last.tool_name && c.args_digest == last.args_digest)
            .map(|c| c.seq)
            .collect();
        (same.len() >= 3).then(|| LoopViolation {
            description: format!("{} repeated", last.tool_name),
            seqs: same,
        })
    }
}

fn run(events: &[(EventType, serde_json::Value)], detector: &dyn SessionRules) -> SessionState {
    let mut state = SessionState::new(detector);
    for (seq, (t, payload)) in events.iter().enumerate() {
        state.apply(
            &Observation::new(seq as u64, 1000 + seq as i64, *t, payload),
            detector,
        );
    }
    state
}

#[test]
fn steps_count_agent_actions_not_rows() {
    use EventType::*;
    let state = run(
        &[
            (ModelCallStarted, json!({})),
            (ModelCallFinished, json!({})),
            (ToolCallProposed, json!({"tool_name": "a"})),
            (ToolCallAllowed, json!({})),
            (ToolCallExecuted, json!({})),
            (ToolResult, json!({})),
            (MemoryRead, json!({})),
            (MemoryWrite, json!({})),
            (HandoffRequested, json!({})),
            (HandoffCompleted, json!({})),
            (CheckpointCreated, json!({})),
            (ErrorRaised, json!({})),
        ],
        &DefaultSessionRules,
    );
    assert_eq!(state.steps_consumed(), 5);
    assert_eq!(state.tool_calls_consumed(), 1);
}

#[test]
fn refused_proposals_are_steps_but_not_tool_calls() {
    use EventType::*;
    let state = run(
        &[
            (ToolCallProposed, json!({"tool_name": "a"})),
            (ToolCallDenied, json!({})),
            (ToolCallProposed, json!({"tool_name": "b"})),
            (ApprovalRequested, json!({})),
            (ToolCallProposed, json!({"tool_name": "c"})),
            (ToolCallAllowed, json!({})),
        ],
        &DefaultSessionRules,
    );
    assert_eq!(state.steps_consumed(), 3);
    assert_eq!(state.tool_calls_consumed(), 1);
}

#[test]
fn taint_comes_from_results_and_reads_and_termination_clears_it() {
    use EventType::*;
    let mut state = run(&[(ToolCallProposed, json!({}))], &DefaultSessionRules);
    assert!(!state.is_tainted());
    state.apply(
        &Observation::new(1, 0, ToolResult, &json!({})),
        &DefaultSessionRules,
    );
    assert!(state.is_tainted());
    state.apply(
        &Observation::new(2, 0, Termination, &json!({})),
        &DefaultSessionRules,
    );
    assert!(!state.is_tainted());
    state.apply(
        &Observation::new(3, 0, MemoryRead, &json!({})),
        &DefaultSessionRules,
    );
    assert!(state.is_tainted());
}

#[test]
fn wall_time_runs_from_the_first_envelope() {
    let state = run(
        &[(EventType::ModelCallStarted, json!({}))],
        &DefaultSessionRules,
    );
    assert_eq!(state.wall_time_ms(1000), 0);
    assert_eq!(state.wall_time_ms(4500), 3500);
    assert_eq!(
        state.wall_time_ms(10),
        0,
        "a clock behind the first envelope is not negative time"
    );
    assert_eq!(SessionState::default().wall_time_ms(99), 0);
}

#[test]
fn sanitizer_keys_are_registered_by_policy_decision_envelopes() {
    use EventType::*;
    let state = run(
        &[
            (
                PolicyDecision,
                json!({"action": "register_sanitizer", "sanitizer_key": "k2"}),
            ),
            (
                PolicyDecision,
                json!({"action": "register_sanitizer", "sanitizer_key": "k1"}),
            ),
            (
                PolicyDecision,
                json!({"action": "register_sanitizer", "sanitizer_key": "k1"}),
            ),
            (
                PolicyDecision,
                json!({"action": "other", "sanitizer_key": "k3"}),
            ),
            (
                ToolResult,
                json!({"action": "register_sanitizer", "sanitizer_key": "k4"}),
            ),
        ],
        &DefaultSessionRules,
    );
    assert_eq!(state.snapshot(0).sanitized_keys, ["k1", "k2"]);
    assert!(state.has_sanitizer_key("k1"));
    assert!(!state.has_sanitizer_key("k3"));
}

#[test]
fn a_detected_loop_holds_until_termination() {
    use EventType::*;
    let call = json!({"tool_name": "fetch", "args": {"url": "x", "n": 1}});
    let same_args_other_order = json!({"args": {"n": 1, "url": "x"}, "tool_name": "fetch"});
    let mut state = run(
        &[
            (ToolCallProposed, call.clone()),
            (
                ToolCallProposed,
                json!({"tool_name": "fetch", "args": {"url": "y"}}),
            ),
            (ToolCallProposed, same_args_other_order),
            (ToolCallProposed, call.clone()),
        ],
        &ThirdRepeat,
    );
    let violation = state.loop_violation().unwrap();
    assert_eq!(violation.seqs, [0, 2, 3]);
    assert_eq!(
        state.snapshot(0).loop_violation,
        "fetch repeated (seqs 0, 2, 3)"
    );
    state.apply(
        &Observation::new(4, 0, ToolCallProposed, &json!({"tool_name": "other"})),
        &ThirdRepeat,
    );
    assert!(
        state.loop_violation().is_some(),
        "holds after an unrelated call"
    );
    state.apply(
        &Observation::new(5, 0, Termination, &json!({})),
        &ThirdRepeat,
    );
    assert!(state.loop_violation().is_none());
    assert!(state.history().is_empty());
}

#[test]
fn history_is_bounded_by_the_detector_window() {
    let events: Vec<_> = (0..12)
        .map(|i| {
            (
                EventType::ToolCallProposed,
                json!({"tool_name": format!("t{i}")}),
            )
        })
        .collect();
    let state = run(&events, &ThirdRepeat);
    assert_eq!(state.history().len(), 5);
    assert_eq!(state.history().iter().next().unwrap().seq, 7);
}

#[test]
fn snapshot_has_the_aegis_shape() {
    let v = serde_json::to_value(Snapshot::default()).unwrap();
    assert_eq!(
        v,
        json!({"steps_consumed": 0, "tool_calls_consumed": 0, "wall_time_ms": 0,
               "is_tainted": false, "sanitized_keys": [], "loop_violation": ""})
    );
}

/// Exempts results of `search` from taint.
#[derive(Debug)]
struct SearchDoesNotTaint;

impl SessionRules for SearchDoesNotTaint {
    fn window(&self) -> usize {
        5
    }

    fn detect(&self, _: &ToolHistory) -> Option<LoopViolation> {
        None
    }

    fn result_taints(&self, tool_name: Option<&str>) -> bool {
        tool_name != Some("search")
    }
}

#[test]
fn rules_can_exempt_a_tools_results_from_taint() {
    use EventType::*;
    let rules = SearchDoesNotTaint;
    let state = run(
        &[(ToolResult, json!({"tool_name": "search", "result": "x"}))],
        &rules,
    );
    assert!(!state.is_tainted());
    let state = run(
        &[(ToolResult, json!({"tool_name": "fetch", "result": "x"}))],
        &rules,
    );
    assert!(state.is_tainted());
    let state = run(&[(ToolResult, json!({"result": "no tool named"}))], &rules);
    assert!(
        state.is_tainted(),
        "a result that does not say its tool taints"
    );
    let state = run(&[(MemoryRead, json!({"tool_name": "search"}))], &rules);
    assert!(state.is_tainted(), "memory reads always taint");
}

#[test]
fn content_reads_taint_unless_recorded_as_trusted() {
    use EventType::*;
    let rules = SearchDoesNotTaint;
    let taints = |payload: serde_json::Value| run(&[(ToolResult, payload)], &rules).is_tainted();
    assert!(taints(
        json!({"source": "resources/read", "uri": "file:///x"})
    ));
    assert!(taints(json!({"source": "prompts/get", "trusted": false})));
    assert!(taints(
        json!({"source": "resources/read", "trusted": "true"})
    ));
    assert!(!taints(
        json!({"source": "resources/read", "trusted": true})
    ));
    assert!(!taints(json!({"source": "prompts/get", "trusted": true})));
    // A read is not a step: it spends no budget.
    let state = run(&[(ToolResult, json!({"source": "resources/read"}))], &rules);
    assert_eq!(state.steps_consumed(), 0);
    // An exempt tool's result that embeds an untrusted resource taints.
    assert!(taints(
        json!({"tool_name": "search", "untrusted_content": true})
    ));
    assert!(!taints(
        json!({"tool_name": "search", "untrusted_content": false})
    ));
    // A `trusted` flag on an ordinary tool result changes nothing.
    assert!(taints(json!({"tool_name": "fetch", "trusted": true})));
    // An unknown source is a tool result.
    assert!(taints(json!({"source": "sampling", "trusted": true})));
}

#[test]
fn a_proposal_held_for_approval_leaves_the_loop_history() {
    use EventType::*;
    let call = json!({"tool_name": "write_file", "args": {"p": 1}});
    let held = |seq: u64| json!({"tool_name": "write_file", "proposal_seq": seq});
    // Asked three times while a human decides: not a loop.
    let state = run(
        &[
            (ToolCallProposed, call.clone()),
            (ApprovalRequested, held(0)),
            (ToolCallProposed, call.clone()),
            (ApprovalRequested, held(2)),
            (ToolCallProposed, call.clone()),
            (ApprovalRequested, held(4)),
        ],
        &ThirdRepeat,
    );
    assert!(state.history().is_empty());
    assert_eq!(state.loop_violation(), None);
    assert_eq!(state.tool_calls_consumed(), 0);
    assert_eq!(state.steps_consumed(), 3);
    // Calls that ran (or were denied) stay; a shadow-mode hold ran.
    let state = run(
        &[
            (ToolCallProposed, call.clone()),
            (ToolCallAllowed, held(0)),
            (ToolCallProposed, call.clone()),
            (ToolCallDenied, held(2)),
            (ToolCallProposed, call.clone()),
            (
                ApprovalRequested,
                json!({"tool_name": "write_file", "proposal_seq": 4, "enforced": false}),
            ),
        ],
        &ThirdRepeat,
    );
    assert_eq!(state.history().len(), 3);
    assert!(state.loop_violation().is_some());
    // A hold naming another proposal than the newest takes nothing away.
    let state = run(
        &[
            (ToolCallProposed, call.clone()),
            (ToolCallProposed, call),
            (ApprovalRequested, held(0)),
        ],
        &ThirdRepeat,
    );
    assert_eq!(state.history().len(), 2);
}

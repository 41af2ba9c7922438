#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::event::EventType;
use crate::session::{DefaultSessionRules, Observation};

/// A loop is two proposals in a row of the same tool; `quiet` results do
/// not taint. Window 4, so the history wraps quickly.
#[derive(Debug)]
struct Twice;

impl SessionRules for Twice {
    fn window(&self) -> usize {
        4
    }

    fn detect(&self, history: &ToolHistory) -> Option<LoopViolation> {
        let mut last = history.iter().rev();
        let (b, a) = (last.next()?, last.next()?);
        (a.tool_name == b.tool_name).then(|| LoopViolation {
            description: format!("{} twice", b.tool_name),
            seqs: vec![a.seq, b.seq],
        })
    }

    fn result_taints(&self, tool_name: Option<&str>) -> bool {
        tool_name != Some("quiet")
    }
}

fn event() -> impl Strategy<Value = (EventType, Value)> {
    use EventType::*;
    let tool = prop::sample::select(vec!["a", "b", "quiet"]);
    let seq = 0u64..40;
    prop_oneof![
        (tool.clone(), 0u8..3).prop_map(|(t, arg)| (
            ToolCallProposed,
            json!({"tool_name": t, "args": {"x": arg}})
        )),
        (tool.clone(), seq.clone())
            .prop_map(|(t, s)| (ToolCallAllowed, json!({"tool_name": t, "proposal_seq": s}))),
        (tool.clone(), seq.clone(), any::<bool>()).prop_map(|(t, s, shadow)| (
            ToolCallDenied,
            if shadow {
                json!({"tool_name": t, "proposal_seq": s, "enforced": false})
            } else {
                json!({"tool_name": t})
            }
        )),
        (tool.clone(), seq.clone())
            .prop_map(|(t, s)| (ToolResult, json!({"tool_name": t, "proposal_seq": s}))),
        (tool, seq.clone()).prop_map(|(t, s)| (
            ApprovalRequested,
            json!({"tool_name": t, "proposal_seq": s})
        )),
        seq.clone().prop_map(|s| (
            ErrorRaised,
            json!({"proposal_seq": s, "error": "result_not_recorded"})
        )),
        seq.prop_map(|s| (ToolCallExecuted, json!({"proposal_seq": s}))),
        Just((MemoryRead, json!({}))),
        Just((ModelCallStarted, json!({}))),
        Just((Termination, json!({}))),
        prop::sample::select(vec!["k1", "k2", "k0"]).prop_map(|k| (
            PolicyDecision,
            json!({"action": "register_sanitizer", "sanitizer_key": k})
        )),
    ]
}

fn fold(
    state: &mut SessionState,
    events: &[(EventType, Value)],
    from: usize,
    rules: &dyn SessionRules,
) {
    for (i, (t, payload)) in events.iter().enumerate().skip(from) {
        let seq = i as u64;
        state.apply(
            &Observation::new(seq, 1000 + 7 * seq as i64, *t, payload),
            rules,
        );
    }
}

proptest! {
    /// Folding a prefix, storing it, reading it back and folding the rest
    /// gives exactly the state of folding everything.
    #[test]
    fn a_summary_and_its_tail_fold_to_the_whole(
        events in prop::collection::vec(event(), 1..120),
        cut in any::<prop::sample::Index>(),
    ) {
        let rules = Twice;
        let mut whole = SessionState::new(&rules);
        fold(&mut whole, &events, 0, &rules);

        let cut = cut.index(events.len());
        let mut prefix = SessionState::new(&rules);
        fold(&mut prefix, &events[..=cut], 0, &rules);
        let text = prefix.to_summary();
        let mut resumed = SessionState::from_summary(&text, cut as u64, &rules).unwrap();
        prop_assert_eq!(&resumed, &prefix);
        fold(&mut resumed, &events, cut + 1, &rules);
        prop_assert_eq!(resumed, whole);
    }
}

fn some_state() -> SessionState {
    use EventType::*;
    let events = vec![
        (ToolCallProposed, json!({"tool_name": "a", "args": {}})),
        (
            ToolCallAllowed,
            json!({"tool_name": "a", "proposal_seq": 0}),
        ),
        (ToolCallProposed, json!({"tool_name": "a", "args": {}})),
        (
            PolicyDecision,
            json!({"action": "register_sanitizer", "sanitizer_key": "k"}),
        ),
    ];
    let mut state = SessionState::new(&Twice);
    fold(&mut state, &events, 0, &Twice);
    assert!(state.loop_violation().is_some());
    assert_eq!(state.open_calls().len(), 1);
    state
}

fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(&some_state().to_summary()).unwrap();
    edit(value.as_object_mut().unwrap());
    value.to_string()
}

#[test]
fn a_summary_is_refused_when_it_cannot_be_what_the_reducer_made() {
    let refused = |text: &str, through: u64, rules: &dyn SessionRules| {
        SessionState::from_summary(text, through, rules)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        SessionState::from_summary(&some_state().to_summary(), 3, &Twice).unwrap(),
        some_state()
    );
    // Another window: folded under other rules.
    assert!(refused(&some_state().to_summary(), 3, &DefaultSessionRules).contains("window"));
    // Naming a seq after its own.
    assert!(refused(&some_state().to_summary(), 1, &Twice).contains("after 1"));
    assert!(refused("{", 3, &Twice).contains("JSON"));
    assert!(
        refused(
            &edited(|o| {
                o.insert("format".into(), json!(1));
            }),
            3,
            &Twice
        )
        .contains("format 1 (this build reads 2)")
    );
    assert!(
        refused(
            &edited(|o| {
                o.insert("extra".into(), json!(1));
            }),
            3,
            &Twice
        )
        .contains("JSON")
    );
    assert!(
        refused(
            &edited(|o| {
                o.insert("steps".into(), json!(-1));
            }),
            3,
            &Twice
        )
        .contains("JSON")
    );
    assert!(
        refused(
            &edited(|o| {
                o.insert("sanitized_keys".into(), json!(["b", "a"]));
            }),
            3,
            &Twice
        )
        .contains("sorted")
    );
    assert!(
        refused(
            &edited(|o| {
                o.insert("history".into(), json!([[2, "a", "00"]]));
            }),
            3,
            &Twice
        )
        .contains("hex")
    );
    let five = json!([
        [0, "a", "00"],
        [1, "a", "00"],
        [2, "a", "00"],
        [3, "a", "00"],
        [3, "a", "00"]
    ]);
    assert!(
        refused(
            &edited(|o| {
                o.insert("history".into(), five);
            }),
            3,
            &Twice
        )
        .contains("window")
    );
    let backwards = json!([
        [2, "a", "00000000000000000000000000000000"],
        [0, "a", "00000000000000000000000000000000"]
    ]);
    assert!(
        refused(
            &edited(|o| {
                o.insert("history".into(), backwards);
            }),
            3,
            &Twice
        )
        .contains("order")
    );
    let many: Vec<Value> = (0..=MAX_OPEN_CALLS as u64)
        .map(|s| json!([s, "a", 1]))
        .collect();
    assert!(
        refused(
            &edited(|o| {
                o.insert("open".into(), Value::Array(many));
            }),
            1000,
            &Twice
        )
        .contains("open calls")
    );
}

#[test]
fn digests_round_trip_as_hex() {
    let digest: [u8; 16] = core::array::from_fn(|i| (i * 17) as u8);
    assert_eq!(unhex(&hex(&digest)), Some(digest));
    assert_eq!(unhex("zz000000000000000000000000000000"), None);
    assert_eq!(unhex("éé000000000000000000000000000000"), None);
}

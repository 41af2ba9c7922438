#![allow(clippy::unwrap_used)]

use super::*;

fn parsed(v: Value) -> Result<Evaluation, String> {
    match v {
        Value::Object(map) => parse_evaluation(&map).map_err(|e| e.to_string()),
        _ => Err("not an object".into()),
    }
}

fn outcome(v: Value) -> Outcome {
    let e = parsed(v).unwrap();
    let gates = governance::evaluate(&e.proposal, &Params::FROZEN);
    status(&gates, &e, false)
}

#[test]
fn the_status_follows_the_gates_and_the_request() {
    let ok = outcome(json!({"proposal_summary": "add a cache"}));
    assert_eq!(ok.status, "proceed", "{ok:?}");
    let floor = outcome(json!({"proposal_summary": "x", "complexity_score": 0.2}));
    assert_eq!((floor.status, floor.override_eligible), ("halt", false));
    // The floor wins over everything else.
    let both = outcome(json!({"proposal_summary": "x", "complexity_score": 0.2,
                              "risk_baseline": 0.01, "risk_proposed": 0.9}));
    assert_eq!((both.status, both.override_eligible), ("halt", false));
    let risky =
        outcome(json!({"proposal_summary": "x", "risk_baseline": 0.01, "risk_proposed": 0.9}));
    assert_eq!((risky.status, risky.override_eligible), ("halt", true));
    let poor = outcome(json!({"proposal_summary": "x", "quality_score": 0.5}));
    assert_eq!((poor.status, poor.override_eligible), ("pause", false));
    for person in [
        json!({"proposal_summary": "x", "requires_human_approval": true}),
        json!({"proposal_summary": "x", "estimated_impact": "critical"}),
        json!({"proposal_summary": "x", "reversible": false}),
    ] {
        let o = outcome(person.clone());
        assert_eq!(
            (o.status, o.override_eligible),
            ("escalate", true),
            "{person}"
        );
    }
    let e = parsed(json!({"proposal_summary": "x"})).unwrap();
    let gates = governance::evaluate(&e.proposal, &Params::FROZEN);
    assert_eq!(
        status(&gates, &e, true).status,
        "pause",
        "critical drift pauses"
    );
}

#[test]
fn bad_evaluations_are_refused_naming_the_field() {
    let err = |v| parsed(v).err().unwrap_or_default();
    assert!(err(json!({})).contains("proposal_summary is required"));
    assert!(err(json!({"proposal_summary": "  "})).contains("proposal_summary is required"));
    assert!(err(json!({"proposal_summary": "x".repeat(10_001)})).contains("exceeds"));
    assert!(
        err(json!({"proposal_summary": "x", "risk_proposed": 1.5}))
            .contains("risk_proposed must be a number from 0.0 to 1.0")
    );
    assert!(err(json!({"proposal_summary": "x", "novelty_score": true})).contains("novelty_score"));
    assert!(
        err(json!({"proposal_summary": "x", "profit_baseline": -1}))
            .contains("profit_baseline must be a non-negative number")
    );
    assert!(
        err(json!({"proposal_summary": "x", "estimated_impact": "huge"}))
            .contains("estimated_impact")
    );
    assert!(
        err(json!({"proposal_summary": "x", "quality_subscores": [0.5, 2]}))
            .contains("quality_subscores[1]")
    );
    assert!(
        err(json!({"proposal_summary": "x", "shadow_mode": "yes"}))
            .contains("shadow_mode must be true or false")
    );
    assert!(
        err(json!({"proposal_summary": "x", "utility_result": {"gain": "a"}}))
            .contains("utility_result.gain")
    );
    assert!(err(json!({"proposal_summary": "x", "risk": 0.1})).contains("unknown member risk"));
    let e = parsed(
        json!({"proposal_summary": " trimmed ", "utility_result": {"gain": 500, "gain_sd": 10}}),
    )
    .unwrap();
    assert_eq!(e.normalized["proposal_summary"], "trimmed");
    assert_eq!(
        e.normalized["utility_result"],
        json!({"gain": 500.0, "gain_sd": 10.0})
    );
    assert_eq!(
        e.normalized["risk_baseline"], 0.02,
        "the client's defaults fill the gaps"
    );
}

#[test]
fn idempotency_keys_replay_refuse_a_new_body_and_forget_an_abandoned_claim() {
    let memory = Memory::default();
    let key = || Some(("caller|t".to_owned(), "k-1".to_owned()));
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let Ok(Begin::Fresh(claim)) = memory.begin(key(), a) else {
        panic!("a new key is fresh");
    };
    // While in flight: the same body waits, another is refused.
    assert!(matches!(memory.begin(key(), a), Err(ApiError::Conflict(_))));
    assert!(
        matches!(memory.begin(key(), b), Err(ApiError::Unprocessable(m)) if m.contains("Idempotency-Key reused"))
    );
    claim.finish(a, &Bytes::from_static(b"{\"status\":\"proceed\"}"), "req-1");
    match memory.begin(key(), a) {
        Ok(Begin::Replay(answer, id)) => {
            assert_eq!(&answer[..], b"{\"status\":\"proceed\"}");
            assert_eq!(id, "req-1");
        }
        _ => panic!("the same key and body replay"),
    }
    assert!(matches!(
        memory.begin(key(), b),
        Err(ApiError::Unprocessable(_))
    ));
    // Another credential's key of the same name is its own.
    let other = Some(("other|t".to_owned(), "k-1".to_owned()));
    assert!(matches!(
        memory.begin(other.clone(), b),
        Ok(Begin::Fresh(_))
    ));
    // A claim dropped unfinished (the request failed) frees its key.
    assert!(matches!(memory.begin(other, b), Ok(Begin::Fresh(_))));
    assert!(matches!(memory.begin(None, a), Ok(Begin::Fresh(_))));
}

#[test]
fn drift_waits_for_both_windows_then_compares_them() {
    let mut series = Series::default();
    for _ in 0..DRIFT_WINDOW {
        series.push(0.0);
    }
    assert!(
        series.drift(&Params::FROZEN)["message"]
            .as_str()
            .unwrap()
            .contains("0 of 30 recent")
    );
    for _ in 0..DRIFT_WINDOW {
        series.push(0.0);
    }
    assert_eq!(series.drift(&Params::FROZEN)["status"], "normal");
    for _ in 0..DRIFT_WINDOW {
        series.push(0.8);
    }
    let drift = series.drift(&Params::FROZEN);
    assert_eq!(drift["status"], "critical", "{drift}");
    assert_eq!(drift["action"], "pause");
    assert_eq!(
        series.baseline.len(),
        DRIFT_WINDOW,
        "the baseline stays the first window"
    );
}

#[test]
fn decision_ids_are_version_4_uuids() {
    let id = uuid().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    assert_ne!(id, uuid().unwrap());
}

//! The Rego version of the rules (`bench/rego/aegis.rego`, evaluated by
//! regorus) reaches the same outcome and reason as `decide()` on every bench
//! case and on cases for the rules the benches do not reach, so the timing
//! comparison in `bench/README.md` is of equals.

use aegis_bench::policy::{
    REGO_POLICY, REGO_RULE, Session, cases, extra_cases, manifest, rego_data, rego_input,
};
use aegis_policy::{CompiledManifest, Proposal, decide};
use serde_json::Value;

/// A payload, its session, and the verdict a bench case pins (if any).
type Check = (Value, Session, Option<(&'static str, &'static str)>);

fn rego_verdict(engine: &mut regorus::Engine, payload: &Value, session: &Session) -> Value {
    engine.set_input(regorus::Value::from(rego_input(payload, session)));
    let decision = engine
        .eval_rule(REGO_RULE.to_owned())
        .expect("the decision rule evaluates");
    let json = decision.to_json_str().expect("a decision serialises");
    serde_json::from_str(&json).expect("regorus writes JSON")
}

#[test]
fn rego_agrees_with_decide() {
    let manifest = manifest();
    let compiled = CompiledManifest::new(&manifest);
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("aegis.rego".to_owned(), REGO_POLICY.to_owned())
        .expect("the Rego policy parses");
    engine
        .add_data(regorus::Value::from(rego_data(&manifest)))
        .expect("the Rego data is an object");

    let tainted = Session::tainted();
    let mut all: Vec<Check> = cases()
        .into_iter()
        .map(|c| (c.payload, tainted.clone(), Some((c.outcome, c.reason))))
        .collect();
    all.extend(extra_cases().into_iter().map(|(p, s)| (p, s, None)));

    let mut reasons = std::collections::BTreeSet::new();
    for (payload, session, expected) in &all {
        let proposal = Proposal::from_payload(payload).expect("cases have a tool_name");
        let d = decide(&proposal, &session.facts(), &compiled);
        let rego = rego_verdict(&mut engine, payload, session);
        let want = (d.outcome.as_str(), d.reason.as_str());
        let got = (
            rego["outcome"].as_str().unwrap_or("?"),
            rego["reason"].as_str().unwrap_or("?"),
        );
        assert_eq!(got, want, "{payload}");
        if let Some(expected) = expected {
            assert_eq!(want, *expected, "{payload}");
        }
        let constraints = d.constraints.map(|c| {
            serde_json::json!({ "max_output_bytes": c.max_output_bytes, "timeout_ms": c.timeout_ms })
        });
        assert_eq!(
            rego["constraints"],
            constraints.unwrap_or(Value::Null),
            "{payload}"
        );
        reasons.insert(want.1);
    }
    // Every rule but the loop rule is exercised (the bench session has no loop).
    let expected = [
        "APPROVAL_REQUIRED",
        "BUDGET_EXCEEDED",
        "EGRESS_DENY",
        "EXEC_DENY",
        "OK",
        "PERMISSION_UNDECLARED",
        "TAINTED_TO_HIGH_RISK",
    ];
    assert_eq!(reasons.into_iter().collect::<Vec<_>>(), expected);
}

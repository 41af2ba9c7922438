#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn rule(field: &str, action: SanitizeAction) -> SanitizeRule {
    SanitizeRule {
        field: (field != "*").then(|| field.split('.').map(str::to_owned).collect()),
        action,
        reason: None,
    }
}

fn redact(pattern: &str) -> SanitizeAction {
    SanitizeAction::Redact {
        pattern: pattern.into(),
        replacement: DEFAULT_REPLACEMENT.into(),
    }
}

fn clamp(min: Option<i64>, max: Option<i64>) -> SanitizeAction {
    SanitizeAction::Clamp {
        min: min.map(Number::from),
        max: max.map(Number::from),
    }
}

#[test]
fn set_drop_redact_and_clamp_rewrite_in_order() {
    let sanitizer = Sanitizer::new(&[
        rule("cc", SanitizeAction::Drop),
        rule("headers.x-priority", SanitizeAction::Set(json!("normal"))),
        rule("body", redact(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b")),
        rule("limit", clamp(Some(1), Some(100))),
    ]);
    let args = json!({
        "to": "a@example.com",
        "cc": "leak@evil.example",
        "body": "card 4111-1111-1111-1111 and 4000-0000-0000-0002.",
        "limit": 100000,
    });
    let rewrite = sanitizer.apply(&args).unwrap().unwrap();
    assert_eq!(
        rewrite.args,
        json!({
            "to": "a@example.com",
            "headers": {"x-priority": "normal"},
            "body": "card [REDACTED] and [REDACTED].",
            "limit": 100,
        })
    );
    assert_eq!(
        rewrite.changed,
        [
            "cc drop",
            "headers.x-priority set",
            "body redact",
            "limit clamp"
        ]
    );
    assert!(rewrite.message.contains("cc drop"), "{}", rewrite.message);
}

#[test]
fn nothing_to_change_is_none_and_reasons_make_the_message() {
    let mut drop = rule("cc", SanitizeAction::Drop);
    drop.reason = Some("no copies outside".into());
    let sanitizer = Sanitizer::new(&[drop, rule("limit", clamp(Some(1), Some(100)))]);
    assert_eq!(sanitizer.apply(&json!({"limit": 5})).unwrap(), None);
    assert_eq!(sanitizer.apply(&Value::Null).unwrap(), None);
    let rewrite = sanitizer
        .apply(&json!({"cc": "x", "limit": 0}))
        .unwrap()
        .unwrap();
    assert_eq!(rewrite.args, json!({"limit": 1}));
    assert_eq!(rewrite.message, "no copies outside");
}

#[test]
fn clamp_at_and_around_its_bounds_keeps_the_bound_as_written() {
    let sanitizer = Sanitizer::new(&[rule(
        "n",
        SanitizeAction::Clamp {
            min: Some(Number::from(0)),
            max: Number::from_f64(2.5),
        },
    )]);
    for (given, want) in [
        (json!(0), None),
        (json!(2.5), None),
        (json!(1), None),
        (json!(-1), Some(json!(0))),
        (json!(2.6), Some(json!(2.5))),
        (json!(1e300), Some(json!(2.5))),
        (json!(u64::MAX), Some(json!(2.5))),
    ] {
        let out = sanitizer.apply(&json!({"n": given.clone()})).unwrap();
        assert_eq!(out.map(|r| r.args["n"].clone()), want, "{given}");
    }
}

#[test]
fn a_clamped_field_that_is_not_a_number_refuses_the_call() {
    let sanitizer = Sanitizer::new(&[rule("limit", clamp(None, Some(10)))]);
    for bad in [json!("100000"), json!([1]), json!({"n": 1}), json!(true)] {
        let refusal = sanitizer.apply(&json!({"limit": bad})).unwrap_err();
        assert!(refusal.0.contains("limit"), "{refusal}");
    }
    // Absent or null: nothing to clamp... null is not a number either.
    assert_eq!(sanitizer.apply(&json!({})).unwrap(), None);
    assert!(sanitizer.apply(&json!({"limit": null})).is_err());
}

#[test]
fn arguments_that_are_not_an_object_refuse_the_call() {
    let sanitizer = Sanitizer::new(&[rule("cc", SanitizeAction::Drop)]);
    for bad in [json!([1, 2]), json!("x"), json!(3)] {
        assert!(sanitizer.apply(&bad).is_err(), "{bad}");
    }
}

#[test]
fn redaction_reaches_nested_strings_and_numbers_written_as_numbers() {
    let sanitizer = Sanitizer::new(&[rule("*", redact(r"\d{16}"))]);
    let args = json!({
        "a": 4111111111111111u64,
        "b": ["x 4111111111111111 y", {"c": "4000000000000002"}],
        "d": true,
        "e": 42,
    });
    let rewrite = sanitizer.apply(&args).unwrap().unwrap();
    assert_eq!(
        rewrite.args,
        json!({
            "a": "[REDACTED]",
            "b": ["x [REDACTED] y", {"c": "[REDACTED]"}],
            "d": true,
            "e": 42,
        })
    );
}

#[test]
fn set_through_a_member_that_is_not_an_object_refuses() {
    let sanitizer = Sanitizer::new(&[rule("headers.x", SanitizeAction::Set(json!(1)))]);
    assert!(sanitizer.apply(&json!({"headers": "text"})).is_err());
    // Absent arguments get the member created.
    let rewrite = sanitizer.apply(&Value::Null).unwrap().unwrap();
    assert_eq!(rewrite.args, json!({"headers": {"x": 1}}));
    // Already the value: nothing changed.
    assert_eq!(
        sanitizer.apply(&json!({"headers": {"x": 1}})).unwrap(),
        None
    );
}

#[test]
fn drop_and_redact_of_absent_fields_change_nothing() {
    let sanitizer = Sanitizer::new(&[
        rule("a.b", SanitizeAction::Drop),
        rule("c", redact("secret")),
    ]);
    let args = json!({"a": "not an object", "d": "secret"});
    assert_eq!(sanitizer.apply(&args).unwrap(), None);
}

#[test]
fn patterns_that_match_nothing_or_everything_are_refused() {
    assert!(compile_pattern("a*").is_err());
    assert!(compile_pattern("(").is_err());
    assert!(compile_pattern(r"\d+").is_ok());
}

#[test]
fn redaction_respects_multibyte_text() {
    let sanitizer = Sanitizer::new(&[rule("t", redact("ü+"))]);
    let rewrite = sanitizer.apply(&json!({"t": "grüüße ü"})).unwrap().unwrap();
    assert_eq!(rewrite.args, json!({"t": "gr[REDACTED]ße [REDACTED]"}));
}

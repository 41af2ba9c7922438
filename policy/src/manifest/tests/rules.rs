//! One row per validation rule: the sandbox rule, loop thresholds, rate
//! limits, syntax errors and format detection.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use serde_json::{Value, json};

use super::{merge, minimal, problems};
use crate::manifest::*;

#[test]
fn sandbox_must_be_required_for_effectful_permissions() {
    // (case, permissions patch, what the rule names, or None when allowed)
    let cases: &[(&str, Value, Option<&str>)] = &[
        (
            "read-only tools",
            json!({"tools": ["read_file", "search"]}),
            None,
        ),
        (
            "exec tool",
            json!({"tools": ["exec"]}),
            Some(r#"permissions.tools[0] "exec""#),
        ),
        (
            "dotted exec tool",
            json!({"tools": ["exec.shell"]}),
            Some(r#"permissions.tools[0] "exec.shell""#),
        ),
        (
            "fs.write tool",
            json!({"tools": ["fs.write"]}),
            Some(r#"permissions.tools[0] "fs.write""#),
        ),
        (
            "mcp.http tool",
            json!({"tools": ["mcp.http"]}),
            Some(r#"permissions.tools[0] "mcp.http""#),
        ),
        (
            "mcp.https.post tool",
            json!({"tools": ["mcp.https.post"]}),
            Some(r#"permissions.tools[0] "mcp.https.post""#),
        ),
        (
            "net tool",
            json!({"tools": ["read_file", "net.fetch"]}),
            Some(r#"permissions.tools[1] "net.fetch""#),
        ),
        (
            "not a dotted prefix",
            json!({"tools": ["netflix", "executor", "fs.writer"]}),
            None,
        ),
        (
            "net domains",
            json!({"tools": [], "net": {"domains": ["a.com"]}}),
            Some("permissions.net.domains"),
        ),
        (
            "empty net domains",
            json!({"tools": [], "net": {"domains": []}}),
            None,
        ),
        (
            "write roots",
            json!({"tools": [], "fs": {"write_roots": ["/out"]}}),
            Some("permissions.fs.write_roots"),
        ),
        (
            "read roots only",
            json!({"tools": [], "fs": {"read_roots": ["/in"]}}),
            None,
        ),
        (
            "allowed bins",
            json!({"tools": [], "exec": {"allowed_bins": ["/bin/ls"]}}),
            Some("permissions.exec.allowed_bins"),
        ),
        ("empty exec section", json!({"tools": [], "exec": {}}), None),
    ];
    for (name, patch, trigger) in cases {
        let mut v = minimal();
        v["permissions"] = patch.clone();
        let loaded = Manifest::from_value(&v);
        match trigger {
            None => assert!(loaded.is_ok(), "{name}: {loaded:?}"),
            Some(trigger) => {
                let expected = format!(
                    "sandbox.required: must be true when exec, fs.write or network permissions \
                     are declared (declared: {trigger})"
                );
                assert_eq!(problems(&v), [expected], "{name}");
                v["sandbox"]["required"] = json!(true);
                assert!(Manifest::from_value(&v).is_ok(), "{name} with a sandbox");
            }
        }
    }
}

#[test]
fn required_fields_are_reported_each() {
    let found = problems(&json!({}));
    let expected = [
        "schema: required",
        "name: required",
        "version: required",
        "publisher: required",
        "permissions: required",
        "sandbox: required",
    ];
    assert_eq!(found, expected);

    let mut v = minimal();
    v["permissions"] = json!({});
    v["sandbox"] = json!({});
    let expected = [
        "permissions.tools: required (an empty list declares no tools)",
        "sandbox.required: required",
    ];
    assert_eq!(problems(&v), expected);

    let mut v = minimal();
    v["permissions"] = json!(["read_file"]);
    v["sandbox"] = json!({"required": "yes"});
    let expected = [
        "permissions: expected a mapping, got a list",
        r#"sandbox.required: expected true or false, got "yes""#,
    ];
    assert_eq!(problems(&v), expected);
}

#[test]
fn loop_settings_are_checked() {
    // (loops, expected problems)
    let cases: &[(Value, &[&str])] = &[
        (json!({}), &[]),
        (json!({"identical_calls": 2, "identical_window": 2}), &[]),
        (json!({"min_sequence": 2, "max_sequence": 10}), &[]),
        (
            json!({"identical_calls": 1}),
            &["policy.loops.identical_calls: must be at least 2, got 1"],
        ),
        (
            json!({"identical_calls": 5, "identical_window": 4}),
            &["policy.loops.identical_window: must be at least identical_calls (5), got 4"],
        ),
        // The default window (20) is checked against an explicit threshold.
        (
            json!({"identical_calls": 21}),
            &["policy.loops.identical_window: must be at least identical_calls (21), got 20"],
        ),
        (
            json!({"min_sequence": 1}),
            &["policy.loops.min_sequence: must be at least 2, got 1"],
        ),
        (
            json!({"max_sequence": 11}),
            &["policy.loops.max_sequence: must be at most 10, got 11"],
        ),
        (
            json!({"min_sequence": 8}),
            &["policy.loops.max_sequence: must be at least min_sequence (8), got 7"],
        ),
        (
            json!({"identical_calls": -3, "min_sequence": "3"}),
            &[
                "policy.loops.identical_calls: must be an integer, got -3",
                r#"policy.loops.min_sequence: must be an integer, got "3""#,
            ],
        ),
        (
            json!([3, 20]),
            &["policy.loops: expected a mapping, got a list"],
        ),
    ];
    for (loops, expected) in cases {
        let mut v = minimal();
        v["policy"] = json!({"loops": loops});
        match Manifest::from_value(&v) {
            Ok(m) if expected.is_empty() => {
                let l = &m.policy.loops;
                assert!(2 <= l.identical_calls && l.identical_calls <= l.identical_window);
                assert!(2 <= l.min_sequence && l.min_sequence <= l.max_sequence);
                assert!(l.max_sequence <= MAX_SEQUENCE_LIMIT);
            }
            _ => assert_eq!(problems(&v), *expected, "{loops}"),
        }
    }
}

#[test]
fn rate_limits_must_be_positive() {
    let cases: &[(Value, &[&str])] = &[
        (json!({"per_second": 0.5, "burst": 1}), &[]),
        (
            json!({"per_second": -1, "burst": 1.5}),
            &[
                r#"policy.rate_limits["t"].per_second: must be a positive number, got -1"#,
                r#"policy.rate_limits["t"].burst: must be a positive integer up to 4294967295, got 1.5"#,
            ],
        ),
        (
            json!({"burst": 4_294_967_296_u64}),
            &[
                r#"policy.rate_limits["t"].per_second: required"#,
                r#"policy.rate_limits["t"].burst: must be a positive integer up to 4294967295, got 4294967296"#,
            ],
        ),
        (
            json!({"per_second": 1}),
            &[r#"policy.rate_limits["t"].burst: required"#],
        ),
        (
            json!(5),
            &[r#"policy.rate_limits["t"]: expected a mapping with per_second and burst, got 5"#],
        ),
    ];
    for (limit, expected) in cases {
        let mut v = minimal();
        merge(
            &mut v,
            &json!({"permissions": {"tools": ["t"]}, "policy": {"rate_limits": {"t": limit}}}),
        );
        if expected.is_empty() {
            let m = Manifest::from_value(&v).unwrap();
            assert_eq!(
                m.policy.rate_limits["t"],
                RateLimit {
                    per_second: 0.5,
                    burst: 1
                }
            );
        } else {
            assert_eq!(problems(&v), *expected, "{limit}");
        }
    }
}

#[test]
fn syntax_errors_are_one_problem_without_a_path() {
    for bad in [&b"{\"schema\": "[..], b"schema: [unclosed", b"\xff\xfe"] {
        let error = Manifest::parse(bad).unwrap_err();
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(error.problems[0].path, "");
        assert!(!error.problems[0].message.is_empty());
    }
    let error = Manifest::from_json("{\"a\": }").unwrap_err();
    assert!(
        error.problems[0].message.starts_with("invalid JSON: "),
        "{error}"
    );
    assert!(error.problems[0].message.contains("line 1"), "{error}");
    let error = Manifest::from_yaml("a: [b").unwrap_err();
    assert!(
        error.problems[0].message.starts_with("invalid YAML: "),
        "{error}"
    );
    assert!(error.problems[0].message.contains("line 1"), "{error}");
    assert!(
        !error.to_string().contains('\n'),
        "one line per problem: {error}"
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_one_problem() {
    for (text, got) in [
        ("[1, 2]", "a list"),
        ("just text", "\"just text\""),
        ("", "null"),
    ] {
        let error = Manifest::parse(text.as_bytes()).unwrap_err();
        let expected = format!("expected a mapping at the top level, got {got}");
        assert_eq!(error.problems, [Problem::new("", expected)], "{text:?}");
    }
}

#[test]
fn yaml_scalars_are_not_coerced() {
    // Unquoted `1.0` is a YAML float, not the string "1.0": reported, not
    // guessed. YAML 1.1 booleans (`no`, `n`, `yes`) stay strings.
    let yaml = "schema: aegis.dev/manifest/v0.1\nname: no\nversion: 1.0\npublisher: n\n\
                permissions: {tools: [y, off]}\nsandbox: {required: yes}\n";
    let error = Manifest::from_yaml(yaml).unwrap_err();
    let expected = "version: expected a string, got 1.0\n\
                    sandbox.required: expected true or false, got \"yes\"";
    assert_eq!(error.to_string(), expected);
    let fixed = yaml.replace("1.0", "\"1.0\"").replace("yes", "true");
    let m = Manifest::from_yaml(&fixed).unwrap();
    assert_eq!((m.name.as_str(), m.publisher.as_str()), ("no", "n"));
    assert_eq!(m.permissions.tools, ["y", "off"]);
}

proptest::proptest! {
    /// Loading never panics, whatever the bytes.
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let _ = Manifest::parse(&bytes);
    }

    /// Any single budget value is either accepted as itself or reported at its path.
    #[test]
    fn budgets_are_positive_or_reported(n in proptest::prelude::any::<i64>()) {
        let mut v = minimal();
        v["permissions"]["budgets"] = json!({"max_tool_calls": n});
        match Manifest::from_value(&v) {
            Ok(m) => proptest::prop_assert_eq!(i128::from(m.permissions.budgets.max_tool_calls), i128::from(n)),
            Err(e) => {
                proptest::prop_assert!(n <= 0);
                proptest::prop_assert_eq!(e.problems.len(), 1);
                proptest::prop_assert_eq!(&e.problems[0].path, "permissions.budgets.max_tool_calls");
            }
        }
    }
}

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// `record` for `tool` into a fresh payload.
fn recorded(config: &ResultsConfig, tool: &str, answer: Answer<'_>, capture: usize) -> Value {
    let mut payload = json!({"tool_name": tool, "size_bytes": 1, "sha256": "ab"});
    config.record(tool, answer, capture, &mut payload);
    payload
}

fn config(keep: Keep) -> ResultsConfig {
    ResultsConfig {
        keep,
        ..ResultsConfig::default()
    }
}

fn tool_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": false})
}

fn whole(value: &Value) -> Answer<'_> {
    Answer::Whole {
        value,
        size: serde_json::to_vec(value).unwrap().len(),
    }
}

#[test]
fn the_kept_vocabulary_is_pinned() {
    let words: Vec<&str> = Keep::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(words, ["full", "hash", "redact"]);
    assert_eq!(KEPT_NOTHING, "none");
    assert_eq!(Keep::default(), Keep::Full);
    assert_eq!(" Redact ".parse::<Keep>(), Ok(Keep::Redact));
    assert_eq!(
        "all".parse::<Keep>(),
        Err("expected \"full\", \"hash\" or \"redact\", got \"all\"".to_owned())
    );
}

#[test]
fn full_keeps_the_result_or_its_first_bytes() {
    let value = tool_result(&format!("key {AWS_KEY}"));
    let small = recorded(&config(Keep::Full), "t", whole(&value), 1024);
    assert_eq!(small["kept"], "full");
    assert_eq!(small["result"], value);
    assert!(small.get("redactions").is_none() && small.get("truncated").is_none());

    let cut = recorded(&config(Keep::Full), "t", whole(&value), 20);
    let text = serde_json::to_string(&value).unwrap();
    assert_eq!(cut["result_prefix"], text[..20]);
    assert_eq!(cut["truncated"], true);
    assert!(cut.get("result").is_none());

    let head = recorded(
        &config(Keep::Full),
        "t",
        Answer::Head(b"{\"jsonrpc\":\"2.0\""),
        5,
    );
    assert_eq!(head["result_prefix"], "{\"jso");
    assert_eq!(head["truncated"], true);
}

#[test]
fn hash_keeps_no_content_and_leaves_size_and_digest_alone() {
    let value = tool_result("HOME=/root PASSWORD=hunter2");
    for answer in [whole(&value), Answer::Head(b"PASSWORD=hunter2")] {
        let payload = recorded(&config(Keep::Hash), "t", answer, 1024);
        assert_eq!(
            payload,
            json!({"tool_name": "t", "size_bytes": 1, "sha256": "ab", "kept": "hash"})
        );
    }
}

#[test]
fn redact_replaces_secrets_and_keeps_the_structure() {
    let text = format!("HOME=/root\nAWS_ACCESS_KEY_ID={AWS_KEY}\nDB_PASSWORD=hunter2\nUSER=me");
    let value = tool_result(&text);
    let payload = recorded(&config(Keep::Redact), "get-env", whole(&value), 64 * 1024);
    assert_eq!(payload["kept"], "redact");
    assert_eq!(payload["redactions"], 2);
    let kept = payload["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        kept, "HOME=/root\nAWS_[REDACTED]\nDB_[REDACTED]\nUSER=me",
        "{payload}"
    );
    assert_eq!(payload["result"]["isError"], false);
    assert_eq!(
        (payload["size_bytes"].clone(), payload["sha256"].clone()),
        (json!(1), json!("ab"))
    );
}

#[test]
fn redact_with_nothing_to_redact_keeps_what_full_keeps() {
    let value = tool_result(&"plain words ".repeat(10));
    for capture in [16, 1024] {
        let full = recorded(&config(Keep::Full), "t", whole(&value), capture);
        let mut redacted = recorded(&config(Keep::Redact), "t", whole(&value), capture);
        assert_eq!(redacted["redactions"], 0);
        let object = redacted.as_object_mut().unwrap();
        object.remove("redactions");
        object.insert("kept".into(), json!("full"));
        assert_eq!(redacted, full, "capture {capture}");
    }
}

#[test]
fn a_secret_straddling_the_capture_cut_is_still_redacted() {
    let lead = "x".repeat(30);
    let value = tool_result(&format!("{lead} {AWS_KEY} and more text after it"));
    let text = serde_json::to_string(&value).unwrap();
    let at = text.find(AWS_KEY).unwrap();
    // The cut falls in the middle of the key: cutting first would keep its
    // first half, which no longer matches.
    let capture = at + 8;
    let full = recorded(&config(Keep::Full), "t", whole(&value), capture);
    assert!(
        full["result_prefix"]
            .as_str()
            .unwrap()
            .ends_with("AKIAIOSF")
    );

    let payload = recorded(&config(Keep::Redact), "t", whole(&value), capture);
    let kept = payload["result_prefix"].as_str().unwrap();
    assert_eq!(payload["truncated"], true);
    assert_eq!(payload["redactions"], 1);
    assert!(!kept.contains("AKIA"), "{kept}");
    assert!(kept.len() <= capture);
    assert!(kept.ends_with("[REDACTE"), "{kept}");
}

#[test]
fn redact_cuts_a_head_after_redacting_it_and_a_cut_key_block_is_redacted_to_the_end() {
    let head = b"{\"result\":{\"content\":[{\"text\":\"-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA75";
    let payload = recorded(&config(Keep::Redact), "t", Answer::Head(head), 64);
    let kept = payload["result_prefix"].as_str().unwrap();
    assert_eq!(kept, "{\"result\":{\"content\":[{\"text\":\"[REDACTED]");
    assert_eq!(payload["truncated"], true);
    assert_eq!(payload["redactions"], 1);
}

#[test]
fn a_redaction_that_breaks_the_json_is_kept_as_text() {
    // `"token": "abc"` as structure: the match spans the quotes between key
    // and value, so the redacted text is no longer JSON.
    let value = json!({"structuredContent": {"token": "abc123"}});
    let payload = recorded(&config(Keep::Redact), "t", whole(&value), 1024);
    assert_eq!(payload["redactions"], 1);
    assert_eq!(
        payload["result_prefix"],
        "{\"structuredContent\":{\"[REDACTED]\"}}"
    );
    assert!(payload.get("result").is_none() && payload.get("truncated").is_none());
}

#[test]
fn the_tool_names_choice_overrides_the_default() {
    let mut results = config(Keep::Full);
    results.tools.insert("get-env".into(), Keep::Hash);
    results.tools.insert("logs".into(), Keep::Redact);
    assert_eq!(results.keep_for("get-env"), Keep::Hash);
    assert_eq!(results.keep_for("logs"), Keep::Redact);
    assert_eq!(results.keep_for("echo"), Keep::Full);
    assert_eq!(
        results.keep_for("GET-ENV"),
        Keep::Full,
        "names match exactly"
    );

    let value = tool_result("SECRET=s3");
    assert_eq!(
        recorded(&results, "get-env", whole(&value), 1024)["kept"],
        "hash"
    );
    assert_eq!(
        recorded(&results, "logs", whole(&value), 1024)["kept"],
        "redact"
    );
    assert_eq!(
        recorded(&results, "echo", whole(&value), 1024)["result"],
        value
    );
}

/// One sample per built-in pattern, the secret part of it, and the text it
/// should leave.
const SAMPLES: &[(&str, &str, &str, &str)] = &[
    (
        "pem_private_key",
        "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\nok",
        "b3BlbnNzaC1rZXk",
        "key:\n[REDACTED]\nok",
    ),
    (
        "aws_access_key_id",
        "id AKIAIOSFODNN7EXAMPLE.",
        "IOSFODNN7EXAMPLE",
        "id [REDACTED].",
    ),
    (
        "jwt",
        "t=x eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
        "dozjgNryP4J3jVmNHl0w5N",
        "t=x [REDACTED] end",
    ),
    (
        "bearer_token",
        "Authorization: Bearer 0123456789abcdef.XYZ\n",
        "0123456789abcdef",
        "Authorization: [REDACTED]\n",
    ),
    (
        "github_token",
        "GH ghp_0123456789abcdefghijABCDEFGHIJ012345 done",
        "0123456789abcdefghij",
        "GH [REDACTED] done",
    ),
    (
        "secret_assignment",
        "user=me password: hunter2, api_key='k-123' X_TOKEN=t0k&next",
        "hunter2",
        "user=me [REDACTED], [REDACTED]' X_[REDACTED]&next",
    ),
];

#[test]
fn the_built_in_patterns_catch_each_documented_shape_in_text_and_in_json() {
    let names: Vec<&str> = DEFAULT_REDACT_PATTERNS.iter().map(|(n, _)| *n).collect();
    let sampled: Vec<&str> = SAMPLES.iter().map(|(n, ..)| *n).collect();
    assert_eq!(names, sampled, "every built-in pattern has a sample");
    let redactor = Redactor::builtin();
    for (name, sample, secret, expected) in SAMPLES {
        assert!(sample.contains(secret));
        let (plain, n) = redactor.redact(sample);
        assert_eq!(plain, *expected, "{name}");
        assert!(n >= 1, "{name}");
        // As the ledger sees it: inside a JSON string, escaped.
        let json = serde_json::to_string(&tool_result(sample)).unwrap();
        let (redacted, n) = redactor.redact(&json);
        assert!(!redacted.contains(secret), "{name}: {redacted}");
        assert!(n >= 1, "{name}");
        assert!(
            serde_json::from_str::<Value>(&redacted).is_ok(),
            "{name}: redacting inside a string keeps the JSON: {redacted}"
        );
    }
}

#[test]
fn the_built_in_patterns_leave_ordinary_text_alone() {
    let text = "The tool listed 3 files in /home/user; PWD=/srv, HOME=/root, bearer of news.";
    assert_eq!(Redactor::builtin().redact(text), (Cow::Borrowed(text), 0));
}

#[test]
fn patterns_run_in_one_pass_earlier_ones_first() {
    let patterns = vec!["ab+".to_owned(), "abbbc".to_owned(), "é+".to_owned()];
    let redactor = Redactor::new(&patterns).unwrap();
    assert_eq!(
        redactor.redact("xabbbc éé ab"),
        (
            Cow::Owned("x[REDACTED]c [REDACTED] [REDACTED]".to_owned()),
            3
        )
    );
    assert_eq!(redactor.patterns(), patterns.as_slice());
    assert_eq!(redactor, Redactor::new(&patterns).unwrap());
    assert!(format!("{redactor:?}").contains("abbbc"));
}

#[test]
fn unusable_patterns_are_reported_by_index_all_at_once() {
    let patterns: Vec<String> = ["ok", "(unclosed", r"\p{NoSuchClass}", "a*", r"\b", "fine"]
        .map(String::from)
        .to_vec();
    let errors = Redactor::new(&patterns).unwrap_err();
    let indexes: Vec<Option<usize>> = errors.iter().map(|e| e.index).collect();
    assert_eq!(indexes, [Some(1), Some(2), Some(3), Some(4)]);
    assert!(
        errors[0]
            .message
            .starts_with("not a valid regular expression: unclosed group"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[2].message.contains("empty string"),
        "{}",
        errors[2].message
    );
    assert!(errors.iter().all(|e| !e.message.contains('\n')));
}

#[test]
fn no_patterns_redact_nothing() {
    let redactor = Redactor::new(&[]).unwrap();
    assert_eq!(
        redactor.redact("password=x"),
        (Cow::Borrowed("password=x"), 0)
    );
}

#[test]
fn prefixes_cut_at_character_boundaries() {
    assert_eq!(prefix("héllo", 2), "h");
    assert_eq!(prefix("héllo", 3), "hé");
    assert_eq!(prefix("abc", 10), "abc");
}

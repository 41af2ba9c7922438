#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;

fn kinds(body: &str) -> Vec<&'static str> {
    parse(body.as_bytes())
        .unwrap()
        .items
        .iter()
        .map(|item| match item {
            Item::Request(_) => "request",
            Item::Notification { .. } => "notification",
            Item::Response => "response",
            Item::Invalid { .. } => "invalid",
        })
        .collect()
}

#[test]
fn single_messages_are_classified() {
    let cases = [
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, "request"),
        (
            r#"{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}"#,
            "request",
        ),
        (
            r#"{"jsonrpc":"2.0","id":-3,"method":"ping","params":null}"#,
            "request",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "notification",
        ),
        (r#"{"jsonrpc":"2.0","id":7,"result":{}}"#, "response"),
        (
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}"#,
            "response",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(kinds(body), [want], "{body}");
    }
}

#[test]
fn bad_shapes_are_invalid_requests() {
    let cases = [
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        "[]",
        "5",
        r#""text""#,
    ];
    for body in cases {
        assert!(
            matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
            "{body}"
        );
    }
}

#[test]
fn malformed_json_is_a_parse_error() {
    for body in ["", "{", "[1,", "{\"jsonrpc\":\"2.0\",}", "nope"] {
        assert!(
            matches!(parse(body.as_bytes()), Err(ParseError::NotJson(_))),
            "{body:?}"
        );
    }
}

#[test]
fn batches_keep_each_member() {
    let body = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
        {"jsonrpc":"2.0","method":"notifications/cancelled"},
        3,
        {"jsonrpc":"2.0","id":"x","method":7}]"#;
    assert_eq!(
        kinds(body),
        ["request", "notification", "invalid", "invalid"]
    );
}

#[test]
fn ids_and_methods_are_kept_as_sent() {
    let body = r#"{"jsonrpc":"2.0","id":"a\"b","method":"to\u006fls/list"}"#;
    let incoming = parse(body.as_bytes()).unwrap();
    let Item::Request(request) = &incoming.items[0] else {
        panic!("not a request");
    };
    assert_eq!(request.id.get(), r#""a\"b""#);
    assert_eq!(request.method, "tools/list");
}

#[test]
fn answers_are_json() {
    let id = RawValue::from_string("\"q\"".to_owned()).unwrap();
    let mut out = Vec::new();
    write_result(&mut out, &id, &serde_json::json!({"ok": true}));
    out.push(b'\n');
    write_error(&mut out, None, METHOD_NOT_FOUND, "no \"such\" method");
    out.push(b'\n');
    write_notification(
        &mut out,
        "notifications/progress",
        &serde_json::json!({"progress": 1}),
    );
    let lines: Vec<serde_json::Value> = out
        .split(|b| *b == b'\n')
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(lines[0]["id"], "q");
    assert_eq!(lines[0]["result"]["ok"], true);
    assert_eq!(lines[1]["id"], serde_json::Value::Null);
    assert_eq!(lines[1]["error"]["code"], -32601);
    assert_eq!(lines[2]["method"], "notifications/progress");
}

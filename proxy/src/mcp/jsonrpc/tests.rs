//! `jsonrpc`'s parsing and classification, case by case.

#![allow(clippy::unwrap_used)]
use serde_json::json;

use super::*;

#[test]
fn inexact_ids_keep_their_text() {
    let id = |text: &str| Id::from_value(&serde_json::from_str::<Value>(text).unwrap()).unwrap();
    let raw =
        |text: &str| Id::from_raw(&serde_json::from_str::<Box<RawValue>>(text).unwrap()).unwrap();
    let long = "123456789012345678901234567890";
    assert_eq!(raw(long).inexact_text(), Some(long));
    assert_eq!(raw("1e0").inexact_text(), Some("1e0"));
    for exact in [
        "7",
        "-3",
        "1.5",
        "\"a\"",
        "\"123456789012345678901234567890\"",
    ] {
        assert_eq!(raw(exact).inexact_text(), None, "{exact}");
    }
    assert_eq!(id("7").inexact_text(), None);
}

fn one(body: &str) -> Message {
    match parse(body.as_bytes()).unwrap() {
        Body::Single(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn messages_are_classified_and_kept_as_sent() {
    let m = one(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/w"},"_meta":{"progressToken":1}}}"#,
    );
    let call = m.tool_call().unwrap().unwrap();
    assert_eq!(
        (call.name, call.arguments),
        ("read_file", &json!({"path": "/w"}))
    );
    assert_eq!(call.id, &Id::from_value(&json!(7)).unwrap());
    assert_eq!(
        m.value["params"]["_meta"],
        json!({"progressToken": 1}),
        "unknown members kept"
    );

    let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(
        n.kind,
        Kind::Notification {
            method: "notifications/initialized".into()
        }
    );
    assert!(n.tool_call().is_none());
    let r = one(r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#);
    assert_eq!(
        r.kind,
        Kind::Response {
            id: Id::from_value(&json!("s-1")).unwrap()
        }
    );
    let list = one(r#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#);
    assert_eq!(list.method(), Some("tools/list"));
    assert!(list.tool_call().is_none());
}

#[test]
fn batches_are_inspected_message_by_message() {
    let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                   {"jsonrpc":"2.0","method":"notifications/progress","params":{}},
                   {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b","arguments":{}}}]"#;
    let Body::Batch(messages) = parse(body.as_bytes()).unwrap() else {
        panic!()
    };
    let calls: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.tool_call())
        .map(|c| c.unwrap().name)
        .collect();
    assert_eq!(calls, ["a", "b"]);
}

#[test]
fn bad_bodies_get_the_right_code() {
    let cases = [
        ("{", codes::PARSE_ERROR, "not JSON"),
        ("[]", codes::INVALID_REQUEST, "empty batch"),
        ("7", codes::INVALID_REQUEST, "must be an object"),
        (
            r#"{"id":1,"method":"x"}"#,
            codes::INVALID_REQUEST,
            "jsonrpc",
        ),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            codes::INVALID_REQUEST,
            "jsonrpc",
        ),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            codes::INVALID_REQUEST,
            "\"id\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            codes::INVALID_REQUEST,
            "\"method\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1}"#,
            codes::INVALID_REQUEST,
            "needs a \"method\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
            codes::INVALID_REQUEST,
            "\"params\"",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"x"},5]"#,
            codes::INVALID_REQUEST,
            "batch item 1",
        ),
    ];
    for (body, code, needle) in cases {
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.code, code, "{body}");
        assert!(e.message.contains(needle), "{body}: {}", e.message);
    }
}

#[test]
fn malformed_tool_calls_are_errors_not_forwards() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
    ] {
        assert!(one(body).tool_call().unwrap().is_err(), "{body}");
    }
}

fn refused(body: &str) -> ParseError {
    parse(body.as_bytes()).unwrap_err()
}

#[test]
fn duplicate_names_are_refused_at_any_depth_as_invalid_requests() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_everything"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":{"y":[{"z":1,"z":2}]}}}}"#,
        // The same name, escaped differently.
        r#"{"jsonrpc":"2.0","id":1,"\u0069d":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{"a":1,"a":2},"method":"ping"}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","jsonrpc":"2.0"}]"#,
        r#"7"#,
        r#"[{"a":1,"a":1}]"#,
    ] {
        let e = refused(body);
        assert_eq!(e.code, codes::INVALID_REQUEST, "{body}: {e}");
    }
    assert!(
        refused(r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"x"}"#)
            .message
            .contains("duplicate member name \"method\"")
    );
    // Not JSON stays a parse error.
    for body in [&b"{\"a\":"[..], b"[1,", b"{\"a\":1} x", b"\xff"] {
        assert_eq!(
            parse(body).unwrap_err().code,
            codes::PARSE_ERROR,
            "{body:?}"
        );
    }
}

#[test]
fn a_tools_call_notification_is_refused() {
    let e = refused(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(e.code, codes::INVALID_REQUEST);
    assert!(e.message.contains("needs an \"id\""), "{e}");
    let e = refused(
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}]"#,
    );
    assert!(e.message.starts_with("batch item 1"), "{e}");
    // Other notifications are fine.
    one(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#);
}

#[test]
fn colliding_request_ids_refuse_the_batch() {
    let call = |id: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"a"}}}}"#)
    };
    for (a, b) in [
        ("1", "1"),
        ("1", "1.0"),
        ("1", "1e0"),
        ("0", "-0"),
        ("\"x\"", "\"x\""),
        ("\"a\"", "\"\\u0061\""),
        // Rounds to the same double.
        (
            "123456789012345678901234567890",
            "123456789012345678901234567891",
        ),
    ] {
        let body = format!("[{},{}]", call(a), call(b));
        let e = refused(&body);
        assert_eq!(e.code, codes::INVALID_REQUEST, "{body}");
        assert!(e.message.contains("already used"), "{e}");
    }
    for (a, b) in [("1", "2"), ("1", "\"1\""), ("\"a\"", "\"A\"")] {
        let body = format!("[{},{}]", call(a), call(b));
        assert!(parse(body.as_bytes()).is_ok(), "{body}");
    }
    // A client's response carries the server's id: not compared.
    let body = format!(
        r#"[{},{{"jsonrpc":"2.0","id":1,"result":{{}}}}]"#,
        call("1")
    );
    assert!(parse(body.as_bytes()).is_ok());
}

#[test]
fn ids_keep_their_exact_text_and_messages_their_span() {
    let body = r#"[ {"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"} ,
        {"jsonrpc":"2.0","id":"\u0061b","method":"ping"}]"#;
    let Body::Batch(ms) = parse(body.as_bytes()).unwrap() else {
        panic!()
    };
    let ids: Vec<&str> = ms
        .iter()
        .map(|m| match &m.kind {
            Kind::Request { id, .. } => id.raw().get(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(ids, ["123456789012345678901234567890", r#""\u0061b""#]);
    assert_eq!(
        &body[ms[0].span.clone()],
        r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#
    );
    assert_eq!(
        &body[ms[1].span.clone()],
        r#"{"jsonrpc":"2.0","id":"\u0061b","method":"ping"}"#
    );
    let single = " {\"jsonrpc\":\"2.0\",\"id\":1.50,\"method\":\"ping\"}\n";
    let m = one(single);
    assert_eq!(m.span, 0..single.len());
    assert_eq!(
        Id::from_value(&json!(1.5)).unwrap(),
        *match &m.kind {
            Kind::Request { id, .. } => id,
            _ => panic!(),
        }
    );
    assert_eq!(
        format!("{:?}", Id::from_value(&json!("q")).unwrap()),
        r#"Id("q")"#
    );
}

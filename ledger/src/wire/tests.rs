#![allow(clippy::unwrap_used)]

use super::*;
use crate::append::AppendError;

/// The Aegis Python SDK's body for seq 1 of the spec chain, verbatim.
const SDK_SEQ1: &str = r#"{"tenant_id": "acme", "user_id": "u1", "session_id": "sess-001", "seq": 1, "ts_unix_ms": 1700000000001, "event_type": "TOOL_CALL_PROPOSED", "payload": {"tool_name": "read_file", "call_id": "t1", "args": {"path": "/workspace/data.csv"}}, "prev_hash": [26, 27, 108, 168, 131, 226, 120, 78, 50, 180, 54, 243, 116, 148, 54, 27, 99, 4, 125, 225, 21, 72, 27, 48, 9, 225, 89, 63, 135, 151, 75, 107], "hash": [144, 69, 81, 134, 255, 137, 48, 44, 153, 34, 232, 228, 48, 28, 45, 151, 179, 78, 45, 222, 162, 177, 166, 225, 193, 226, 116, 83, 191, 11, 3, 253]}"#;

fn err(body: &str) -> String {
    parse_append(body.as_bytes()).unwrap_err().0
}

#[test]
fn sdk_body_is_a_client_seal_with_a_matching_hash() {
    let req = parse_append(SDK_SEQ1.as_bytes()).unwrap();
    let Seal::Client {
        seq,
        prev_hash,
        hash,
    } = req.seal
    else {
        panic!("{:?}", req.seal)
    };
    assert_eq!(seq, 1);
    assert_eq!(
        hash.to_hex(),
        "90455186ff89302c9922e8e4301c2d97b34e2ddea2b1a6e1c1e27453bf0b03fd"
    );
    assert_eq!(
        prev_hash.unwrap().to_hex(),
        "1a1b6ca883e2784e32b436f37494361b63047de115481b3009e1593f87974b6b"
    );
    req.check().unwrap();
}

#[test]
fn hex_and_base64_hashes_mean_the_same() {
    let hexed = SDK_SEQ1
        .replace(
            r#""prev_hash": [26, 27, 108, 168, 131, 226, 120, 78, 50, 180, 54, 243, 116, 148, 54, 27, 99, 4, 125, 225, 21, 72, 27, 48, 9, 225, 89, 63, 135, 151, 75, 107]"#,
            r#""prev_hash": "GhtsqIPieE4ytDbzdJQ2G2MEfeEVSBswCeFZP4eXS2s=""#,
        )
        .replace(
            r#""hash": [144, 69, 81, 134, 255, 137, 48, 44, 153, 34, 232, 228, 48, 28, 45, 151, 179, 78, 45, 222, 162, 177, 166, 225, 193, 226, 116, 83, 191, 11, 3, 253]"#,
            r#""hash": "90455186FF89302C9922E8E4301C2D97B34E2DDEA2B1A6E1C1E27453BF0B03FD""#,
        );
    assert_ne!(hexed, SDK_SEQ1);
    assert_eq!(
        parse_append(hexed.as_bytes()).unwrap(),
        parse_append(SDK_SEQ1.as_bytes()).unwrap()
    );
}

#[test]
fn a_wrong_client_hash_names_both_hashes() {
    let body = SDK_SEQ1.replace("[144, 69,", "[145, 69,");
    let req = parse_append(body.as_bytes()).unwrap();
    match req.check().unwrap_err() {
        AppendError::HashMismatch {
            expected, received, ..
        } => {
            assert_eq!(
                expected.to_hex(),
                "90455186ff89302c9922e8e4301c2d97b34e2ddea2b1a6e1c1e27453bf0b03fd"
            );
            assert!(received.to_hex().starts_with("91"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsealed_bodies_are_sealed_at_the_head() {
    let req =
        parse_append(br#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION"}"#).unwrap();
    assert_eq!(req.seal, Seal::AtHead);
    assert_eq!(req.event.user_id, "");
    assert_eq!(req.event.payload.text(), "null");
    let req = parse_append(
        br#"{"tenant_id":"t","session_id":"s","seq":0,"event_type":"TERMINATION","payload":null}"#,
    )
    .unwrap();
    assert_eq!(
        req.seal,
        Seal::Expect {
            seq: 0,
            prev_hash: None
        }
    );
}

#[test]
fn bad_bodies_name_their_problem() {
    let cases = [
        ("{", "not a valid JSON object"),
        ("[]", "not a valid JSON object"),
        (
            r#"{"session_id":"s","event_type":"TERMINATION"}"#,
            "tenant_id is required",
        ),
        (
            r#"{"tenant_id":"","session_id":"s","event_type":"TERMINATION"}"#,
            "tenant_id is required",
        ),
        (
            r#"{"tenant_id":"t","event_type":"TERMINATION"}"#,
            "session_id is required",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s"}"#,
            "event_type is required",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TOOL_CALL"}"#,
            "unknown event type \"TOOL_CALL\"",
        ),
        (
            r#"{"tenant_id":7,"session_id":"s","event_type":"TERMINATION"}"#,
            "tenant_id: expected a string, got a number",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","seq":-1}"#,
            "seq: expected a non-negative integer",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","seq":1.5}"#,
            "seq: expected a non-negative integer",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","seq":"1"}"#,
            "seq: expected a non-negative integer, got a string",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","ts_unix_ms":"now"}"#,
            "ts_unix_ms: expected an integer",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","sesion":"x"}"#,
            "unknown field \"sesion\"",
        ),
        (
            r#"{"tenant_id":"t","tenant_id":"u","session_id":"s","event_type":"TERMINATION"}"#,
            "duplicate field \"tenant_id\"",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","payload":{"a":1,"a":2}}"#,
            "payload: duplicate member name",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","prev_hash":"xyz","seq":1}"#,
            "prev_hash: expected 32 bytes",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","hash":[1,2]}"#,
            "hash: expected 32 bytes",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","prev_hash":null,"hash":"1a1b6ca883e2784e32b436f37494361b63047de115481b3009e1593f87974b6b"}"#,
            "seq is required",
        ),
        (
            r#"{"tenant_id":"t","session_id":"s","event_type":"TERMINATION","seq":0,"hash":"1a1b6ca883e2784e32b436f37494361b63047de115481b3009e1593f87974b6b"}"#,
            "ts_unix_ms is required",
        ),
    ];
    for (body, want) in cases {
        let got = err(body);
        assert!(got.contains(want), "{body}\n  got: {got}\n want: {want}");
    }
    assert!(
        parse_append(b"\xff\xfe")
            .unwrap_err()
            .0
            .contains("not UTF-8")
    );
}

#[test]
fn wire_output_keeps_payload_text_and_hexes_hashes() {
    let row = StoredEnvelope {
        id: 1,
        tenant_id: "t".into(),
        user_id: "".into(),
        session_id: "s".into(),
        seq: 1,
        ts_unix_ms: 5,
        event_type: "TOOL_RESULT".into(),
        tool_name: None,
        payload: r#"{"big": 9007199254740993}"#.into(),
        prev_hash: Some(vec![0xab; 32]),
        hash: vec![0x01; 32],
        origin: Some("client".into()),
    };
    let v: serde_json::Value = serde_json::from_str(row.to_wire_json().get()).unwrap();
    assert_eq!(v["prev_hash"], "ab".repeat(32));
    assert_eq!(v["hash"], "01".repeat(32));
    assert!(row.to_wire_json().get().contains("9007199254740993"));
    let first = StoredEnvelope {
        seq: 0,
        prev_hash: None,
        payload: "not json".into(),
        ..row
    };
    let v: serde_json::Value = serde_json::from_str(first.to_wire_json().get()).unwrap();
    assert!(v.get("prev_hash").is_none());
    assert_eq!(v["payload"], "not json");
}

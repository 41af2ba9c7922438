#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

use super::*;

/// The repository's `spec/` folder: the envelope contract and its vectors.
fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec")
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn canonical(text: &str) -> String {
    String::from_utf8(to_vec(&parse(text).unwrap())).unwrap()
}

#[test]
fn rfc8785_reference_vectors() {
    let dir = spec_dir().join("vectors/jcs");
    let mut seen = 0;
    let inputs = dir.join("input");
    let entries = std::fs::read_dir(&inputs)
        .unwrap_or_else(|e| panic!("the RFC 8785 vectors in {}: {e}", inputs.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let input = String::from_utf8(read(&path)).unwrap();
        let expected = read(&dir.join("output").join(&name));
        let got = to_vec(&parse(&input).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "vector {name:?}"
        );
        seen += 1;
    }
    assert!(seen >= 6, "expected the six RFC 8785 vectors, found {seen}");
}

/// The SHA-256 table of `spec/envelope.md`, read from the spec itself.
#[test]
fn spec_digest_table() {
    let spec = String::from_utf8(read(&spec_dir().join("envelope.md"))).unwrap();
    let section = spec
        .split("| input | SHA-256 of the canonical form |")
        .nth(1)
        .expect("digest table in spec/envelope.md");
    let mut rows = 0;
    for line in section.lines().skip(2) {
        let Some(line) = line.strip_prefix("| `") else {
            break;
        };
        let (input, rest) = line.split_once("` | `").unwrap();
        let digest = rest.trim_end_matches("` |");
        let canon = to_vec(&parse(input).unwrap());
        assert_eq!(hex::encode(Sha256::digest(&canon)), digest, "input {input}");
        rows += 1;
    }
    assert_eq!(rows, 5, "the spec lists five digests");
}

#[test]
fn numbers_follow_ecmascript() {
    let cases = [
        ("-0.0", "0"),
        ("0", "0"),
        ("1.0", "1"),
        ("9007199254740993", "9007199254740992"),
        ("-9007199254740993", "-9007199254740992"),
        ("18446744073709551615", "18446744073709552000"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("1e-7", "1e-7"),
        ("0.000001", "0.000001"),
        ("-5", "-5"),
        ("123456789012345678901234567890", "1.2345678901234568e+29"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ];
    for (input, want) in cases {
        assert_eq!(canonical(input), want, "{input}");
    }
}

#[test]
fn strings_escape_minimally() {
    assert_eq!(
        canonical(r#""\u0000\u001f\u007f""#),
        "\"\\u0000\\u001f\u{7f}\""
    );
    assert_eq!(canonical(r#""\u2028\/<>&""#), "\"\u{2028}/<>&\"");
    assert_eq!(canonical(r#""\b\f\n\r\t\"\\""#), r#""\b\f\n\r\t\"\\""#);
}

#[test]
fn keys_sort_by_utf16_units() {
    // U+FB33 sorts after U+1F600 in code points but before it in UTF-16.
    assert_eq!(
        canonical(r#"{"\ufb33":1,"\ud83d\ude00":2,"a":3}"#),
        "{\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}"
    );
}

#[test]
fn strict_parse_refuses_bad_input() {
    for bad in [
        r#"{"a":1,"a":2}"#,
        r#"{"x":{"b":1,"b":1}}"#,
        "[1,]",
        "NaN",
        "{} {}",
        "",
        "1e400",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(parse(" {\"a\" : [1, 2] } ").is_ok());
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Serialises `v` with members in a shuffled order and arbitrary whitespace.
fn scramble(v: &Value, seed: &mut u64, out: &mut String) {
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }
    let ws = |seed: &mut u64, out: &mut String| {
        for _ in 0..next(seed) % 3 {
            out.push([' ', '\n', '\t', '\r'][(next(seed) % 4) as usize]);
        }
    };
    match v {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            for i in (1..members.len()).rev() {
                members.swap(i, (next(seed) % (i as u64 + 1)) as usize);
            }
            out.push('{');
            for (i, (k, val)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(seed, out);
                out.push_str(&serde_json::to_string(k).unwrap());
                ws(seed, out);
                out.push(':');
                scramble(val, seed, out);
            }
            ws(seed, out);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                scramble(item, seed, out);
            }
            ws(seed, out);
            out.push(']');
        }
        other => {
            ws(seed, out);
            out.push_str(&serde_json::to_string(other).unwrap());
            ws(seed, out);
        }
    }
}

proptest! {
    #[test]
    fn canonical_form_ignores_member_order_and_whitespace(v in json_value(), seed in 1u64..) {
        let mut text = String::new();
        let mut s = seed;
        scramble(&v, &mut s, &mut text);
        let reparsed = parse(&text).unwrap();
        prop_assert_eq!(to_vec(&reparsed), to_vec(&v));
    }

    #[test]
    fn canonical_form_is_a_fixed_point(v in json_value()) {
        let once = to_vec(&v);
        let again = to_vec(&parse(std::str::from_utf8(&once).unwrap()).unwrap());
        prop_assert_eq!(once, again);
    }
}

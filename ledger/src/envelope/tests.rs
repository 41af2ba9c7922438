#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

/// The vectors file of `spec/envelope.md` ("Test vectors").
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../spec/vectors/envelope-chains.json"
);

/// One envelope of the vectors file and the exact text its hash is taken over.
pub(crate) struct Vector {
    pub(crate) envelope: Envelope,
    pub(crate) preimage: String,
}

/// Every chain of the vectors file, in order.
pub(crate) fn spec_vectors() -> Vec<Vec<Vector>> {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("{VECTORS}: {e}"));
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let text_of = |v: &serde_json::Value, name: &str| v[name].as_str().unwrap().to_owned();
    let chains = file["chains"].as_array().unwrap();
    chains
        .iter()
        .map(|chain| {
            let envelopes = chain["envelopes"].as_array().unwrap();
            envelopes
                .iter()
                .map(|v| Vector {
                    envelope: Envelope {
                        tenant_id: text_of(v, "tenant_id"),
                        user_id: text_of(v, "user_id"),
                        session_id: text_of(v, "session_id"),
                        seq: v["seq"].as_u64().unwrap(),
                        ts_unix_ms: v["ts_unix_ms"].as_i64().unwrap(),
                        event_type: v["event_type"].as_str().unwrap().parse().unwrap(),
                        payload: Payload::from_text(&v["payload"].to_string()).unwrap(),
                        prev_hash: v["prev_hash"]
                            .as_str()
                            .map(|hex| Digest::from_text(hex).unwrap()),
                        hash: Digest::from_text(v["hash"].as_str().unwrap()).unwrap(),
                    },
                    preimage: text_of(v, "preimage"),
                })
                .collect()
        })
        .collect()
}

/// Every envelope of the vectors file, chain after chain.
pub(crate) fn spec_chain() -> Vec<Envelope> {
    spec_vectors()
        .into_iter()
        .flatten()
        .map(|v| v.envelope)
        .collect()
}

#[test]
fn spec_vectors_hash_as_published() {
    let chains = spec_vectors();
    assert_eq!(chains.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
    for chain in chains {
        let mut prev = None;
        for Vector { envelope, preimage } in chain {
            let seq = envelope.seq;
            assert_eq!(
                envelope.prev_hash, prev,
                "seq {seq} links to the one before"
            );
            assert_eq!(
                String::from_utf8(envelope.preimage().to_vec()).unwrap(),
                preimage,
                "seq {seq}"
            );
            assert_eq!(envelope.compute_hash(), envelope.hash, "seq {seq}");
            prev = Some(envelope.hash);
        }
    }
}

/// The document and the vectors file agree: the spec's table lists the
/// reference chain's hashes, and its byte-for-byte preimage is seq 1's.
#[test]
fn spec_document_shows_the_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/envelope.md");
    let spec = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let reference = &spec_vectors()[0];
    for v in reference {
        let hex = v.envelope.hash.to_hex();
        assert!(
            spec.contains(&format!("`{hex}`")),
            "spec/envelope.md lacks {hex}"
        );
    }
    assert!(spec.contains(&format!("\n{}\n", reference[1].preimage)));
}

#[test]
fn preimage_matches_the_generic_canonicaliser() {
    // The streamed preimage must equal JCS of the same object built as a Value.
    for env in spec_chain() {
        let mut obj = serde_json::json!({
            "tenant_id": env.tenant_id, "user_id": env.user_id, "session_id": env.session_id,
            "seq": env.seq, "ts_unix_ms": env.ts_unix_ms, "event_type": env.event_type.as_str(),
            "payload": env.payload.value(),
        });
        if let Some(prev) = env.prev_hash {
            obj["prev_hash"] = serde_json::json!(prev.0.to_vec());
        }
        assert_eq!(env.preimage().to_vec(), canon::to_vec(&obj));
    }
}

#[test]
fn payload_keeps_its_text_and_hashes_its_double_form() {
    let p = Payload::from_text(r#" {"n": 9007199254740993} "#).unwrap();
    assert_eq!(p.text(), r#"{"n": 9007199254740993}"#);
    assert_eq!(p.canonical(), br#"{"n":9007199254740992}"#);
    assert!(Payload::from_text(r#"{"a":1,"a":2}"#).is_err());
}

#[derive(Debug, Clone)]
enum Mutation {
    Tenant(String),
    User(String),
    Session(String),
    Seq(u64),
    Ts(i64),
    EventType(usize),
    Payload(String),
    PrevHash(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        "\\PC{0,6}".prop_map(Mutation::Tenant),
        "\\PC{0,6}".prop_map(Mutation::User),
        "\\PC{0,6}".prop_map(Mutation::Session),
        any::<u64>().prop_map(Mutation::Seq),
        any::<i64>().prop_map(Mutation::Ts),
        (0..EventType::ALL.len()).prop_map(Mutation::EventType),
        "\\PC{0,6}".prop_map(Mutation::Payload),
        (0usize..32, 1u8..=255).prop_map(|(i, x)| Mutation::PrevHash(i, x)),
    ]
}

proptest! {
    /// Any change to any hashed field changes the hash.
    #[test]
    fn any_mutation_changes_the_hash(which in 0usize..6, m in mutation()) {
        let original = spec_chain().swap_remove(which);
        let mut env = original.clone();
        match m {
            Mutation::Tenant(s) => env.tenant_id.push_str(&format!("{s}x")),
            Mutation::User(s) => env.user_id.push_str(&format!("{s}x")),
            Mutation::Session(s) => env.session_id.push_str(&format!("{s}x")),
            Mutation::Seq(n) => env.seq = if n == env.seq { n.wrapping_add(1) } else { n },
            Mutation::Ts(n) => env.ts_unix_ms = if n == env.ts_unix_ms { n.wrapping_add(1) } else { n },
            Mutation::EventType(i) => {
                let t = EventType::ALL[i];
                env.event_type = if t == env.event_type { EventType::ALL[(i + 1) % EventType::ALL.len()] } else { t };
            }
            Mutation::Payload(s) => {
                let mut v = env.payload.value().clone();
                v["extra"] = serde_json::Value::String(s);
                env.payload = Payload::from_value(v);
            }
            Mutation::PrevHash(i, x) => match env.prev_hash.as_mut() {
                Some(prev) => prev.0[i] ^= x,
                None => env.seq = 1 + u64::from(x), // seq 0 has no prev_hash: move it instead
            },
        }
        prop_assume!(env.seq > 0 || env.prev_hash.is_none());
        // Near ±2^63, seq/ts changes below the double's precision are invisible to the
        // hash by design (numbers are hashed as doubles); stay within exact integers.
        prop_assume!(env.seq <= 1 << 53 && env.ts_unix_ms.unsigned_abs() <= 1 << 53);
        prop_assert_ne!(env.compute_hash(), original.compute_hash());
    }
}

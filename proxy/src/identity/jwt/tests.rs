#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::identity::test_keys::{TestKey, b64, jwks};

const NOW: u64 = 1_700_000_000;
const EXPECTED: Expected<'static> = Expected {
    issuer: "https://issuer.example",
    audience: "aegis-proxy",
    leeway_s: 60,
};

fn keys(json: &str) -> KeySet {
    let mut skipped = Vec::new();
    let set = KeySet::parse(json.as_bytes(), &mut skipped).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    set
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "iss": "https://issuer.example",
        "aud": "aegis-proxy",
        "sub": "agent-7",
        "exp": NOW + 3600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn failure(token: &str, keys: &KeySet) -> Failure {
    verify(token, keys, &EXPECTED, NOW).unwrap_err().failure
}

/// The RFC 7515 A.2 vector (`testdata/rfc7515-a2.json`).
fn rfc7515_a2() -> (KeySet, String) {
    let vector: Value = serde_json::from_str(include_str!("../testdata/rfc7515-a2.json")).unwrap();
    let set = keys(&json!({"keys": [vector["jwk"]]}).to_string());
    (set, vector["jws"].as_str().unwrap().to_owned())
}

#[test]
fn rs256_verifies_the_rfc_7515_a2_example() {
    let (set, jws) = rfc7515_a2();
    // Before its exp: the signature, exp and iss pass; it names no aud, so
    // it is not for us — the first check it cannot pass.
    let joe = Expected {
        issuer: "joe",
        ..EXPECTED
    };
    let before_exp = 1_300_819_000;
    let e = verify(&jws, &set, &joe, before_exp).unwrap_err();
    assert_eq!(e.failure, Failure::WrongAudience, "{e}");
    // The signature alone, over the first two segments as sent.
    let (signed, signature) = jws.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let key = set.select(Alg::Rs256, None).unwrap();
    assert_eq!(
        check_signature(Alg::Rs256, &key.key, signed.as_bytes(), &signature),
        Ok(())
    );
    // Long expired now; and one changed bit of the payload breaks it.
    assert_eq!(
        verify(&jws, &set, &joe, NOW).unwrap_err().failure,
        Failure::Expired
    );
    let mut tampered = jws.clone().into_bytes();
    let at = jws.find('.').unwrap() + 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        verify(&tampered, &set, &joe, before_exp)
            .unwrap_err()
            .failure,
        Failure::BadSignature
    );
    // RS256 only: the same key does not verify PS256 or ES256 claims.
    assert!(set.select(Alg::Es256, None).is_err());
}

#[test]
fn es256_and_eddsa_tokens_verify() {
    for key in [TestKey::es256("ec-1"), TestKey::ed25519("ed-1")] {
        let set = keys(&jwks(&[&key]));
        let token = key.token(&claims(json!({})));
        let verified = verify(&token, &set, &EXPECTED, NOW).unwrap();
        assert_eq!(verified["sub"], "agent-7", "{}", key.alg);
    }
}

#[test]
fn exp_and_nbf_hold_with_the_leeway() {
    let key = TestKey::es256("k");
    let set = keys(&jwks(&[&key]));
    let at = |extra: Value| verify(&key.token(&claims(extra)), &set, &EXPECTED, NOW);
    assert_eq!(
        at(json!({"exp": NOW - 61})).unwrap_err().failure,
        Failure::Expired
    );
    assert_eq!(
        at(json!({"exp": NOW - 60})).unwrap_err().failure,
        Failure::Expired
    );
    assert!(at(json!({"exp": NOW - 59})).is_ok(), "within the leeway");
    assert_eq!(
        at(json!({"nbf": NOW + 120})).unwrap_err().failure,
        Failure::NotYetValid
    );
    assert!(at(json!({"nbf": NOW + 30})).is_ok(), "within the leeway");
    assert!(at(json!({"nbf": NOW - 10, "iat": NOW - 10})).is_ok());
    assert!(
        at(json!({"exp": (NOW + 10) as f64 + 0.5})).is_ok(),
        "NumericDate may be fractional"
    );
    for bad in [
        json!({"exp": "soon"}),
        json!({"nbf": null}),
        json!({"exp": null}),
    ] {
        assert_eq!(
            at(bad.clone()).unwrap_err().failure,
            Failure::BadClaim,
            "{bad}"
        );
    }
    let mut no_exp = claims(json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(failure(&key.token(&no_exp), &set), Failure::BadClaim);
}

#[test]
fn issuer_and_audience_must_match() {
    let key = TestKey::ed25519("k");
    let set = keys(&jwks(&[&key]));
    let at = |extra: Value| verify(&key.token(&claims(extra)), &set, &EXPECTED, NOW);
    assert_eq!(
        at(json!({"iss": "https://issuer.example/"}))
            .unwrap_err()
            .failure,
        Failure::WrongIssuer
    );
    assert_eq!(
        at(json!({"iss": null})).unwrap_err().failure,
        Failure::WrongIssuer
    );
    assert_eq!(
        at(json!({"aud": "aegis-proxy-2"})).unwrap_err().failure,
        Failure::WrongAudience
    );
    assert_eq!(
        at(json!({"aud": ["a", "b"]})).unwrap_err().failure,
        Failure::WrongAudience
    );
    assert!(at(json!({"aud": ["other", "aegis-proxy"]})).is_ok());
}

#[test]
fn another_key_under_the_same_kid_is_a_bad_signature() {
    let ours = TestKey::es256("shared-kid");
    let theirs = TestKey::es256("shared-kid");
    let set = keys(&jwks(&[&ours]));
    let forged = theirs.token(&claims(json!({})));
    assert_eq!(failure(&forged, &set), Failure::BadSignature);
}

#[test]
fn alg_none_and_hmac_are_never_accepted() {
    let key = TestKey::es256("k");
    let set = keys(&jwks(&[&key]));
    let body = b64(claims(json!({})).to_string().as_bytes());
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"none","kid":"k"}"#,
        r#"{"alg":"HS256","kid":"k"}"#,
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"RS1","kid":"k"}"#,
        r#"{"kid":"k"}"#,
    ] {
        let unsigned = format!("{}.{body}.", b64(header.as_bytes()));
        assert_eq!(failure(&unsigned, &set), Failure::Malformed, "{header}");
        let with_sig = format!("{}.{body}.{}", b64(header.as_bytes()), b64(b"mac"));
        assert_eq!(failure(&with_sig, &set), Failure::Malformed, "{header}");
    }
}

#[test]
fn a_tampered_payload_is_a_bad_signature() {
    let key = TestKey::ed25519("k");
    let set = keys(&jwks(&[&key]));
    let token = key.token(&claims(json!({})));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims(json!({"sub": "admin"})).to_string().as_bytes());
    assert_eq!(failure(&parts.join("."), &set), Failure::BadSignature);
}

#[test]
fn duplicate_members_are_refused() {
    let key = TestKey::es256("k");
    let set = keys(&jwks(&[&key]));
    let exp = NOW + 3600;
    let claims = format!(
        r#"{{"iss":"https://issuer.example","aud":"aegis-proxy","sub":"agent-7","exp":{exp},"sub":"admin"}}"#
    );
    let token = key.sign_raw(r#"{"alg":"ES256","kid":"k"}"#, &claims);
    assert_eq!(failure(&token, &set), Failure::Malformed);
    let good = key.sign_raw(
        r#"{"alg":"ES256","kid":"k"}"#,
        &claims.replace(r#","sub":"admin""#, ""),
    );
    assert!(verify(&good, &set, &EXPECTED, NOW).is_ok());
    let header = key.sign_raw(
        r#"{"alg":"ES256","kid":"k","kid":"other"}"#,
        &claims.replace(r#","sub":"admin""#, ""),
    );
    assert_eq!(failure(&header, &set), Failure::Malformed);
}

#[test]
fn oversize_and_misshapen_tokens_are_malformed() {
    let key = TestKey::es256("k");
    let set = keys(&jwks(&[&key]));
    let big = key.token(&claims(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)})));
    assert!(big.len() > MAX_TOKEN_BYTES);
    assert_eq!(failure(&big, &set), Failure::Malformed);
    let token = key.token(&claims(json!({})));
    let (head, sig) = token.rsplit_once('.').unwrap();
    for bad in [
        String::new(),
        "a.b".to_owned(),
        format!("{token}.extra"),
        format!("{head}.{sig}=="),
        format!("{head}.{}", sig.replace('-', "+").replace('_', "/") + "+"),
        format!(".{}", token.split_once('.').unwrap().1),
        format!("{head}."),
        token.replacen('.', " .", 1),
    ] {
        assert_eq!(failure(&bad, &set), Failure::Malformed, "{bad}");
    }
    let crit = key.sign_raw(
        r#"{"alg":"ES256","kid":"k","crit":["exp"]}"#,
        &claims(json!({})).to_string(),
    );
    assert_eq!(failure(&crit, &set), Failure::Malformed);
    let kid_number = key.sign_raw(r#"{"alg":"ES256","kid":7}"#, &claims(json!({})).to_string());
    assert_eq!(failure(&kid_number, &set), Failure::Malformed);
    let not_object = key.sign_raw(r#"{"alg":"ES256","kid":"k"}"#, "[1]");
    assert_eq!(failure(&not_object, &set), Failure::Malformed);
}

#[test]
fn keys_are_chosen_by_exact_kid_and_alg() {
    let ec = TestKey::es256("ec");
    let ec2 = TestKey::es256("ec-2");
    let ed = TestKey::ed25519("ed");
    let set = keys(&jwks(&[&ec, &ec2, &ed]));
    let claims = claims(json!({})).to_string();
    let unknown = ec.sign_raw(r#"{"alg":"ES256","kid":"EC"}"#, &claims);
    assert_eq!(failure(&unknown, &set), Failure::UnknownKey);
    // No kid: only when exactly one key suits the alg.
    let no_kid = ed.sign_raw(r#"{"alg":"EdDSA"}"#, &claims);
    assert!(verify(&no_kid, &set, &EXPECTED, NOW).is_ok());
    let ambiguous = ec.sign_raw(r#"{"alg":"ES256"}"#, &claims);
    assert_eq!(failure(&ambiguous, &set), Failure::UnknownKey);
    // The kid's key, but of another kind than the alg.
    let wrong_kind = ed.sign_raw(r#"{"alg":"ES256","kid":"ed"}"#, &claims);
    assert_eq!(failure(&wrong_kind, &set), Failure::UnknownKey);
    // A JWK's own alg binds it.
    let mut bound = ec.jwk.clone();
    bound["alg"] = json!("ES256");
    let set = keys(&json!({"keys": [bound]}).to_string());
    assert!(
        verify(
            &ec.token(&serde_json::from_str(&claims).unwrap()),
            &set,
            &EXPECTED,
            NOW
        )
        .is_ok()
    );
    assert!(set.select(Alg::Es384, Some("ec")).is_err());
}

#[test]
fn key_sets_keep_only_signature_keys_they_can_use() {
    let ec = TestKey::es256("ec");
    let mut enc = TestKey::es256("enc").jwk;
    enc["use"] = json!("enc");
    let mut ops = TestKey::es256("ops").jwk;
    ops["key_ops"] = json!(["encrypt"]);
    let (rfc, _) = rfc7515_a2();
    let PublicKey::Rsa { n, .. } = &rfc.keys[0].key else {
        panic!("an RSA key");
    };
    let small = json!({"kty": "RSA", "kid": "small", "n": b64(&n[1..]), "e": "AQAB"});
    let hmac = json!({"kty": "oct", "kid": "mac", "k": "c2VjcmV0"});
    let mismatched = json!({"kty": "OKP", "crv": "Ed25519", "kid": "m", "alg": "ES256",
                            "x": ec.jwk["x"]});
    let text = json!({"keys": [ec.jwk, enc, ops, small, hmac, mismatched]}).to_string();
    let mut skipped = Vec::new();
    let set = KeySet::parse(text.as_bytes(), &mut skipped).unwrap();
    let kids: Vec<_> = set.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, ["ec"]);
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped[0].contains("2040 bits"), "{skipped:?}");

    let twice = json!({"keys": [ec.jwk, ec.jwk]}).to_string();
    assert!(
        KeySet::parse(twice.as_bytes(), &mut skipped)
            .unwrap_err()
            .contains("two keys")
    );
    for bad in [
        r#"{"keys": []}"#,
        r#"{"nokeys": 1}"#,
        "not json",
        r#"{"keys":[{"kty":"oct","k":"AA"}]}"#,
    ] {
        assert!(
            KeySet::parse(bad.as_bytes(), &mut skipped).is_err(),
            "{bad}"
        );
    }
}

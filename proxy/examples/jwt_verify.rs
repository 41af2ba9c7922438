//! What verifying the agent's JWT costs per request (`mcp.identity.jwt`):
//! the sidecar's own verifier on `ring`, for the three key types agents
//! meet — RS256 (Kubernetes service-account tokens; RFC 7515 A.2's 2048-bit
//! key), EdDSA and ES256 (keys made here). `bench/README.md`, "The control
//! boundary's cost".
//!
//! ```sh
//! cargo run --release -p aegis-proxy --example jwt_verify -- [--rounds 3] [--n 20000]
//! ```

#![allow(clippy::print_stdout, reason = "the report is the program's output")]
#![allow(clippy::unwrap_used, reason = "a measuring tool, not the data path")]

use std::time::Instant;

use aegis_proxy::identity::jwks::KeySet;
use aegis_proxy::identity::jwt::{Expected, verify};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// A compact JWS of `header` and `claims`, signed by `sign`.
fn token(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

fn main() {
    let (rounds, n) = (arg("--rounds", 3), arg("--n", 20_000));
    let rng = SystemRandom::new();
    let claims = json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": "aegis-proxy",
        "sub": "system:serviceaccount:agents:agent-7",
        "exp": 4_102_444_800u64,
    });
    let expected = Expected {
        issuer: "https://kubernetes.default.svc.cluster.local",
        audience: "aegis-proxy",
        leeway_s: 60,
    };
    let now = 1_800_000_000;

    let ed =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let p256 = EcdsaKeyPair::from_pkcs8(
        alg,
        EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap().as_ref(),
        &rng,
    )
    .unwrap();
    let point = p256.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": B64.encode(ed.public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "ec",
         "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])},
    ]});
    let keys = KeySet::parse(jwks.to_string().as_bytes(), &mut Vec::new()).unwrap();
    let ed_token = token(&json!({"alg": "EdDSA", "kid": "ed"}), &claims, |m| {
        ed.sign(m).as_ref().to_vec()
    });
    let ec_token = token(&json!({"alg": "ES256", "kid": "ec"}), &claims, |m| {
        p256.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    assert!(verify(&ed_token, &keys, &expected, now).is_ok());
    assert!(verify(&ec_token, &keys, &expected, now).is_ok());

    // RS256: the RFC's key and token. Its claims have no `aud`, so the
    // verification fails on them, after the signature has been checked.
    let rfc: Value =
        serde_json::from_str(include_str!("../src/identity/testdata/rfc7515-a2.json")).unwrap();
    let rsa_keys = KeySet::parse(
        json!({"keys": [rfc["jwk"]]}).to_string().as_bytes(),
        &mut Vec::new(),
    )
    .unwrap();
    let rsa_token = rfc["jws"].as_str().unwrap().to_owned();
    let rsa_expected = Expected {
        issuer: "joe",
        audience: "aegis-proxy",
        leeway_s: 0,
    };
    let rsa_error = verify(&rsa_token, &rsa_keys, &rsa_expected, 1_300_000_000).unwrap_err();
    assert_eq!(rsa_error.failure.as_str(), "wrong_audience");

    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..n {
            f();
        }
        started.elapsed().as_secs_f64() / n as f64 * 1e6
    };
    println!("µs per verification, {n} each, {rounds} rounds");
    for round in 1..=rounds {
        let rs = time(&|| {
            let _ = verify(&rsa_token, &rsa_keys, &rsa_expected, 1_300_000_000);
        });
        let eddsa = time(&|| {
            verify(&ed_token, &keys, &expected, now).unwrap();
        });
        let es = time(&|| {
            verify(&ec_token, &keys, &expected, now).unwrap();
        });
        println!("round {round}: RS256 {rs:.1}  EdDSA {eddsa:.1}  ES256 {es:.1}");
    }
}

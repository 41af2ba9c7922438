//! Verifying a JWT (RFC 7519) in JWS compact serialisation (RFC 7515), on
//! `ring`, strictly. Written here rather than taken from a JWT crate:
//! `jsonwebtoken` ≥ 10 needs aws-lc-rs (a cmake/C toolchain step this
//! workspace avoids) or RustCrypto's `rsa` (RUSTSEC-2023-0071), and
//! several more crates; the verifier is small and fully tested.
//!
//! What passes, in order (each refusal a [`Failure`]):
//!
//! 1. At most [`MAX_TOKEN_BYTES`]; exactly three base64url segments
//!    without padding (`Malformed`).
//! 2. The header: a JSON object without duplicate members, `alg` one of
//!    [`Alg`] (never `none` or an HMAC), no `crit`, `kid` a string when
//!    present (`Malformed`).
//! 3. The key: the JWK Set's key of that exact `kid`, or with no `kid` the
//!    only key that suits `alg`; the JWK's own `alg`, when present, equal
//!    to the header's (`UnknownKey`).
//! 4. The signature over `header.payload` (`BadSignature`).
//! 5. The claims: a JSON object without duplicate members (`Malformed`);
//!    `exp` required and `nbf` honoured, both numbers, with the leeway
//!    (`Expired`, `NotYetValid`, `BadClaim`); `iss` exactly the issuer
//!    (`WrongIssuer`); `aud` the audience or an array holding it
//!    (`WrongAudience`).
//!
//! Nothing here logs; callers never log the token either.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

pub use super::alg::Alg;
use super::jwks::{KeySet, PublicKey};
use super::{Failure, IdentityError};
use crate::json as strict_json;

/// Longest token accepted, in bytes: far above a real access token, and
/// what the sidecar parses before knowing who sent it.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the claims must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// Verifies `token` with `keys` at time `now_unix_s`; its claims.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expected<'_>,
    now_unix_s: u64,
) -> Result<Map<String, Value>, IdentityError> {
    let malformed = |detail: &str| IdentityError::new(Failure::Malformed, detail);
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("the token is larger than 8 KiB"));
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed("not three dot-separated segments"));
    };
    let decode = |segment: &str, what: &str| {
        if segment.is_empty() {
            return Err(malformed(&format!("the {what} is empty")));
        }
        URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| malformed(&format!("the {what} is not base64url without padding")))
    };
    let header = decode(header_b64, "header")?;
    let payload = decode(payload_b64, "payload")?;
    let signature = decode(signature_b64, "signature")?;

    let header = strict_json::object(&header)
        .map_err(|e| malformed(&format!("the header is not a JSON object: {e}")))?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name)
            .ok_or_else(|| malformed("the header's alg is not one the sidecar accepts"))?,
        _ => return Err(malformed("the header has no alg string")),
    };
    if header.contains_key("crit") {
        return Err(malformed("the header has crit: no extension is understood"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(malformed("the header's kid is not a string")),
    };

    let jwk = keys
        .select(alg, kid)
        .map_err(|why| IdentityError::new(Failure::UnknownKey, why))?;
    // The signing input is the first two segments as sent (RFC 7515 §5.2).
    let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    check_signature(alg, &jwk.key, signed, &signature)
        .map_err(|()| IdentityError::new(Failure::BadSignature, "the signature does not verify"))?;

    let claims = strict_json::object(&payload)
        .map_err(|e| malformed(&format!("the claims are not a JSON object: {e}")))?;
    check_claims(&claims, expected, now_unix_s)?;
    Ok(claims)
}

fn check_signature(alg: Alg, key: &PublicKey, signed: &[u8], sig: &[u8]) -> Result<(), ()> {
    let rsa = |params: &signature::RsaParameters, n: &[u8], e: &[u8]| {
        RsaPublicKeyComponents { n, e }
            .verify(params, signed, sig)
            .map_err(|_| ())
    };
    match (alg, key) {
        (Alg::Rs256, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e),
        (Alg::Rs384, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e),
        (Alg::Rs512, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e),
        (Alg::Ps256, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e),
        (Alg::Ps384, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e),
        (Alg::Ps512, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e),
        (Alg::Es256, PublicKey::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .map_err(|_| ())
        }
        (Alg::Es384, PublicKey::P384(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(signed, sig)
                .map_err(|_| ())
        }
        (Alg::EdDsa, PublicKey::Ed25519(x)) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(signed, sig)
            .map_err(|_| ()),
        // `KeySet::select` returns only keys that suit the alg.
        _ => Err(()),
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
    now_unix_s: u64,
) -> Result<(), IdentityError> {
    let now = now_unix_s as f64;
    let leeway = expected.leeway_s as f64;
    let time = |name: &str| -> Result<Option<f64>, IdentityError> {
        match claims.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|t| t.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    IdentityError::new(Failure::BadClaim, format!("{name} is not a number"))
                }),
        }
    };
    let exp = time("exp")?
        .ok_or_else(|| IdentityError::new(Failure::BadClaim, "the token has no exp"))?;
    if now >= exp + leeway {
        return Err(IdentityError::new(
            Failure::Expired,
            "the token has expired",
        ));
    }
    if let Some(nbf) = time("nbf")?
        && now + leeway < nbf
    {
        return Err(IdentityError::new(
            Failure::NotYetValid,
            "the token is not valid yet (nbf)",
        ));
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(IdentityError::new(
            Failure::WrongIssuer,
            "iss is not the configured issuer",
        ));
    }
    let audience = expected.audience;
    let for_us = match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !for_us {
        return Err(IdentityError::new(
            Failure::WrongAudience,
            "aud does not name the configured audience",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

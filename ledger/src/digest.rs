//! `Digest`: the 32-byte SHA-256 value that seals and links envelopes.
//!
//! Hex on the wire; on input hex, standard base64 or an array of 32 integers
//! (the Aegis Python SDK's form) are all accepted and mean the same bytes.

use std::fmt;

use base64::Engine as _;
use serde_json::Value;

/// Length of a SHA-256 digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; DIGEST_LEN]);

/// Why a value could not be read as a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected 32 bytes as 64 hex characters, standard base64, or an array of 32 integers 0-255; {0}"
)]
pub struct DigestFormatError(String);

impl Digest {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// The digest in `bytes`, which must be exactly 32 long.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        <[u8; DIGEST_LEN]>::try_from(bytes).ok().map(Digest)
    }

    /// Reads a hex string (either case) or a standard base64 string.
    pub fn from_text(s: &str) -> Result<Digest, DigestFormatError> {
        if s.len() == 2 * DIGEST_LEN {
            let mut out = [0u8; DIGEST_LEN];
            return hex::decode_to_slice(s, &mut out)
                .map(|()| Digest(out))
                .map_err(|e| DigestFormatError(format!("bad hex: {e}")));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| DigestFormatError(format!("got a {}-character string ({e})", s.len())))?;
        Digest::from_slice(&bytes)
            .ok_or_else(|| DigestFormatError(format!("base64 decodes to {} bytes", bytes.len())))
    }

    /// Reads any accepted JSON form: hex or base64 string, or integer array.
    pub fn from_json(v: &Value) -> Result<Digest, DigestFormatError> {
        match v {
            Value::String(s) => Digest::from_text(s),
            Value::Array(items) => {
                if items.len() != DIGEST_LEN {
                    return Err(DigestFormatError(format!(
                        "got an array of {} items",
                        items.len()
                    )));
                }
                let mut out = [0u8; DIGEST_LEN];
                for (slot, item) in out.iter_mut().zip(items) {
                    *slot = item
                        .as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(|| {
                            DigestFormatError(format!("array item {item} is not 0-255"))
                        })?;
                }
                Ok(Digest(out))
            }
            other => Err(DigestFormatError(format!("got {}", json_kind(other)))),
        }
    }
}

/// A short name for a JSON value's type, for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEX: &str = "1a1b6ca883e2784e32b436f37494361b63047de115481b3009e1593f87974b6b";

    #[test]
    fn every_input_form_gives_the_same_bytes() {
        let d = Digest::from_text(HEX).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(d.0);
        let arr = Value::Array(d.0.iter().map(|b| Value::from(*b)).collect());
        assert_eq!(Digest::from_text(&HEX.to_uppercase()).unwrap(), d);
        assert_eq!(Digest::from_text(&b64).unwrap(), d);
        assert_eq!(Digest::from_json(&arr).unwrap(), d);
        assert_eq!(d.to_string(), HEX);
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in [
            serde_json::json!("abc"),
            serde_json::json!(HEX[..62]),
            serde_json::json!([1, 2, 3]),
            serde_json::json!(
                (0..32)
                    .map(|i| if i == 5 { 256 } else { i })
                    .collect::<Vec<_>>()
            ),
            serde_json::json!(
                (0..32)
                    .map(|i| if i == 5 { -1 } else { i })
                    .collect::<Vec<_>>()
            ),
            serde_json::json!(12),
            serde_json::json!("zz".repeat(32)),
        ] {
            assert!(Digest::from_json(&bad).is_err(), "{bad}");
        }
    }
}

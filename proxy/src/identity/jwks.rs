//! The keys JWTs are verified with: an RFC 7517 JWK Set read from
//! `mcp.identity.jwt.jwks_file`, never fetched from anywhere (a token's
//! `jku`, `x5u`, `jwk` and `x5c` headers are ignored).
//!
//! [`JwksStore`] holds the live [`KeySet`] behind an `ArcSwap`, so every
//! request reads it without a lock. [`JwksStore::reload`] re-reads the
//! file (on the watch thread, see `super::watch`): a file that cannot be
//! read or holds no usable key leaves the last good set live.
//!
//! What is kept: keys with `use` absent or `"sig"` (and `key_ops`, when
//! present, naming `"verify"`) of kty RSA (≥ 2048 bits), EC (P-256,
//! P-384) and OKP (Ed25519). Other keys are skipped with a warning.
//! Two usable keys with the same `kid` make the set invalid: a token's
//! `kid` must name exactly one key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::alg::Alg;

/// Largest JWK Set file read: far above any real issuer's set.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
const MIN_RSA_BITS: usize = 2048;

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`: when present, the only alg it verifies.
    pub alg: Option<Alg>,
    pub key: PublicKey,
}

/// The public key material, as ring takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and exponent, big-endian, without leading zero bytes.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    pub fn suits(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        matches!(
            (&self.key, alg),
            (
                PublicKey::Rsa { .. },
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512,
            ) | (PublicKey::P256(_), Alg::Es256)
                | (PublicKey::P384(_), Alg::Es384)
                | (PublicKey::Ed25519(_), Alg::EdDsa)
        )
    }
}

/// A validated JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWK Set. `skipped` collects why keys were left out (for
    /// the log); the error is why the whole set is refused.
    pub fn parse(bytes: &[u8], skipped: &mut Vec<String>) -> Result<KeySet, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Some(keys) = value.get("keys").and_then(Value::as_array) else {
            return Err("no \"keys\" array (RFC 7517 §5)".to_owned());
        };
        let mut set = KeySet::default();
        for (i, key) in keys.iter().enumerate() {
            match parse_key(key) {
                Ok(Some(jwk)) => {
                    if let Some(kid) = &jwk.kid
                        && set.keys.iter().any(|k| k.kid.as_ref() == Some(kid))
                    {
                        return Err(format!("keys[{i}]: the kid {kid:?} names two keys"));
                    }
                    set.keys.push(jwk);
                }
                Ok(None) => {}
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        if set.keys.is_empty() {
            return Err("no usable signature verification key".to_owned());
        }
        Ok(set)
    }

    /// The one key that may verify a token with `alg` and `kid`: the key of
    /// that exact `kid`, or, with no `kid`, the only key that suits `alg`.
    pub fn select(&self, alg: Alg, kid: Option<&str>) -> Result<&Jwk, String> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| "no key has the token's kid".to_owned())?;
                if key.suits(alg) {
                    Ok(key)
                } else {
                    Err(format!("the key of the token's kid does not verify {alg}"))
                }
            }
            None => {
                let mut suited = self.keys.iter().filter(|k| k.suits(alg));
                match (suited.next(), suited.next()) {
                    (Some(key), None) => Ok(key),
                    (None, _) => Err(format!("no key verifies {alg}")),
                    (Some(_), Some(_)) => Err(format!(
                        "the token has no kid and several keys verify {alg}"
                    )),
                }
            }
        }
    }
}

/// One JWK: `Ok(None)` for a key that is not for verifying signatures.
fn parse_key(key: &Value) -> Result<Option<Jwk>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match key.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("\"{name}\" is not a string")),
        }
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = key.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Ok(None);
        }
    }
    let kid = text("kid")?.map(str::to_owned);
    let alg = match text("alg")? {
        None => None,
        Some(name) => {
            Some(Alg::from_name(name).ok_or_else(|| format!("alg {name:?} is not one we verify"))?)
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("no \"{name}\""))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("\"{name}\" is not base64url without padding"))
    };
    let kty = text("kty")?.ok_or("no \"kty\"")?;
    let key = match kty {
        "RSA" => {
            let n = strip_zeros(bytes("n")?);
            let e = strip_zeros(bytes("e")?);
            let bits = n.first().map_or(0, |top| {
                (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
            });
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "an RSA key of {bits} bits (at least {MIN_RSA_BITS} are needed)"
                ));
            }
            if e.is_empty() {
                return Err("an RSA exponent of zero".to_owned());
            }
            PublicKey::Rsa { n, e }
        }
        "EC" => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            let size = match text("crv")? {
                Some("P-256") => 32,
                Some("P-384") => 48,
                other => return Err(format!("EC curve {other:?} is not P-256 or P-384")),
            };
            if x.len() != size || y.len() != size {
                return Err(format!("EC coordinates must be {size} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if size == 32 {
                PublicKey::P256(point)
            } else {
                PublicKey::P384(point)
            }
        }
        "OKP" => {
            if text("crv")? != Some("Ed25519") {
                return Err("OKP curve is not Ed25519".to_owned());
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key must be 32 bytes".to_owned());
            }
            PublicKey::Ed25519(x)
        }
        other => return Err(format!("kty {other:?} is not RSA, EC or OKP")),
    };
    let jwk = Jwk { kid, alg, key };
    if let Some(alg) = alg
        && !jwk.suits(alg)
    {
        return Err(format!("its alg {alg} does not fit its kty {kty}"));
    }
    Ok(Some(jwk))
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// What one [`JwksStore::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksReload {
    /// A new set is live, with this many keys.
    Reloaded { keys: usize },
    /// The file's bytes did not change.
    Unchanged,
    /// The last good set stays live; why the file was refused.
    Failed(String),
}

impl JwksReload {
    /// The `result` label of `aegis_identity_jwks_reloads_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JwksReload::Reloaded { .. } => "reloaded",
            JwksReload::Unchanged => "unchanged",
            JwksReload::Failed(_) => "failed",
        }
    }
}

/// The live key set of one JWK Set file. Who touches it: every request
/// reads [`JwksStore::current`]; the watch thread calls
/// [`JwksStore::reload`], serialised by `last_sha256`'s mutex.
#[derive(Debug)]
pub struct JwksStore {
    path: PathBuf,
    current: ArcSwap<KeySet>,
    /// SHA-256 of the bytes of the live set: a rewrite of the same bytes
    /// is not a reload.
    last_sha256: Mutex<[u8; 32]>,
}

impl JwksStore {
    /// Reads and validates the file (blocking): the sidecar does not start
    /// without a usable key set.
    pub fn open(path: PathBuf) -> Result<JwksStore, String> {
        let (set, sha256) = load(&path)?;
        Ok(JwksStore {
            path,
            current: ArcSwap::from_pointee(set),
            last_sha256: Mutex::new(sha256),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The live key set.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Re-reads the file (blocking); an unusable file changes nothing.
    pub fn reload(&self) -> JwksReload {
        let mut last = self
            .last_sha256
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match load(&self.path) {
            Err(why) => JwksReload::Failed(why),
            Ok((_, sha256)) if sha256 == *last => JwksReload::Unchanged,
            Ok((set, sha256)) => {
                let keys = set.keys.len();
                self.current.store(Arc::new(set));
                *last = sha256;
                JwksReload::Reloaded { keys }
            }
        }
    }
}

fn load(path: &Path) -> Result<(KeySet, [u8; 32]), String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    let mut skipped = Vec::new();
    let set = KeySet::parse(&bytes, &mut skipped)?;
    for why in &skipped {
        tracing::warn!(path = %path.display(), key = %why, "JWK skipped");
    }
    Ok((set, Sha256::digest(&bytes).into()))
}

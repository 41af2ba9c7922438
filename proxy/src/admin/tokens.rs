//! The admin API's bearer tokens: read from files (one token per file), kept
//! only as SHA-256 digests, compared in constant time, and re-read when the
//! files change (a directory watch, like the manifest's) or on SIGHUP.
//!
//! A token file holds the token and at most one trailing newline; the token
//! is 16 to 4096 bytes of visible ASCII (it travels in a header). At
//! start-up a bad file stops the sidecar, naming the setting. On a reload,
//! a file that is unreadable, empty or otherwise bad disables that one entry
//! (a warning, `aegis_api_token_reloads_total{result="failed"}`) and the
//! others stay; fixing the file enables it again. The live digests are
//! swapped whole ([`ArcSwap`]), so a request sees the old set or the new.
//!
//! Files are read on the watch thread or in `spawn_blocking`, never on a
//! runtime worker. Tokens are never logged, formatted or kept: `Debug` of
//! a [`TokenDigest`] prints nothing of it.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::IntCounterVec;
use sha2::{Digest as _, Sha256};

use super::role::Role;
use crate::config::TokenEntry;

/// Shortest token accepted: 128 bits even for a hex token's worth of entropy.
pub const MIN_TOKEN_BYTES: usize = 16;
/// Longest token accepted: far above any real token; bounds the read.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// A token's SHA-256. Compared with [`TokenDigest::ct_eq`]; never printed.
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &[u8]) -> TokenDigest {
        TokenDigest(Sha256::digest(token).into())
    }

    /// Equality without an early exit. Both sides are digests, so even a
    /// comparison that leaked where they first differ would say nothing
    /// useful about a token; `black_box` keeps the optimiser from turning
    /// the fold back into a short-circuiting compare anyway.
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Reads the token in `path` (blocking). The error says what is wrong with
/// the file, never what it holds.
pub fn read_token(path: &Path) -> Result<TokenDigest, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::with_capacity(64);
    // One byte past the limit (plus a newline) tells "too long" from "at the limit".
    file.take(MAX_TOKEN_BYTES as u64 + 3)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    let token = strip_newline(&bytes);
    if token.is_empty() {
        return Err("the file is empty".to_owned());
    }
    if token.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "the token is {} bytes; it must be at least {MIN_TOKEN_BYTES}",
            token.len()
        ));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
    }
    if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(
            "the token must be visible ASCII without spaces (it is sent in a header); \
             only one trailing newline is dropped"
                .to_owned(),
        );
    }
    Ok(TokenDigest::of(token))
}

/// The file's bytes less one trailing `\n` (or `\r\n`).
fn strip_newline(bytes: &[u8]) -> &[u8] {
    match bytes.strip_suffix(b"\n") {
        Some(rest) => rest.strip_suffix(b"\r").unwrap_or(rest),
        None => bytes,
    }
}

/// One configured token: who it makes the caller.
#[derive(Debug)]
pub struct TokenGrant {
    pub file: PathBuf,
    pub role: Role,
    /// `None`: every tenant.
    pub tenants: Option<Arc<[String]>>,
}

/// The live tokens: one slot per `admin.auth.tokens` entry, in order.
pub struct TokenSet {
    grants: Vec<TokenGrant>,
    /// `None`: the entry is disabled (its file was bad at the last reload).
    live: ArcSwap<Vec<Option<TokenDigest>>>,
    /// Held while files are read and the set swapped, so two reloads (the
    /// watch and SIGHUP) cannot store an older read over a newer one.
    reloading: Mutex<()>,
    /// `aegis_api_token_reloads_total{result}`.
    reloads: IntCounterVec,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

/// What one reload did to one entry: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenReload {
    /// The token changed (or the entry came back).
    Reloaded,
    Unchanged,
    /// The file is bad: the entry is disabled until it is fixed.
    Failed,
}

impl TokenReload {
    pub const ALL: [TokenReload; 3] = [
        TokenReload::Reloaded,
        TokenReload::Unchanged,
        TokenReload::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenReload::Reloaded => "reloaded",
            TokenReload::Unchanged => "unchanged",
            TokenReload::Failed => "failed",
        }
    }
}

impl TokenSet {
    /// Reads every token file (blocking). Any bad file, or two entries with
    /// the same token, is an error naming the setting.
    pub fn load(entries: &[TokenEntry], reloads: IntCounterVec) -> Result<TokenSet, String> {
        let mut digests: Vec<Option<TokenDigest>> = Vec::with_capacity(entries.len());
        let mut problems = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match read_token(&entry.file) {
                Ok(digest) => {
                    if let Some(j) = digests
                        .iter()
                        .position(|d| d.is_some_and(|d| d.ct_eq(&digest)))
                    {
                        problems.push(format!(
                            "admin.auth.tokens[{i}].file: \"{}\" holds the same token as \
                             admin.auth.tokens[{j}]; every entry needs its own token",
                            entry.file.display()
                        ));
                    }
                    digests.push(Some(digest));
                }
                Err(why) => {
                    problems.push(format!(
                        "admin.auth.tokens[{i}].file: \"{}\": {why}",
                        entry.file.display()
                    ));
                    digests.push(None);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let grants = entries
            .iter()
            .map(|entry| TokenGrant {
                file: entry.file.clone(),
                role: entry.role,
                tenants: entry.tenants.as_deref().map(Arc::from),
            })
            .collect();
        Ok(TokenSet {
            grants,
            live: ArcSwap::from_pointee(digests),
            reloading: Mutex::new(()),
            reloads,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// The entry whose token has this digest. Every enabled entry is
    /// compared, whatever matched before (no early exit); the first match
    /// wins (start-up refuses duplicates; a reload may make one).
    pub fn find(&self, digest: &TokenDigest) -> Option<(usize, &TokenGrant)> {
        let live = self.live.load();
        let mut found = None;
        for (i, slot) in live.iter().enumerate() {
            let equal = slot.as_ref().is_some_and(|d| d.ct_eq(digest));
            if equal && found.is_none() {
                found = Some(i);
            }
        }
        found.and_then(|i| self.grants.get(i).map(|grant| (i, grant)))
    }

    /// Re-reads every token file (blocking) and swaps the new set in;
    /// `trigger` (`watch`, `sighup`) goes in the log. What happened to each
    /// entry, in order.
    pub fn reload(&self, trigger: &'static str) -> Vec<TokenReload> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.live.load_full();
        let mut next = Vec::with_capacity(self.grants.len());
        let mut results = Vec::with_capacity(self.grants.len());
        for (i, grant) in self.grants.iter().enumerate() {
            let before = old.get(i).copied().flatten();
            let (slot, result) = match read_token(&grant.file) {
                Ok(digest) => {
                    let same = before.is_some_and(|b| b.ct_eq(&digest));
                    if !same {
                        tracing::info!(
                            trigger,
                            entry = i,
                            path = %grant.file.display(),
                            role = %grant.role,
                            "admin token reloaded"
                        );
                    }
                    let result = if same {
                        TokenReload::Unchanged
                    } else {
                        TokenReload::Reloaded
                    };
                    (Some(digest), result)
                }
                Err(why) => {
                    tracing::warn!(
                        trigger,
                        entry = i,
                        path = %grant.file.display(),
                        error = %why,
                        "admin token file unusable; admin.auth.tokens[{i}] is disabled until it is fixed"
                    );
                    (None, TokenReload::Failed)
                }
            };
            self.reloads.with_label_values(&[result.as_str()]).inc();
            next.push(slot);
            results.push(result);
        }
        self.live.store(Arc::new(next));
        results
    }

    /// Watches the token files' directories and reloads after a burst of
    /// changes to a token file (in-place write, rename-over) or to a
    /// Kubernetes Secret's `..data` symlink. Stops when the guard drops.
    pub fn watch(self: &Arc<Self>) -> Result<TokenWatch, String> {
        if self.grants.is_empty() {
            return Ok(TokenWatch { _watch: None });
        }
        let set = self.clone();
        let files = self.grants.iter().map(|grant| grant.file.as_path());
        let watch = crate::watch::watch(files, "aegis-token-watch", move || {
            set.reload("watch");
        })
        .map_err(|e| format!("admin.auth.tokens: {e}"))?;
        Ok(TokenWatch {
            _watch: Some(watch),
        })
    }
}

/// Stops the token files' watch when dropped (its thread then ends).
#[derive(Debug)]
pub struct TokenWatch {
    _watch: Option<crate::watch::FileWatch>,
}

#[cfg(test)]
mod tests;

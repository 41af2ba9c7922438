//! Token buckets per session, for the live manifest's `policy.rate_limits`.
//!
//! Who touches it: request handlers, for a map lookup under a short
//! `std::sync::Mutex` section (never across `.await`). Buckets belong to a
//! manifest generation: after a reload a session starts with full buckets
//! under the new limits. The map is bounded: past [`MAX_SESSIONS`] entries,
//! buckets of older generations go first, then all (their sessions start
//! over with full buckets — a reset, never a wrong denial).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aegis_policy::rate::RateLimiter;
use aegis_policy::store::LoadedManifest;

/// Sessions whose buckets are kept.
pub const MAX_SESSIONS: usize = 10_000;

type Key = (String, String);

#[derive(Debug, Default)]
pub struct SessionLimiters {
    sessions: Mutex<HashMap<Key, (u64, Arc<RateLimiter>)>>,
}

impl SessionLimiters {
    /// The session's buckets under `live`; `None` when it limits nothing.
    pub fn get(
        &self,
        tenant: &str,
        session: &str,
        live: &LoadedManifest,
    ) -> Option<Arc<RateLimiter>> {
        if !live.compiled.has_rate_limits() {
            return None;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (tenant.to_owned(), session.to_owned());
        if let Some((generation, limiter)) = sessions.get(&key)
            && *generation == live.generation
        {
            return Some(limiter.clone());
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, (generation, _)| *generation == live.generation);
            if sessions.len() >= MAX_SESSIONS {
                sessions.clear();
            }
        }
        let limiter = Arc::new(live.compiled.new_rate_limiter());
        sessions.insert(key, (live.generation, limiter.clone()));
        Some(limiter)
    }

    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Instant;

    use aegis_policy::{CompiledManifest, Manifest};
    use serde_json::json;

    use super::*;

    fn loaded(generation: u64, limits: serde_json::Value) -> LoadedManifest {
        let manifest = Manifest::from_value(&json!({
            "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1", "publisher": "p",
            "permissions": {"tools": ["read_file"]}, "sandbox": {"required": false}, "integrity": {},
            "policy": {"rate_limits": limits}
        }))
        .unwrap();
        LoadedManifest {
            compiled: CompiledManifest::new(&manifest),
            manifest,
            sha256: String::new(),
            generation,
            loaded_at_unix_ms: 0,
            path: "m.json".into(),
        }
    }

    #[test]
    fn buckets_per_session_and_generation() {
        let limiters = SessionLimiters::default();
        let one = loaded(1, json!({"read_file": {"per_second": 0.001, "burst": 1}}));
        let now = Instant::now();
        assert!(
            limiters
                .get("t", "s", &one)
                .unwrap()
                .check("read_file", now)
        );
        assert!(
            !limiters
                .get("t", "s", &one)
                .unwrap()
                .check("read_file", now),
            "same buckets"
        );
        assert!(
            limiters
                .get("t", "other", &one)
                .unwrap()
                .check("read_file", now)
        );
        let two = loaded(2, json!({"read_file": {"per_second": 0.001, "burst": 1}}));
        assert!(
            limiters
                .get("t", "s", &two)
                .unwrap()
                .check("read_file", now),
            "a reload starts full"
        );
        assert!(
            limiters.get("t", "s", &loaded(3, json!({}))).is_none(),
            "no limits, no buckets"
        );
    }

    #[test]
    fn the_map_is_bounded() {
        let limiters = SessionLimiters::default();
        let live = loaded(1, json!({"read_file": {"per_second": 1.0, "burst": 1}}));
        for n in 0..MAX_SESSIONS + 5 {
            limiters.get("t", &n.to_string(), &live);
        }
        assert!(limiters.len() <= MAX_SESSIONS);
    }
}

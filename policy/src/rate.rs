//! Per-tool rate limits: one token bucket per limited tool (denial reason
//! `RATE_LIMITED`, checked between rules 6 and 7 of
//! [`decide`](mod@crate::decide)).
//!
//! A [`RateLimiter`] is built from the manifest's `rate_limits` and counts
//! calls **per limiter instance**: whoever holds it decides the scope. The
//! proxy holds one limiter per session (built when the session starts or the
//! manifest changes), so one agent's calls never spend another's tokens; a
//! limiter shared by several sessions would make the limit global.
//!
//! Time is passed in (no clock reads here), so behaviour is deterministic:
//! a bucket starts full (`burst` tokens), refills at `per_second` tokens a
//! second, never holds more than `burst`, and a `now` earlier than the last
//! refill adds nothing.
//!
//! Concurrency: each bucket sits behind its own `std::sync::Mutex`, held only
//! for the few arithmetic operations of [`RateLimiter::check`] (never across
//! an `.await`: `check` is synchronous). Tools without a limit take no lock.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::manifest::RateLimit;

/// Slack for floating-point refill arithmetic: a bucket holding
/// `1 - TOKEN_EPSILON` tokens may still spend one.
const TOKEN_EPSILON: f64 = 1e-9;

/// Token buckets for the tools that have a rate limit.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: BTreeMap<Box<str>, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens per second; 0 when the manifest's value is not finite and > 0.
    per_second: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    /// The last refill; `None` until the first check (the bucket is full).
    last: Option<Instant>,
}

impl RateLimiter {
    /// One full bucket per entry of `limits` (tool name → limit).
    /// `per_second` that is not finite and positive refills nothing; the
    /// manifest validation rejects it anyway.
    pub fn new(limits: &BTreeMap<String, RateLimit>) -> RateLimiter {
        let buckets = limits
            .iter()
            .map(|(tool, limit)| {
                let per_second = if limit.per_second.is_finite() && limit.per_second > 0.0 {
                    limit.per_second
                } else {
                    0.0
                };
                let burst = f64::from(limit.burst);
                let bucket = Bucket {
                    per_second,
                    burst,
                    state: Mutex::new(BucketState {
                        tokens: burst,
                        last: None,
                    }),
                };
                (Box::from(tool.as_str()), bucket)
            })
            .collect();
        RateLimiter { buckets }
    }

    /// Whether `tool` may be called at `now`; when it may, a token is taken.
    /// Tools without a limit are always allowed.
    pub fn check(&self, tool: &str, now: Instant) -> bool {
        let Some(bucket) = self.buckets.get(tool) else {
            return true;
        };
        let mut state = bucket.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last {
            None => state.last = Some(now),
            Some(last) if now > last => {
                let elapsed = now.duration_since(last).as_secs_f64();
                state.tokens = (state.tokens + elapsed * bucket.per_second).min(bucket.burst);
                state.last = Some(now);
            }
            // `now` at or before the last refill: nothing to add.
            Some(_) => {}
        }
        if state.tokens + TOKEN_EPSILON >= 1.0 {
            state.tokens = (state.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// Gives back the token a [`RateLimiter::check`] of `tool` took, for a
    /// decision that was not carried out (its record did not commit, or
    /// another rule refused the call after the check): only a call that runs
    /// spends a token. Never above `burst`.
    pub fn refund(&self, tool: &str) {
        let Some(bucket) = self.buckets.get(tool) else {
            return;
        };
        let mut state = bucket.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tokens = (state.tokens + 1.0).min(bucket.burst);
    }

    /// Whether `tool` has a rate limit.
    pub fn is_limited(&self, tool: &str) -> bool {
        self.buckets.contains_key(tool)
    }
}

#[cfg(test)]
mod tests;

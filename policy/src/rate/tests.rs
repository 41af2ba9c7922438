#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

/// `(tool, per_second, burst)`.
type Limit<'a> = (&'a str, f64, u32);
/// `(tool, offset from t0 in ms, expected)`.
type Step<'a> = (&'a str, u64, bool);

fn limiter(limits: &[Limit<'_>]) -> RateLimiter {
    let map = limits
        .iter()
        .map(|&(tool, per_second, burst)| (tool.to_owned(), RateLimit { per_second, burst }))
        .collect();
    RateLimiter::new(&map)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `(tool, offset from t0 in ms, expected)` steps in order.
fn run(limiter: &RateLimiter, steps: &[Step<'_>]) {
    let t0 = Instant::now();
    for (i, &(tool, at, want)) in steps.iter().enumerate() {
        assert_eq!(
            limiter.check(tool, t0 + ms(at)),
            want,
            "step {i}: {tool} at {at} ms"
        );
    }
}

#[test]
fn token_bucket_table() {
    let cases: Vec<(&str, Vec<Limit>, Vec<Step>)> = vec![
        (
            "burst available at start, then denied",
            vec![("fetch", 1.0, 3)],
            vec![
                ("fetch", 0, true),
                ("fetch", 0, true),
                ("fetch", 0, true),
                ("fetch", 0, false),
            ],
        ),
        (
            "refills at per_second",
            vec![("fetch", 10.0, 1)],
            vec![
                ("fetch", 0, true),
                ("fetch", 50, false),
                ("fetch", 100, true),
                ("fetch", 150, false),
                ("fetch", 200, true),
            ],
        ),
        (
            "partial refills add up",
            vec![("fetch", 10.0, 1)],
            vec![
                ("fetch", 0, true),
                ("fetch", 30, false),
                ("fetch", 60, false),
                ("fetch", 90, false),
                ("fetch", 100, true),
            ],
        ),
        (
            "never above burst",
            vec![("fetch", 10.0, 2)],
            vec![
                ("fetch", 10_000, true),
                ("fetch", 10_000, true),
                ("fetch", 10_000, false),
                ("fetch", 20_000, true),
                ("fetch", 20_000, true),
                ("fetch", 20_000, false),
            ],
        ),
        (
            "slow refill",
            vec![("exec", 0.5, 1)],
            vec![
                ("exec", 0, true),
                ("exec", 1_000, false),
                ("exec", 2_000, true),
            ],
        ),
        (
            "time going backwards adds nothing",
            vec![("fetch", 1.0, 1)],
            vec![
                ("fetch", 5_000, true),
                ("fetch", 0, false),
                ("fetch", 5_500, false),
                ("fetch", 6_000, true),
            ],
        ),
        (
            "tools without a limit are always allowed",
            vec![("fetch", 1.0, 1)],
            vec![
                ("read_file", 0, true),
                ("read_file", 0, true),
                ("read_file", 0, true),
            ],
        ),
        (
            "buckets are per tool",
            vec![("fetch", 1.0, 1), ("exec", 1.0, 1)],
            vec![
                ("fetch", 0, true),
                ("fetch", 0, false),
                ("exec", 0, true),
                ("exec", 0, false),
            ],
        ),
        (
            "tool names are exact",
            vec![("fetch", 1.0, 1)],
            vec![("fetch", 0, true), ("Fetch", 0, true), ("fetch", 0, false)],
        ),
        (
            "no refill for an invalid rate",
            vec![("fetch", f64::NAN, 1)],
            vec![("fetch", 0, true), ("fetch", 100_000, false)],
        ),
    ];
    for (name, limits, steps) in cases {
        eprintln!("case: {name}");
        run(&limiter(&limits), &steps);
    }
}

#[test]
fn empty_limiter_allows_everything() {
    let limiter = RateLimiter::default();
    let now = Instant::now();
    for _ in 0..100 {
        assert!(limiter.check("anything", now));
    }
    assert!(!limiter.is_limited("anything"));
    assert!(RateLimiter::new(&BTreeMap::new()).check("x", now));
}

#[test]
fn is_limited() {
    let limiter = limiter(&[("fetch", 1.0, 1)]);
    assert!(limiter.is_limited("fetch"));
    assert!(!limiter.is_limited("exec"));
}

#[test]
fn sustained_rate_matches_per_second() {
    // 100 checks a second for 10 s against 5/s with burst 5: 5 + 50 allowed.
    let limiter = limiter(&[("fetch", 5.0, 5)]);
    let t0 = Instant::now();
    let allowed = (0..1000u64)
        .filter(|&i| limiter.check("fetch", t0 + ms(i * 10)))
        .count();
    assert!((54..=55).contains(&allowed), "allowed {allowed}");
}

#[test]
fn shared_across_threads() {
    let limiter = limiter(&[("fetch", 1.0, 10)]);
    let now = Instant::now();
    let allowed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..10).filter(|_| limiter.check("fetch", now)).count()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(allowed, 10);
}

#[test]
fn limiter_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RateLimiter>();
}

#[test]
fn a_refund_gives_back_one_token_never_above_the_burst() {
    let l = limiter(&[("read", 0.0, 2)]);
    let t0 = Instant::now();
    assert!(l.check("read", t0));
    assert!(l.check("read", t0));
    assert!(!l.check("read", t0));
    l.refund("read");
    assert!(l.check("read", t0), "the refunded token");
    assert!(!l.check("read", t0));
    // A full bucket stays at its burst.
    let full = limiter(&[("read", 0.0, 1)]);
    full.refund("read");
    full.refund("read");
    assert!(full.check("read", t0));
    assert!(!full.check("read", t0));
    // An unlimited tool: nothing to refund.
    full.refund("other");
    assert!(full.check("other", t0));
}

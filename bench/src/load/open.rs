//! The open loop: requests due at a fixed rate whatever the answers do,
//! latency measured from each request's intended send time.
//!
//! A clock thread (the load runtime's blocking pool) sleeps until each
//! request is due — `std::thread::sleep`, whose timer is precise to tens of
//! microseconds, where tokio's timer ticks in milliseconds — and spawns the
//! request as a task. The task takes a free connection from the pool (a
//! fair semaphore of `max_connections` permits: a request due while all are
//! busy waits its turn), opening one if none is idle, sends, reads the
//! answer whole and puts the connection back. Its latency runs from the
//! moment it was due, so the clock's lateness, waits for a connection and
//! connects are all in it; [`OpenReport::send_lag`] says how much of it was
//! that. A request without its answer by `due + request_timeout` is a
//! `timeout` failure and its connection is dropped.
//!
//! The pool's connections are the closed loop's [`Link`]s, one request in
//! flight each; idle connections are reused most recently used first, so a light load
//! keeps few of them busy. Sizing the pool well above `rate × latency`
//! keeps it from being the bottleneck.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use super::{LatencySummary, Link, LoadReport, Recorder, Workload, histogram, nanos};

/// Requests due below this offset from the rounded count are not counted
/// twice: `0.5 s × 1000/s` is 500 requests, not 501 from a rounding error.
const COUNT_TOLERANCE: f64 = 1e-6;

/// An open-loop run: a rate, a pool, and for how long.
#[derive(Debug, Clone)]
pub struct OpenLoop {
    /// Requests per second, all connections together.
    pub rate: f64,
    /// Most connections open at once, each carrying one request at a time.
    pub max_connections: usize,
    /// Requests due before this are sent but not recorded.
    pub warmup: Duration,
    /// Requests are due until `warmup + duration`.
    pub duration: Duration,
    /// Longest time from a request's intended send time to its whole
    /// answer; past it the request is a `timeout` failure.
    pub request_timeout: Duration,
}

/// The outcome of an open-loop run.
#[derive(Debug, Clone, Serialize)]
pub struct OpenReport {
    /// The rate asked for, requests/s.
    pub target_rps: f64,
    /// Recorded requests that were due (after the warm-up).
    pub due: u64,
    /// Latency from each request's intended send time; `throughput_rps` is
    /// the rate achieved; `connections` the connections opened.
    pub report: LoadReport,
    /// From a request's intended send time until it was handed to its
    /// connection (successful requests): the clock's lateness, the task's
    /// wait for a worker thread and for a free connection, a connect.
    pub send_lag: LatencySummary,
    /// Requests (warm-up included) that found all `max_connections` busy and
    /// waited for one: if not 0, the pool was a bottleneck at times.
    pub waited_for_connection: u64,
    /// From a request's intended send time until the clock thread spawned
    /// it (all requests): the sleep's lateness, and the clock thread's own
    /// wait for a core.
    pub clock_lag: LatencySummary,
}

/// When each request of an open-loop run is due: request `i` at `i / rate`
/// seconds after the start. Those due before the warm-up's end are not
/// recorded; none is due at or after `warmup + duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timetable {
    rate: f64,
    warmup_requests: u64,
    total_requests: u64,
}

impl Timetable {
    /// The timetable of `rate` requests/s; no requests at all unless the
    /// rate is positive and finite.
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Timetable {
        let valid = rate.is_finite() && rate > 0.0;
        let count = |span: Duration| if valid { due_before(rate, span) } else { 0 };
        Timetable {
            rate,
            warmup_requests: count(warmup),
            total_requests: count(warmup + duration),
        }
    }

    /// Requests sent, warm-up included.
    pub fn total(&self) -> u64 {
        self.total_requests
    }

    /// Requests recorded.
    pub fn recorded_requests(&self) -> u64 {
        self.total_requests - self.warmup_requests
    }

    /// Whether request `i` is recorded.
    pub fn is_recorded(&self, i: u64) -> bool {
        i >= self.warmup_requests
    }

    /// When request `i` is due, from the start (to the nanosecond).
    pub fn due(&self, i: u64) -> Duration {
        if self.total_requests == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64)
    }
}

/// How many of the times `0, 1/rate, 2/rate, …` fall before `span`:
/// `⌈span × rate⌉`.
fn due_before(rate: f64, span: Duration) -> u64 {
    (span.as_secs_f64() * rate - COUNT_TOLERANCE)
        .ceil()
        .max(0.0) as u64
}

impl OpenLoop {
    /// Runs against `addr` on the current runtime and reports.
    pub async fn run(&self, addr: SocketAddr, workload: Arc<dyn Workload>) -> OpenReport {
        let timetable = Timetable::new(self.rate, self.warmup, self.duration);
        let pool = Arc::new(Pool::new(addr, self.max_connections.max(1)));
        let runtime = tokio::runtime::Handle::current();
        let start = Instant::now();
        let measure_from = start + self.warmup;
        let timeout = self.request_timeout;
        let clock_pool = Arc::clone(&pool);
        let clock = tokio::task::spawn_blocking(move || {
            (0..timetable.total())
                .map(|i| {
                    let due = start + timetable.due(i);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let spawned = Instant::now();
                    let (pool, workload) = (Arc::clone(&clock_pool), Arc::clone(&workload));
                    (
                        spawned.saturating_duration_since(due),
                        runtime.spawn(send_one(pool, workload, due, timeout)),
                    )
                })
                .collect::<Vec<_>>()
        });
        let mut total = Recorder::new();
        let mut lag = histogram();
        let mut clock_lag = histogram();
        let tasks = clock.await.unwrap_or_else(|_| {
            total.fail("clock_panicked");
            Vec::new()
        });
        for (i, (late, task)) in (0u64..).zip(tasks) {
            let sent = task.await;
            if !timetable.is_recorded(i) {
                continue;
            }
            clock_lag.saturating_record(nanos(late));
            let Ok(sent) = sent else {
                total.fail("task_panicked");
                continue;
            };
            match sent.outcome {
                Ok(()) => {
                    total.record(sent.done.saturating_duration_since(sent.due));
                    lag.saturating_record(nanos(
                        sent.handed_over.saturating_duration_since(sent.due),
                    ));
                }
                Err(label) => total.fail(label),
            }
            total.last_done = total.last_done.max(Some(sent.done));
        }
        let opened = pool.opened.load(Ordering::Relaxed);
        let waited_for_connection = pool.waits.load(Ordering::Relaxed);
        OpenReport {
            target_rps: self.rate,
            due: timetable.recorded_requests(),
            report: total.report(opened, measure_from),
            send_lag: LatencySummary::of(&lag),
            waited_for_connection,
            clock_lag: LatencySummary::of(&clock_lag),
        }
    }
}

/// What became of one request.
#[derive(Debug)]
struct Sent {
    outcome: Result<(), &'static str>,
    /// When it was due, handed to a connection, and done (answered, failed
    /// or timed out).
    due: Instant,
    handed_over: Instant,
    done: Instant,
}

/// Sends one request due at `due` on a pooled connection.
async fn send_one(
    pool: Arc<Pool>,
    workload: Arc<dyn Workload>,
    due: Instant,
    timeout: Duration,
) -> Sent {
    let deadline = tokio::time::Instant::from_std(due + timeout);
    let attempt = tokio::time::timeout_at(deadline, async {
        // Held until the connection is back in the pool, so that a waiting
        // request finds it there rather than opening another.
        let _slot = match pool.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                pool.waits.fetch_add(1, Ordering::Relaxed);
                pool.slots.acquire().await.map_err(|_| "pool_closed")?
            }
        };
        let mut conn = match pool.take_idle() {
            Some(conn) => conn,
            None => pool.open().await?,
        };
        let seq = conn.next_seq;
        conn.next_seq += 1;
        let request = workload.request(conn.index, seq);
        let handed_over = Instant::now();
        let answer = conn.link.send(request).await?;
        let done = Instant::now();
        let index = conn.index;
        pool.put_idle(conn);
        Ok::<_, &'static str>((answer, index, seq, handed_over, done))
    })
    .await;
    let failed = |label| Sent {
        outcome: Err(label),
        due,
        handed_over: due,
        done: Instant::now(),
    };
    match attempt {
        Ok(Ok((answer, conn, seq, handed_over, done))) => Sent {
            outcome: workload.check(conn, seq, &answer),
            due,
            handed_over,
            done,
        },
        Ok(Err(label)) => failed(label),
        Err(_) => failed("timeout"),
    }
}

/// The open loop's connections.
#[derive(Debug)]
struct Pool {
    addr: SocketAddr,
    /// Connections with no request in flight, the most recently used last.
    /// Locked by request tasks for one push or pop, never across an
    /// `.await`.
    idle: Mutex<Vec<Conn>>,
    /// One permit per connection that may carry a request.
    slots: Semaphore,
    /// Connections opened so far; the next one's index.
    opened: AtomicUsize,
    /// Requests that found every connection busy and waited.
    waits: AtomicU64,
}

/// A pooled connection: its index (the workload's `conn`) and the number
/// of its next request (the workload's `seq`).
#[derive(Debug)]
struct Conn {
    index: usize,
    next_seq: u64,
    link: Link,
}

impl Pool {
    fn new(addr: SocketAddr, max_connections: usize) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::with_capacity(max_connections)),
            slots: Semaphore::new(max_connections),
            opened: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, conn: Conn) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    async fn open(&self) -> Result<Conn, &'static str> {
        let link = Link::open(self.addr).await?;
        Ok(Conn {
            index: self.opened.fetch_add(1, Ordering::Relaxed),
            next_seq: 0,
            link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_timetable_counts_requests_due_before_each_end() {
        let t = Timetable::new(1000.0, 500 * MS, 3000 * MS);
        assert_eq!(t.total(), 3500);
        assert_eq!(t.recorded_requests(), 3000);
        assert!(!t.is_recorded(499));
        assert!(t.is_recorded(500));
        assert_eq!(t.due(0), Duration::ZERO);
        assert_eq!(t.due(500), 500 * MS);
        assert_eq!(t.due(3499), 3499 * MS);

        // 2.5 s at 3/s: due at 0, ⅓, ⅔, …, 7/3 s — eight requests.
        let t = Timetable::new(3.0, Duration::ZERO, 2500 * MS);
        assert_eq!((t.total(), t.recorded_requests()), (8, 8));
        assert!(t.due(7) < 2500 * MS);

        // 0.1 s × 0.3/s = 0.03: one request, at 0.
        let t = Timetable::new(0.3, Duration::ZERO, 100 * MS);
        assert_eq!(t.total(), 1);
    }

    #[test]
    fn no_requests_without_a_positive_rate() {
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let t = Timetable::new(rate, MS, 1000 * MS);
            assert_eq!(t.total(), 0, "{rate}");
            assert_eq!(t.due(3), Duration::ZERO);
        }
    }

    #[test]
    fn every_recorded_request_is_due_within_the_recorded_span() {
        for (rate, warmup, duration) in [(1000.0, 300, 1500), (2500.0, 500, 3000), (7.0, 0, 999)] {
            let (warmup, duration) = (warmup * MS, duration * MS);
            let t = Timetable::new(rate, warmup, duration);
            for i in 0..t.total() {
                let due = t.due(i);
                assert_eq!(t.is_recorded(i), due >= warmup, "{rate} {i}");
                assert!(due < warmup + duration, "{rate} {i}");
            }
            assert!(t.due(t.total()) >= warmup + duration - Duration::from_nanos(1));
        }
    }
}

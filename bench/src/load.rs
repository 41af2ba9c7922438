//! An HTTP/1.1 load generator with HDR latency histograms, in two modes.
//!
//! - **Closed loop** ([`ClosedLoop`]): N connections, each sending its next
//!   request as soon as the previous answer has been read whole, for a
//!   duration and/or a number of requests. Each connection is its own
//!   `hyper::client::conn::http1` connection, not a pool, so "32
//!   connections" means exactly 32 sockets, each with at most one request in
//!   flight. It measures the service time seen by a client that waits for
//!   each answer; it cannot show queueing at a fixed arrival rate (a slow
//!   answer delays the next request instead of piling up behind it).
//! - **Open loop** ([`OpenLoop`], in `load/open.rs`): requests due at a fixed
//!   rate over a pool of such connections, one request in flight on each; a
//!   request due while every connection is busy waits for one. Latency runs
//!   from each request's *intended* send time, so time spent queueing (in
//!   the pool, or behind a slow answer) is counted, not omitted.
//!
//! In both, every answer is checked by the [`Workload`], and the latency of
//! every successful one goes into an HDR histogram (3 significant digits,
//! nanoseconds); a request without its whole answer within the timeout is
//! a `timeout` failure and its connection is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

mod open;

pub use open::{OpenLoop, OpenReport, Timetable};

/// Longest latency the histograms hold (larger values are clamped to it).
const MAX_LATENCY: Duration = Duration::from_secs(60);
/// Significant decimal digits the histograms keep: 0.1 % resolution.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What is sent and what counts as a success. Shared by every connection.
pub trait Workload: Send + Sync + 'static {
    /// Request number `seq` (0, 1, … per connection) on connection `conn`.
    /// Its URI is sent as given: use origin form (`/path`) and set `Host`.
    fn request(&self, conn: usize, seq: u64) -> Request<Full<Bytes>>;

    /// `Ok` when the answer is a success; otherwise a short, fixed failure
    /// label (it becomes a key of [`LoadReport::failures`]).
    fn check(&self, conn: usize, seq: u64, answer: &Answer) -> Result<(), &'static str>;
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A closed-loop run: how many connections and for how long.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    pub connections: usize,
    /// Time spent sending unrecorded requests first (connections opened,
    /// pools and caches warm).
    pub warmup: Duration,
    /// Recording stops after this long (no new request is started).
    pub duration: Duration,
    /// Recording also stops after this many requests, all connections
    /// together; `None` for no limit.
    pub requests: Option<u64>,
    /// Longest wait for one answer; past it the request is a `timeout`
    /// failure and its connection is replaced.
    pub request_timeout: Duration,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub connections: usize,
    /// From the end of the warm-up to the last recorded answer.
    pub elapsed_s: f64,
    /// Successful answers recorded.
    pub ok: u64,
    /// Failed requests by label (transport failures and the workload's own).
    pub failures: BTreeMap<String, u64>,
    /// `ok / elapsed_s`.
    pub throughput_rps: f64,
    /// Latency of the successful answers.
    pub latency: LatencySummary,
}

impl LoadReport {
    /// All failures, whatever the label.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// The summary of a histogram of nanoseconds (all zero when empty).
    pub fn of(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            min_us: us(histogram.min()),
            mean_us: histogram.mean() / 1_000.0,
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
        }
    }
}

/// An empty latency histogram in nanoseconds, up to [`MAX_LATENCY`].
fn histogram() -> Histogram<u64> {
    let max_ns = u64::try_from(MAX_LATENCY.as_nanos()).unwrap_or(u64::MAX);
    Histogram::new_with_bounds(1, max_ns, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// `d` in nanoseconds, at least 1 (the histograms' lowest value).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// The shared schedule of a run.
#[derive(Debug)]
struct Schedule {
    /// Requests started before this are not recorded.
    measure_from: Instant,
    /// No request is started at or after this.
    end: Instant,
    limit: Option<u64>,
    /// Recorded requests started so far, for `limit`.
    started: AtomicU64,
    request_timeout: Duration,
}

impl Schedule {
    /// Whether a request may start now, and whether it is recorded. A run
    /// records at least one request, however late its first connection gets
    /// going: a machine busy enough to miss the whole window would otherwise
    /// report nothing, and a short run's outcome would depend on timing.
    fn next(&self) -> Option<bool> {
        let now = Instant::now();
        if now >= self.end {
            let first = self
                .started
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
            return first.is_ok().then_some(true);
        }
        if now < self.measure_from {
            return Some(false);
        }
        let started = self.started.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(limit) if started >= limit => None,
            _ => Some(true),
        }
    }
}

/// What one connection recorded.
#[derive(Debug)]
struct Recorder {
    latency: Histogram<u64>,
    failures: BTreeMap<&'static str, u64>,
    /// When the last recorded request finished.
    last_done: Option<Instant>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            latency: histogram(),
            failures: BTreeMap::new(),
            last_done: None,
        }
    }

    /// Records one successful answer's latency.
    fn record(&mut self, latency: Duration) {
        self.latency.saturating_record(nanos(latency));
    }

    fn fail(&mut self, label: &'static str) {
        *self.failures.entry(label).or_insert(0) += 1;
    }

    /// The report of a run whose recording began at `measure_from`.
    fn report(self, connections: usize, measure_from: Instant) -> LoadReport {
        let elapsed = self.last_done.map_or(Duration::ZERO, |done| {
            done.saturating_duration_since(measure_from)
        });
        let ok = self.latency.len();
        let elapsed_s = elapsed.as_secs_f64();
        LoadReport {
            connections,
            elapsed_s,
            ok,
            failures: self
                .failures
                .into_iter()
                .map(|(label, n)| (label.to_owned(), n))
                .collect(),
            throughput_rps: if elapsed_s > 0.0 {
                ok as f64 / elapsed_s
            } else {
                0.0
            },
            latency: LatencySummary::of(&self.latency),
        }
    }
}

impl ClosedLoop {
    /// Runs against `addr` on the current runtime and reports.
    pub async fn run(&self, addr: SocketAddr, workload: Arc<dyn Workload>) -> LoadReport {
        let start = Instant::now();
        let measure_from = start + self.warmup;
        let schedule = Arc::new(Schedule {
            measure_from,
            end: measure_from + self.duration,
            limit: self.requests,
            started: AtomicU64::new(0),
            request_timeout: self.request_timeout,
        });
        let mut workers = JoinSet::new();
        for conn in 0..self.connections {
            let schedule = Arc::clone(&schedule);
            let workload = Arc::clone(&workload);
            workers.spawn(drive(conn, addr, workload, schedule));
        }
        let mut total = Recorder::new();
        while let Some(joined) = workers.join_next().await {
            let Ok(recorder) = joined else {
                total.fail("worker_panicked");
                continue;
            };
            // Same bounds on both sides: adding cannot fail.
            let _ = total.latency.add(&recorder.latency);
            for (label, n) in recorder.failures {
                *total.failures.entry(label).or_insert(0) += n;
            }
            total.last_done = total.last_done.max(recorder.last_done);
        }
        total.report(self.connections, measure_from)
    }
}

/// One connection's loop. A transport failure or timeout drops the
/// connection and the next request opens a new one; a failed connect ends
/// the loop (it is counted, and retrying at once would only spin).
async fn drive(
    conn: usize,
    addr: SocketAddr,
    workload: Arc<dyn Workload>,
    schedule: Arc<Schedule>,
) -> Recorder {
    let mut recorder = Recorder::new();
    let mut link: Option<Link> = None;
    let mut seq = 0u64;
    while let Some(recorded) = schedule.next() {
        let current = match link.as_mut() {
            Some(current) => current,
            None => match Link::open(addr).await {
                Ok(opened) => link.insert(opened),
                Err(label) => {
                    recorder.fail(label);
                    break;
                }
            },
        };
        let request = workload.request(conn, seq);
        let started = Instant::now();
        let sent = tokio::time::timeout(schedule.request_timeout, current.send(request)).await;
        let done = Instant::now();
        let outcome = match sent {
            Ok(Ok(answer)) => workload.check(conn, seq, &answer),
            Ok(Err(label)) => {
                link = None;
                Err(label)
            }
            Err(_) => {
                link = None;
                Err("timeout")
            }
        };
        seq += 1;
        if !recorded {
            continue;
        }
        match outcome {
            Ok(()) => recorder.record(done - started),
            Err(label) => recorder.fail(label),
        }
        recorder.last_done = Some(done);
    }
    recorder
}

/// One HTTP/1.1 connection; its driver runs on a task of its own.
#[derive(Debug)]
pub struct Link {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Link {
    /// Connects (TCP_NODELAY: small requests must not wait for a full segment).
    pub async fn open(addr: SocketAddr) -> Result<Link, &'static str> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect_timeout")?
            .map_err(|_| "connect")?;
        stream.set_nodelay(true).map_err(|_| "connect")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "handshake")?;
        // Ends when the connection closes or `sender` is dropped; its error
        // shows up on the next `send` as well.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Link { sender })
    }

    /// Sends one request and reads its answer whole.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, &'static str> {
        self.sender.ready().await.map_err(|_| "connection_closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|_| "transport")?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|_| "body")?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(measure_from: Instant, end: Instant, limit: Option<u64>) -> Schedule {
        Schedule {
            measure_from,
            end,
            limit,
            started: AtomicU64::new(0),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_window_missed_entirely_still_records_one_request() {
        let past = Instant::now();
        let late = schedule(past, past, None);
        assert_eq!(late.next(), Some(true));
        assert_eq!(late.next(), None);
        assert_eq!(late.next(), None);
    }

    #[test]
    fn the_request_limit_counts_recorded_requests() {
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        let limited = schedule(now, far, Some(2));
        assert_eq!(limited.next(), Some(true));
        assert_eq!(limited.next(), Some(true));
        assert_eq!(limited.next(), None);
        // Warm-up requests are not recorded and not counted.
        let warming = schedule(far, far + Duration::from_secs(1), Some(1));
        assert_eq!(warming.next(), Some(false));
        assert_eq!(warming.started.load(Ordering::Relaxed), 0);
    }
}

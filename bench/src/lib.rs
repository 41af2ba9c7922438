//! # aegis-bench
//!
//! Shared set-up for the benchmarks in `benches/`: payloads shaped like the
//! sidecar's real traffic, ledgers opened in a temporary directory, and the
//! concurrent appenders that fill them. It holds no timing and no criterion:
//! the benches decide what is measured; this crate only builds inputs. The
//! one exception is the end-to-end load generator ([`load`]), which times
//! whole requests; `src/bin/mcp-e2e.rs` drives it through the sidecar,
//! `src/bin/scenarios.rs` through every route of [`scenarios`] (the sidecar
//! three ways, a [`bare_proxy`], directly), and `src/bin/egress-tunnel.rs`
//! times the forward proxy's tunnels ([`egress`]).
//!
//! What it must never do: be a dependency of the sidecar itself, or assert on
//! a timing. Measured numbers live in `bench/README.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aegis_ledger::{
    AppendError, AppendRequest, EventType, Ledger, LedgerConfig, LedgerHandle, LedgerObserver,
    NewEvent, NoObserver, Payload, StoreError, Synchronous,
};
use tokio::task::JoinSet;

/// Inputs for the policy benches: the realistic manifest, session, cases and
/// their Rego `data`/`input` documents.
pub mod policy;

/// An HTTP/1.1 load generator (closed and open loop) with HDR latency
/// histograms.
pub mod load;

/// The MCP end-to-end bench's stack (tool servers + sidecar) and workload.
pub mod mcp;

/// The MCP end-to-end comparison: round plan, medians, ratios, table.
pub mod e2e;

/// Where a sidecar run's time went, from the sidecar's own metrics.
pub mod stages;

/// CPU time by component (thread name) and for the whole machine.
pub mod cpu;

/// The egress bench's sink/echo server, manifest and direct/`CONNECT` client.
pub mod egress;

/// A minimal forwarding proxy: the floor for one extra hop.
pub mod bare_proxy;

/// Every end-to-end scenario in one run: plan, stack, medians, tables.
pub mod scenarios;

/// Tenant of every benchmark envelope.
pub const TENANT: &str = "bench-tenant";

/// User of every benchmark envelope.
pub const USER: &str = "bench-user";

/// A fixed timestamp: the hash covers it, and a fixed value keeps runs comparable.
pub const TS_UNIX_MS: i64 = 1_795_000_000_000;

/// Size the append benches aim their payloads at, in bytes of JSON text.
pub const TOOL_CALL_PAYLOAD_LEN: usize = 200;

/// The JSON text of a realistic `TOOL_CALL_PROPOSED` payload for call `n`:
/// a `read_file` call with a handful of arguments, close to
/// [`TOOL_CALL_PAYLOAD_LEN`] bytes whatever `n` (a short `reason` pads it).
pub fn tool_call_text(n: u64) -> String {
    let mut text = format!(
        r#"{{"tool_name":"read_file","call_id":"c-{n}","args":{{"path":"/workspace/data-{n}.csv","encoding":"utf-8","offset":0,"max_bytes":65536}},"reason":""#
    );
    let closing = r#""}"#;
    while text.len() + closing.len() < TOOL_CALL_PAYLOAD_LEN {
        text.push('.');
    }
    text.push_str(closing);
    text
}

/// [`tool_call_text`] as a payload, parsed and canonicalised.
pub fn tool_call_payload(n: u64) -> Payload {
    Payload::from_text(&tool_call_text(n)).expect("tool_call_text builds valid JSON")
}

/// The JSON text of a `TOOL_RESULT`-like payload of exactly `len` bytes (at
/// least ~60): a tool name and call id, then as many small rows as fit
/// (objects with a string, an integer and a fraction, so canonicalisation
/// has members to sort and numbers to format), padded with a `note` string.
pub fn sized_payload_text(len: usize) -> String {
    let head = r#"{"tool_name":"query_db","call_id":"c-1","rows":["#;
    let tail_open = r#"],"note":""#;
    let tail_close = r#""}"#;
    let fixed = head.len() + tail_open.len() + tail_close.len();
    let mut rows = String::new();
    let mut row = String::new();
    for i in 0u64.. {
        row.clear();
        if i > 0 {
            row.push(',');
        }
        // Member names deliberately out of canonical order.
        let _ = write!(row, r#"{{"value":{}.25,"name":"row-{i}","id":{i}}}"#, i * 3);
        if fixed + rows.len() + row.len() > len {
            break;
        }
        rows.push_str(&row);
    }
    let mut text = String::with_capacity(len.max(fixed));
    text.push_str(head);
    text.push_str(&rows);
    text.push_str(tail_open);
    while text.len() + tail_close.len() < len {
        text.push('x');
    }
    text.push_str(tail_close);
    text
}

/// A `TOOL_CALL_PROPOSED` event for `session_id`.
pub fn new_event(session_id: &str, payload: Payload) -> NewEvent {
    NewEvent {
        tenant_id: TENANT.to_owned(),
        user_id: USER.to_owned(),
        session_id: session_id.to_owned(),
        ts_unix_ms: TS_UNIX_MS,
        event_type: EventType::ToolCallProposed,
        payload,
    }
}

/// The id of appender `k`'s session.
pub fn session_id(k: usize) -> String {
    format!("bench-session-{k:04}")
}

/// Opens a new ledger at `dir/ledger.db`, with default queue and batch sizes.
pub fn open_ledger(dir: &Path, synchronous: Synchronous) -> Result<Ledger, StoreError> {
    open_observed(dir, synchronous, Arc::new(NoObserver))
}

/// [`open_ledger`] with an observer of its commits.
pub fn open_observed(
    dir: &Path,
    synchronous: Synchronous,
    observer: Arc<dyn LedgerObserver>,
) -> Result<Ledger, StoreError> {
    open_configured(
        LedgerConfig {
            synchronous,
            ..LedgerConfig::new(dir.join("ledger.db"))
        },
        observer,
    )
}

/// Opens a new ledger with `config`, observed by `observer`.
pub fn open_configured(
    config: LedgerConfig,
    observer: Arc<dyn LedgerObserver>,
) -> Result<Ledger, StoreError> {
    Ledger::builder(config).observer(observer).open()
}

/// How many of `total` appends appender `k` of `appenders` makes: an even
/// split, the remainder going to the first ones.
pub fn share(total: usize, appenders: usize, k: usize) -> usize {
    total / appenders + usize::from(k < total % appenders)
}

/// `total` `TOOL_CALL_PROPOSED` appends split over `appenders`: list `k`
/// goes to [`session_id`]`(k)`. Built ahead so that payload parsing and
/// canonicalisation stay out of a timed append loop.
pub fn tool_call_requests(appenders: usize, total: usize) -> Vec<Vec<AppendRequest>> {
    tool_call_requests_from(0, appenders, total)
}

/// [`tool_call_requests`] to sessions `first_session..first_session + appenders`.
pub fn tool_call_requests_from(
    first_session: usize,
    appenders: usize,
    total: usize,
) -> Vec<Vec<AppendRequest>> {
    let mut next_call = 0u64;
    (0..appenders)
        .map(|k| {
            let session = session_id(first_session + k);
            (0..share(total, appenders, k))
                .map(|_| {
                    next_call += 1;
                    AppendRequest::at_head(new_event(&session, tool_call_payload(next_call)))
                })
                .collect()
        })
        .collect()
}

/// One task per list of `appends`, each appending its requests one after
/// another and waiting for each commit. Returns when every append is
/// committed; the first error ends it.
pub async fn append_concurrently(
    handle: &LedgerHandle,
    appends: Vec<Vec<AppendRequest>>,
) -> Result<(), AppendError> {
    let mut tasks = JoinSet::new();
    for requests in appends {
        let handle = handle.clone();
        tasks.spawn(async move {
            for request in requests {
                handle.append(request).await?;
            }
            Ok::<(), AppendError>(())
        });
    }
    join_all(tasks).await
}

/// Counts group commits and the envelopes they held, to tell how well
/// concurrent appends are batched.
#[derive(Debug, Default)]
pub struct CommitCounter {
    commits: AtomicU64,
    envelopes: AtomicU64,
}

impl CommitCounter {
    /// `(commits, envelopes)` since the last call, and resets both.
    pub fn take(&self) -> (u64, u64) {
        (
            self.commits.swap(0, Ordering::Relaxed),
            self.envelopes.swap(0, Ordering::Relaxed),
        )
    }
}

impl LedgerObserver for CommitCounter {
    fn committed(&self, event_types: &[EventType], _duration: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.envelopes
            .fetch_add(event_types.len() as u64, Ordering::Relaxed);
    }
}

/// Fills a ledger with `per_session` envelopes in each of `sessions`
/// sessions ([`session_id`]`(0..sessions)`), using `concurrency` tasks that
/// take appends from a shared counter, so that even a single session is
/// filled through large group commits. The order of envelopes within a
/// session is whatever the writer sequences.
pub async fn fill(
    handle: &LedgerHandle,
    sessions: usize,
    per_session: usize,
    concurrency: usize,
) -> Result<(), AppendError> {
    let total = sessions * per_session;
    let next = Arc::new(AtomicUsize::new(0));
    let ids: Arc<[String]> = (0..sessions).map(session_id).collect();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (handle, next, ids) = (handle.clone(), next.clone(), ids.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), AppendError>(());
                }
                let payload = tool_call_payload(i as u64);
                let event = new_event(&ids[i % ids.len()], payload);
                handle.append(AppendRequest::at_head(event)).await?;
            }
        });
    }
    join_all(tasks).await
}

async fn join_all(mut tasks: JoinSet<Result<(), AppendError>>) -> Result<(), AppendError> {
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => result?,
            Err(e) => return Err(AppendError::Storage(format!("appender task failed: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn tool_call_payloads_are_about_200_bytes() {
        for n in [0, 7, 1_999, 123_456_789] {
            let text = tool_call_text(n);
            assert_eq!(text.len(), TOOL_CALL_PAYLOAD_LEN, "{text}");
            let payload = tool_call_payload(n);
            assert_eq!(payload.tool_name(), Some("read_file"));
        }
    }

    #[test]
    fn sized_payloads_have_the_size_asked_for() {
        for len in [100, 1024, 16 * 1024, 64 * 1024] {
            let text = sized_payload_text(len);
            assert_eq!(text.len(), len);
            assert!(Payload::from_text(&text).is_ok(), "{len}: {text}");
        }
    }

    #[test]
    fn shares_add_up() {
        for (total, appenders) in [(2048, 1), (2048, 8), (2048, 64), (2000, 64), (5, 8)] {
            let sum: usize = (0..appenders).map(|k| share(total, appenders, k)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn appenders_and_fill_record_what_they_say() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let counter = Arc::new(CommitCounter::default());
        let ledger = open_observed(dir.path(), Synchronous::Normal, counter.clone()).unwrap();
        let appends = tool_call_requests(8, 100);
        assert_eq!(appends.iter().map(Vec::len).sum::<usize>(), 100);
        // Hang guards only.
        let guard = std::time::Duration::from_secs(60);
        rt.block_on(async {
            tokio::time::timeout(guard, append_concurrently(&ledger.handle(), appends)).await
        })
        .expect("the appends end")
        .unwrap();
        let (commits, envelopes) = counter.take();
        assert!((1..=100).contains(&commits), "{commits}");
        assert_eq!(envelopes, 100);
        rt.block_on(async { tokio::time::timeout(guard, fill(&ledger.handle(), 3, 10, 4)).await })
            .expect("the fill ends")
            .unwrap();
        let reader = ledger.reader();
        let summary = reader
            .verify_all(None, |r| assert!(r.is_valid(), "{r:?}"))
            .unwrap();
        assert_eq!(summary.sessions, 8);
        assert_eq!(summary.envelopes, 130);
        ledger.close();
    }
}

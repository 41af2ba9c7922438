//! Abuse that costs the abuser nothing, against the real binary: connections
//! that never send a byte (or a few), and a body declared far over the
//! limit. Each listener must keep answering while it goes on and after it,
//! close what holds a slot without asking for anything, refuse what is
//! declared too large before reading it, and give its memory back.

#![allow(clippy::unwrap_used)]
#![allow(
    clippy::print_stdout,
    reason = "the RSS figures are printed for the record"
)]

mod support;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use support::{Api, DEADLINE, Server, block_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Silent connections opened on each listener: the MCP and forward
/// listeners' default cap, four times the admin listeners'.
const SILENT: usize = 1024;

/// The admin listeners' default cap (`admin.max_connections`).
const ADMIN_CAP: usize = 256;

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: abuse-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: true}
permissions:
  tools: [echo]
  net:
    domains: [example.com]
"#;

/// A TCP server that counts the connections it is offered and answers none.
struct CountingUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl CountingUpstream {
    async fn start() -> CountingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        CountingUpstream { addr, connections }
    }
}

/// A sidecar with every listener on: MCP, forward, admin and metrics.
/// `envs` are added (header timeouts, for instance).
fn start(dir: &std::path::Path, upstream: SocketAddr, envs: &[(&str, &str)]) -> Server {
    let manifest = dir.join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let ledger = dir.join("ledger.db");
    let upstream = format!("tools=http://{upstream}/mcp");
    let args: Vec<&OsStr> = [
        OsStr::new("--ledger"),
        ledger.as_os_str(),
        OsStr::new("--manifest"),
        manifest.as_os_str(),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--upstream"),
        OsStr::new(&upstream),
        OsStr::new("--forward-listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--metrics-listen"),
        OsStr::new("127.0.0.1:0"),
    ]
    .to_vec();
    let envs: Vec<(&str, &OsStr)> = envs.iter().map(|(k, v)| (*k, OsStr::new(*v))).collect();
    Server::start(dir, &args, &envs)
}

fn addr_of(server: &Server, listener: &str) -> SocketAddr {
    server.ready[listener]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("ready file has no {listener} address: {}", server.ready))
}

/// One request on a fresh connection (never a pooled one, which would be
/// past its first request already): the status code of the answer.
async fn status_of(addr: SocketAddr, head: &str) -> u16 {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Up to the end of the status line is enough.
        while !answer.contains(&b'\n') {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "{addr}: closed without an answer to {head:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&answer).into_owned();
        line.split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{addr}: not an HTTP answer: {line:?}"))
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{addr}: no answer to {head:?} within {DEADLINE:?}"))
}

fn get(path: &str, addr: SocketAddr) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// Each listener answers a request of its own on a fresh connection.
async fn every_listener_answers(server: &Server) {
    let admin = server.addr;
    assert_eq!(status_of(admin, &get("/healthz", admin)).await, 200);
    let metrics = addr_of(server, "metrics");
    assert_eq!(status_of(metrics, &get("/healthz", metrics)).await, 200);
    // Answered by the sidecar itself: no upstream is named /mcp/nope.
    let mcp = addr_of(server, "mcp");
    let post = format!(
        "POST /mcp/nope HTTP/1.1\r\nHost: {mcp}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n{{}}"
    );
    assert_eq!(status_of(mcp, &post).await, 404);
    // A port the forward proxy does not allow: refused by the sidecar.
    let forward = addr_of(server, "forward");
    let connect = "CONNECT example.com:1 HTTP/1.1\r\nHost: example.com:1\r\n\r\n";
    assert_eq!(status_of(forward, connect).await, 403);
}

/// The value of the one sample of `name` whose labels contain `labels`.
fn sample(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(server: &Server) -> String {
    let (status, body) = Api::new(server.addr).get_text("/metrics").await;
    assert_eq!(status, 200);
    body
}

/// The process's resident set, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The sidecar's RSS once it is at most `back` KiB, or, if it never gets
/// there within [`DEADLINE`], what it is then. Freed pages go back to the
/// system within the allocator's decay time; the scrapes keep the process
/// doing a little meanwhile.
async fn rss_back_to(server: &Server, back: u64) -> u64 {
    let returned = async {
        loop {
            let rss = rss_kib(server.pid());
            if rss <= back {
                return rss;
            }
            scrape(server).await;
            // A poll interval, not a wait for anything in particular.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(DEADLINE, returned)
        .await
        .unwrap_or_else(|_| rss_kib(server.pid()))
}

/// Waits until every listener is back to `open` connections (the
/// sidecar's own view), then returns the scrape.
async fn settled(server: &Server, open: &[(&str, f64)]) -> String {
    let wait = async {
        loop {
            let body = scrape(server).await;
            let now: Vec<f64> = open
                .iter()
                .map(|(l, _)| {
                    sample(
                        &body,
                        "aegis_listener_connections_open",
                        &[&format!("\"{l}\"")],
                    )
                })
                .collect();
            if open.iter().zip(&now).all(|((_, want), got)| got <= want) {
                return body;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("connections still open after {DEADLINE:?}"))
}

#[test]
fn silent_connections_on_every_listener_lock_out_nothing_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    block_on(DEADLINE * 4, async {
        let upstream = CountingUpstream::start().await;
        // Header timeouts far longer than the test: only the cap's rule
        // (the oldest silent connection makes room) can close anything.
        let hour = "3600000";
        let server = start(
            dir.path(),
            upstream.addr,
            &[
                ("AEGIS_MCP_HEADER_TIMEOUT_MS", hour),
                ("AEGIS_ADMIN_HEADER_TIMEOUT_MS", hour),
                ("AEGIS_FORWARD_HEADER_TIMEOUT_MS", hour),
            ],
        );
        every_listener_answers(&server).await;
        let listeners = ["admin", "metrics", "mcp", "forward"];
        // The scrape's own connection is pooled and stays open on admin.
        let baseline_open: Vec<(&str, f64)> = {
            let body = settled(&server, &[]).await;
            listeners
                .iter()
                .map(|l| {
                    let open = sample(
                        &body,
                        "aegis_listener_connections_open",
                        &[&format!("\"{l}\"")],
                    );
                    (*l, open)
                })
                .collect()
        };
        let baseline_rss = rss_kib(server.pid());

        let mut silent = Vec::new();
        for listener in listeners {
            let addr = addr_of(&server, listener);
            for _ in 0..SILENT {
                silent.push((listener, TcpStream::connect(addr).await.unwrap()));
            }
        }
        // While all of them are open (none sent a byte), every listener
        // still answers.
        every_listener_answers(&server).await;
        let during = scrape(&server).await;
        let made_room = |l: &str| {
            sample(
                &during,
                "aegis_listener_connections_closed_total",
                &[&format!("listener=\"{l}\""), "reason=\"made_room\""],
            )
        };
        // 1,024 silent connections on a cap of 256, then the check's own.
        for admin in ["admin", "metrics"] {
            assert!(
                made_room(admin) >= (SILENT - ADMIN_CAP) as f64,
                "{admin}: {} made room\n{during}",
                made_room(admin)
            );
        }
        assert!(made_room("mcp") >= 1.0 && made_room("forward") >= 1.0);
        assert_eq!(
            sample(
                &during,
                "aegis_listener_connections_closed_total",
                &["reason=\"header_timeout\""]
            ),
            0.0
        );
        // The oldest admin connection was closed by the sidecar: it reads EOF.
        let (_, oldest) = silent.iter_mut().find(|(l, _)| *l == "admin").unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(DEADLINE, oldest.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the oldest silent admin connection is still open: {read:?}"
        );

        drop(silent);
        let after = settled(&server, &baseline_open).await;
        every_listener_answers(&server).await;
        let back = (baseline_rss * 11) / 10;
        let after_rss = rss_back_to(&server, back).await;
        assert_eq!(
            upstream.connections.load(Ordering::SeqCst),
            0,
            "nothing reached the upstream"
        );
        println!(
            "RSS: baseline {baseline_rss} KiB, after {SILENT} silent connections on each of 4 listeners {after_rss} KiB"
        );
        assert!(
            after_rss * 10 <= baseline_rss * 11,
            "RSS {after_rss} KiB after the abuse, {baseline_rss} KiB before\n{after}"
        );
        server.terminate();
    });
}

#[test]
fn a_connection_that_sends_no_whole_request_head_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    block_on(DEADLINE * 2, async {
        let upstream = CountingUpstream::start().await;
        let short = "200";
        let server = start(
            dir.path(),
            upstream.addr,
            &[
                ("AEGIS_MCP_HEADER_TIMEOUT_MS", short),
                ("AEGIS_ADMIN_HEADER_TIMEOUT_MS", short),
                ("AEGIS_FORWARD_HEADER_TIMEOUT_MS", short),
            ],
        );
        // Nothing; half an HTTP/2 preface (protocol detection waits for
        // more); half an HTTP/1.1 request head.
        let openings: [&[u8]; 3] = [b"", b"PRI * HTTP/2.0\r\n", b"POST /mcp HTTP/1.1\r\nHost: x"];
        let mut expected = 0.0;
        for listener in ["mcp", "admin", "metrics", "forward"] {
            let addr = addr_of(&server, listener);
            for opening in openings {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(opening).await.unwrap();
                let mut rest = Vec::new();
                let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
                assert!(
                    matches!(read, Ok(Ok(_)) | Ok(Err(_))),
                    "{listener}: {opening:?} still open after {DEADLINE:?}"
                );
                // hyper answers a timed-out HTTP/1.1 head with nothing or a
                // 408; never a response to a request.
                let text = String::from_utf8_lossy(&rest);
                assert!(
                    rest.is_empty() || text.starts_with("HTTP/1.1 408"),
                    "{listener}: {text}"
                );
                expected += 1.0;
            }
        }
        let body = scrape(&server).await;
        let timed_out = sample(
            &body,
            "aegis_listener_connections_closed_total",
            &["reason=\"header_timeout\""],
        );
        // Per listener: the silent connection and the half preface at least
        // (a half HTTP/1.1 head may be hyper's to time out instead).
        let all: f64 = body
            .lines()
            .filter(|l| {
                l.starts_with("aegis_listener_connections_closed_total")
                    && l.contains("reason=\"header_timeout\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            timed_out > 0.0 && all >= expected * 2.0 / 3.0,
            "{all} of {expected}\n{body}"
        );
        // A well-behaved client is still served.
        every_listener_answers(&server).await;
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
        server.terminate();
    });
}

#[test]
fn a_body_declared_over_the_limit_is_refused_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    block_on(DEADLINE, async {
        let upstream = CountingUpstream::start().await;
        let server = start(dir.path(), upstream.addr, &[]);
        let mcp = addr_of(&server, "mcp");
        // Headers only: the body never comes. Waiting for it would end in
        // the body timeout's 408 instead.
        let post = format!(
            "POST /mcp HTTP/1.1\r\nHost: {mcp}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nx-aegis-session-id: s-big\r\n\
             Content-Length: 1000000000000\r\n\r\n"
        );
        assert_eq!(status_of(mcp, &post).await, 413);
        let admin = server.addr;
        let append = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000000000\r\n\r\n"
        );
        assert_eq!(status_of(admin, &append).await, 413);
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
        let events = Api::new(admin)
            .get("/v1/events?tenant_id=default&session_id=s-big")
            .await;
        assert_eq!(
            events["Events"].as_array().map(Vec::len),
            Some(0),
            "{events}"
        );
        server.terminate();
    });
}

/// What one call of the flood got.
#[derive(Debug, PartialEq, Eq)]
enum Flooded {
    /// Refused at once: its session had its most calls queued (a JSON-RPC
    /// error, as every per-call failure is).
    Busy,
    /// Decided and run.
    Ran,
    /// Decided and denied by policy.
    Denied,
}

fn classify(answer: &str) -> Flooded {
    if answer.contains("max_queued_per_session") {
        assert!(answer.contains("\"error\""), "{answer}");
        Flooded::Busy
    } else if answer.contains("\"aegis/decision\"") && answer.contains("\"outcome\":\"deny\"") {
        Flooded::Denied
    } else {
        assert!(answer.contains("\"isError\":false"), "{answer}");
        Flooded::Ran
    }
}

/// Calls of one session that may decide or wait to, in the flood test.
const QUEUED_PER_SESSION: usize = 4;

/// One `tools/call` of `session` on a fresh connection: the status and the
/// answer's text.
async fn tool_call(mcp: SocketAddr, session: &str, n: usize) -> (u16, String) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{n}"}}}}}}"#
    );
    let head = format!(
        "POST /mcp/tools HTTP/1.1\r\nHost: {mcp}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\n\
         x-aegis-session-id: {session}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(mcp).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        (status, text)
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("call {n} of {session}: no answer within {DEADLINE:?}"))
}

#[test]
fn a_flood_of_calls_on_one_session_is_bounded_and_other_sessions_are_served() {
    let dir = tempfile::tempdir().unwrap();
    block_on(DEADLINE * 4, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = DemoConfig {
            sandbox: dir.path().join("sandbox"),
            answer: AnswerMode::Json,
            ..DemoConfig::default()
        };
        let upstream = DemoServer::start(listener, config).await.unwrap();
        let manifest = dir.path().join("manifest.yaml");
        std::fs::write(
            &manifest,
            "schema: aegis.dev/manifest/v0.1\nname: flood\nversion: \"1\"\npublisher: t\n\
             sandbox: {required: false}\npermissions: {tools: [echo], budgets: {max_steps: 100000000, \
             max_tool_calls: 100000000, max_wall_time_ms: 86400000}}\n\
             policy: {loops: {identical_calls: 100000, identical_window: 100000}}\n",
        )
        .unwrap();
        let ledger = dir.path().join("ledger.db");
        let queued = QUEUED_PER_SESSION.to_string();
        let envs = [("AEGIS_MCP_MAX_QUEUED_PER_SESSION", OsStr::new(&queued))];
        let (server, mcp) =
            Server::with_mcp(dir.path(), &ledger, &manifest, &upstream.url(), &envs);
        assert_eq!(tool_call(mcp, "warm-up", 0).await.0, 200);
        let baseline_rss = rss_kib(server.pid());

        // 200 calls of one session at once, each on its own connection.
        let mut flood = tokio::task::JoinSet::new();
        for n in 1..=200 {
            flood.spawn(tool_call(mcp, "flood", n));
        }
        // Meanwhile another session is served.
        assert_eq!(tool_call(mcp, "bystander", 1).await.0, 200);
        // Each call is refused for the queue, or decided: run, or denied by
        // policy (the flood's calls repeat one tool, which loop detection
        // may call a loop: that is the policy's answer, not this test's).
        let (mut ran, mut busy, mut denied) = (0u64, 0u64, 0u64);
        while let Some(answer) = flood.join_next().await {
            let (status, text) = answer.unwrap();
            assert_eq!(status, 200, "{text}");
            match classify(&text) {
                Flooded::Busy => busy += 1,
                Flooded::Ran => ran += 1,
                Flooded::Denied => denied += 1,
            }
        }
        println!(
            "flood of 200 on one session (at most {QUEUED_PER_SESSION} queued): {ran} ran, {denied} denied by policy, {busy} refused"
        );
        let refused = sample(
            &scrape(&server).await,
            "aegis_mcp_refused_requests_total",
            &["reason=\"session_busy\""],
        );
        assert_eq!(refused, busy as f64);
        // Only what ran reached the tool server (the warm-up and the
        // bystander's call besides).
        assert_eq!(upstream.stats().tool_calls("echo"), ran + 2);
        let (status, after) = tool_call(mcp, "flood", 999).await;
        assert_eq!(status, 200);
        assert_ne!(
            classify(&after),
            Flooded::Busy,
            "the session is decided again after"
        );
        let back = (baseline_rss * 11) / 10;
        let after_rss = rss_back_to(&server, back).await;
        println!("RSS: baseline {baseline_rss} KiB, after the flood {after_rss} KiB");
        assert!(
            after_rss <= back,
            "RSS {after_rss} KiB after the flood, {baseline_rss} KiB before"
        );
        server.terminate();
        upstream.shutdown().await;
    });
}

#[test]
fn a_hundred_thousand_deep_json_body_is_refused_and_the_process_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    block_on(DEADLINE * 2, async {
        let upstream = CountingUpstream::start().await;
        let server = start(dir.path(), upstream.addr, &[]);
        let deep = "[".repeat(100_000);
        let mcp = addr_of(&server, "mcp");
        let admin = server.addr;
        for (addr, path, extra) in [
            (
                mcp,
                "/mcp",
                "Accept: application/json, text/event-stream\r\n",
            ),
            (admin, "/v1/events", ""),
            (admin, "/v1/policy/decide", ""),
        ] {
            let post = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 {extra}Content-Length: {}\r\nConnection: close\r\n\r\n{deep}",
                deep.len()
            );
            assert_eq!(status_of(addr, &post).await, 400, "{path}");
        }
        every_listener_answers(&server).await;
        assert_eq!(upstream.connections.load(Ordering::SeqCst), 0);
        server.terminate();
    });
}

//! The crash soak, on the real binary: cycles of start → allowed and denied
//! calls from several sessions at once → SIGKILL after a (seeded) random
//! number of answers → restart on the same ledger. After every kill the
//! ledger is read offline and checked:
//!
//! - every call a client got an answer for has its `TOOL_CALL_PROPOSED` and
//!   its decision, and the decision is what the client was told;
//! - the tool server never ran more calls than the ledger allowed (no
//!   forwarded call lacks its decision);
//! - no session was allowed more calls than its budget, across every crash
//!   (the budget is carried over, never reset);
//! - every chain verifies.
//!
//! `cargo test` runs 10 cycles; `AEGIS_SOAK_CYCLES=100 cargo test -p
//! aegis-proxy --release --test soak -- --nocapture` is the long soak, whose
//! figures are in RELIABILITY.md.

#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout, reason = "the soak's figures are its output")]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use aegis_ledger::{LedgerReader, ListQuery};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use support::{DEADLINE, Server, block_on};
use tokio::sync::Notify;
use tokio::task::JoinSet;

const SESSIONS: usize = 3;
const CLIENTS_PER_SESSION: usize = 2;
/// Allowed calls per session, for the whole soak: `BUDGET_PER_CYCLE` ×
/// cycles, so budgets run out around two thirds of the way through and the
/// last cycles also check that a spent budget stays spent.
const BUDGET_PER_CYCLE: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Denied,
}

/// What a client was told, by the JSON-RPC id of its call.
type Acks = Arc<Mutex<Vec<(String, Outcome)>>>;

fn manifest(budget: usize) -> String {
    format!(
        "schema: aegis.dev/manifest/v0.1\nname: soak\nversion: \"1\"\npublisher: aegis-tests\n\
         sandbox: {{required: false}}\n\
         permissions:\n  tools: [echo, big, slow]\n  budgets: {{max_steps: 100000000, max_tool_calls: {budget}, max_wall_time_ms: 86400000}}\n\
         policy:\n  loops: {{identical_calls: 100000, identical_window: 100000, min_sequence: 10, max_sequence: 10}}\n"
    )
}

/// A small deterministic generator, so a failing cycle can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The tools called: three the manifest declares, picked at random so that
/// no sequence repeats for loop detection, and one it does not (denied).
const TOOLS: [(&str, &str); 4] = [
    ("echo", r#"{"text": "soak"}"#),
    ("big", r#"{"bytes": 16}"#),
    ("slow", r#"{"ms": 0}"#),
    ("write_file", r#"{"path": "/sandbox/x", "content": "soak"}"#),
];

/// Tools the tool server may run.
const RUN: [&str; 3] = ["echo", "big", "slow"];

/// One call, whose JSON-RPC id (`TOOL_CALL_PROPOSED`'s `call_id`) is `id`.
/// `None` when the sidecar did not answer (killed).
async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    mcp: SocketAddr,
    session: &str,
    (tool, arguments): (&str, &str),
    id: &str,
) -> Option<Outcome> {
    let arguments: Value = serde_json::from_str(arguments).unwrap();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{mcp}/mcp/tools"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-aegis-session-id", session)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    let answer = tokio::time::timeout(DEADLINE, exchange).await.ok()??;
    let decision = &answer["result"]["_meta"]["aegis/decision"];
    if decision.is_null() && answer["result"]["isError"] == false {
        Some(Outcome::Allowed)
    } else if decision["outcome"] == "deny" || decision["reason"].is_string() {
        Some(Outcome::Denied)
    } else {
        panic!("unexpected answer to {id}: {answer}")
    }
}

/// One session's envelopes, read from the stopped sidecar's ledger.
fn envelopes(ledger: &Path, session: &str) -> Vec<(String, Value)> {
    let reader = LedgerReader::open_offline(ledger).unwrap();
    let mut out = Vec::new();
    let mut page_token = None;
    loop {
        let page = reader
            .list(&ListQuery {
                tenant_id: "default".into(),
                session_id: Some(session.into()),
                limit: 1000,
                page_token: page_token.take(),
                ..ListQuery::default()
            })
            .unwrap();
        for e in page.envelopes {
            out.push((e.event_type, serde_json::from_str(&e.payload).unwrap()));
        }
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => return out,
        }
    }
}

#[derive(Debug, Default)]
struct Totals {
    acknowledged: usize,
    allowed_acks: usize,
    denied_acks: usize,
    envelopes: u64,
}

/// The checks of one kill (see the module docs); returns what the ledger
/// holds.
fn check(ledger: &Path, acks: &[(String, Outcome)], tool_calls: u64, budget: usize) -> u64 {
    let mut decided: HashMap<String, Outcome> = HashMap::new();
    let mut allowed = 0u64;
    for s in 0..SESSIONS {
        let session = format!("soak-{s}");
        let events = envelopes(ledger, &session);
        let mut proposed: std::collections::HashSet<String> = Default::default();
        let mut allowed_here = 0usize;
        for (event_type, payload) in &events {
            let Some(call_id) = payload["call_id"].as_str() else {
                continue;
            };
            match event_type.as_str() {
                "TOOL_CALL_PROPOSED" => {
                    proposed.insert(call_id.to_owned());
                }
                "TOOL_CALL_ALLOWED" | "TOOL_CALL_DENIED" => {
                    assert!(
                        proposed.contains(call_id),
                        "{session}: a decision without its proposal: {payload}"
                    );
                    let outcome = if event_type == "TOOL_CALL_ALLOWED" {
                        allowed += 1;
                        allowed_here += 1;
                        Outcome::Allowed
                    } else {
                        Outcome::Denied
                    };
                    decided.insert(call_id.to_owned(), outcome);
                }
                _ => {}
            }
        }
        assert!(
            allowed_here <= budget,
            "{session}: {allowed_here} calls allowed, budget {budget}: a crash reset it"
        );
    }
    for (text, told) in acks {
        match decided.get(text) {
            Some(outcome) => assert_eq!(outcome, told, "{text}: the client was told otherwise"),
            None => panic!("{text}: answered ({told:?}) but not in the ledger"),
        }
    }
    assert!(
        tool_calls <= allowed,
        "the tool server ran {tool_calls} calls, the ledger allowed {allowed}"
    );
    let reader = LedgerReader::open_offline(ledger).unwrap();
    let summary = reader
        .verify_all(None, |report| {
            assert!(report.is_valid(), "{report:?}");
        })
        .unwrap();
    assert_eq!(summary.invalid_sessions, 0);
    summary.envelopes
}

#[test]
fn every_acknowledged_call_survives_sigkill_and_no_budget_resets() {
    let cycles: usize = std::env::var("AEGIS_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let budget = BUDGET_PER_CYCLE * cycles;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let manifest_path = dir.path().join("manifest.yaml");
    std::fs::write(&manifest_path, manifest(budget)).unwrap();
    let mut rng = Lcg(0x5eed_u64);
    let limit = Duration::from_secs(120 + 30 * cycles as u64);
    block_on(limit, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = DemoConfig {
            sandbox: dir.path().join("sandbox"),
            answer: AnswerMode::Json,
            ..DemoConfig::default()
        };
        let upstream = DemoServer::start(listener, config).await.unwrap();
        let acks: Acks = Arc::default();
        let mut totals = Totals::default();
        for cycle in 0..cycles {
            let (server, mcp) =
                Server::with_mcp(dir.path(), &ledger, &manifest_path, &upstream.url(), &[]);
            // Kill after this many answers (of this cycle), counted.
            let kill_after = 5 + usize::try_from(rng.below(36)).unwrap();
            let answered = Arc::new(AtomicUsize::new(0));
            let enough = Arc::new(Notify::new());
            let mut clients = JoinSet::new();
            for c in 0..SESSIONS * CLIENTS_PER_SESSION {
                let (acks, answered, enough) = (acks.clone(), answered.clone(), enough.clone());
                let session = format!("soak-{}", c % SESSIONS);
                clients.spawn(async move {
                    let client = Client::builder(TokioExecutor::new()).build_http();
                    let mut pick = Lcg((cycle * 100 + c) as u64);
                    for n in 0.. {
                        let tool = TOOLS[usize::try_from(pick.below(4)).unwrap()];
                        let id = format!("cycle {cycle} client {c} call {n}");
                        let Some(outcome) = call(&client, mcp, &session, tool, &id).await else {
                            return;
                        };
                        acks.lock().unwrap().push((id, outcome));
                        if answered.fetch_add(1, Ordering::SeqCst) + 1 == kill_after {
                            enough.notify_one();
                        }
                    }
                });
            }
            enough.notified().await;
            server.kill();
            while let Some(done) = clients.join_next().await {
                done.unwrap();
            }
            let acks_now = acks.lock().unwrap().clone();
            let ran: u64 = RUN.iter().map(|t| upstream.stats().tool_calls(t)).sum();
            totals.envelopes = check(&ledger, &acks_now, ran, budget);
        }
        let acks = acks.lock().unwrap().clone();
        totals.acknowledged = acks.len();
        totals.allowed_acks = acks.iter().filter(|(_, o)| *o == Outcome::Allowed).count();
        totals.denied_acks = totals.acknowledged - totals.allowed_acks;
        println!(
            "soak: {cycles} SIGKILL cycles, {} acknowledged calls ({} allowed, {} denied), \
             0 lost, 0 broken chains, tool server ran {} calls, ledger holds {} envelopes, \
             budget {budget} per session",
            totals.acknowledged,
            totals.allowed_acks,
            totals.denied_acks,
            RUN.iter()
                .map(|t| upstream.stats().tool_calls(t))
                .sum::<u64>(),
            totals.envelopes
        );
        upstream.shutdown().await;
    });
}

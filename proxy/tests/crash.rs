//! Crash safety, through the real binary: the sidecar is SIGKILLed while
//! clients are appending; after a restart on the same file, every append it
//! acknowledged is there with the same hash, every chain verifies, and each
//! session goes on from where its stored chain ends.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use support::{Server, acknowledged, aegis, block_on};
use tokio::sync::Notify;
use tokio::task::JoinSet;

const TENANT: &str = "t";
const SESSIONS: usize = 8;
const CLIENTS: usize = 16;
/// Acknowledged appends before the kill.
const KILL_AFTER: usize = 400;
/// Bound on each async phase of the test.
const PHASE: Duration = Duration::from_secs(120);

fn session(i: usize) -> String {
    format!("crash-{i}")
}

/// One append the sidecar answered `201` to.
#[derive(Debug, Clone)]
struct Ack {
    session: usize,
    seq: u64,
    hash: String,
}

/// How a client's loop ended.
#[derive(Debug)]
enum End {
    /// The request failed without an answer: the server is gone.
    Transport(String),
    /// The server answered something other than `201`.
    Status(StatusCode, serde_json::Value),
}

/// One client: appends to the sessions in turn (starting at its own) until a
/// request fails; returns what was acknowledged and how it ended.
async fn client(
    id: usize,
    api: support::Api,
    acked: Arc<AtomicUsize>,
    enough: Arc<Notify>,
) -> (Vec<Ack>, End) {
    let mut acks = Vec::new();
    for k in 0.. {
        let s = (id + k) % SESSIONS;
        let n = (id * 1_000_000 + k) as u64;
        match api.append(TENANT, &session(s), n).await {
            Ok((StatusCode::CREATED, body)) => {
                let (seq, hash) = acknowledged(&body);
                acks.push(Ack {
                    session: s,
                    seq,
                    hash,
                });
                if acked.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    enough.notify_one();
                }
            }
            Ok((status, body)) => return (acks, End::Status(status, body)),
            Err(e) => return (acks, End::Transport(e)),
        }
    }
    unreachable!("the loop only ends by returning")
}

fn crash_and_recover(synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let flags = ["--ledger-synchronous", synchronous];

    // Phase 1: append concurrently, SIGKILL mid-stream.
    let server = Server::on_ledger(dir.path(), &ledger, &flags);
    let api = server.api();
    let acks: Vec<Ack> = block_on(PHASE, async {
        let acked = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(Notify::new());
        let mut clients = JoinSet::new();
        for id in 0..CLIENTS {
            clients.spawn(client(id, api.clone(), acked.clone(), enough.clone()));
        }
        tokio::select! {
            () = enough.notified() => {}
            ended = clients.join_next() => {
                let ended = ended.unwrap().unwrap().1;
                panic!("a client stopped before the kill: {ended:?}");
            }
        }
        server.kill();
        let mut acks = Vec::new();
        let mut cut_off = Vec::new();
        while let Some(joined) = clients.join_next().await {
            let (mine, end) = joined.unwrap();
            acks.extend(mine);
            match end {
                End::Transport(e) => cut_off.push(e),
                End::Status(status, body) => {
                    panic!("a client got {status} instead of 201: {body}")
                }
            }
        }
        // Every client was still appending when the process died.
        assert_eq!(cut_off.len(), CLIENTS);
        eprintln!(
            "synchronous={synchronous}: {} requests cut off by SIGKILL, e.g. {:?}",
            cut_off.len(),
            cut_off[0]
        );
        acks
    });
    assert!(acks.len() >= KILL_AFTER);
    let mut seen = HashSet::new();
    for ack in &acks {
        assert!(
            seen.insert((ack.session, ack.seq)),
            "seq {} of {} was acknowledged twice",
            ack.seq,
            session(ack.session)
        );
    }

    let acked = acks.len();

    // Phase 2: restart on the same file and check everything acknowledged.
    let server = Server::on_ledger(dir.path(), &ledger, &flags);
    let api = server.api();
    let stored = block_on(PHASE, async move {
        let mut stored = 0;
        for s in 0..SESSIONS {
            let name = session(s);
            let listed = api.list_session(TENANT, &name).await;
            let hashes: HashMap<u64, &str> = listed
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    assert_eq!(e["seq"], i as u64, "{name} is listed in seq order: {e}");
                    (i as u64, e["hash"].as_str().unwrap())
                })
                .collect();
            for ack in acks.iter().filter(|a| a.session == s) {
                assert_eq!(
                    hashes.get(&ack.seq).copied(),
                    Some(ack.hash.as_str()),
                    "acknowledged seq {} of {name} survives the crash with its hash",
                    ack.seq
                );
            }

            let report = api.verify_session(TENANT, &name).await;
            assert_eq!(report["valid"], true, "{name}: {report}");
            assert_eq!(report["envelopes"], listed.len(), "{name}: {report}");

            let (seq, _) = api.append_ok(TENANT, &name, u64::MAX).await;
            assert_eq!(
                seq,
                listed.len() as u64,
                "{name} continues at the stored head"
            );
            stored += listed.len();
        }
        stored
    });
    eprintln!(
        "synchronous={synchronous}: {acked} appends acknowledged before SIGKILL, \
         {stored} envelopes stored after the restart"
    );
    server.terminate();

    // Phase 3: the file verifies offline.
    let out = aegis([
        "verify".as_ref(),
        "--ledger".as_ref(),
        ledger.as_os_str(),
        "--json".as_ref(),
    ]);
    out.expect_code(0, "verify after the crash and restart");
    let report = out.json();
    assert_eq!(report["sessions"], SESSIONS, "{report}");
    assert_eq!(report["envelopes"], stored + SESSIONS, "{report}");
}

#[test]
fn acknowledged_appends_survive_sigkill_synchronous_normal() {
    crash_and_recover("normal");
}

#[test]
fn acknowledged_appends_survive_sigkill_synchronous_full() {
    crash_and_recover("full");
}

//! Rate limits hold exactly under concurrency: many sessions, each sending
//! more concurrent calls than its burst. Calls of one session race the
//! commits of each other's results, so a proposal's append can conflict and
//! its decision be made again; the token the first decision took must come
//! back. Every session gets exactly its burst forwarded — none lost to a
//! retried decision, none overrun — and the tool server ran exactly that.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, Stack, result_text};
use aegis_e2e::run;
use serde_json::json;

const SESSIONS: usize = 60;
const CONCURRENT: usize = 5;
const BURST: usize = 3;

#[test]
fn every_session_gets_exactly_its_burst_under_concurrent_calls() {
    run(async {
        // No refill that matters within a test: one token per ~3 hours.
        let manifest = MANIFEST.replace(
            "policy:\n",
            &format!("policy:\n  rate_limits:\n    echo: {{per_second: 0.0001, burst: {BURST}}}\n"),
        );
        let stack =
            Stack::start(&manifest, AnswerMode::Json, aegis_e2e::mcp::client_sessions).await;
        let mut tasks = Vec::new();
        for s in 0..SESSIONS {
            let mut session = stack
                .client
                .clone()
                .with_header("x-aegis-session-id", &format!("burst-{s}"));
            session.initialize().await;
            for c in 0..CONCURRENT {
                let client = session.clone();
                tasks.push(tokio::spawn(async move {
                    let id = i64::try_from(c).unwrap() + 1;
                    let answer = client
                        .call(id, "echo", json!({"text": format!("{s}-{c}")}))
                        .await;
                    (s, result_text(&answer))
                }));
            }
        }
        let mut forwarded = vec![0usize; SESSIONS];
        let mut limited = vec![0usize; SESSIONS];
        for task in tasks {
            let (s, text) = task.await.unwrap();
            if text.starts_with("Denied by policy (RATE_LIMITED)") {
                limited[s] += 1;
            } else {
                assert!(!text.starts_with("Denied"), "{text}");
                forwarded[s] += 1;
            }
        }
        for s in 0..SESSIONS {
            assert_eq!(
                (forwarded[s], limited[s]),
                (BURST, CONCURRENT - BURST),
                "session burst-{s}: forwarded {} and limited {}",
                forwarded[s],
                limited[s]
            );
        }
        let ran = stack.upstream.stats().snapshot().tools["echo"];
        assert_eq!(ran, (SESSIONS * BURST) as u64);
    });
}

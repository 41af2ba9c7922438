//! The load generator and the MCP bench stack do what they say: a request
//! limit is met exactly, every answer is checked, failures are counted by
//! label, and calls through the sidecar are allowed and recorded. No timing
//! is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aegis_bench::load::ClosedLoop;
use aegis_bench::mcp::{Answering, EchoCall, Route, Stack, runtime};
use aegis_bench::stages::Stages;
use aegis_ledger::Synchronous;

/// A run's hang guard (each bound here is one: no loaded machine comes near).
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A limit of `requests` over a duration far longer than any run: only the
/// limit ends it.
fn counted(connections: usize, requests: u64) -> ClosedLoop {
    ClosedLoop {
        connections,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(3600),
        requests: Some(requests),
        request_timeout: HANG_GUARD,
    }
}

#[test]
fn direct_and_sidecar_calls_succeed_and_are_counted() {
    let stack = Stack::start(Synchronous::Normal, false).unwrap();
    let load = runtime("load").unwrap();
    for answering in Answering::ALL {
        for route in [Route::Direct, Route::Sidecar] {
            let endpoint = stack.endpoint(route, answering);
            let workload = Arc::new(EchoCall::new(&endpoint, answering, "test".into()));
            let before = stack.sidecar_samples();
            let report = load.block_on(async {
                tokio::time::timeout(HANG_GUARD, counted(4, 200).run(endpoint.addr, workload))
                    .await
                    .expect("the run ends")
            });
            assert_eq!(report.failures, Default::default(), "{route:?} {answering}");
            assert_eq!(report.ok, 200, "{route:?} {answering}");
            assert_eq!(report.connections, 4);
            // Results are committed after the agent has its answer
            // (`ledger.result_commit: after_answer`): wait until every one is.
            let expected = if route == Route::Sidecar { 600.0 } else { 0.0 };
            let started = std::time::Instant::now();
            let stages = loop {
                let stages = Stages::from_delta(&stack.sidecar_samples().since(&before));
                if stages.envelopes >= expected || started.elapsed() > HANG_GUARD {
                    break stages;
                }
                std::thread::yield_now();
            };
            match route {
                // Proposal, decision and result: three envelopes per call.
                Route::Sidecar => {
                    assert_eq!(stages.tool_calls, 200.0);
                    assert_eq!(stages.envelopes, 600.0);
                }
                Route::Direct => assert_eq!(stages.tool_calls, 0.0),
            }
        }
    }
    assert_eq!(stack.upstream_tool_calls(), (400, 400));
    drop(load);
    stack.shutdown();
}

#[test]
fn failed_checks_are_counted_by_label() {
    let stack = Stack::start(Synchronous::Normal, false).unwrap();
    let load = runtime("load").unwrap();
    // Expecting SSE from the JSON server: every answer has the wrong type.
    let endpoint = stack.endpoint(Route::Direct, Answering::Json);
    let workload = Arc::new(EchoCall::new(&endpoint, Answering::Sse, "test".into()));
    let report = load.block_on(async {
        tokio::time::timeout(HANG_GUARD, counted(2, 10).run(endpoint.addr, workload))
            .await
            .expect("the run ends")
    });
    assert_eq!(report.ok, 0);
    assert_eq!(report.failures.get("content_type"), Some(&10));
    drop(load);
    stack.shutdown();
}

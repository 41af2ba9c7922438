//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! pinned in `tests/node/`) as an outside judge of the sidecar's front door.
//!
//! Its `dns-rebinding-protection` scenario sends two `initialize` POSTs to
//! the server's URL: one with `Host: evil.example.com` and `Origin:
//! http://evil.example.com` (a rebound page), which must get a 4xx, and one
//! with the URL's own `Host` and `Origin: http://<that host>`, which must get
//! a 2xx. Through the sidecar, with its default configuration, in front of
//! the demo tool server it passes; against the demo server alone, which
//! checks neither header, it fails — the sidecar is what makes it pass.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, Stack, start_upstream};
use aegis_e2e::node::{self, ScenarioRun, server_scenario};

const SCENARIO: &str = "dns-rebinding-protection";
/// The scenario's two checks.
const REBINDING_REJECTED: &str = "localhost-host-rebinding-rejected";
const LOCALHOST_ACCEPTED: &str = "localhost-host-valid-accepted";

/// Installs the suite (outside the test's time bound), then runs `body`
/// under [`node::TEST_TIMEOUT`].
fn run_node<F: std::future::Future<Output = ()>>(body: F) {
    node::prepare();
    aegis_e2e::run_within(node::TEST_TIMEOUT, body);
}

fn checks(run: &ScenarioRun) -> (Option<&str>, Option<&str>) {
    (run.check(REBINDING_REJECTED), run.check(LOCALHOST_ACCEPTED))
}

#[test]
fn dns_rebinding_protection_passes_through_the_sidecar() {
    run_node(async {
        // The sidecar as it comes: no allowed_hosts, no allowed_origins.
        let stack = Stack::start(MANIFEST, AnswerMode::Json, |_| {}).await;
        let url = format!("http://{}/mcp", stack.sidecar.running.mcp_addr().unwrap());
        let run = server_scenario(&url, SCENARIO).await;
        eprintln!("{}", run.report());
        assert!(run.passed(), "{}", run.report());
        assert_eq!(
            checks(&run),
            (Some("SUCCESS"), Some("SUCCESS")),
            "{}",
            run.report()
        );
        assert_eq!(run.checks.len(), 2, "{}", run.report());

        // The rebound request was turned away at the front door (for its
        // Host, checked first) and never reached the tool server; the
        // localhost one was forwarded.
        let http = &stack.sidecar.http;
        let refused = (
            http.metric("aegis_mcp_front_door_refusals_total{reason=\"host\"}")
                .await,
            http.metric("aegis_mcp_front_door_refusals_total{reason=\"origin\"}")
                .await,
        );
        assert_eq!(refused, (Some(1.0), Some(0.0)));
        let seen = stack.upstream.stats().snapshot();
        assert_eq!(seen.methods.get("initialize"), Some(&1), "{seen:?}");
        assert_eq!(seen.methods.values().sum::<u64>(), 1, "{seen:?}");
    });
}

#[test]
fn dns_rebinding_protection_fails_against_the_demo_upstream_alone() {
    run_node(async {
        let upstream = start_upstream(AnswerMode::Json).await;
        let run = server_scenario(&upstream.url(), SCENARIO).await;
        eprintln!("{}", run.report());
        assert!(!run.passed(), "{}", run.report());
        assert!(!run.status.success(), "{}", run.report());
        // It fails for the reason the sidecar fixes: the rebound request was
        // answered like any other. The localhost one passes either way.
        assert_eq!(
            checks(&run),
            (Some("FAILURE"), Some("SUCCESS")),
            "{}",
            run.report()
        );
        assert_eq!(upstream.stats().method_calls("initialize"), 2);
    });
}

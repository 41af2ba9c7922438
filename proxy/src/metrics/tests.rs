//! Every metric family renders with its labels.

#![allow(clippy::unwrap_used)]

use super::*;
use aegis_ledger::{AppendError, CheckpointBy, EventType, LedgerObserver};

#[test]
fn every_family_renders_with_its_labels() {
    let m = Metrics::new().unwrap();
    m.ledger.committed(
        &[EventType::ToolResult, EventType::ToolResult],
        Duration::from_micros(40),
    );
    m.ledger.rejected(&AppendError::Closed);
    m.ledger
        .checkpointed(CheckpointBy::Writer, Duration::from_millis(3));
    // The admin server's label sets, as `app::start` passes them.
    let results = crate::admin::tokens::TokenReload::ALL.map(|r| r.as_str());
    m.auth.init(
        std::iter::empty(),
        &crate::admin::AuthError::REASONS,
        &results,
    );
    let text = String::from_utf8(m.render()).unwrap();
    for needle in [
        "aegis_ledger_appends_total{event_type=\"TOOL_RESULT\"} 2",
        "aegis_ledger_append_errors_total{kind=\"closed\"} 1",
        "aegis_ledger_commit_duration_seconds_count 1",
        "aegis_ledger_commit_batch_envelopes_sum 2",
        "aegis_ledger_checkpoint_duration_seconds_count{by=\"writer\"} 1",
        "aegis_ledger_queue_depth 0",
        "aegis_build_info{version=",
        "aegis_manifest_generation 0",
        "aegis_manifest_reloads_total{result=\"failed\"} 0",
        "aegis_manifest_last_reload_success 1",
        "aegis_identity_jwks_reloads_total{result=\"failed\"} 0",
        "aegis_api_token_reloads_total{result=\"failed\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
}

#[test]
fn auth_failures_are_counted_by_route_and_reason() {
    let m = Metrics::new().unwrap();
    m.auth.failed("events", "missing");
    m.auth.failed("events", "missing");
    m.auth.failed("manifest_reload", "forbidden");
    let text = String::from_utf8(m.render()).unwrap();
    for needle in [
        "aegis_api_auth_failures_total{reason=\"missing\",route=\"events\"} 2",
        "aegis_api_auth_failures_total{reason=\"forbidden\",route=\"manifest_reload\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
}

#[test]
fn manifest_reloads_are_counted_by_result() {
    let m = Metrics::new().unwrap();
    m.manifest.set_generation(1);
    m.manifest
        .record_reload(&ReloadOutcome::Failed("schema: unsupported".into()));
    m.manifest.record_reload(&ReloadOutcome::NotConfigured);
    let text = String::from_utf8(m.render()).unwrap();
    for needle in [
        "aegis_manifest_generation 1",
        "aegis_manifest_reloads_total{result=\"failed\"} 1",
        "aegis_manifest_reloads_total{result=\"reloaded\"} 0",
        "aegis_manifest_last_reload_success 0",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
}

#[test]
fn identity_failures_are_counted_by_listener_and_reason() {
    let m = Metrics::new().unwrap();
    m.identity.failure("mcp", Failure::Expired);
    m.identity.failure("forward", Failure::Missing);
    m.identity.jwks_reload(&JwksReload::Failed("bad".into()));
    let text = String::from_utf8(m.render()).unwrap();
    for needle in [
        "aegis_identity_failures_total{listener=\"mcp\",reason=\"expired\"} 1",
        "aegis_identity_failures_total{listener=\"forward\",reason=\"missing\"} 1",
        "aegis_identity_jwks_reloads_total{result=\"failed\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
}

//! The Aegis conformance packs and the Aegis decide request they exercise.
//!
//! A pack is YAML: `{name, description, tests: [{id, description, req_id,
//! request: {event, snapshot, manifest}, expect: {outcome, reason?}}]}`. A test
//! passes when the decision's outcome equals `expect.outcome` (ignoring case)
//! and, when `expect.reason` is given, the decision's reason contains it
//! (ignoring case) — the suite's own rule, as `tests/data/aegis-conformance/README.md`
//! records.

use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::decide::{CompiledManifest, Decision, Proposal, SessionFacts, decide};
use crate::manifest::Manifest;
use crate::rate::RateLimiter;
use crate::reason::{Outcome, Reason};

/// One pack file.
#[derive(Debug, Clone, Deserialize)]
pub struct Pack {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub tests: Vec<Case>,
}

/// One test of a pack.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// `{event, snapshot, manifest}`: an Aegis `/v1/policy/decide` body.
    pub request: Value,
    pub expect: Expect,
}

/// What a test expects.
#[derive(Debug, Clone, Deserialize)]
pub struct Expect {
    pub outcome: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A pack's YAML text → [`Pack`].
pub fn parse_pack(yaml: &str) -> Result<Pack, String> {
    serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
}

/// The verdict on one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub id: String,
    pub description: String,
    pub passed: bool,
    /// What was decided (`outcome`, `reason`), or why nothing could be.
    pub got: String,
    pub expected: String,
}

/// Runs one test against the in-process engine.
pub fn run_case(case: &Case) -> CaseResult {
    run_case_with(case, |request| {
        evaluate(request).map(|d| (d.outcome.as_str().to_owned(), d.reason.as_str().to_owned()))
    })
}

/// Runs one test with `decide` answering the request with `(outcome,
/// reason)` — the in-process engine, or a server's `/v1/policy/decide`.
pub fn run_case_with(
    case: &Case,
    decide: impl FnOnce(&Value) -> Result<(String, String), String>,
) -> CaseResult {
    let expected = match &case.expect.reason {
        Some(reason) => format!("{} {reason}", case.expect.outcome),
        None => case.expect.outcome.clone(),
    };
    let (passed, got) = match decide(&case.request) {
        Ok((outcome, reason)) => (
            matches(&case.expect, &outcome, &reason),
            format!("{outcome} {reason}"),
        ),
        Err(e) => (false, format!("error: {e}")),
    };
    CaseResult {
        id: case.id.clone(),
        description: case.description.clone(),
        passed,
        got,
        expected,
    }
}

/// The suite's pass rule, for decisions from here or from a server.
pub fn matches(expect: &Expect, outcome: &str, reason: &str) -> bool {
    expect.outcome.eq_ignore_ascii_case(outcome)
        && expect.reason.as_ref().is_none_or(|want| {
            reason
                .to_ascii_lowercase()
                .contains(&want.to_ascii_lowercase())
        })
}

/// Decides an Aegis decide request `{event, snapshot, manifest}` whose
/// manifest and snapshot are given in full.
pub fn evaluate(request: &Value) -> Result<Decision, String> {
    let manifest = request
        .get("manifest")
        .ok_or("the request has no manifest")?;
    let manifest = Manifest::from_value(manifest).map_err(|e| format!("invalid manifest: {e}"))?;
    evaluate_with(request, &CompiledManifest::new(&manifest), None)
}

/// Decides an Aegis decide request's `event` on its `snapshot` (absent:
/// a fresh session) against `manifest`, taking a token from `rate` (the
/// session's buckets, and now) when given. Events other than
/// `TOOL_CALL_PROPOSED` are allowed (there is nothing to decide).
pub fn evaluate_with(
    request: &Value,
    manifest: &CompiledManifest,
    rate: Option<(&RateLimiter, Instant)>,
) -> Result<Decision, String> {
    let event = request.get("event").ok_or("the request has no event")?;
    if event.get("event_type").and_then(Value::as_str) != Some("TOOL_CALL_PROPOSED") {
        return Ok(Decision {
            outcome: Outcome::Allow,
            reason: Reason::Ok,
            constraints: None,
        });
    }
    let payload = event.get("payload").unwrap_or(&Value::Null);
    let proposal =
        Proposal::from_payload(payload).ok_or("event.payload.tool_name must be a string")?;
    let snapshot = request.get("snapshot").unwrap_or(&Value::Null);
    let sanitized: Vec<String> = snapshot
        .get("sanitized_keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let number = |name: &str| snapshot.get(name).and_then(Value::as_u64).unwrap_or(0);
    let facts = SessionFacts {
        steps_consumed: number("steps_consumed"),
        tool_calls_consumed: number("tool_calls_consumed"),
        wall_time_ms: number("wall_time_ms"),
        is_tainted: snapshot
            .get("is_tainted")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        sanitized_keys: &sanitized,
        loop_violation: snapshot.get("loop_violation").and_then(Value::as_str),
        rate,
        ..SessionFacts::default()
    };
    Ok(decide(&proposal, &facts, manifest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The six packs in `tests/data/aegis-conformance/packs`: every test
    /// passes but PI-003, which that folder's README explains (declaring
    /// `exec` without `allowed_bins` must be `EXEC_DENY`, not allow).
    #[test]
    fn the_aegis_packs_pass_but_pi_003() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/aegis-conformance/packs");
        let mut failed = Vec::new();
        let mut total = 0;
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the conformance packs in {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let pack = parse_pack(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for case in &pack.tests {
                total += 1;
                let result = run_case(case);
                if !result.passed {
                    failed.push((result.id, result.got));
                }
            }
        }
        assert_eq!(
            failed,
            [("PI-003".to_owned(), "deny EXEC_DENY".to_owned())],
            "of {total}"
        );
    }
}

//! Calls decided for a client that runs the tool itself: the seed systems'
//! decision APIs ([`super::decision`], aegislib's; [`super::propose`], the
//! AEGIS platform's). Each is decided by the same gate as an inline call —
//! the session's state, the live manifest, `policy.sanitize`, the approvals
//! store — and recorded in the session's chain as `TOOL_CALL_PROPOSED`
//! (`transport: "decision_api"`) and its decision (an allowed one says
//! `delegated: true`: its result never comes back, so it never stays open).
//!
//! **Which session a decision counts against.** The caller is the governed
//! agent's own library, holding the agent's credential, so nothing in its
//! body may choose the session (a fresh `agent_id` per call would reset the
//! budget, the taint and the loop history). Under `mcp.identity.
//! session_scope: principal` (the default) every decision is the pod's
//! principal's session (`mcp.identity.principal`), the very session its
//! inline MCP and egress calls use; the `agent_id` and `session` the client
//! names are recorded in the proposal (`client_context`) and echoed back.
//! Under `session_scope: client` (trusted clients, tests) the `agent_id`
//! names the session. The tenant is the credential's, when it is limited to
//! one, else `mcp.identity.default_tenant`.

use aegis_ledger::now_unix_ms;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

use super::{Access, AdminState, ApiError};
use crate::gate::{CallRequest, DECISION_API_UPSTREAM, GateError, Verdict};
use crate::identity::{Identity, MAX_ID_LEN, PrincipalSource, SessionScope, SessionSource};

/// Most calls one batch may carry.
pub const MAX_BATCH: usize = 100;

/// What became of one call.
#[derive(Debug)]
pub enum Answered {
    /// Decided and recorded.
    Decided(Verdict),
    /// Not recorded: the ledger failed, or the session had too many calls
    /// queued. `fail_open`: `ledger.fail_open` lets the client run it.
    Unrecorded { error: GateError, fail_open: bool },
}

impl Answered {
    /// The reason code of a call that was not recorded (`LEDGER_UNAVAILABLE`,
    /// `SESSION_BUSY`, ...), from [`GateError::kind`].
    pub fn unrecorded_reason(error: &GateError) -> String {
        error.kind().to_ascii_uppercase()
    }
}

/// The identity a decision of `agent_id` acts under (see the module's
/// documentation); refused when the credential may not act for the tenant.
pub fn identity(state: &AdminState, access: &Access, agent_id: &str) -> Result<Identity, ApiError> {
    let config = state.identity.config();
    let tenant = match access.tenants() {
        Some([only]) => only.clone(),
        _ => config.default_tenant.clone(),
    };
    access.tenant(&tenant)?;
    let (session_id, session_source) = match config.session_scope {
        SessionScope::Client => (agent_id.to_owned(), SessionSource::AgentId),
        SessionScope::Principal => (config.principal.clone(), SessionSource::Principal),
    };
    Ok(Identity {
        tenant_id: tenant,
        user_id: config.default_user.clone(),
        session_id,
        session_source,
        principal: config.principal.clone(),
        principal_source: PrincipalSource::Config,
        mcp_session_id: None,
    })
}

/// One call to decide for a client.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub identity: &'a Identity,
    /// The call's id in the ledger (`call_id`): the API's request id.
    pub call_id: &'a Value,
    pub tool: &'a str,
    pub args: &'a Value,
    /// What the client said about itself (`client_context`).
    pub context: &'a Value,
}

/// Decides and records `ask` through the gate, on the live manifest.
pub async fn decide(state: &AdminState, ask: Ask<'_>) -> Answered {
    let enforce = state.enforce;
    let request = CallRequest {
        identity: ask.identity,
        upstream: DECISION_API_UPSTREAM,
        call_id: ask.call_id,
        call_id_text: None,
        tool_name: ask.tool,
        args: ask.args,
        sanitizer_key: None,
        enforce,
        context: Some(ask.context),
    };
    let manifest = state.manifests.current();
    match state.gate.decide_and_record(request, manifest).await {
        Ok(verdict) => {
            state.metrics.record_decision(
                verdict.decision.outcome,
                verdict.decision.reason,
                verdict.decide_time,
            );
            if let Some(crate::gate::ApprovalLink::Released { .. }) = &verdict.approval {
                state.metrics.approvals.released.inc();
            }
            Answered::Decided(verdict)
        }
        Err(error) => {
            let fail_open = state.fail_open && error.may_fail_open();
            let mode = if fail_open {
                "fail_open"
            } else {
                "fail_closed"
            };
            if matches!(error, GateError::Busy(_)) {
                tracing::debug!(tool = ask.tool, session = %ask.identity.session_id, "decision refused: its session has too many calls queued");
            } else if error.may_fail_open() {
                state
                    .metrics
                    .mcp
                    .ledger_failures
                    .with_label_values(&[mode])
                    .inc();
                tracing::error!(tool = ask.tool, error = %error, mode, "a decision-API call could not be recorded");
            } else {
                tracing::debug!(tool = ask.tool, error = %error, mode, "a decision-API call could not be recorded");
            }
            Answered::Unrecorded { error, fail_open }
        }
    }
}

/// A required, non-empty string member of at most [`MAX_ID_LEN`] bytes.
pub fn id_member<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<&'a str, ApiError> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s),
        Some(Value::String(s)) if !s.is_empty() => Err(ApiError::BadRequest(format!(
            "{at}{name} is longer than {MAX_ID_LEN} bytes"
        ))),
        None | Some(Value::Null) => Err(ApiError::BadRequest(format!("{at}{name} is required"))),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{at}{name} must be a non-empty string"
        ))),
    }
}

/// An optional object member (`null` reads as absent).
pub fn object_member<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{at}{name} must be an object"
        ))),
    }
}

/// Refuses members other than `known`, naming the first.
pub fn only_members(fields: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ApiError> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::BadRequest(format!(
            "unknown member {at}{unknown} (expected {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A new id: `prefix` and 128 random bits, hex.
pub fn new_id(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("no randomness for an id".into()))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// `unix_ms` as RFC 3339 UTC with milliseconds (`2026-12-06T21:04:06.000Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let (days, ms) = (
        unix_ms.div_euclid(86_400_000),
        unix_ms.rem_euclid(86_400_000),
    );
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(now_unix_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_591_046_123), "2026-12-06T21:04:06.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn ids_are_prefixed_and_unguessable() {
        let (a, b) = (new_id("d-"), new_id("d-"));
        assert!(
            matches!((&a, &b), (Ok(a), Ok(b)) if a.starts_with("d-") && a.len() == 34 && a != b)
        );
    }
}

//! Deciding one egress attempt and recording the decision: the port check,
//! resolution and the SSRF guard, then the MCP proxy's gate, so
//! `TOOL_CALL_PROPOSED` and its `ALLOWED`/`DENIED` land in one commit with
//! the refusal's real reason.
//!
//! A name is resolved only when the manifest allows it (or in shadow
//! mode): asking DNS about a name the agent may not reach would leak it.

use std::time::Instant;

use aegis_policy::Reason;
use aegis_policy::domain::DomainPattern;
use aegis_policy::store::LoadedManifest;
use http::Method;
use serde_json::{Value, json};

use super::answer::EgressError;
use super::guard::{self, Refusal};
use super::target::Target;
use super::{Admitted, EgressState};
use crate::gate::{CallRequest, EGRESS_UPSTREAM, Veto};
use crate::identity::Identity;

/// Decides and records; `Ok` only when the attempt may go ahead.
pub async fn admit(
    state: &EgressState,
    target: &Target,
    identity: &Identity,
    method: &Method,
    call_id: &str,
) -> Result<Admitted, EgressError> {
    let started = Instant::now();
    let manifest = state.manifests.current();
    let patterns = domains(manifest.as_deref());
    let domain = target.domain();

    let port_detail;
    let mut guard_detail = None;
    let mut resolved = Err(String::new());
    let veto = if !state.config.allowed_ports.contains(&target.port) {
        port_detail = format!(
            "{domain}:{port}: port {port} is not in forward.allowed_ports ({ports})",
            port = target.port,
            ports = list(&state.config.allowed_ports),
        );
        Some(Veto {
            reason: Reason::EgressDeny,
            detail: &port_detail,
            before_policy: true,
        })
    } else {
        let allowlisted = patterns.iter().any(|p| p.matches(&target.host));
        if allowlisted || !state.enforce {
            match guard::resolve(
                &target.host,
                target.port,
                &state.config.dns_overrides,
                patterns,
                state.config.connect_timeout,
            )
            .await
            {
                Ok(addrs) => resolved = Ok(addrs),
                Err(Refusal::Guard(why)) => guard_detail = Some(why),
                Err(Refusal::Unresolved(why)) => resolved = Err(why),
            }
        }
        guard_detail.as_deref().map(|detail| Veto {
            reason: Reason::EgressDeny,
            detail,
            before_policy: false,
        })
    };

    let args = json!({
        "domain": domain,
        "port": target.port,
        "method": method.as_str(),
    });
    let call_id_value = Value::String(call_id.to_owned());
    let call = CallRequest {
        identity,
        upstream: EGRESS_UPSTREAM,
        call_id: &call_id_value,
        call_id_text: None,
        tool_name: target.kind.tool_name(),
        args: &args,
        sanitizer_key: None,
        enforce: state.enforce,
        context: None,
    };
    let verdict = state
        .gate
        .decide_with_veto(call, manifest.clone(), veto)
        .await
        .map_err(EgressError::Ledger)?;
    let decision = verdict.decision;
    state
        .metrics
        .record_decision(decision.outcome, decision.reason, verdict.decide_time);
    if let Some(crate::gate::ApprovalLink::Released { .. }) = &verdict.approval {
        state.metrics.approvals.released.inc();
    }

    if verdict.vetoed {
        if let Some(detail) = &guard_detail {
            tracing::warn!(
                session = %identity.session_id,
                %domain,
                %detail,
                "SSRF guard refused an egress destination"
            );
        }
        return Err(EgressError::Denied {
            reason: decision.reason,
            message: veto.map_or_else(String::new, |v| v.detail.to_owned()),
        });
    }
    if !verdict.forwards(state.enforce) {
        let waiting = match verdict.approval_id() {
            Some(id) => format!(
                "; approval {id} is pending: once a person approves it, the same request runs once"
            ),
            None => String::new(),
        };
        return Err(EgressError::Denied {
            reason: decision.reason,
            message: format!("{domain}: {}{waiting}", decision.explanation()),
        });
    }
    // Shadow mode forwards policy denials, never past the SSRF guard.
    if let Some(detail) = guard_detail {
        return Err(EgressError::Denied {
            reason: Reason::EgressDeny,
            message: detail,
        });
    }
    let admitted = Admitted {
        target: target.clone(),
        identity: identity.clone(),
        call_id: call_id.to_owned(),
        verdict,
        addrs: Vec::new(),
        started,
    };
    match resolved {
        Ok(addrs) => Ok(Admitted { addrs, ..admitted }),
        Err(why) => {
            let why = if why.is_empty() {
                format!("{domain}: not resolved")
            } else {
                why
            };
            super::record::finish(
                state,
                &admitted,
                super::record::Ending::failed("unresolved", started.elapsed()),
            )
            .await;
            Err(EgressError::Unreachable(why))
        }
    }
}

/// The live manifest's `permissions.net.domains`; none without a manifest.
fn domains(manifest: Option<&LoadedManifest>) -> &[DomainPattern] {
    manifest.map_or(&[], |m| m.manifest.permissions.net.domains.as_slice())
}

fn list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

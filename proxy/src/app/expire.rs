//! Approvals past their expiry are recorded as expired (`APPROVAL_DECIDED`
//! `{"state": "expired"}` by the sidecar, in the approval's session), and
//! the pending gauge follows, every few seconds. An expiry is in force
//! from its time whether or not it is recorded yet (`Approval::state_at`):
//! this puts it in the chain and ends it in the table, and wakes any call
//! held open for it.

use std::time::Duration;

use aegis_ledger::approval::field;
use aegis_ledger::{
    AppendError, AppendRequest, EventType, LedgerHandle, LedgerReader, NewEvent, Origin, Payload,
    now_unix_ms,
};
use serde_json::json;
use tokio::sync::watch;

use crate::gate::approval::Waiters;
use crate::metrics::ApprovalMetrics;
use crate::webhook::Webhook;

/// How often the sweep runs.
const EVERY: Duration = Duration::from_secs(5);
/// Most expiries recorded per sweep (the rest wait for the next).
const PER_SWEEP: usize = 256;

pub(super) async fn expire_approvals(
    ledger: LedgerHandle,
    reader: LedgerReader,
    metrics: ApprovalMetrics,
    webhook: Webhook,
    waiters: Waiters,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if sweep(&ledger, &reader, &metrics, &webhook, &waiters)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One sweep; `Err` when the ledger has stopped.
pub(super) async fn sweep(
    ledger: &LedgerHandle,
    reader: &LedgerReader,
    metrics: &ApprovalMetrics,
    webhook: &Webhook,
    waiters: &Waiters,
) -> Result<usize, ()> {
    let now = now_unix_ms();
    let lookup = reader.clone();
    let found = tokio::task::spawn_blocking(move || {
        let overdue = lookup.overdue_approvals(now, PER_SWEEP)?;
        let pending = lookup.pending_approvals(None, now)?;
        Ok::<_, aegis_ledger::StoreError>((overdue, pending))
    })
    .await;
    let (overdue, pending) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "approvals could not be read for the expiry sweep");
            return Ok(0);
        }
        Err(_) => return Ok(0),
    };
    metrics
        .pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    let mut expired = 0;
    for approval in overdue {
        let payload = json!({
            field::APPROVAL_ID: approval.id,
            field::STATE: "expired",
            field::TOOL_NAME: approval.tool_name,
            field::PROPOSAL_SEQ: approval.proposal_seq,
            field::EXPIRES_UNIX_MS: approval.expires_unix_ms,
            "was": approval.state.as_str(),
        });
        let request = AppendRequest::at_head(NewEvent {
            tenant_id: approval.tenant_id.clone(),
            user_id: String::new(),
            session_id: approval.session_id.clone(),
            ts_unix_ms: now_unix_ms(),
            event_type: EventType::ApprovalDecided,
            payload: Payload::from_value(payload),
        })
        .by(Origin::Sidecar);
        match ledger.append(request).await {
            Ok(_) => {
                expired += 1;
                metrics.decided.with_label_values(&["expired"]).inc();
                webhook.send(crate::webhook::Event::Decided, &approval.id);
                waiters.wake(&approval.id);
                tracing::info!(
                    approval_id = %approval.id,
                    tenant = %approval.tenant_id,
                    session = %approval.session_id,
                    tool = %approval.tool_name,
                    "approval expired"
                );
            }
            // Used or decided meanwhile: nothing to expire.
            Err(AppendError::Approval(_)) => {}
            Err(AppendError::Closed) => return Err(()),
            Err(e) => {
                tracing::warn!(error = %e, approval_id = %approval.id, "an approval's expiry could not be recorded");
            }
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use aegis_ledger::{ApprovalState, Ledger, LedgerConfig, Seal};

    use super::*;

    /// A sidecar-recorded proposal and its `APPROVAL_REQUESTED`, expiring
    /// at `expires_unix_ms`.
    async fn request(ledger: &Ledger, id: &str, expires_unix_ms: i64) {
        let event = |event_type, payload| NewEvent {
            tenant_id: "t".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            ts_unix_ms: now_unix_ms(),
            event_type,
            payload: Payload::from_value(payload),
        };
        let head = ledger.handle().sessions().head("t", "s");
        let seq = head.map_or(0, |h| h.seq + 1);
        let results = ledger
            .handle()
            .append_group(vec![
                AppendRequest {
                    event: event(
                        EventType::ToolCallProposed,
                        json!({"tool_name": "deploy", "args": {"id": id}}),
                    ),
                    seal: Seal::Expect {
                        seq,
                        prev_hash: head.map(|h| h.hash),
                    },
                    origin: Origin::Sidecar,
                },
                AppendRequest::at_head(event(
                    EventType::ApprovalRequested,
                    json!({"tool_name": "deploy", "proposal_seq": seq, "approval_id": id,
                           "args_digest": "ab".repeat(32), "approvals_required": 1,
                           "expires_unix_ms": expires_unix_ms}),
                ))
                .by(Origin::Sidecar),
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_records_what_has_expired_and_counts_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger.db"))).unwrap();
        let metrics = crate::metrics::Metrics::new().unwrap().approvals;
        request(&ledger, "appr-old", 1).await;
        request(&ledger, "appr-new", i64::MAX).await;
        let swept = tokio::time::timeout(
            Duration::from_secs(60),
            sweep(
                &ledger.handle(),
                &ledger.reader(),
                &metrics,
                &Webhook::off(),
                &Waiters::default(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(swept, Ok(1));
        let reader = ledger.reader();
        assert_eq!(
            reader.approval("appr-old").unwrap().unwrap().state,
            ApprovalState::Expired
        );
        assert_eq!(
            reader.approval("appr-new").unwrap().unwrap().state,
            ApprovalState::Pending
        );
        assert_eq!(metrics.pending.get(), 1);
        assert_eq!(metrics.decided.with_label_values(&["expired"]).get(), 1);
        // In the chain, and not again.
        let (off, nobody) = (Webhook::off(), Waiters::default());
        let again = sweep(&ledger.handle(), &reader, &metrics, &off, &nobody).await;
        assert_eq!(again, Ok(0));
        let entry = reader.load_session("t", "s").unwrap().unwrap();
        assert_eq!(entry.head.seq, 4, "two proposals, two requests, one expiry");
        ledger.close();
    }
}

//! Sessions in memory follow the active ones: idle sessions are dropped
//! every so often and rebuilt from the ledger on next use.

use std::time::Duration;

use tokio::sync::watch;

/// Drops idle sessions from memory every so often (they are rebuilt from
/// the ledger on next use), so memory follows active sessions, not every
/// session ever seen.
pub(super) async fn evict_idle_sessions(
    ledger: aegis_ledger::LedgerHandle,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match ledger.evict_idle(idle).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(evicted = n, "idle sessions dropped from memory"),
            Err(_) => return,
        }
    }
}

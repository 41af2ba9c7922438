//! Start-up and shutdown wiring: load the manifest and watch it, open the
//! ledger, bind the listeners, serve, announce readiness; on shutdown, drain
//! and close the ledger last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aegis_ledger::{Ledger, LedgerObserver, SessionRules};
use aegis_policy::{ManifestStore, ReloadOutcome, WatchGuard};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::manifest::report;
use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::loops::ManifestSessionRules;
use crate::metrics::Metrics;

/// A running sidecar.
#[derive(Debug)]
pub struct Running {
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    admin: JoinHandle<()>,
    ledger: Ledger,
    metrics: Metrics,
    manifests: ManifestStore,
    /// Stops the manifest directory watch when dropped.
    _watch: WatchGuard,
    ready_file: Option<PathBuf>,
}

/// Opens the ledger, binds every listener, starts serving, and writes the
/// ready file (when configured) with each listener's bound address.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    if let Some(path) = &config.ready_file {
        // A file left by an earlier run would announce its (dead) addresses.
        remove_ready_file(path);
    }
    let metrics = Metrics::new().context("cannot create the metrics registry")?;
    let (manifests, watch) = open_manifest(config.manifest.clone(), &metrics).await?;
    let ledger_config = config.ledger.to_ledger_config();
    let observer: Arc<dyn LedgerObserver> = metrics.ledger.clone();
    // The session reducer finds loops with the live manifest's thresholds.
    let loops: Arc<dyn SessionRules> = Arc::new(ManifestSessionRules::new(manifests.clone()));
    // Opening may create, migrate and scan the file: not on a runtime worker.
    let ledger = tokio::task::spawn_blocking(move || {
        Ledger::builder(ledger_config)
            .observer(observer)
            .session_rules(loops)
            .open()
    })
    .await
    .context("ledger start-up task failed")?
    .with_context(|| format!("cannot open the ledger at {}", config.ledger.path.display()))?;

    let listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin.listen)", config.admin.listen))?;
    let admin_addr = listener
        .local_addr()
        .context("admin listener has no local address")?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(AdminState {
        ledger: ledger.handle(),
        reader: ledger.reader(),
        metrics: metrics.clone(),
        config: config.admin.clone(),
        manifests: manifests.clone(),
        limiters: Arc::default(),
    });
    let drain = config.admin.request_timeout;
    let admin = tokio::spawn(admin::serve(listener, state, shutdown_rx, drain));

    if let Some(path) = &config.ready_file {
        write_ready_file(path, admin_addr, &config)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    tracing::info!(
        admin = %admin_addr,
        ledger = %config.ledger.path.display(),
        synchronous = %config.ledger.synchronous,
        manifest = %config.manifest.as_deref().map_or("none".into(), |p| p.display().to_string()),
        "aegis-proxy ready"
    );
    Ok(Running {
        admin_addr,
        shutdown,
        admin,
        ledger,
        metrics,
        manifests,
        _watch: watch,
        ready_file: config.ready_file,
    })
}

/// Loads the configured manifest (an invalid one stops start-up, with every
/// problem) and starts watching its directory; with none configured, an
/// empty store (decisions fail closed).
async fn open_manifest(
    path: Option<PathBuf>,
    metrics: &Metrics,
) -> anyhow::Result<(ManifestStore, WatchGuard)> {
    let Some(path) = path else {
        let store = ManifestStore::empty();
        let watch = store.watch(|_| {})?;
        return Ok((store, watch));
    };
    let on_reload = {
        let metrics = metrics.clone();
        move |outcome: &ReloadOutcome| report(outcome, &metrics, "watch")
    };
    // Reading the file and creating the watch block.
    let (store, watch) = tokio::task::spawn_blocking(move || {
        let store = ManifestStore::open(path)?;
        let watch = store.watch(on_reload)?;
        Ok::<_, aegis_policy::ManifestLoadError>((store, watch))
    })
    .await
    .context("manifest start-up task failed")??;
    if let Some(live) = store.current() {
        metrics.manifest.set_generation(live.generation);
        tracing::info!(
            generation = live.generation,
            sha256 = %live.sha256,
            path = %live.path.display(),
            name = %live.manifest.name,
            version = %live.manifest.version,
            "manifest loaded"
        );
    }
    Ok((store, watch))
}

impl Running {
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Re-reads the manifest (SIGHUP), off the runtime's workers; logs and
    /// counts the outcome like every other reload.
    pub async fn reload_manifest(&self) -> Option<ReloadOutcome> {
        let store = self.manifests.clone();
        match tokio::task::spawn_blocking(move || store.reload()).await {
            Ok(outcome) => {
                report(&outcome, &self.metrics, "sighup");
                Some(outcome)
            }
            Err(e) => {
                tracing::error!(error = %e, "manifest reload task failed");
                None
            }
        }
    }

    /// Stops accepting, lets in-flight requests finish within `deadline`,
    /// then commits what is queued and closes the ledger.
    pub async fn shutdown(self, deadline: Duration) {
        if let Some(path) = &self.ready_file {
            remove_ready_file(path);
        }
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(deadline, self.admin).await.is_err() {
            tracing::warn!(?deadline, "admin server did not stop within the deadline");
        }
        let ledger = self.ledger;
        if tokio::task::spawn_blocking(move || ledger.close())
            .await
            .is_err()
        {
            tracing::error!("closing the ledger failed");
        }
        tracing::info!("aegis-proxy stopped");
    }
}

fn remove_ready_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the ready file")
        }
    }
}

/// Writes `{"admin": "ip:port", "pid": n, "ledger": "path"}` atomically
/// (temporary file, then rename), so a reader never sees half a file.
fn write_ready_file(path: &Path, admin: SocketAddr, config: &Config) -> std::io::Result<()> {
    let body = serde_json::json!({
        "admin": admin.to_string(),
        "pid": std::process::id(),
        "ledger": config.ledger.path.display().to_string(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{body}\n"))?;
    std::fs::rename(&tmp, path)
}

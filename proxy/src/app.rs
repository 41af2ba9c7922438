//! Start-up and shutdown wiring: load the manifest and watch it, read the
//! admin tokens and watch them, open the ledger, bind the listeners, serve,
//! announce readiness; on shutdown, drain and close the ledger last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aegis_ledger::{Ledger, LedgerObserver, SessionRules};
use aegis_policy::{ManifestStore, ReloadOutcome, WatchGuard};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::manifest::report;
use crate::admin::{self, AdminState, Authenticator, TokenSet, TokenWatch};
use crate::config::{AdminConfig, Config};
use crate::egress::{self, EgressState};
use crate::gate::Gate;
use crate::identity::{FileWatch, Resolver};
use crate::limits::SessionLimiters;
use crate::loops::ManifestSessionRules;
use crate::mcp::{self as mcp_server, McpState};
use crate::metrics::Metrics;

/// A running sidecar.
#[derive(Debug)]
pub struct Running {
    admin_addr: SocketAddr,
    /// `admin.metrics_listen`'s address, when configured.
    metrics_addr: Option<SocketAddr>,
    mcp_addr: Option<SocketAddr>,
    forward_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// Stops the admin server, last (readiness answers "draining" meanwhile).
    admin_shutdown: watch::Sender<bool>,
    admin: JoinHandle<()>,
    /// The probes-and-scrape listener; stops with the admin server.
    probes: Option<JoinHandle<()>>,
    mcp: Option<JoinHandle<()>>,
    /// The egress forward proxy, when `forward.listen` is set.
    forward: Option<JoinHandle<()>>,
    evictor: JoinHandle<()>,
    draining: Arc<AtomicBool>,
    shutdown_grace: Duration,
    /// Results on their way to the ledger; shutdown waits for them.
    sequencers: crate::gate::Sequencers,
    ledger: Ledger,
    metrics: Metrics,
    manifests: ManifestStore,
    /// Stops the manifest directory watch when dropped.
    _watch: WatchGuard,
    /// The admin tokens, re-read on SIGHUP and when their files change.
    tokens: Arc<TokenSet>,
    /// Stops the token files' watch when dropped.
    _token_watch: TokenWatch,
    /// Who requests act for; its JWK Set is re-read on SIGHUP too.
    identity: Arc<Resolver>,
    /// Stops the JWK Set watch (`mcp.identity.jwt`) when dropped.
    _jwks_watch: Option<FileWatch>,
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
    let reload_results = admin::tokens::TokenReload::ALL.map(|r| r.as_str());
    metrics.auth.init(
        admin::protected_routes(),
        &admin::AuthError::REASONS,
        &reload_results,
    );
    let (tokens, token_watch) = open_tokens(&config.admin, &metrics).await?;
    let auth = Arc::new(Authenticator::new(&config.admin.auth, tokens.clone()));
    let warnings: Arc<[String]> = auth_warnings(&config.admin).into();
    for warning in warnings.iter() {
        tracing::warn!("{warning}");
    }
    let (manifests, watch) = open_manifest(config.manifest.clone(), &metrics).await?;
    let (identity, jwks_watch) = open_identity(&config, &metrics).await?;
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
    let probes_listener = match config.admin.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin.metrics_listen)"))?,
        ),
        None => None,
    };
    let metrics_addr = probes_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("metrics listener has no local address")?;
    let mcp_listener = match config.mcp.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (mcp.listen)"))?;
            Some(listener)
        }
        None => None,
    };

    let forward_listener = match config.forward.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (forward.listen)"))?,
        ),
        None => None,
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (admin_shutdown, admin_shutdown_rx) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    let limiters = Arc::new(SessionLimiters::default());
    let state = Arc::new(AdminState {
        ledger: ledger.handle(),
        reader: ledger.reader(),
        metrics: metrics.clone(),
        config: config.admin.clone(),
        manifests: manifests.clone(),
        limiters: limiters.clone(),
        draining: draining.clone(),
        auth,
        warnings,
    });
    let drain = config.admin.request_timeout;
    let probes = probes_listener.map(|listener| {
        tokio::spawn(admin::serve_probes(
            listener,
            state.clone(),
            admin_shutdown_rx.clone(),
            drain,
        ))
    });
    let admin = tokio::spawn(admin::serve(listener, state, admin_shutdown_rx, drain));

    // One gate for every listener: a session's calls are sequenced together
    // whether they come as MCP tools/call or as egress.
    let gate = Gate {
        ledger: ledger.handle(),
        reader: ledger.reader(),
        limiters,
        sequencers: Default::default(),
        result_commit: config.ledger.result_commit,
        started_unix_ms: aegis_ledger::now_unix_ms(),
    };
    let sequencers = gate.sequencers.clone();
    let mut mcp_addr = None;
    let mut mcp = None;
    if let Some(listener) = mcp_listener {
        mcp_addr = Some(
            listener
                .local_addr()
                .context("mcp listener has no local address")?,
        );
        let state = McpState::new(
            gate.clone(),
            manifests.clone(),
            metrics.clone(),
            config.mcp.clone(),
            identity.clone(),
            config.ledger.fail_open,
            shutdown_rx.clone(),
        )?;
        let grace = config.mcp.shutdown_grace;
        mcp = Some(tokio::spawn(mcp_server::serve(
            listener,
            Arc::new(state),
            shutdown_rx.clone(),
            grace,
        )));
    }
    let mut forward_addr = None;
    let mut forward = None;
    if let Some(listener) = forward_listener {
        forward_addr = Some(
            listener
                .local_addr()
                .context("forward listener has no local address")?,
        );
        let state = EgressState::new(
            gate,
            manifests.clone(),
            metrics.clone(),
            config.forward.clone(),
            &config.mcp,
            identity.clone(),
            shutdown_rx.clone(),
        );
        // Tunnels get the grace period; then their results are recorded.
        let drain = config.mcp.shutdown_grace + Duration::from_secs(1);
        forward = Some(tokio::spawn(egress::serve(
            listener,
            Arc::new(state),
            shutdown_rx.clone(),
            drain,
        )));
    }
    let evictor = tokio::spawn(evict_idle_sessions(
        ledger.handle(),
        config.mcp.session_idle,
        shutdown_rx,
    ));

    if let Some(path) = &config.ready_file {
        let addrs = ReadyAddrs {
            admin: admin_addr,
            metrics: metrics_addr,
            mcp: mcp_addr,
            forward: forward_addr,
        };
        write_ready_file(path, &addrs, &config)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    tracing::info!(
        admin = %admin_addr,
        metrics = %metrics_addr.map_or("off".into(), |a| a.to_string()),
        admin_auth = %auth_summary(&config.admin),
        mcp = %mcp_addr.map_or("off".into(), |a| a.to_string()),
        upstreams = %config.mcp.upstreams.iter().map(|u| format!("{}={}", u.name, u.url)).collect::<Vec<_>>().join(","),
        forward = %forward_addr.map_or("off".into(), |a| a.to_string()),
        enforce = config.mcp.enforce,
        mcp_tls = config.mcp.tls.is_some(),
        admin_tls = config.admin.tls.is_some(),
        ledger = %config.ledger.path.display(),
        synchronous = %config.ledger.synchronous,
        manifest = %config.manifest.as_deref().map_or("none".into(), |p| p.display().to_string()),
        "aegis-proxy ready"
    );
    Ok(Running {
        admin_addr,
        metrics_addr,
        mcp_addr,
        forward_addr,
        shutdown,
        admin_shutdown,
        admin,
        probes,
        mcp,
        forward,
        evictor,
        draining,
        shutdown_grace: config.mcp.shutdown_grace,
        sequencers,
        ledger,
        metrics,
        manifests,
        _watch: watch,
        tokens,
        _token_watch: token_watch,
        identity,
        _jwks_watch: jwks_watch,
        ready_file: config.ready_file,
    })
}

/// Checks `admin.auth` against the listener (dev mode only on loopback;
/// mTLS entries only with a client CA: the configuration checks both, this
/// also covers configurations built in code), reads the token files and
/// starts watching them. A bad token file stops start-up, naming it.
async fn open_tokens(
    admin: &AdminConfig,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<TokenSet>, TokenWatch)> {
    if let Some(problem) = crate::config::dev_mode_problem(admin.listen, &admin.auth) {
        anyhow::bail!("{problem}");
    }
    let client_ca = admin
        .tls
        .as_ref()
        .and_then(|tls| tls.client_ca_file.as_ref());
    if !admin.auth.mtls.is_empty() && client_ca.is_none() {
        anyhow::bail!("admin.auth.mtls: needs admin.tls.client_ca_file");
    }
    let entries = admin.auth.tokens.clone();
    let reloads = metrics.auth.token_reloads.clone();
    // Reading the files and creating the watch block.
    tokio::task::spawn_blocking(move || {
        let tokens = Arc::new(TokenSet::load(&entries, reloads).map_err(anyhow::Error::msg)?);
        let watch = tokens.watch().map_err(anyhow::Error::msg)?;
        Ok((tokens, watch))
    })
    .await
    .context("admin token start-up task failed")?
}

/// What the operator should know about the admin API's credentials; logged
/// at start-up and repeated by `/readyz`.
fn auth_warnings(admin: &AdminConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if admin.auth.is_dev_mode() {
        warnings.push(
            "dev mode: admin.auth configures no credential, so callers of the admin API are \
             not authenticated: anyone who reaches the loopback admin.listen may read and \
             append events and ask for decisions, and operator actions (manifest reload, \
             sanitizer registration) are refused; configure admin.auth.tokens or \
             admin.auth.mtls"
                .to_owned(),
        );
    }
    if !admin.auth.tokens.is_empty() && admin.tls.is_none() && !admin.listen.ip().is_loopback() {
        warnings.push(format!(
            "admin.auth.tokens travel in plain HTTP: admin.listen {} is not loopback and \
             admin.tls is off, so anyone who can watch that network can read them; set \
             admin.tls.cert_file and admin.tls.key_file",
            admin.listen
        ));
    }
    warnings
}

/// How the admin API authenticates, for the start-up line.
fn auth_summary(admin: &AdminConfig) -> String {
    if admin.auth.is_dev_mode() {
        return "dev-mode".to_owned();
    }
    format!(
        "{} token(s), {} mtls rule(s)",
        admin.auth.tokens.len(),
        admin.auth.mtls.len()
    )
}

/// Builds the identity resolver both listeners share: reads the JWK Set
/// when `mcp.identity.jwt` is configured (a missing or unusable file stops
/// start-up) and starts watching it.
async fn open_identity(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<Resolver>, Option<FileWatch>)> {
    let identity = config.mcp.identity.clone();
    let metrics = metrics.identity.clone();
    // Reading the file and creating the watch block.
    tokio::task::spawn_blocking(move || {
        let resolver = Resolver::open(identity, metrics).map_err(anyhow::Error::msg)?;
        let watch = resolver.watch().map_err(anyhow::Error::msg)?;
        Ok((Arc::new(resolver), watch))
    })
    .await
    .context("identity start-up task failed")?
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

    /// `admin.metrics_listen`'s address, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The MCP listener's address, when one is configured.
    pub fn mcp_addr(&self) -> Option<SocketAddr> {
        self.mcp_addr
    }

    /// The egress forward proxy's address, when one is configured.
    pub fn forward_addr(&self) -> Option<SocketAddr> {
        self.forward_addr
    }

    /// Verifies one session's chain as stored now; `None` when it has no
    /// envelopes.
    pub async fn verify_session(
        &self,
        tenant: &str,
        session: &str,
    ) -> anyhow::Result<Option<aegis_ledger::SessionReport>> {
        let reader = self.ledger.reader();
        let (tenant, session) = (tenant.to_owned(), session.to_owned());
        let report = tokio::task::spawn_blocking(move || reader.verify_session(&tenant, &session))
            .await
            .context("verify task failed")??;
        Ok(report)
    }

    /// Reads how many sessions are held in memory (idle ones are evicted).
    pub fn sessions_in_memory(&self) -> impl Fn() -> usize + use<> {
        let table = self.ledger.handle().sessions().clone();
        move || table.len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// SIGHUP: re-reads the admin token files ([`Running::reload_tokens`])
    /// and the manifest, off the runtime's workers; logs and counts the
    /// manifest's outcome like every other reload, and returns it.
    pub async fn reload_manifest(&self) -> Option<ReloadOutcome> {
        self.reload_tokens("sighup").await;
        self.reload_jwks().await;
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

    /// Re-reads the JWK Set of `mcp.identity.jwt`, when configured (a bad
    /// file keeps the last good set; see [`crate::identity::jwks`]).
    pub async fn reload_jwks(&self) -> Option<crate::identity::jwks::JwksReload> {
        let identity = self.identity.clone();
        match tokio::task::spawn_blocking(move || identity.reload_jwks()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "JWK Set reload task failed");
                None
            }
        }
    }

    /// Re-reads every admin token file and swaps the new set in (an
    /// unusable file disables its entry; see [`crate::admin::tokens`]).
    pub async fn reload_tokens(&self, trigger: &'static str) {
        if self.tokens.is_empty() {
            return;
        }
        let tokens = self.tokens.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || tokens.reload(trigger)).await {
            tracing::error!(error = %e, "admin token reload task failed");
        }
    }

    /// Graceful shutdown: readiness turns false, the MCP listener stops
    /// accepting and its in-flight calls finish within the shutdown grace
    /// period (held-open GET streams end); then the admin server stops
    /// (within `deadline`), and what is queued is committed and the ledger
    /// closed.
    pub async fn shutdown(self, deadline: Duration) {
        if let Some(path) = &self.ready_file {
            remove_ready_file(path);
        }
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        if let Some(mcp) = self.mcp {
            // The server bounds its own drain by the grace period.
            let bound = self.shutdown_grace + Duration::from_secs(1);
            if tokio::time::timeout(bound, mcp).await.is_err() {
                tracing::warn!("mcp server did not stop within the grace period");
            }
        }
        if let Some(forward) = self.forward {
            // Tunnels end within the grace period, then their records land.
            let bound = self.shutdown_grace + Duration::from_secs(2);
            if tokio::time::timeout(bound, forward).await.is_err() {
                tracing::warn!("forward proxy did not stop within the grace period");
            }
        }
        self.evictor.abort();
        let _ = self.admin_shutdown.send(true);
        if tokio::time::timeout(deadline, self.admin).await.is_err() {
            tracing::warn!(?deadline, "admin server did not stop within the deadline");
        }
        if let Some(probes) = self.probes
            && tokio::time::timeout(deadline, probes).await.is_err()
        {
            tracing::warn!(
                ?deadline,
                "metrics listener did not stop within the deadline"
            );
        }
        // Results committed after their answers were relayed land before
        // the ledger closes.
        if tokio::time::timeout(deadline, self.sequencers.results_idle())
            .await
            .is_err()
        {
            tracing::warn!(?deadline, "results still being recorded at shutdown");
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

/// Drops idle sessions from memory every so often (they are rebuilt from
/// the ledger on next use), so memory follows active sessions, not every
/// session ever seen.
async fn evict_idle_sessions(
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

fn remove_ready_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the ready file")
        }
    }
}

/// The bound listeners' addresses, for the ready file.
struct ReadyAddrs {
    admin: SocketAddr,
    metrics: Option<SocketAddr>,
    mcp: Option<SocketAddr>,
    forward: Option<SocketAddr>,
}

/// Writes `{"admin": "ip:port", "metrics": "ip:port"|null, "mcp":
/// "ip:port"|null, "forward": "ip:port"|null, "pid": n, "ledger": "path"}`
/// atomically (temporary file, then rename), so a reader never sees half a
/// file.
fn write_ready_file(path: &Path, addrs: &ReadyAddrs, config: &Config) -> std::io::Result<()> {
    let body = serde_json::json!({
        "admin": addrs.admin.to_string(),
        "metrics": addrs.metrics.map(|a| a.to_string()),
        "mcp": addrs.mcp.map(|a| a.to_string()),
        "forward": addrs.forward.map(|a| a.to_string()),
        "pid": std::process::id(),
        "ledger": config.ledger.path.display().to_string(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{body}\n"))?;
    std::fs::rename(&tmp, path)
}

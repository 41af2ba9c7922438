//! Start-up and shutdown wiring: load the manifest and watch it, read the
//! admin tokens and watch them, open the ledger, bind the listeners, serve,
//! announce readiness; on shutdown, drain and close the ledger last.

use std::net::SocketAddr;
use std::path::PathBuf;
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
use crate::config::Config;
use crate::egress::{self, EgressState};
use crate::gate::Gate;
use crate::identity::{FileWatch, Resolver};
use crate::limits::SessionLimiters;
use crate::loops::ManifestSessionRules;
use crate::mcp::{self as mcp_server, McpState};
use crate::metrics::Metrics;

mod evict;
mod expire;
mod open;
mod ready;

use evict::evict_idle_sessions;
use expire::expire_approvals;
use open::{auth_summary, auth_warnings, open_identity, open_manifest, open_tokens};
use ready::{ReadyAddrs, remove_ready_file, write_ready_file};

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
    /// Records approvals past their expiry (`expire`).
    expirer: JoinHandle<()>,
    draining: Arc<AtomicBool>,
    shutdown_grace: Duration,
    /// How long the listeners keep accepting once shutdown begins.
    drain_delay: Duration,
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
    // Delivered until the admin server stops (decisions made during the
    // drain are still announced).
    let webhook = match &config.approval.webhook_url {
        Some(url) => crate::webhook::Webhook::start(
            url.clone(),
            ledger.reader(),
            metrics.approvals.webhooks.clone(),
            admin_shutdown_rx.clone(),
        ),
        None => crate::webhook::Webhook::off(),
    };
    let waiters = crate::gate::approval::Waiters::default();
    // One gate for every listener: a session's calls are sequenced together
    // whether they come as MCP tools/call, as egress or through a decision API.
    let gate = Gate {
        ledger: ledger.handle(),
        reader: ledger.reader(),
        limiters: limiters.clone(),
        sequencers: crate::gate::Sequencers::new(config.mcp.max_queued_per_session),
        result_commit: config.ledger.result_commit,
        started_unix_ms: aegis_ledger::now_unix_ms(),
        approvals: config.approval.clone(),
        webhook: webhook.clone(),
        waiters: waiters.clone(),
    };
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
        webhook: webhook.clone(),
        waiters: waiters.clone(),
        gate: gate.clone(),
        identity: identity.clone(),
        enforce: config.mcp.enforce,
        fail_open: config.ledger.fail_open,
        releasing: Default::default(),
        governance: Default::default(),
        upstream_checks: health_checked_upstreams(&config.mcp),
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
    let expirer = tokio::spawn(expire_approvals(
        ledger.handle(),
        ledger.reader(),
        metrics.approvals.clone(),
        webhook,
        waiters,
        shutdown_rx.clone(),
    ));
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
        expirer,
        draining,
        shutdown_grace: config.mcp.shutdown_grace,
        drain_delay: config.mcp.drain_delay,
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
        self.shutdown_after(deadline, std::future::pending()).await;
    }

    /// [`Running::shutdown`], whose drain delay (`mcp.drain_delay_ms`: the
    /// listeners still accept, readiness already answers draining) ends
    /// early when `cut` resolves (a second signal).
    pub async fn shutdown_after(
        self,
        deadline: Duration,
        cut: impl std::future::Future<Output = ()>,
    ) {
        if let Some(path) = &self.ready_file {
            remove_ready_file(path);
        }
        self.draining.store(true, Ordering::SeqCst);
        if !self.drain_delay.is_zero() {
            tracing::info!(delay = ?self.drain_delay, "draining: still accepting while endpoints are removed");
            tokio::select! {
                () = tokio::time::sleep(self.drain_delay) => {}
                () = cut => tracing::info!("drain delay cut short by a second signal"),
            }
        }
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
        self.expirer.abort();
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

/// The upstreams readiness connects to (`mcp.ready_checks_upstreams`): each
/// one's `host:port`, the scheme's port when the URL names none.
fn health_checked_upstreams(mcp: &crate::config::McpConfig) -> Arc<[(String, String)]> {
    if !mcp.ready_checks_upstreams {
        return Arc::from(Vec::new());
    }
    mcp.upstreams
        .iter()
        .filter_map(|u| {
            let host = u.url.host()?;
            let port = u.url.port_u16().unwrap_or(match u.url.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Some((u.name.clone(), authority))
        })
        .collect()
}

//! Start-up's openers: the admin tokens, the identity resolver and the
//! manifest, each read off the runtime's workers and watched from then on.

use std::path::PathBuf;
use std::sync::Arc;

use aegis_policy::{ManifestStore, ReloadOutcome, WatchGuard};
use anyhow::Context as _;

use crate::admin::manifest::report;
use crate::admin::{TokenSet, TokenWatch};
use crate::config::{AdminConfig, Config};
use crate::identity::{FileWatch, Resolver};
use crate::metrics::Metrics;

/// Checks `admin.auth` against the listener (dev mode only on loopback;
/// mTLS entries only with a client CA: the configuration checks both, this
/// also covers configurations built in code), reads the token files and
/// starts watching them. A bad token file stops start-up, naming it.
pub(super) async fn open_tokens(
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
pub(super) fn auth_warnings(admin: &AdminConfig) -> Vec<String> {
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
pub(super) fn auth_summary(admin: &AdminConfig) -> String {
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
pub(super) async fn open_identity(
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
pub(super) async fn open_manifest(
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

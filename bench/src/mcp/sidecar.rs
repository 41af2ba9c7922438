//! One sidecar (`aegis_proxy::app::start`) in front of both demo tool
//! servers, as upstreams `json` and `sse` (`/mcp/json`, `/mcp/sse`), on a
//! runtime of its own, with its ledger and its manifest in a temporary
//! directory. Several can run side by side (a ledger each).

use std::net::SocketAddr;
use std::time::Duration;

use aegis_ledger::Synchronous;
use aegis_proxy::app::{self, Running};
use aegis_proxy::config::{Config, UpstreamConfig};
use aegis_proxy::identity::SessionScope;
use anyhow::Context as _;
use tokio::runtime::Runtime;

use super::{Answering, Endpoint, MANIFEST, Upstreams, runtime};
use crate::stages::Samples;

/// How long the upstream may take to send its answer's headers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The sidecar's drain deadline when the bench ends.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// How a sidecar is configured.
#[derive(Debug, Clone, Copy)]
pub struct SidecarOptions {
    /// The ledger's `synchronous`.
    pub synchronous: Synchronous,
    /// `mcp.enforce`; `false` is shadow mode (decided and recorded, every
    /// call forwarded).
    pub enforce: bool,
    /// Put the manifest beside the ledger instead of in a directory of its
    /// own (as a mounted ConfigMap would be): the sidecar watches the
    /// manifest's directory, so then every ledger write wakes the watcher.
    pub manifest_beside_ledger: bool,
}

/// A running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    running: Running,
    addr: SocketAddr,
    /// The runtime it runs on (its tasks live as long as this).
    rt: Runtime,
    /// Its ledger and manifest.
    dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts a sidecar in front of `upstreams`; its runtime's threads are
    /// called `name` (at most 15 bytes: the kernel's limit for a thread
    /// name, which the CPU accounting reads).
    pub fn start(
        name: &str,
        upstreams: &Upstreams,
        options: SidecarOptions,
    ) -> anyhow::Result<Sidecar> {
        let dir = tempfile::tempdir().context("creating the sidecar's directory")?;
        let rt = runtime(name)?;
        let manifest_dir = if options.manifest_beside_ledger {
            dir.path().to_owned()
        } else {
            let own = dir.path().join("manifest");
            std::fs::create_dir(&own).context("creating the manifest directory")?;
            own
        };
        let manifest = manifest_dir.join("manifest.yaml");
        std::fs::write(&manifest, MANIFEST).context("writing the manifest")?;
        let mut config = Config::default();
        config.admin.listen = "127.0.0.1:0".parse().context("admin address")?;
        config.ledger.path = dir.path().join("ledger.db");
        config.ledger.synchronous = options.synchronous;
        config.manifest = Some(manifest);
        config.mcp.listen = Some("127.0.0.1:0".parse().context("mcp address")?);
        config.mcp.upstreams = Answering::ALL
            .iter()
            .map(|&answering| upstream(answering, &upstreams.url(answering)))
            .collect::<anyhow::Result<_>>()?;
        config.mcp.enforce = options.enforce;
        // The workloads run one sidecar session per connection, named by
        // `x-aegis-session-id`: a client-named scope (the default would put
        // every connection in the principal's one session).
        config.mcp.identity.session_scope = SessionScope::Client;
        let running = rt
            .block_on(app::start(config))
            .with_context(|| format!("starting the sidecar {name}"))?;
        let addr = running
            .mcp_addr()
            .context("the sidecar has no MCP listener")?;
        Ok(Sidecar {
            running,
            addr,
            rt,
            dir,
        })
    }

    /// Where it reaches the tool server answering with `answering`.
    pub fn endpoint(&self, answering: Answering) -> Endpoint {
        Endpoint {
            addr: self.addr,
            path: format!("/mcp/{answering}"),
        }
    }

    /// Its metrics now, summed over labels.
    pub fn samples(&self) -> Samples {
        Samples::parse(&String::from_utf8_lossy(&self.running.metrics().render()))
    }

    /// Bytes of the ledger's database and WAL files.
    pub fn ledger_bytes(&self) -> u64 {
        ["ledger.db", "ledger.db-wal"]
            .iter()
            .filter_map(|name| std::fs::metadata(self.dir.path().join(name)).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Drains it and closes its ledger.
    pub fn shutdown(self) {
        self.rt.block_on(self.running.shutdown(SHUTDOWN_DEADLINE));
        drop(self.dir);
    }
}

fn upstream(answering: Answering, url: &str) -> anyhow::Result<UpstreamConfig> {
    Ok(UpstreamConfig {
        name: answering.as_str().to_owned(),
        url: url.parse().with_context(|| format!("demo URL {url}"))?,
        timeout: UPSTREAM_TIMEOUT,
        headers: Vec::new(),
        tls: None,
    })
}

//! The MCP end-to-end bench's pieces: the demo tool server (one instance
//! answering JSON, one answering SSE) and the sidecar in front of both, each
//! on a tokio runtime of its own, and the `tools/call` [`Workload`] the load
//! generator sends to either.
//!
//! Each component gets its own runtime (two worker threads, as the sidecar
//! would have on this machine), so the load generator, the sidecar and the
//! tool server do not share a scheduler: as close to three processes as one
//! process gets, without the process plumbing.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use aegis_ledger::Synchronous;
use aegis_proxy::app::{self, Running};
use aegis_proxy::config::{Config, UpstreamConfig};
use anyhow::Context as _;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::stages::Samples;

mod echo;

pub use echo::EchoCall;

/// The manifest the sidecar runs with: the demo tools declared, budgets far
/// beyond any run (a bench must never be denied), loop detection at its
/// defaults (each call's text differs, so no two calls are identical, and
/// one tool repeated is not a sequence loop), `echo` and `big` non-tainting.
pub const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: bench-agent
version: "1.0.0"
publisher: aegis-bench
sandbox:
  required: true
  image: demo
permissions:
  tools: [echo, big]
  budgets:
    max_steps: 1000000000
    max_tool_calls: 1000000000
    max_wall_time_ms: 86400000
    timeout_ms: 30000
    max_output_bytes: 16777216
policy:
  non_tainting_tools: [echo, big]
"#;

/// Worker threads of each component's runtime: one per core here.
const WORKER_THREADS: usize = 2;
/// How long the upstream may take to send its answer's headers.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The sidecar's drain deadline when the bench ends.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// How the tool server answers: the two shapes of MCP's Streamable HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answering {
    Json,
    Sse,
}

impl Answering {
    pub const ALL: [Answering; 2] = [Answering::Json, Answering::Sse];

    pub fn as_str(self) -> &'static str {
        match self {
            Answering::Json => "json",
            Answering::Sse => "sse",
        }
    }

    fn mode(self) -> AnswerMode {
        match self {
            Answering::Json => AnswerMode::Json,
            Answering::Sse => AnswerMode::Sse,
        }
    }
}

impl fmt::Display for Answering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request goes: straight to the tool server, or through the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Direct,
    Sidecar,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Sidecar => "sidecar",
        }
    }
}

/// An address and the path of the MCP endpoint there.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub path: String,
}

/// Two demo tool servers (JSON, SSE) and the sidecar in front of them, with
/// its ledger in a temporary directory.
#[derive(Debug)]
pub struct Stack {
    json: DemoServer,
    sse: DemoServer,
    sidecar: Running,
    sidecar_addr: SocketAddr,
    /// The runtimes the tool servers and the sidecar run on (their tasks
    /// live as long as these).
    upstream_rt: Runtime,
    sidecar_rt: Runtime,
    /// The ledger, the manifest and the demo servers' sandbox.
    dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything; the sidecar's ledger commits with `synchronous`.
    ///
    /// The manifest goes in a directory of its own (as a mounted ConfigMap
    /// would be) unless `manifest_beside_ledger`: the sidecar watches the
    /// manifest's directory, so next to the ledger every ledger write wakes
    /// the watcher thread.
    pub fn start(synchronous: Synchronous, manifest_beside_ledger: bool) -> anyhow::Result<Stack> {
        let dir = tempfile::tempdir().context("creating the bench directory")?;
        let upstream_rt = runtime("upstream")?;
        let sidecar_rt = runtime("sidecar")?;
        let sandbox = dir.path().join("sandbox");
        let (json, sse) = upstream_rt.block_on(async {
            let json = start_demo(Answering::Json, &sandbox).await?;
            let sse = start_demo(Answering::Sse, &sandbox).await?;
            anyhow::Ok((json, sse))
        })?;

        let manifest_dir = if manifest_beside_ledger {
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
        config.ledger.synchronous = synchronous;
        config.manifest = Some(manifest);
        config.mcp.listen = Some("127.0.0.1:0".parse().context("mcp address")?);
        config.mcp.upstreams = vec![
            upstream(Answering::Json, &json.url())?,
            upstream(Answering::Sse, &sse.url())?,
        ];
        config.mcp.enforce = true;
        let sidecar = sidecar_rt
            .block_on(app::start(config))
            .context("starting the sidecar")?;
        let sidecar_addr = sidecar
            .mcp_addr()
            .context("the sidecar has no MCP listener")?;
        Ok(Stack {
            json,
            sse,
            sidecar,
            sidecar_addr,
            upstream_rt,
            sidecar_rt,
            dir,
        })
    }

    /// Where `route` reaches the tool server answering with `answering`.
    pub fn endpoint(&self, route: Route, answering: Answering) -> Endpoint {
        match route {
            Route::Direct => {
                let demo = match answering {
                    Answering::Json => &self.json,
                    Answering::Sse => &self.sse,
                };
                Endpoint {
                    addr: demo.addr(),
                    path: aegis_demo_upstream::DEFAULT_PATH.to_owned(),
                }
            }
            Route::Sidecar => Endpoint {
                addr: self.sidecar_addr,
                path: format!("/mcp/{answering}"),
            },
        }
    }

    /// Tool calls that reached the JSON and the SSE tool server.
    pub fn upstream_tool_calls(&self) -> (u64, u64) {
        (
            self.json.stats().total_tool_calls(),
            self.sse.stats().total_tool_calls(),
        )
    }

    /// The sidecar's metrics now, summed over labels.
    pub fn sidecar_samples(&self) -> Samples {
        Samples::parse(&String::from_utf8_lossy(&self.sidecar.metrics().render()))
    }

    /// Bytes of the ledger's database and WAL files.
    pub fn ledger_bytes(&self) -> u64 {
        ["ledger.db", "ledger.db-wal"]
            .iter()
            .filter_map(|name| std::fs::metadata(self.dir.path().join(name)).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Drains the sidecar (closing its ledger), then the tool servers.
    pub fn shutdown(self) {
        self.sidecar_rt
            .block_on(self.sidecar.shutdown(SHUTDOWN_DEADLINE));
        self.upstream_rt.block_on(async {
            self.json.shutdown().await;
            self.sse.shutdown().await;
        });
        drop(self.dir);
    }
}

/// A multi-thread runtime whose threads are named after the component.
pub fn runtime(name: &str) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("building the {name} runtime"))
}

async fn start_demo(answering: Answering, sandbox: &std::path::Path) -> anyhow::Result<DemoServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo server")?;
    let config = DemoConfig {
        sandbox: sandbox.to_owned(),
        answer: answering.mode(),
        // Sessions are not used: requests carry the stateless revision.
        stateful: false,
        ..DemoConfig::default()
    };
    DemoServer::start(listener, config).await
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

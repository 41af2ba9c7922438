//! The MCP end-to-end benches' pieces: the demo tool server (one instance
//! answering JSON, one answering SSE, [`Upstreams`]), sidecars in front of
//! both ([`Sidecar`], `mcp/sidecar.rs`), each on a tokio runtime of its own,
//! and the `tools/call` [`Workload`](crate::load::Workload)s the load
//! generator sends to either: [`EchoCall`] (`mcp-e2e`) and [`ToolCall`]
//! (`big` results of a given size, or a call the manifest refuses).
//!
//! Each component gets its own runtime (two worker threads, as the sidecar
//! would have on this machine), so the load generator, the sidecar and the
//! tool server do not share a scheduler: as close to three processes as one
//! process gets, without the process plumbing.

use std::fmt;
use std::net::SocketAddr;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use aegis_ledger::Synchronous;
use anyhow::Context as _;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::stages::Samples;

/// A stateless (2026-07-28) MCP `POST` of `body` to `path`, in session
/// `session` (`x-aegis-session-id`): what every bench workload sends.
fn stateless_post(
    path: &str,
    host: &http::HeaderValue,
    session: &str,
    body: String,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    use http::{HeaderValue, header};
    let mut request = http::Request::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::try_from(path).unwrap_or_default();
    let headers = request.headers_mut();
    headers.insert(header::HOST, host.clone());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static(aegis_demo_upstream::STATELESS_PROTOCOL_VERSION),
    );
    if let Ok(session) = HeaderValue::from_str(session) {
        headers.insert("x-aegis-session-id", session);
    }
    request
}

mod answer;
mod echo;
mod sidecar;
mod tool_call;

pub use echo::EchoCall;
pub use sidecar::{Sidecar, SidecarOptions};
pub use tool_call::{SIZE_SPREAD, ToolCall, ToolCallKind};

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

/// The two demo tool servers (JSON, SSE answers), on a runtime of their own
/// (threads `upstream`), with their sandbox in a temporary directory.
#[derive(Debug)]
pub struct Upstreams {
    json: DemoServer,
    sse: DemoServer,
    /// The runtime the tool servers run on (their tasks live as long as it).
    rt: Runtime,
    /// The demo servers' sandbox.
    dir: tempfile::TempDir,
}

impl Upstreams {
    pub fn start() -> anyhow::Result<Upstreams> {
        let dir = tempfile::tempdir().context("creating the tool servers' directory")?;
        let rt = runtime("upstream")?;
        let sandbox = dir.path().join("sandbox");
        let (json, sse) = rt.block_on(async {
            let json = start_demo(Answering::Json, &sandbox).await?;
            let sse = start_demo(Answering::Sse, &sandbox).await?;
            anyhow::Ok((json, sse))
        })?;
        Ok(Upstreams { json, sse, rt, dir })
    }

    fn server(&self, answering: Answering) -> &DemoServer {
        match answering {
            Answering::Json => &self.json,
            Answering::Sse => &self.sse,
        }
    }

    /// Where the tool server answering with `answering` listens.
    pub fn endpoint(&self, answering: Answering) -> Endpoint {
        Endpoint {
            addr: self.server(answering).addr(),
            path: aegis_demo_upstream::DEFAULT_PATH.to_owned(),
        }
    }

    /// Its MCP endpoint's URL.
    pub fn url(&self, answering: Answering) -> String {
        self.server(answering).url()
    }

    /// Tool calls that reached the JSON and the SSE tool server.
    pub fn tool_calls(&self) -> (u64, u64) {
        (
            self.json.stats().total_tool_calls(),
            self.sse.stats().total_tool_calls(),
        )
    }

    /// Stops both servers, waiting for open connections to finish.
    pub fn shutdown(self) {
        self.rt.block_on(async {
            self.json.shutdown().await;
            self.sse.shutdown().await;
        });
        drop(self.dir);
    }
}

/// The two demo tool servers and one sidecar in front of both.
#[derive(Debug)]
pub struct Stack {
    upstreams: Upstreams,
    sidecar: Sidecar,
}

impl Stack {
    /// Starts everything; the sidecar's ledger commits with `synchronous`
    /// (see [`SidecarOptions::manifest_beside_ledger`]).
    pub fn start(synchronous: Synchronous, manifest_beside_ledger: bool) -> anyhow::Result<Stack> {
        let upstreams = Upstreams::start()?;
        let options = SidecarOptions {
            synchronous,
            enforce: true,
            manifest_beside_ledger,
        };
        let sidecar = Sidecar::start("sidecar", &upstreams, options)?;
        Ok(Stack { upstreams, sidecar })
    }

    /// Where `route` reaches the tool server answering with `answering`.
    pub fn endpoint(&self, route: Route, answering: Answering) -> Endpoint {
        match route {
            Route::Direct => self.upstreams.endpoint(answering),
            Route::Sidecar => self.sidecar.endpoint(answering),
        }
    }

    /// Tool calls that reached the JSON and the SSE tool server.
    pub fn upstream_tool_calls(&self) -> (u64, u64) {
        self.upstreams.tool_calls()
    }

    /// The sidecar's metrics now, summed over labels.
    pub fn sidecar_samples(&self) -> Samples {
        self.sidecar.samples()
    }

    /// Bytes of the ledger's database and WAL files.
    pub fn ledger_bytes(&self) -> u64 {
        self.sidecar.ledger_bytes()
    }

    /// Drains the sidecar (closing its ledger), then the tool servers.
    pub fn shutdown(self) {
        self.sidecar.shutdown();
        self.upstreams.shutdown();
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

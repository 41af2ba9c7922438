//! `aegis-demo-upstream`: a small MCP tool server speaking Streamable HTTP,
//! the upstream that aegis-proxy fronts in the README quick start, in the
//! end-to-end tests and in the benchmarks.
//!
//! What it decides: nothing about policy. It answers MCP requests
//! (`initialize`, `server/discover`, `ping`, `tools/list`, `tools/call`) and
//! counts, in [`Stats`], every tool call that actually reached a tool — so a
//! test can prove that a call the sidecar denied never arrived here.
//!
//! What it must never do: touch files outside its sandbox directory, read or
//! answer unbounded bodies, wait on the network without a deadline, or log per
//! request by default (benchmarks run through it).
//!
//! The path of one request: `server` accepts the connection,
//! `routes` picks the endpoint, `post` runs a POST top to bottom (read the
//! body → parse JSON-RPC → admit the session → count → answer as JSON or SSE),
//! `mcp` answers one JSON-RPC request, `tools` runs one tool. Every HTTP
//! error becomes a response in one place, `error`. Protocol notes are in this
//! crate's `README.md`.

mod config;
mod error;
mod jsonrpc;
mod mcp;
mod method;
mod post;
mod routes;
mod server;
mod session;
mod sse;
mod state;
mod stats;
mod tools;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{AnswerMode, DEFAULT_PATH, DEFAULT_SANDBOX, DemoConfig, ParseAnswerModeError};
pub use mcp::{
    LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS, SERVER_NAME, STATELESS_PROTOCOL_VERSION,
};
pub use stats::{Stats, StatsSnapshot};
pub use tools::TOOL_NAMES;

use crate::state::Shared;
use crate::tools::sandbox::Sandbox;

/// A running demo server. Dropping it stops accepting connections too;
/// [`DemoServer::shutdown`] also waits for in-flight requests to drain.
#[derive(Debug)]
pub struct DemoServer {
    addr: SocketAddr,
    url: String,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DemoServer {
    /// Serves MCP on `listener` (bind `127.0.0.1:0` in tests) until shut down.
    ///
    /// The sandbox directory is created if missing.
    pub async fn start(listener: TcpListener, config: DemoConfig) -> anyhow::Result<DemoServer> {
        config.validate()?;
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        // Start-up only: a directory creation and a canonicalisation.
        let sandbox = Sandbox::open(&config.sandbox).with_context(|| {
            format!(
                "preparing the sandbox directory {}",
                config.sandbox.display()
            )
        })?;
        let url = format!("http://{addr}{}", config.path);
        let stats = Arc::new(Stats::default());
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared::new(config, sandbox, stats.clone(), shutdown));
        let task = tokio::spawn(server::serve(listener, shared));
        Ok(DemoServer {
            addr,
            url,
            stats,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint, `http://{addr}{path}`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Its counters (shared with the running server).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Stops accepting, ends every held-open SSE stream, interrupts `slow`
    /// and `progress` calls, and waits for open connections to finish (at
    /// most ten seconds).
    pub async fn shutdown(self) {
        // An error means the server task is already gone: nothing to stop.
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the demo server task failed");
        }
    }
}

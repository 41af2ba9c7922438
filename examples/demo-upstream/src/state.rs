//! What every request may use, built once at start.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::DemoConfig;
use crate::session::Sessions;
use crate::sse::EventIds;
use crate::stats::Stats;
use crate::tools::sandbox::Sandbox;
use crate::tools::{self, HttpClient, ToolsList};

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: DemoConfig,
    pub stats: Arc<Stats>,
    pub sessions: Sessions,
    /// Shared with the blocking threads that touch files.
    pub sandbox: Arc<Sandbox>,
    /// `fetch_url`'s pooled client.
    pub http: HttpClient,
    /// Turns true when the server stops: long tools and held streams end.
    pub shutdown: watch::Receiver<bool>,
    /// Shared with every SSE answer's task.
    pub event_ids: Arc<EventIds>,
    pub tools_list: ToolsList,
}

impl Shared {
    pub(crate) fn new(
        config: DemoConfig,
        sandbox: Sandbox,
        stats: Arc<Stats>,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        Shared {
            config,
            stats,
            sessions: Sessions::new(),
            sandbox: Arc::new(sandbox),
            http: tools::fetch_client(),
            shutdown,
            event_ids: Arc::new(EventIds::default()),
            tools_list: ToolsList::new(),
        }
    }
}

//! The egress forward proxy: the agent's `HTTP_PROXY`/`HTTPS_PROXY` point
//! here, and only the manifest's declared destinations get through. Every
//! attempt is a tool call in the session's chain, decided like any other
//! (rule 2 of `aegis_policy::decide`: `EGRESS_DENY`; `ARCHITECTURE.md`, "The
//! egress forward proxy").
//!
//! One request, top to bottom (the stages are the submodules):
//!
//! 1. [`target`]: `CONNECT host:port` or an absolute `http://` URL; anything
//!    else is answered 400.
//! 2. [`identity`]: the principal, tenant, user and session under
//!    `mcp.identity` (`crate::identity`): a JWT in `Proxy-Authorization`
//!    when configured (missing or bad: 407, nothing recorded), else the
//!    configured principal; the session is the principal's unless
//!    `session_scope: client`.
//! 3. [`admit`]: the port check (`forward.allowed_ports`), DNS (or
//!    `forward.dns_overrides`) and the [`guard`] on the resolved addresses,
//!    then the MCP proxy's gate: `TOOL_CALL_PROPOSED` `{tool_name:
//!    "net.connect" | "net.http", args: {domain, port, method}}` and its
//!    `TOOL_CALL_ALLOWED`/`DENIED` in one commit. Budgets, rate limits,
//!    loops and taint apply as to any tool call. The manifest must declare
//!    `net.connect` / `net.http` in `permissions.tools` (else
//!    `PERMISSION_UNDECLARED`) and the host in `permissions.net.domains`.
//! 4. [`tunnel`] (CONNECT: `200`, then bytes both ways until either side
//!    closes or the tunnel idles) or [`forward`] (the request, hop-by-hop
//!    headers removed, through a pooled client to exactly the checked
//!    address; the answer streamed back).
//! 5. [`record`]: `TOOL_RESULT` with bytes up/down and duration, or
//!    `TOOL_CALL_EXECUTED` when `forward.results_taint` is false.
//!
//! Refusals and failures become answers in one place, [`answer`]. The
//! ledger failing fails closed here (503), whatever `ledger.fail_open`
//! says: an unrecorded connection is what this listener exists to prevent.

pub mod admit;
pub mod answer;
mod body;
pub mod forward;
pub mod guard;
pub mod identity;
pub mod record;
pub mod target;
pub mod tunnel;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aegis_policy::{ManifestStore, Reason};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use self::target::Target;
use crate::config::ForwardConfig;
use crate::gate::{Gate, Verdict};
use crate::identity::Identity;
use crate::identity::Resolver;
use crate::metrics::Metrics;

/// What the proxy answers with: a short text, or a destination's streamed body.
pub type EgressBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Everything a request needs, shared by every connection.
#[derive(Debug)]
pub struct EgressState {
    pub gate: Gate,
    pub manifests: ManifestStore,
    pub metrics: Metrics,
    pub config: ForwardConfig,
    /// `mcp.identity`: who each request acts for (shared with the MCP
    /// listener, so both count against the principal's one session).
    pub identity: Arc<Resolver>,
    /// `mcp.enforce`: in shadow mode policy denials are recorded, not
    /// applied. The port and SSRF guards always apply.
    pub enforce: bool,
    /// How long open tunnels may go on after shutdown starts.
    pub shutdown_grace: Duration,
    pub client: forward::Client,
    /// Tunnels and result records still running; shutdown waits for them.
    pub tasks: Tasks,
    pub shutdown: watch::Receiver<bool>,
    /// Numbers the `call_id`s of this process's attempts.
    calls: AtomicU64,
}

impl EgressState {
    pub fn new(
        gate: Gate,
        manifests: ManifestStore,
        metrics: Metrics,
        config: ForwardConfig,
        mcp: &crate::config::McpConfig,
        identity: Arc<Resolver>,
        shutdown: watch::Receiver<bool>,
    ) -> EgressState {
        let client = forward::client(config.connect_timeout);
        EgressState {
            gate,
            manifests,
            metrics,
            config,
            identity,
            enforce: mcp.enforce,
            shutdown_grace: mcp.shutdown_grace,
            client,
            tasks: Tasks::default(),
            shutdown,
            calls: AtomicU64::new(0),
        }
    }

    /// A fresh call id: unique within the ledger's sessions in practice
    /// (start time of the process in ms, then a counter).
    fn next_call_id(&self) -> String {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        format!("egress-{}-{n}", process_start_ms())
    }
}

fn process_start_ms() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(aegis_ledger::now_unix_ms)
}

/// Serves until `shutdown` turns true; then stops accepting, lets requests
/// finish and tunnels run for at most `drain`, and waits for their records.
pub async fn serve(
    listener: TcpListener,
    state: Arc<EgressState>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: CONNECT tunnels are HTTP/1.1 upgrades.
    let builder = crate::listener::http_builder(state.config.header_timeout).http1_only();
    let listener = crate::listener::Listener {
        tcp: listener,
        name: "forward",
        tls: None,
        max_connections: state.config.max_connections,
        nodelay: true,
        header_timeout: state.config.header_timeout,
        counters: crate::listener::ListenerCounters::new(&state.metrics, "forward"),
    };
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, req).await) }
        })
    };
    crate::listener::accept_loop(listener, builder, service, &graceful, shutdown).await;
    let drained = async {
        graceful.shutdown().await;
        state.tasks.idle().await;
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            ?drain,
            "egress tunnels still open after the shutdown grace period"
        );
    }
}

/// One proxy request: parse, who, then a tunnel or a forwarded request.
async fn handle(state: Arc<EgressState>, req: Request<Incoming>) -> Response<EgressBody> {
    let target = match target::parse(req.method(), req.uri()) {
        Ok(target) => target,
        Err(message) => return answer::respond(&answer::EgressError::BadRequest(message)),
    };
    let identity = match identity::resolve(&state.identity, req.headers()) {
        Ok(identity) => identity,
        Err(e) => {
            let error = answer::EgressError::Identity(e);
            let (outcome, reason) = error.labels();
            state
                .metrics
                .egress
                .attempts
                .with_label_values(&[target.kind.as_str(), outcome, reason])
                .inc();
            return answer::respond(&error);
        }
    };
    let call_id = state.next_call_id();
    let method = req.method().clone();
    let mut labels = ("allow", Reason::Ok.as_str());
    let result = match admit::admit(&state, &target, &identity, &method, &call_id).await {
        Ok(admitted) => {
            let decision = admitted.verdict.decision;
            labels = (decision.outcome.as_str(), decision.reason.as_str());
            if method == Method::CONNECT {
                tunnel::open(&state, req, admitted).await
            } else {
                forward::forward(&state, req, admitted).await
            }
        }
        Err(e) => Err(e),
    };
    let kind = target.kind.as_str();
    match result {
        Ok(response) => {
            let (outcome, reason) = labels;
            state
                .metrics
                .egress
                .attempts
                .with_label_values(&[kind, outcome, reason])
                .inc();
            response
        }
        Err(e) => {
            let (outcome, reason) = e.labels();
            state
                .metrics
                .egress
                .attempts
                .with_label_values(&[kind, outcome, reason])
                .inc();
            tracing::info!(
                session = %identity.session_id,
                destination = %target.domain(),
                port = target.port,
                kind,
                error = %e,
                "egress refused"
            );
            answer::respond(&e)
        }
    }
}

/// An allowed attempt, recorded, with where to connect.
#[derive(Debug)]
pub struct Admitted {
    pub target: Target,
    pub identity: Identity,
    pub call_id: String,
    pub verdict: Verdict,
    /// The checked addresses, in the order to try them.
    pub addrs: Vec<SocketAddr>,
    /// When the attempt arrived.
    pub started: Instant,
}

/// Counts tasks that outlive their request (tunnels, result records), so
/// shutdown can wait for them before the ledger closes.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    inner: Arc<(AtomicUsize, Notify)>,
}

impl Tasks {
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.inner.0.fetch_add(1, Ordering::SeqCst);
        let tasks = self.clone();
        tokio::spawn(async move {
            task.await;
            if tasks.inner.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                tasks.inner.1.notify_waiters();
            }
        });
    }

    /// Waits until no task is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

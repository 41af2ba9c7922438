//! The admin/API server: `/healthz`, `/readyz`, `/metrics` and the Aegis `/v1`
//! API, over HTTP/1.1 and HTTP/2 (hyper).
//!
//! `serve` takes an already-bound listener (tests bind port 0), caps
//! connections with a semaphore (at the cap it stops accepting, so the
//! kernel's backlog pushes back), bounds every request with a deadline, and
//! drains in-flight requests on shutdown. `serve_probes` is the same server
//! on `admin.metrics_listen`, where only the open routes exist.
//!
//! Every known `/v1` route is authorised first ([`auth`]: who the caller
//! is, and whether its role suffices) before a body is read; handlers check
//! the request's tenant before they record or decide anything.

mod approvals;
pub mod auth;
mod decision;
mod delegated;
mod error;
mod events;
mod governance;
mod health;
pub(crate) mod manifest;
mod policy;
mod propose;
mod request;
pub mod role;
mod sessions;
pub(crate) mod tokens;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_ledger::{LedgerHandle, LedgerReader};
use aegis_policy::ManifestStore;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::{Access, AuthError, Authenticator, Role};
pub use error::ApiError;
pub use tokens::{TokenSet, TokenWatch};

use crate::config::AdminConfig;
use crate::limits::SessionLimiters;
use crate::listener::{Listener, ListenerCounters, accept_loop};
use crate::metrics::Metrics;
use crate::peer::Peer;

/// What every admin request may use.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub ledger: LedgerHandle,
    pub reader: LedgerReader,
    pub metrics: Metrics,
    pub config: AdminConfig,
    /// The live manifest (read lock-free per decision) and its reloads.
    pub manifests: ManifestStore,
    /// Each session's token buckets under the live manifest's rate limits
    /// (shared with the MCP proxy: one session, one set of buckets).
    pub limiters: Arc<SessionLimiters>,
    /// Set when shutdown begins: readiness answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Who may call the `/v1` routes.
    pub auth: Arc<Authenticator>,
    /// Start-up warnings readiness repeats (dev mode, tokens over plain
    /// HTTP); empty when all is well.
    pub warnings: Arc<[String]>,
    /// Where approval decisions are announced (`approval.webhook_url`).
    pub webhook: crate::webhook::Webhook,
    /// Calls held for approvals, woken when one is decided.
    pub waiters: crate::gate::approval::Waiters,
    /// Decides the decision APIs' calls (aegislib's, `propose`) as the
    /// inline path decides its own: one gate for every listener.
    pub gate: crate::gate::Gate,
    /// Whose session a decision-API call counts against
    /// (`mcp.identity`; see [`delegated`]).
    pub identity: Arc<crate::identity::Resolver>,
    /// `mcp.enforce`: false is shadow mode, for the decision APIs too.
    pub enforce: bool,
    /// `ledger.fail_open`, for the decision APIs too.
    pub fail_open: bool,
    /// Approvals a decision-status poll is releasing now.
    pub releasing: decision::Releasing,
    /// The governance API's idempotency keys and drift series.
    pub governance: governance::Memory,
    /// `(name, host:port)` of each upstream readiness must reach
    /// (`mcp.ready_checks_upstreams`); empty when off.
    pub upstream_checks: Arc<[(String, String)]>,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `admin.listen`: everything.
    Full,
    /// `admin.metrics_listen`: `/healthz`, `/readyz`, `/metrics`; the rest 404.
    Probes,
}

/// Routes, named for metrics: a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    Events,
    Snapshot,
    Verify,
    Sanitizers,
    Decide,
    Manifest,
    ManifestReload,
    Approvals,
    Approval,
    ApprovalApprove,
    ApprovalDeny,
    Decision,
    DecisionBatch,
    DecisionStatus,
    Propose,
    ProposeHealth,
    Evaluate,
    SandboxEvaluate,
    RiskCheck,
    GovernanceHealth,
    CustomerDecisions,
    CustomerDecision,
    CustomerUsage,
    NotFound,
}

impl Route {
    const ALL: [Route; 27] = [
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Events,
        Route::Snapshot,
        Route::Verify,
        Route::Sanitizers,
        Route::Decide,
        Route::Manifest,
        Route::ManifestReload,
        Route::Approvals,
        Route::Approval,
        Route::ApprovalApprove,
        Route::ApprovalDeny,
        Route::Decision,
        Route::DecisionBatch,
        Route::DecisionStatus,
        Route::Propose,
        Route::ProposeHealth,
        Route::Evaluate,
        Route::SandboxEvaluate,
        Route::RiskCheck,
        Route::GovernanceHealth,
        Route::CustomerDecisions,
        Route::CustomerDecision,
        Route::CustomerUsage,
        Route::NotFound,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Events => "events",
            Route::Snapshot => "snapshot",
            Route::Verify => "verify",
            Route::Sanitizers => "sanitizers",
            Route::Decide => "decide",
            Route::Manifest => "manifest",
            Route::ManifestReload => "manifest_reload",
            Route::Approvals => "approvals",
            Route::Approval => "approval",
            Route::ApprovalApprove => "approval_approve",
            Route::ApprovalDeny => "approval_deny",
            Route::Decision => "decision",
            Route::DecisionBatch => "decision_batch",
            Route::DecisionStatus => "decision_status",
            Route::Propose => "propose",
            Route::ProposeHealth => "propose_health",
            Route::Evaluate => "evaluate",
            Route::SandboxEvaluate => "sandbox_evaluate",
            Route::RiskCheck => "risk_check",
            Route::GovernanceHealth => "governance_health",
            Route::CustomerDecisions => "customer_decisions",
            Route::CustomerDecision => "customer_decision",
            Route::CustomerUsage => "customer_usage",
            Route::NotFound => "not_found",
        }
    }
}

/// The metric names of the routes that need a credential (the `route`
/// label values of `aegis_api_auth_failures_total`).
pub fn protected_routes() -> impl Iterator<Item = &'static str> {
    Route::ALL
        .into_iter()
        .filter(|route| auth::required(*route, &Method::POST) != auth::Need::Open)
        .map(Route::as_str)
}

/// Serves until `shutdown` turns true, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    serve_on(listener, Surface::Full, state, shutdown, drain).await;
}

/// [`serve`] for `admin.metrics_listen`: plain HTTP (the kubelet and
/// Prometheus need no certificate), only the open routes.
pub async fn serve_probes(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    serve_on(listener, Surface::Probes, state, shutdown, drain).await;
}

async fn serve_on(
    listener: TcpListener,
    surface: Surface,
    state: Arc<AdminState>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = crate::listener::http_builder(state.config.header_timeout);
    let (name, tls) = match surface {
        Surface::Full => (
            "admin",
            state.config.tls.as_ref().map(|tls| tls.rustls().into()),
        ),
        Surface::Probes => ("metrics", None),
    };
    let listener = Listener {
        tcp: listener,
        name,
        tls,
        max_connections: state.config.max_connections,
        nodelay: false,
        header_timeout: state.config.header_timeout,
        counters: ListenerCounters::new(&state.metrics, name),
    };
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, surface, req).await) }
    });
    accept_loop(listener, builder, service, &graceful, shutdown).await;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "admin connections still open after the drain deadline"
        );
    }
}

/// Routes one request and records its metrics.
async fn handle(
    state: &AdminState,
    surface: Surface,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (route, session) = match (surface, route(req.uri().path())) {
        (Surface::Full, found) => found,
        (Surface::Probes, (route @ (Route::Healthz | Route::Readyz | Route::Metrics), _)) => {
            (route, None)
        }
        (Surface::Probes, _) => (Route::NotFound, None),
    };
    let timeout = state.config.request_timeout;
    let result = match tokio::time::timeout(timeout, dispatch(state, route, session, req)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Timeout(timeout.as_millis())),
    };
    if let Err(ApiError::Auth(refused)) = &result {
        // The message names roles, tenants and certificate subjects, never a token.
        tracing::debug!(route = route.as_str(), reason = refused.reason(), error = %refused, "admin request refused");
        state.metrics.auth.failed(route.as_str(), refused.reason());
    }
    let response = result.unwrap_or_else(ApiError::into_response);
    let code = response.status();
    state
        .metrics
        .api_requests
        .with_label_values(&[route.as_str(), code.as_str()])
        .inc();
    state
        .metrics
        .api_request_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Which route a path is, and the raw session id segment for session routes.
fn route(path: &str) -> (Route, Option<String>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => (Route::Healthz, None),
        ["readyz"] => (Route::Readyz, None),
        ["metrics"] => (Route::Metrics, None),
        ["v1", "events"] => (Route::Events, None),
        ["v1", "policy", "decide"] => (Route::Decide, None),
        ["v1", "manifest"] => (Route::Manifest, None),
        ["v1", "manifest", "reload"] => (Route::ManifestReload, None),
        ["v1", "sessions", id, "snapshot"] => (Route::Snapshot, Some((*id).to_owned())),
        ["v1", "sessions", id, "verify"] => (Route::Verify, Some((*id).to_owned())),
        ["v1", "sessions", id, "sanitizers"] => (Route::Sanitizers, Some((*id).to_owned())),
        ["v1", "approvals"] => (Route::Approvals, None),
        ["v1", "approvals", id] => (Route::Approval, Some((*id).to_owned())),
        ["v1", "approvals", id, "approve"] => (Route::ApprovalApprove, Some((*id).to_owned())),
        ["v1", "approvals", id, "deny"] => (Route::ApprovalDeny, Some((*id).to_owned())),
        ["v1", "decision"] => (Route::Decision, None),
        ["v1", "decision", "batch"] => (Route::DecisionBatch, None),
        ["v1", "decision", id, "status"] => (Route::DecisionStatus, Some((*id).to_owned())),
        ["api", "v1", "governance", "propose"] => (Route::Propose, None),
        ["api", "v1", "health"] => (Route::ProposeHealth, None),
        ["evaluate"] => (Route::Evaluate, None),
        ["sandbox", "evaluate"] => (Route::SandboxEvaluate, None),
        ["risk-check"] => (Route::RiskCheck, None),
        ["health"] => (Route::GovernanceHealth, None),
        ["customer", "decisions"] => (Route::CustomerDecisions, None),
        ["customer", "decisions", id] => (Route::CustomerDecision, Some((*id).to_owned())),
        ["customer", "usage"] => (Route::CustomerUsage, None),
        ["customer", "usage", month] => (Route::CustomerUsage, Some((*month).to_owned())),
        _ => (Route::NotFound, None),
    }
}

async fn dispatch(
    state: &AdminState,
    route: Route,
    session: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let method = req.method().clone();
    let session = session.unwrap_or_default();
    let peer = req.extensions().get::<Arc<Peer>>().cloned();
    let access = state.auth.authorize(
        auth::required(route, &method),
        req.headers(),
        peer.as_deref(),
    )?;
    let access = &access;
    match route {
        Route::Healthz => only(&method, Method::GET, "GET").map(|()| health::healthz()),
        Route::Readyz => {
            only(&method, Method::GET, "GET")?;
            Ok(health::readyz(state).await)
        }
        Route::Metrics => only(&method, Method::GET, "GET").map(|()| health::metrics(state)),
        Route::Events => match method {
            Method::POST => events::append(state, access, req).await,
            Method::GET => events::list(state, access, &req).await,
            other => Err(ApiError::MethodNotAllowed {
                method: other.to_string(),
                allow: "GET, POST",
            }),
        },
        Route::Snapshot => {
            only(&method, Method::GET, "GET")?;
            sessions::snapshot(state, access, &session, &req).await
        }
        Route::Verify => {
            only(&method, Method::GET, "GET")?;
            sessions::verify(state, access, &session, &req).await
        }
        Route::Sanitizers => {
            only(&method, Method::POST, "POST")?;
            sessions::register_sanitizer(state, access, &session, req).await
        }
        Route::Decide => {
            only(&method, Method::POST, "POST")?;
            policy::decide(state, access, req).await
        }
        Route::Manifest => only(&method, Method::GET, "GET").map(|()| manifest::status(state)),
        Route::ManifestReload => {
            only(&method, Method::POST, "POST")?;
            manifest::reload(state).await
        }
        Route::Approvals => {
            only(&method, Method::GET, "GET")?;
            approvals::list(state, access, &req).await
        }
        Route::Approval => {
            only(&method, Method::GET, "GET")?;
            approvals::show(state, access, &session).await
        }
        Route::ApprovalApprove | Route::ApprovalDeny => {
            only(&method, Method::POST, "POST")?;
            let vote = match route {
                Route::ApprovalApprove => aegis_ledger::VoteKind::Approve,
                _ => aegis_ledger::VoteKind::Deny,
            };
            approvals::vote(state, access, &session, vote, req).await
        }
        Route::Decision => {
            only(&method, Method::POST, "POST")?;
            decision::decide(state, access, req).await
        }
        Route::DecisionBatch => {
            only(&method, Method::POST, "POST")?;
            decision::decide_batch(state, access, req).await
        }
        Route::DecisionStatus => {
            only(&method, Method::GET, "GET")?;
            decision::status(state, access, &session).await
        }
        Route::Propose => {
            only(&method, Method::POST, "POST")?;
            propose::propose(state, access, req).await
        }
        Route::ProposeHealth => only(&method, Method::GET, "GET").map(|()| propose::health()),
        Route::Evaluate | Route::SandboxEvaluate => {
            only(&method, Method::POST, "POST")?;
            governance::evaluate(state, access, req, route == Route::SandboxEvaluate).await
        }
        Route::RiskCheck => {
            only(&method, Method::POST, "POST")?;
            governance::risk_check(state, access, req).await
        }
        Route::GovernanceHealth => {
            only(&method, Method::GET, "GET").map(|()| governance::health(state))
        }
        Route::CustomerDecisions => {
            only(&method, Method::GET, "GET")?;
            governance::decisions(state, access, &req).await
        }
        Route::CustomerDecision => {
            only(&method, Method::GET, "GET")?;
            governance::decision(state, access, &session).await
        }
        Route::CustomerUsage => {
            only(&method, Method::GET, "GET")?;
            let month = (!session.is_empty()).then_some(session.as_str());
            governance::usage(state, access, &req, month).await
        }
        Route::NotFound => Err(ApiError::NotFound(format!(
            "no such endpoint: {}",
            req.uri().path()
        ))),
    }
}

fn only(method: &Method, want: Method, allow: &'static str) -> Result<(), ApiError> {
    if *method == want {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        })
    }
}

/// Waits until every append sent to the writer before this read is
/// committed (a ping is answered after them), so an API read made after an
/// agent got its answer sees that call's result (results are committed
/// after the answer, `ledger.result_commit: after_answer`). Bounded: a
/// stalled writer delays a read by at most this, never blocks it.
pub(crate) async fn settled(state: &AdminState) {
    const BOUND: std::time::Duration = std::time::Duration::from_secs(5);
    let _ = tokio::time::timeout(BOUND, state.ledger.ping()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        let cases = [
            ("/healthz", Route::Healthz, None),
            ("/readyz", Route::Readyz, None),
            ("/metrics", Route::Metrics, None),
            ("/v1/events", Route::Events, None),
            (
                "/v1/sessions/a%2Fb/snapshot",
                Route::Snapshot,
                Some("a%2Fb"),
            ),
            ("/v1/sessions/s/verify", Route::Verify, Some("s")),
            ("/v1/sessions/s/sanitizers", Route::Sanitizers, Some("s")),
            ("/v1/policy/decide", Route::Decide, None),
            ("/v1/manifest", Route::Manifest, None),
            ("/v1/manifest/reload", Route::ManifestReload, None),
            ("/v1/decision", Route::Decision, None),
            ("/v1/decision/batch", Route::DecisionBatch, None),
            (
                "/v1/decision/appr-1/status",
                Route::DecisionStatus,
                Some("appr-1"),
            ),
            ("/v1/decision/appr-1", Route::NotFound, None),
            ("/api/v1/governance/propose", Route::Propose, None),
            ("/api/v1/health", Route::ProposeHealth, None),
            ("/evaluate", Route::Evaluate, None),
            ("/sandbox/evaluate", Route::SandboxEvaluate, None),
            ("/risk-check", Route::RiskCheck, None),
            ("/health", Route::GovernanceHealth, None),
            ("/customer/decisions", Route::CustomerDecisions, None),
            (
                "/customer/decisions/d-1",
                Route::CustomerDecision,
                Some("d-1"),
            ),
            ("/customer/usage", Route::CustomerUsage, None),
            (
                "/customer/usage/2026-12",
                Route::CustomerUsage,
                Some("2026-12"),
            ),
            ("/v1/sessions/s", Route::NotFound, None),
            ("/v1/events/", Route::NotFound, None),
            ("/", Route::NotFound, None),
        ];
        for (path, want, session) in cases {
            assert_eq!(route(path), (want, session.map(str::to_owned)), "{path}");
        }
    }
}

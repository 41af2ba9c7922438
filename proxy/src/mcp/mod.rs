//! The MCP reverse proxy over Streamable HTTP at `/mcp/{upstream}` (and
//! `/mcp` for the default upstream); protocol notes in `README.md` beside
//! this file.
//!
//! One POST, top to bottom ([`post`]; the stages are the submodules):
//!
//! 1. [`crate::front_door`]: `Host` and `Origin` checked before anything else
//!    (DNS rebinding): 403.
//! 2. [`identity`]: who the request acts for — `(tenant, user, session)`
//!    from a JWT, a client certificate or the configured principal: 401 or
//!    403, nothing forwarded or recorded.
//! 3. [`request`]: the path routed to an upstream (404), the body read whole
//!    (bounded in size and time: 413, 408), parsed by [`jsonrpc`] (400:
//!    not JSON-RPC, duplicate members, colliding ids) and its
//!    `Mcp-Method`/`Mcp-Name` headers checked against it (400).
//! 4. [`admit`]: every `tools/call` decided and recorded by the gate
//!    (`crate::gate`) before anything is sent; refused ones answered by the
//!    sidecar ([`answers`]), or held open for their approval ([`hold`]).
//! 5. [`forward`]: what was admitted goes upstream, byte for byte; its answer
//!    is relayed by [`relay`] (JSON whole, SSE event by event), or streams
//!    through untouched when nothing in it needs inspecting.
//! 6. [`settle`]: each forwarded call's result recorded (the session's next
//!    decision waits until it is durable), cut at its `timeout_ms`, withheld
//!    over its `max_output_bytes`; `tools/list` filtered ([`tools_list`]);
//!    reads recorded ([`inputs`]).
//!
//! The request's state is an [`exchange::Exchange`], built by the request
//! side and handed to the answer side. Every failure becomes an answer in
//! one place, [`error`]. A GET's event stream is inspected for answers to
//! requests whose POST stream ended early ([`resume`]); DELETE passes.

pub mod admit;
pub mod answers;
pub mod body;
pub mod error;
pub mod exchange;
pub mod forward;
pub mod held;
pub mod hold;
pub mod identity;
pub mod inputs;
pub mod jsonrpc;
pub mod relay;
pub mod request;
pub mod resume;
pub mod settle;
pub mod sse;
pub mod tools_list;
pub mod upstream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_policy::ManifestStore;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument as _;

use self::body::ProxyBody;
use self::error::Failure;
use self::exchange::{Exchange, InFlight};
use self::jsonrpc::{Body, Id};
use self::resume::Resumable;
use self::upstream::Upstream;
use crate::config::McpConfig;
use crate::front_door::{FrontDoor, Refusal};
use crate::gate::Gate;
use crate::identity::{Identity, Resolver};
use crate::listener::{Listener, ListenerCounters, accept_loop};
use crate::metrics::Metrics;
use crate::peer::Peer;

/// What every MCP request may use.
#[derive(Debug)]
pub struct McpState {
    pub gate: Gate,
    pub manifests: ManifestStore,
    pub metrics: Metrics,
    pub config: McpConfig,
    /// Who each request acts for (shared with the egress proxy).
    pub identity: Arc<Resolver>,
    /// `ledger.fail_open`: forward calls the ledger could not record.
    pub fail_open: bool,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub default_upstream: Option<Arc<Upstream>>,
    /// POSTs being handled; a full set answers 503. Shutdown waits for
    /// every permit to come back (the drain).
    pub in_flight: Arc<Semaphore>,
    /// Turns true when shutdown begins: calls held for an approval end;
    /// the listener stops accepting.
    pub shutdown: watch::Receiver<bool>,
    /// Turns true once the POSTs in flight at shutdown have delivered their
    /// answers (or the grace period ran out): held-open GET streams end
    /// then, not before, so a client does not lose its session's stream
    /// while its calls still answer.
    pub streams_end: watch::Receiver<bool>,
    streams_end_tx: Arc<watch::Sender<bool>>,
    /// `Host` and `Origin` rules, checked before anything else.
    pub front_door: FrontDoor,
    /// Requests whose POST stream ended early, waiting for a resumed one.
    pub resumable: Resumable,
}

impl McpState {
    pub fn new(
        gate: Gate,
        manifests: ManifestStore,
        metrics: Metrics,
        config: McpConfig,
        identity: Arc<Resolver>,
        fail_open: bool,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<McpState> {
        let mut upstreams = HashMap::new();
        let plain = upstream::client(None);
        for u in &config.upstreams {
            let upstream = Upstream::new(u, &plain).ok_or_else(|| {
                anyhow::anyhow!("upstream {}: the URL {} has no host", u.name, u.url)
            })?;
            upstreams.insert(u.name.clone(), Arc::new(upstream));
        }
        let default_upstream = config
            .default_upstream
            .as_ref()
            .and_then(|name| upstreams.get(name).cloned());
        let front_door = FrontDoor::new(
            config.listen,
            &config.allowed_hosts,
            &config.allowed_origins,
        );
        // Every series of a closed label set exists from the start.
        let m = &metrics.mcp;
        for refusal in Refusal::ALL {
            m.front_door_refusals.with_label_values(&[refusal.as_str()]);
        }
        for outcome in resume::OUTCOMES {
            m.resumed_answers.with_label_values(&[outcome]);
        }
        for reason in Failure::LABELS {
            m.refused_requests.with_label_values(&[reason]);
        }
        let (streams_end_tx, streams_end) = watch::channel(false);
        Ok(McpState {
            gate,
            manifests,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            front_door,
            metrics,
            config,
            identity,
            fail_open,
            upstreams,
            default_upstream,
            shutdown,
            streams_end,
            streams_end_tx: Arc::new(streams_end_tx),
            resumable: Resumable::default(),
        })
    }
}

/// Serves until `shutdown` turns true; then stops accepting and lets open
/// connections finish for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<McpState>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = crate::listener::http_builder(state.config.header_timeout);
    let listener = Listener {
        tcp: listener,
        name: "mcp",
        tls: state.config.tls.as_ref().map(|tls| tls.rustls().into()),
        max_connections: state.config.max_connections,
        nodelay: true,
        header_timeout: state.config.header_timeout,
        counters: ListenerCounters::new(&state.metrics, "mcp"),
    };
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, req).await) }
        })
    };
    accept_loop(listener, builder, service, &graceful, shutdown).await;
    // Idle keep-alive connections close now; POSTs in flight finish, their
    // answers streamed to the end; then the held-open GET streams end and
    // their connections close.
    let in_flight = state.in_flight.clone();
    let max = u32::try_from(state.config.max_in_flight).unwrap_or(u32::MAX);
    let streams_end = state.streams_end_tx.clone();
    let connections = graceful.shutdown();
    tokio::pin!(connections);
    let drained = async {
        tokio::select! {
            () = &mut connections => {
                // Every connection closed; what their answers left running
                // (a relay finishing its record) still holds its permit.
                let _ = in_flight.acquire_many(max).await;
                return;
            }
            _ = in_flight.acquire_many(max) => {}
        }
        let _ = streams_end.send(true);
        connections.as_mut().await;
    };
    if tokio::time::timeout(drain, drained).await.is_err() {
        let _ = streams_end.send(true);
        tracing::warn!(
            ?drain,
            "mcp requests still in flight after the shutdown grace period"
        );
    }
}

/// One request: who it is, where it goes, and its metrics.
async fn handle(state: &Arc<McpState>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let routed = request::route(state, req.uri().path());
    let label = routed.as_ref().map_or("unknown", |u| u.name.as_str());
    let response = match admitted(state, &req) {
        Err(failure) => refuse(state, &failure),
        Ok(identity) => {
            let span = tracing::info_span!(
                "mcp",
                upstream = label,
                session = %identity.session_id,
                principal = %identity.principal,
            );
            route(state, routed.as_ref(), req, identity)
                .instrument(span)
                .await
        }
    };
    let m = &state.metrics.mcp;
    let status = response.status();
    m.requests
        .with_label_values(&[label, request::method_label(&method), status.as_str()])
        .inc();
    m.request_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The front door and the identity, before anything else happens to a
/// request (GET streams, DELETE and unknown paths included: an anonymous
/// client learns nothing, not even the upstreams' names).
fn admitted(state: &McpState, req: &Request<Incoming>) -> Result<Identity, Failure> {
    state
        .front_door
        .check(req.uri(), req.headers())
        .map_err(Failure::FrontDoor)?;
    let peer = req.extensions().get::<Arc<Peer>>();
    identity::resolve(&state.identity, req.headers(), peer).map_err(Failure::Identity)
}

/// The answer for a refused request, counted.
fn refuse(state: &McpState, failure: &Failure) -> Response<ProxyBody> {
    refuse_answering(state, failure, None)
}

/// [`refuse`], answering the request's own id when it is known.
fn refuse_answering(state: &McpState, failure: &Failure, id: Option<&Id>) -> Response<ProxyBody> {
    let m = &state.metrics.mcp;
    if let Failure::FrontDoor(refusal) = failure {
        m.front_door_refusals
            .with_label_values(&[refusal.as_str()])
            .inc();
    }
    m.refused_requests
        .with_label_values(&[failure.label()])
        .inc();
    failure.response(id)
}

async fn route(
    state: &Arc<McpState>,
    upstream: Option<&Arc<Upstream>>,
    req: Request<Incoming>,
    identity: Identity,
) -> Response<ProxyBody> {
    let Some(upstream) = upstream else {
        return refuse(state, &request::no_route(state, req.uri().path()));
    };
    match *req.method() {
        Method::POST => match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let permit = InFlight::new(permit, state.metrics.mcp.in_flight.clone());
                post(state, upstream, req, identity, permit).await
            }
            Err(_) => {
                let max_in_flight = state.config.max_in_flight;
                refuse(state, &Failure::AtCapacity { max_in_flight })
            }
        },
        Method::GET | Method::DELETE => forward::pass(state, upstream, &identity, req).await,
        ref other => refuse(state, &Failure::MethodNotAllowed(other.clone())),
    }
}

/// One POST: read, parse, check the headers, admit each message, forward
/// what was admitted (or answer locally), relay and settle.
async fn post(
    state: &Arc<McpState>,
    upstream: &Arc<Upstream>,
    req: Request<Incoming>,
    identity: Identity,
    permit: InFlight,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    // Read and parse. Refused whole (nothing forwarded, nothing recorded):
    // a body that is not JSON-RPC, with duplicate member names, a
    // `tools/call` without an id, or colliding request ids in a batch.
    let bytes = match request::read_body(&parts.headers, body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(failure) => return refuse(state, &failure),
    };
    let body = match jsonrpc::parse(&bytes) {
        Ok(body) => body,
        Err(e) => return refuse(state, &Failure::Malformed(e)),
    };
    // Check the headers that repeat the body.
    if let Err(message) = request::check_method_headers(&parts.headers, &body) {
        let id = match &body {
            Body::Single(m) => admit::request_id(m),
            Body::Batch(_) => None,
        };
        return refuse_answering(state, &Failure::HeaderMismatch(message), id);
    }
    // Admit: decide and record every call before anything is sent.
    let batch = matches!(body, Body::Batch(_));
    let mut exchange = Exchange::new(
        state.clone(),
        upstream.clone(),
        identity,
        started,
        permit,
        batch,
    );
    let messages = match body {
        Body::Single(m) => vec![m],
        Body::Batch(ms) => ms,
    };
    let total = messages.len();
    let mut admitted = Vec::with_capacity(total);
    for message in messages {
        if admit::admit(state, &mut exchange, &message).await {
            admitted.push(message);
        } else if let Some(held) = exchange.held.take() {
            // The POST's one message, held for its approval.
            return hold::hold(exchange, parts, bytes, message, held).await;
        }
    }
    if admitted.is_empty() {
        return exchange.local_only();
    }
    // Forward: unchanged bodies byte for byte; a batch with some messages
    // kept back is the others' own text (what was decided), and a call
    // `policy.sanitize` rewrote goes as its rewrite (what was decided on).
    let upstream_body = admit::upstream_body(bytes, &admitted, total, batch, &exchange.rewrites);
    exchange.forwarded_requests = admitted
        .iter()
        .filter_map(admit::request_id)
        .cloned()
        .collect();
    // Relay and settle (a streamed answer goes on in its own task).
    forward::forward(exchange, parts, upstream_body).await
}

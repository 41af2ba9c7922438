//! The accept loop the MCP, admin and forward listeners share: a
//! connection cap, an optional TLS handshake, and hyper's HTTP/1.1 + HTTP/2
//! server on whatever stream results (a plain `TcpStream` or a rustls
//! `TlsStream`), watched for graceful shutdown.
//!
//! The TLS handshake runs inside the connection's own task under
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client never blocks accepting;
//! a failed or timed-out handshake is counted in
//! `aegis_tls_handshake_failures_total{listener}`. A connection that has not
//! sent a whole request head within the listener's header timeout of its
//! accept is closed, and at the cap the one that has waited longest for its
//! first request makes room for a new one ([`opening`]), so silent
//! connections can neither pile up nor lock a listener; both are counted in
//! `aegis_listener_connections_closed_total{listener,reason}`. Every request
//! carries the connection's [`Peer`] (address, verified client certificate)
//! in its extensions.

mod opening;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, TryAcquireError, watch};
use tokio_rustls::TlsAcceptor;

use self::opening::{Closed, Openings, Pending};
use crate::metrics::Metrics;
use crate::peer::{Peer, PeerCert};
pub use crate::tls::HANDSHAKE_TIMEOUT;

/// HTTP/2 keep-alive: a ping after this long without a frame from the
/// client...
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection closed if its answer takes longer than this, so a
/// peer that vanished (or never answers pings) does not hold a slot.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One bound listener and how its connections are taken.
pub struct Listener {
    pub tcp: TcpListener,
    /// `mcp` or `admin`: the metric label and the log field.
    pub name: &'static str,
    /// TLS (and mTLS) when configured.
    pub tls: Option<TlsAcceptor>,
    /// Connections served at once. At the cap, the connection that has
    /// waited longest for its first request is closed to make room; when
    /// every one is past it, accepting waits (the kernel's backlog pushes
    /// back).
    pub max_connections: usize,
    /// How long a new connection has to send its first whole request head,
    /// counted from its accept (and hyper's bound on each later HTTP/1.1
    /// request head).
    pub header_timeout: Duration,
    /// Sets `TCP_NODELAY` on accepted sockets.
    pub nodelay: bool,
    pub counters: ListenerCounters,
}

/// A listener's counters, resolved once.
#[derive(Debug, Clone)]
pub struct ListenerCounters {
    /// Connections open now.
    open: IntGauge,
    /// Failed or timed-out TLS handshakes.
    handshake_failures: IntCounter,
    /// Closed for sending no whole request head within the header timeout.
    header_timeouts: IntCounter,
    /// Closed, before their first request, to make room at the cap.
    made_room: IntCounter,
}

impl ListenerCounters {
    /// `name`'s counters in `metrics`.
    pub fn new(metrics: &Metrics, name: &str) -> ListenerCounters {
        let closed = |reason: &str| {
            metrics
                .listener_connections_closed
                .with_label_values(&[name, reason])
        };
        ListenerCounters {
            open: metrics.listener_connections_open.with_label_values(&[name]),
            handshake_failures: metrics.tls_handshake_failures.with_label_values(&[name]),
            header_timeouts: closed("header_timeout"),
            made_room: closed("made_room"),
        }
    }

    fn closed(&self, why: Closed) {
        match why {
            Closed::Timeout => self.header_timeouts.inc(),
            Closed::MadeRoom => self.made_room.inc(),
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .finish_non_exhaustive()
    }
}

/// The HTTP/1.1 + HTTP/2 server every listener uses: a slow HTTP/1.1
/// client must send each request head within `header_timeout`; an HTTP/2
/// client that stops answering pings is dropped.
pub fn http_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// Accepts and serves connections with `service` until `shutdown` changes;
/// every connection is watched by `graceful`, which the caller drains.
pub async fn accept_loop<S, B>(
    listener: Listener,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    graceful: &GracefulShutdown,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let Listener {
        tcp,
        name,
        tls,
        max_connections,
        header_timeout,
        nodelay,
        counters,
    } = listener;
    let slots = Arc::new(Semaphore::new(max_connections));
    let openings = Arc::new(Openings::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                // Its task ends at once and gives its slot back; when no
                // connection is waiting for its first request, this one
                // waits for any slot, and accepting with it.
                openings.close_oldest();
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        let open = Open::new(&counters.open);
        let (builder, service, watcher) = (builder.clone(), service.clone(), graceful.watcher());
        let (tls, counters) = (tls.clone(), counters.clone());
        let registered = openings.register();
        let openings = openings.clone();
        tokio::spawn(async move {
            let first = FirstRequest {
                pending: registered.pending().clone(),
                openings,
            };
            let connection = async {
                let service = |cert| WithPeer::new(service, peer, cert, first);
                match tls {
                    None => serve(&builder, stream, service(None), watcher, name, peer).await,
                    Some(acceptor) => {
                        let Some((stream, cert)) =
                            handshake(acceptor, stream, name, peer, &counters).await
                        else {
                            return;
                        };
                        serve(&builder, stream, service(cert), watcher, name, peer).await;
                    }
                }
            };
            tokio::select! {
                biased;
                () = connection => {}
                why = registered.closed(header_timeout) => {
                    counters.closed(why);
                    tracing::debug!(listener = name, %peer, reason = ?why, "closed before its first request");
                }
            }
            drop((open, permit));
        });
    }
}

/// One open connection in `aegis_listener_connections_open`, until dropped.
struct Open(IntGauge);

impl Open {
    fn new(gauge: &IntGauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The TLS handshake, under [`HANDSHAKE_TIMEOUT`]: the stream and the client
/// certificate rustls verified, if any; `None` (counted) when it failed.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    name: &'static str,
    peer: SocketAddr,
    counters: &ListenerCounters,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<PeerCert>,
)> {
    let failed = |what: &str, error: Option<String>| {
        counters.handshake_failures.inc();
        tracing::debug!(listener = name, %peer, error, "{what}");
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            // Present only when rustls verified it against the listener's
            // client CA.
            let cert = match stream.get_ref().1.peer_certificates() {
                Some([leaf, ..]) => match PeerCert::from_der(leaf) {
                    Ok(cert) => Some(cert),
                    Err(e) => {
                        failed("client certificate unreadable", Some(e.to_string()));
                        return None;
                    }
                },
                _ => None,
            };
            Some((stream, cert))
        }
        Ok(Err(e)) => {
            failed("TLS handshake failed", Some(e.to_string()));
            None
        }
        Err(_) => {
            failed("TLS handshake timed out", None);
            None
        }
    }
}

/// What a connection's service tells [`opening`] when its first request
/// head has arrived.
#[derive(Debug, Clone)]
struct FirstRequest {
    pending: Arc<Pending>,
    openings: Arc<Openings>,
}

/// A listener's service with the connection's [`Peer`] put in every
/// request's extensions.
#[derive(Debug, Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Arc<Peer>,
    first: FirstRequest,
}

impl<S> WithPeer<S> {
    fn new(inner: S, addr: SocketAddr, cert: Option<PeerCert>, first: FirstRequest) -> WithPeer<S> {
        WithPeer {
            inner,
            peer: Arc::new(Peer { addr, cert }),
            first,
        }
    }
}

impl<S> Service<Request<Incoming>> for WithPeer<S>
where
    S: Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if !self.first.pending.serving() {
            // Lost only to a close that is already under way: the request
            // then ends with its connection, as if the client had left.
            self.first.openings.started(&self.first.pending);
        }
        req.extensions_mut().insert(self.peer.clone());
        self.inner.call(req)
    }
}

/// Serves one connection, of any stream type, until it ends.
async fn serve<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: Watcher,
    name: &'static str,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // With upgrades: the forward proxy's CONNECT tunnels need them; for the
    // other listeners nothing ever asks to upgrade.
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
    }
}

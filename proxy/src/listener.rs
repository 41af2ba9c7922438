//! The accept loop the MCP and admin listeners share: a connection cap, an
//! optional TLS handshake, and hyper's HTTP/1.1 + HTTP/2 server on whatever
//! stream results (a plain `TcpStream` or a rustls `TlsStream`), watched for
//! graceful shutdown.
//!
//! The TLS handshake runs inside the connection's own task under
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client never blocks accepting;
//! a failed or timed-out handshake is counted in
//! `aegis_tls_handshake_failures_total{listener}`. Every request carries the
//! connection's [`Peer`] (address, verified client certificate) in its
//! extensions.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::peer::{Peer, PeerCert};
pub use crate::tls::HANDSHAKE_TIMEOUT;

/// One bound listener and how its connections are taken.
pub struct Listener {
    pub tcp: TcpListener,
    /// `mcp` or `admin`: the metric label and the log field.
    pub name: &'static str,
    /// TLS (and mTLS) when configured.
    pub tls: Option<TlsAcceptor>,
    /// Connections served at once; at the cap, accepting waits (the kernel's
    /// backlog pushes back).
    pub max_connections: usize,
    /// Sets `TCP_NODELAY` on accepted sockets.
    pub nodelay: bool,
    /// Counts failed or timed-out TLS handshakes.
    pub handshake_failures: IntCounter,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The HTTP/1.1 + HTTP/2 server every listener uses: a slow client must
/// send its request head within `header_read_timeout`.
pub fn http_builder(header_read_timeout: std::time::Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
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
        nodelay,
        handshake_failures,
    } = listener;
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
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
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        let (builder, service, watcher) = (builder.clone(), service.clone(), graceful.watcher());
        let tls = tls.clone();
        let failures = handshake_failures.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let service = WithPeer::new(service, peer, None);
                    serve(&builder, stream, service, watcher, name, peer).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            // Present only when rustls verified it against
                            // the listener's client CA.
                            let cert = match stream.get_ref().1.peer_certificates() {
                                Some([leaf, ..]) => match PeerCert::from_der(leaf) {
                                    Ok(cert) => Some(cert),
                                    Err(e) => {
                                        failures.inc();
                                        tracing::debug!(listener = name, %peer, error = %e, "client certificate unreadable");
                                        drop(permit);
                                        return;
                                    }
                                },
                                _ => None,
                            };
                            let service = WithPeer::new(service, peer, cert);
                            serve(&builder, stream, service, watcher, name, peer).await;
                        }
                        Ok(Err(e)) => {
                            failures.inc();
                            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            failures.inc();
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                        }
                    }
                }
            }
            drop(permit);
        });
    }
}

/// A listener's service with the connection's [`Peer`] put in every
/// request's extensions.
#[derive(Debug, Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Arc<Peer>,
}

impl<S> WithPeer<S> {
    fn new(inner: S, addr: SocketAddr, cert: Option<PeerCert>) -> WithPeer<S> {
        WithPeer {
            inner,
            peer: Arc::new(Peer { addr, cert }),
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

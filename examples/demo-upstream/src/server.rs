//! Accepting connections: HTTP/1.1 and HTTP/2 (hyper-util's auto builder),
//! a cap on open connections, and a graceful drain on shutdown.
//!
//! At the cap it stops accepting, so the kernel's backlog pushes back. No
//! per-request logging: benchmarks run through this server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::routes;
use crate::state::Shared;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 1024;
/// Longest wait for a request's headers: a slow client cannot hold a slot.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, at shutdown, for open connections to finish.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Serves until the shutdown signal, then ends the sessions (and so their
/// held-open streams) and drains.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut shutdown = shared.shutdown.clone();
    let stopping = async move {
        // An error means the handle was dropped: stop too.
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stopping => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        // Small request/response pairs: do not wait to fill a segment.
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let service = service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(routes::handle(shared, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    shared.sessions.close_all();
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?DRAIN_DEADLINE,
            "connections still open after the drain deadline"
        );
    }
}

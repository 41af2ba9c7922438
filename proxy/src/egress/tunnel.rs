//! CONNECT: connect to the checked address first (so an unreachable
//! destination is a 502, not a 200 and a hang-up), answer `200`, then copy
//! bytes both ways until either side closes, the tunnel idles for
//! `forward.idle_timeout_ms`, or shutdown's grace period ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::admit::Admitted;
use super::answer::{self, EgressError};
use super::body::Counted;
use super::record::{self, Ending};
use super::{EgressBody, EgressState};

/// Connects to `admitted`'s addresses and, once the client's connection is
/// handed over, runs the tunnel in a tracked task.
pub async fn open(
    state: &Arc<EgressState>,
    req: Request<Incoming>,
    admitted: Admitted,
) -> Result<Response<EgressBody>, EgressError> {
    let upstream = match connect(&admitted.addrs, state.config.connect_timeout).await {
        Ok(stream) => stream,
        Err(e) => {
            let status = match e {
                EgressError::Timeout(_) => "timeout",
                _ => "connect_failed",
            };
            let ending = Ending::failed(status, admitted.started.elapsed());
            record::finish(state, &admitted, ending).await;
            return Err(e);
        }
    };
    let task_state = state.clone();
    state.tasks.spawn(async move {
        let ending = match hyper::upgrade::on(req).await {
            Ok(upgraded) => run(&task_state, TokioIo::new(upgraded), upstream, &admitted).await,
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                Ending::failed("error", admitted.started.elapsed())
            }
        };
        record::finish(&task_state, &admitted, ending).await;
    });
    Ok(answer::text(StatusCode::OK, String::new()))
}

/// Tries each checked address in turn, within `timeout` overall.
pub async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, EgressError> {
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        Err(EgressError::Unreachable(
            last.unwrap_or_else(|| "no address".to_owned()),
        ))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(EgressError::Timeout(format!(
            "connecting took longer than {timeout:?}"
        ))),
    }
}

/// Copies until the tunnel ends; returns how it ended.
async fn run(
    state: &EgressState,
    client: TokioIo<hyper::upgrade::Upgraded>,
    upstream: TcpStream,
    admitted: &Admitted,
) -> Ending {
    let metrics = &state.metrics.egress;
    metrics.active_tunnels.inc();
    let since = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut client = Counted {
        inner: client,
        read: up.clone(),
        exported: metrics.tunnel_bytes.with_label_values(&["up"]),
        last: last.clone(),
        since,
    };
    let mut upstream = Counted {
        inner: upstream,
        read: down.clone(),
        exported: metrics.tunnel_bytes.with_label_values(&["down"]),
        last: last.clone(),
        since,
    };
    let idle = state.config.idle_timeout;
    let mut shutdown = state.shutdown.clone();
    let grace = state.shutdown_grace;
    let status = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok(_) => "closed",
            Err(_) => "error",
        },
        () = idle_for(idle, &last, since) => "idle_timeout",
        () = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => "shutdown",
    };
    metrics.active_tunnels.dec();
    Ending {
        status,
        bytes_up: up.load(Ordering::Relaxed),
        bytes_down: down.load(Ordering::Relaxed),
        duration: admitted.started.elapsed(),
        http_status: None,
    }
}

/// Returns once no byte moved for `idle` (`last`: ms since `since`).
async fn idle_for(idle: Duration, last: &AtomicU64, since: Instant) {
    loop {
        let deadline = since + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

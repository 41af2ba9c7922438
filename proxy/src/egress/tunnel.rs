//! CONNECT: connect to the checked address first (so an unreachable
//! destination is a 502, not a 200 and a hang-up), answer `200`, then copy
//! bytes both ways until either side closes, the tunnel idles for
//! `forward.idle_timeout_ms`, or shutdown's grace period ends.
//!
//! The copy is [`copy::both_ways`]: buffers that grow from 8 KiB to
//! 512 KiB per direction under bulk transfer, and byte counts kept in
//! counters only this tunnel's task writes (no lock, no clock read, nothing
//! shared with other tunnels). A watcher in the same task wakes every
//! [`tick`] to export the bytes read to `aegis_egress_tunnel_bytes_total`
//! and to notice that nothing moved for the idle timeout. A tunnel
//! therefore closes between `idle` and `idle` + one tick after its last
//! byte, and the metric lags the tunnel by at most a tick (it is brought up
//! to date when the tunnel ends, before its result is recorded).

mod copy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::net::TcpStream;

use self::copy::Moved;
use super::Admitted;
use super::answer::{self, EgressError};
use super::record::{self, Ending};
use super::{EgressBody, EgressState};

/// The watcher wakes at most this far apart (less for short idle timeouts).
const TICK_MAX: Duration = Duration::from_secs(1);

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
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    mut upstream: TcpStream,
    admitted: &Admitted,
) -> Ending {
    let metrics = &state.metrics.egress;
    metrics.active_tunnels.inc();
    let (up, down) = (Moved::default(), Moved::default());
    let mut exported = Exported {
        up: metrics.tunnel_bytes.with_label_values(&["up"]),
        down: metrics.tunnel_bytes.with_label_values(&["down"]),
        up_done: 0,
        down_done: 0,
    };
    let idle = state.config.idle_timeout;
    let mut shutdown = state.shutdown.clone();
    let grace = state.shutdown_grace;
    let status = tokio::select! {
        copied = copy::both_ways(&mut client, &mut upstream, &up, &down) => match copied {
            Ok(()) => "closed",
            Err(_) => "error",
        },
        () = watch(idle, &up, &down, &mut exported) => "idle_timeout",
        () = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => "shutdown",
    };
    exported.sync(&up, &down);
    metrics.active_tunnels.dec();
    Ending {
        status,
        bytes_up: up.read(),
        bytes_down: down.read(),
        duration: admitted.started.elapsed(),
        http_status: None,
    }
}

/// The bytes read so far, as far as the Prometheus counters have them.
#[derive(Debug)]
struct Exported {
    up: IntCounter,
    down: IntCounter,
    up_done: u64,
    down_done: u64,
}

impl Exported {
    /// Adds what was read since the last call to the counters.
    fn sync(&mut self, up: &Moved, down: &Moved) {
        let (up_now, down_now) = (up.read(), down.read());
        self.up.inc_by(up_now.saturating_sub(self.up_done));
        self.down.inc_by(down_now.saturating_sub(self.down_done));
        (self.up_done, self.down_done) = (up_now, down_now);
    }
}

/// How far apart the watcher wakes for an idle timeout of `idle`: a quarter
/// of it, between 1 ms and [`TICK_MAX`].
fn tick(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(1), TICK_MAX)
}

/// Whether the tunnel has been quiet for long enough, from what the watcher
/// saw at each wake-up.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    /// Bytes moved (both directions, read and written) at the last change.
    seen: u64,
    /// When the watcher last saw them change (or the tunnel opened).
    since: Instant,
}

impl Quiet {
    /// At `now`, with `moved` bytes moved so far: true once nothing moved
    /// for `idle` since the wake-up that last saw a change.
    fn expired(&mut self, moved: u64, now: Instant, idle: Duration) -> bool {
        if moved != self.seen {
            *self = Quiet {
                seen: moved,
                since: now,
            };
            return false;
        }
        now.saturating_duration_since(self.since) >= idle
    }
}

/// Returns once no byte moved for `idle`; exports the bytes read at every
/// wake-up meanwhile.
async fn watch(idle: Duration, up: &Moved, down: &Moved, exported: &mut Exported) {
    let every = tick(idle);
    let mut quiet = Quiet {
        seen: 0,
        since: Instant::now(),
    };
    loop {
        tokio::time::sleep(every).await;
        exported.sync(up, down);
        let moved = up.total().wrapping_add(down.total());
        if quiet.expired(moved, Instant::now(), idle) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_a_quarter_of_the_idle_timeout_within_bounds() {
        assert_eq!(tick(Duration::from_secs(60)), TICK_MAX);
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(tick(Duration::from_millis(2)), Duration::from_millis(1));
        assert_eq!(tick(Duration::ZERO), Duration::from_millis(1));
    }

    #[test]
    fn quiet_expires_only_after_idle_without_a_change() {
        let idle = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut quiet = Quiet { seen: 0, since: t0 };
        assert!(!quiet.expired(0, at(9), idle));
        // Bytes moved: the quiet period starts over at this wake-up.
        assert!(!quiet.expired(5, at(9), idle));
        assert!(!quiet.expired(5, at(18), idle));
        assert!(quiet.expired(5, at(19), idle));
        // Any change, even only writes catching up, counts as activity.
        assert!(!quiet.expired(6, at(20), idle));
        assert!(!quiet.expired(6, at(29), idle));
        assert!(quiet.expired(6, at(30), idle));
    }

    #[test]
    fn quiet_expires_at_once_past_idle_from_the_opening() {
        let t0 = Instant::now();
        let mut quiet = Quiet { seen: 0, since: t0 };
        assert!(quiet.expired(0, t0 + Duration::from_millis(4), Duration::from_millis(4)));
    }

    #[test]
    fn only_new_bytes_are_exported() {
        let (up, down) = (Moved::default(), Moved::default());
        let counter = |name| IntCounter::new(name, "test").expect("a valid counter");
        let mut exported = Exported {
            up: counter("up"),
            down: counter("down"),
            up_done: 0,
            down_done: 0,
        };
        up.read.store(15, std::sync::atomic::Ordering::Relaxed);
        exported.sync(&up, &down);
        up.read.store(16, std::sync::atomic::Ordering::Relaxed);
        down.read.store(7, std::sync::atomic::Ordering::Relaxed);
        exported.sync(&up, &down);
        exported.sync(&up, &down);
        assert_eq!((exported.up.get(), exported.down.get()), (16, 7));
    }
}

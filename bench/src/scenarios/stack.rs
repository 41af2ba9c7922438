//! Everything the scenarios run against, started once and kept up: the two
//! demo tool servers, the bare proxy, and three sidecars (NORMAL, FULL,
//! shadow), each on a runtime of its own, and the load generator's runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_ledger::Synchronous;
use anyhow::Context as _;
use tokio::runtime::Runtime;

use super::{Load, Route, Run, Scenario};
use crate::bare_proxy::BareProxy;
use crate::cpu::CpuSnapshot;
use crate::load::{ClosedLoop, OpenLoop};
use crate::mcp::{Answering, Endpoint, Sidecar, SidecarOptions, ToolCall, Upstreams, runtime};
use crate::stages::Stages;

/// How long each run lasts, and its bounds.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Closed loop: unrecorded warm-up, then recorded time.
    pub warmup: Duration,
    pub seconds: Duration,
    /// Open loop: the same.
    pub open_warmup: Duration,
    pub open_seconds: Duration,
    /// The open loop's pool: connections open at most.
    pub open_connections: usize,
    /// Longest wait for one answer (from its intended send time in the
    /// open loop).
    pub request_timeout: Duration,
}

/// The running stack.
#[derive(Debug)]
pub struct Bench {
    upstreams: Upstreams,
    bare: BareProxy,
    normal: Sidecar,
    full: Sidecar,
    shadow: Sidecar,
    /// The bare proxy's runtime, and the load generator's.
    bare_rt: Runtime,
    load_rt: Runtime,
}

impl Bench {
    /// Starts every component; each listens on 127.0.0.1:0.
    pub fn start() -> anyhow::Result<Bench> {
        let upstreams = Upstreams::start()?;
        let bare_rt = runtime("bare")?;
        let routes: Vec<(String, String)> = Answering::ALL
            .iter()
            .map(|&a| (format!("/mcp/{a}"), upstreams.url(a)))
            .collect();
        let bare = bare_rt
            .block_on(BareProxy::start(&routes))
            .context("starting the bare proxy")?;
        let sidecar = |name: &str, synchronous, enforce| {
            let options = SidecarOptions {
                synchronous,
                enforce,
                manifest_beside_ledger: false,
            };
            Sidecar::start(name, &upstreams, options)
        };
        let normal = sidecar("sidecar", Synchronous::Normal, true)?;
        let full = sidecar("sidecar-full", Synchronous::Full, true)?;
        let shadow = sidecar("sidecar-shadow", Synchronous::Normal, false)?;
        let load_rt = runtime("load")?;
        Ok(Bench {
            upstreams,
            bare,
            normal,
            full,
            shadow,
            bare_rt,
            load_rt,
        })
    }

    /// Where `route` sends calls for the tool server answering `answering`.
    pub fn endpoint(&self, route: Route, answering: Answering) -> Endpoint {
        match route {
            Route::Direct => self.upstreams.endpoint(answering),
            Route::Bare => Endpoint {
                addr: self.bare.addr(),
                path: format!("/mcp/{answering}"),
            },
            Route::Sidecar | Route::Deny | Route::Full | Route::Shadow => {
                self.sidecar(route).endpoint(answering)
            }
        }
    }

    /// The sidecar a sidecar route goes through (the NORMAL one otherwise).
    fn sidecar(&self, route: Route) -> &Sidecar {
        match route {
            Route::Full => &self.full,
            Route::Shadow => &self.shadow,
            Route::Direct | Route::Bare | Route::Sidecar | Route::Deny => &self.normal,
        }
    }

    /// Bytes of each sidecar's ledger (database and WAL): NORMAL, FULL,
    /// shadow.
    pub fn ledger_bytes(&self) -> [(Route, u64); 3] {
        [
            (Route::Sidecar, self.normal.ledger_bytes()),
            (Route::Full, self.full.ledger_bytes()),
            (Route::Shadow, self.shadow.ledger_bytes()),
        ]
    }

    fn upstream_calls(&self) -> u64 {
        let (json, sse) = self.upstreams.tool_calls();
        json + sse
    }

    /// Runs `scenario` once, on the load runtime, with fresh sidecar
    /// sessions (one per connection, named after the round and scenario).
    pub fn run(&self, round: usize, scenario: Scenario, timing: &Timing) -> Run {
        let label = scenario.label();
        let answering = scenario.group.answering;
        let endpoint = self.endpoint(scenario.route, answering);
        let workload = Arc::new(ToolCall::new(
            &endpoint,
            answering,
            scenario.call(),
            format!("scn-r{round}-{label}"),
        ));
        let through_sidecar = !matches!(scenario.route, Route::Direct | Route::Bare);
        let sidecar = self.sidecar(scenario.route);
        let samples_before = through_sidecar.then(|| sidecar.samples());
        let calls_before = self.upstream_calls();
        let cpu_before = CpuSnapshot::now();
        let started = Instant::now();
        let (mut report, open) = match scenario.group.load {
            Load::Closed { connections } => {
                let load = ClosedLoop {
                    connections,
                    warmup: timing.warmup,
                    duration: timing.seconds,
                    requests: None,
                    request_timeout: timing.request_timeout,
                };
                let report = self.load_rt.block_on(load.run(endpoint.addr, workload));
                (report, None)
            }
            Load::Open { rate } => {
                let load = OpenLoop {
                    rate: f64::from(rate),
                    max_connections: timing.open_connections,
                    warmup: timing.open_warmup,
                    duration: timing.open_seconds,
                    request_timeout: timing.request_timeout,
                };
                let open = self.load_rt.block_on(load.run(endpoint.addr, workload));
                let details = (
                    open.due,
                    open.send_lag,
                    open.clock_lag,
                    open.waited_for_connection,
                );
                (open.report, Some(details))
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let cpu = CpuSnapshot::now().since(&cpu_before, seconds);
        let upstream_calls = self.upstream_calls().saturating_sub(calls_before);
        // The refusal's point: nothing reaches the tool server.
        if scenario.route == Route::Deny && upstream_calls > 0 {
            *report
                .failures
                .entry("upstream_called".to_owned())
                .or_insert(0) += upstream_calls;
        }
        let stages = samples_before
            .map(|before| Stages::from_delta(&sidecar.samples().since(&before)).over(seconds));
        Run {
            round,
            label,
            scenario,
            report,
            due: open.map(|o| o.0),
            send_lag: open.map(|o| o.1),
            clock_lag: open.map(|o| o.2),
            waited_for_connection: open.map(|o| o.3),
            stages,
            upstream_calls,
            cpu,
        }
    }

    /// Drains the sidecars (closing their ledgers), then the bare proxy and
    /// the tool servers.
    pub fn shutdown(self) {
        drop(self.load_rt);
        self.normal.shutdown();
        self.full.shutdown();
        self.shadow.shutdown();
        self.bare.shutdown();
        drop(self.bare_rt);
        self.upstreams.shutdown();
    }
}

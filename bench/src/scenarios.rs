//! The end-to-end scenarios, run alternately in one invocation
//! (`src/bin/scenarios.rs`): MCP `tools/call` with 1 KiB and 64 KiB results,
//! JSON and SSE answers, at 1 and N connections in a closed loop, by six
//! routes — plus an open loop at fixed rates — summarised as medians over
//! rounds of each scenario and of its per-round differences to calling the
//! tool server directly and through a bare proxy.
//!
//! The routes ([`Route`]):
//!
//! - `direct`: the demo tool server itself;
//! - `bare`: through [`crate::bare_proxy`], the floor for one extra hop;
//! - `sidecar`: through the sidecar, enforcing, ledger `synchronous=NORMAL`;
//! - `deny`: the same sidecar, a call of an undeclared tool: refused, the
//!   tool server never called (checked);
//! - `full`: a second sidecar, ledger `synchronous=FULL`;
//! - `shadow`: a third sidecar, `mcp.enforce: false` (decided, recorded,
//!   forwarded).
//!
//! Order ([`round_plan`]): per round, for each group of runs that are
//! compared (answer shape, result size, load) every route back to back, so
//! each is compared with `direct` and `bare` measured seconds before it;
//! `deny` has no result size and runs in the first size's groups. The open
//! loop's groups (JSON, 1 KiB, one per rate: direct, bare, sidecar) end
//! each round. `stack.rs` starts everything and runs one scenario,
//! `summary.rs` reduces the runs, `table.rs` prints them.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::cpu::CpuUse;
use crate::load::{LatencySummary, LoadReport};
use crate::mcp::{Answering, ToolCallKind};
use crate::stages::Stages;

mod stack;
mod summary;
mod table;

pub use stack::{Bench, Timing};
pub use summary::{Summary, Versus, summarise};
pub use table::{closed_table, open_table, run_line, stages_table};

/// The result sizes of the closed loop, in bytes.
pub const SIZES: [u64; 2] = [1024, 64 * 1024];
/// The open loop's result size.
pub const OPEN_BYTES: u64 = 1024;

/// How a call reaches the tool server, and which call it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Direct,
    Bare,
    Sidecar,
    Deny,
    Full,
    Shadow,
}

impl Route {
    /// Every route, in the order a group runs them.
    pub const ALL: [Route; 6] = [
        Route::Direct,
        Route::Bare,
        Route::Sidecar,
        Route::Deny,
        Route::Full,
        Route::Shadow,
    ];

    /// The routes of the open loop.
    pub const OPEN: [Route; 3] = [Route::Direct, Route::Bare, Route::Sidecar];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Bare => "bare",
            Route::Sidecar => "sidecar",
            Route::Deny => "deny",
            Route::Full => "full",
            Route::Shadow => "shadow",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Load {
    /// Closed loop over this many connections.
    Closed { connections: usize },
    /// Open loop at this many requests per second.
    Open { rate: u32 },
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed { connections } => write!(f, "{connections}"),
            Load::Open { rate } => write!(f, "{rate}/s"),
        }
    }
}

/// Runs compared with each other: the same answer shape, result size and
/// load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Group {
    pub answering: Answering,
    /// Result size of `big` (the group `deny` is compared in: its answer
    /// is the refusal, about 300 bytes).
    pub bytes: u64,
    pub load: Load,
}

/// One measured load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub route: Route,
    #[serde(flatten)]
    pub group: Group,
}

impl Scenario {
    /// `sidecar/json/1KiB@32`, `deny/sse@1`, `bare/json/1KiB@1000/s`.
    pub fn label(&self) -> String {
        let g = &self.group;
        match self.route {
            Route::Deny => format!("deny/{}@{}", g.answering, g.load),
            route => format!("{route}/{}/{}@{}", g.answering, size(g.bytes), g.load),
        }
    }

    /// What is called.
    pub fn call(&self) -> ToolCallKind {
        match self.route {
            Route::Deny => ToolCallKind::Undeclared,
            _ => ToolCallKind::Big {
                bytes: self.group.bytes,
            },
        }
    }

    /// The same group by another route.
    pub fn by(&self, route: Route) -> Scenario {
        Scenario {
            route,
            group: self.group,
        }
    }
}

/// `1KiB`, `64KiB`, `100B`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}KiB", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

/// The scenarios of one round, in the order they run: closed-loop groups
/// (for each answer shape, result size, then connections 1 and `many`),
/// then one open-loop group per rate.
pub fn round_plan(many: usize, rates: &[u32]) -> Vec<Scenario> {
    let mut plan = Vec::new();
    for answering in Answering::ALL {
        for (i, bytes) in SIZES.into_iter().enumerate() {
            for connections in [1, many] {
                let group = Group {
                    answering,
                    bytes,
                    load: Load::Closed { connections },
                };
                for route in Route::ALL {
                    // A refusal has no result size: once per answer shape
                    // and connection count, in the first size's group.
                    if route == Route::Deny && i > 0 {
                        continue;
                    }
                    plan.push(Scenario { route, group });
                }
            }
        }
    }
    for &rate in rates {
        let group = Group {
            answering: Answering::Json,
            bytes: OPEN_BYTES,
            load: Load::Open { rate },
        };
        plan.extend(Route::OPEN.map(|route| Scenario { route, group }));
    }
    plan
}

/// `plan` cut to the scenarios whose label contains one of `only`, with
/// the `direct` and `bare` runs of their groups kept so that they still
/// have something to be compared with. Everything when `only` is empty.
pub fn select(plan: Vec<Scenario>, only: &[String]) -> Vec<Scenario> {
    if only.is_empty() {
        return plan;
    }
    let wanted = |s: &Scenario| only.iter().any(|o| s.label().contains(o.as_str()));
    let groups: Vec<Group> = plan.iter().filter(|s| wanted(s)).map(|s| s.group).collect();
    plan.into_iter()
        .filter(|s| {
            wanted(s)
                || (matches!(s.route, Route::Direct | Route::Bare) && groups.contains(&s.group))
        })
        .collect()
}

/// How long `rounds` rounds of `plan` take, warm-ups included.
pub fn planned(plan: &[Scenario], rounds: usize, timing: &Timing) -> Duration {
    let per_round: Duration = plan
        .iter()
        .map(|s| match s.group.load {
            Load::Closed { .. } => timing.warmup + timing.seconds,
            Load::Open { .. } => timing.open_warmup + timing.open_seconds,
        })
        .sum();
    per_round * u32::try_from(rounds).unwrap_or(u32::MAX)
}

/// One scenario's report in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub label: String,
    pub scenario: Scenario,
    /// Latency (from the intended send time in an open loop), throughput
    /// (the rate achieved), failures by label — `upstream_called` for a
    /// `deny` run whose calls reached the tool server.
    pub report: LoadReport,
    /// Open loop: the requests due after the warm-up, how late they were
    /// handed to a connection, and how late the clock was in starting them
    /// (see [`crate::load::OpenReport`]).
    pub due: Option<u64>,
    pub send_lag: Option<LatencySummary>,
    pub clock_lag: Option<LatencySummary>,
    /// Open loop: requests that waited for a free connection of the pool.
    pub waited_for_connection: Option<u64>,
    /// The sidecar's own account of the run (sidecar routes; warm-up
    /// included).
    pub stages: Option<Stages>,
    /// Tool calls that reached the tool servers, warm-up included.
    pub upstream_calls: u64,
    /// CPU used over the run, warm-up included.
    pub cpu: CpuUse,
}

impl Run {
    /// Calls made in the run, warm-up included: those that reached the tool
    /// server, or the sidecar's decisions for calls that did not.
    pub fn calls(&self) -> u64 {
        let decided = self.stages.map_or(0.0, |s| s.tool_calls);
        self.upstream_calls.max(decided.max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests;

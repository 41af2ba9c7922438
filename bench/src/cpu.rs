//! CPU time by component, from `/proc`: each thread of this process
//! (`/proc/self/task/*/stat`), grouped by thread name — the bench names the
//! runtimes' threads `load`, `sidecar` and `upstream`; the ledger's writer is
//! `aegis-ledger-wr(iter)` — and the whole machine (`/proc/stat`), so a run
//! shows whether the cores were saturated and how much of them other
//! processes took.
//!
//! The kernel counts in clock ticks of 10 ms (`USER_HZ` is 100 on Linux);
//! over runs of seconds that is precise enough for shares. Threads that end
//! between two snapshots are not counted. Linux only: elsewhere every
//! snapshot is empty.

use std::collections::BTreeMap;

use serde::Serialize;

/// `USER_HZ`: the unit of `/proc`'s CPU times on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks so far.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// Per thread id: (thread name, user + system ticks).
    threads: BTreeMap<u32, (String, u64)>,
    /// The machine: (busy, steal, total) ticks over all cores.
    machine: (u64, u64, u64),
}

impl CpuSnapshot {
    pub fn now() -> CpuSnapshot {
        CpuSnapshot {
            threads: threads().unwrap_or_default(),
            machine: machine().unwrap_or_default(),
        }
    }

    /// What was used from `before` to `self`, over `wall_s` seconds.
    pub fn since(&self, before: &CpuSnapshot, wall_s: f64) -> CpuUse {
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (name, ticks)) in &self.threads {
            let earlier = before.threads.get(tid).map_or(0, |(_, t)| *t);
            let used = ticks.saturating_sub(earlier) as f64 / TICKS_PER_SECOND;
            *groups.entry(name.clone()).or_insert(0.0) += used;
        }
        groups.retain(|_, s| *s > 0.0);
        let process_s: f64 = groups.values().sum();
        let (busy, steal, total) = self.machine;
        let (busy0, steal0, total0) = before.machine;
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / wall_s.max(1e-9);
        let machine_busy = cores(busy.saturating_sub(busy0));
        let process = process_s / wall_s.max(1e-9);
        CpuUse {
            wall_s,
            seconds: groups,
            machine_cores: cores(total.saturating_sub(total0)),
            machine_busy_cores: machine_busy,
            steal_cores: cores(steal.saturating_sub(steal0)),
            others_cores: (machine_busy - process).max(0.0),
        }
    }
}

/// CPU used over one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    pub wall_s: f64,
    /// CPU seconds by thread name (this process).
    pub seconds: BTreeMap<String, f64>,
    /// Cores the machine had (total ticks ÷ wall time).
    pub machine_cores: f64,
    /// Cores busy, all processes (user, system, interrupts, steal).
    pub machine_busy_cores: f64,
    /// Cores taken by the hypervisor (steal).
    pub steal_cores: f64,
    /// Busy cores not explained by this process: other processes, and the
    /// kernel's work not charged to a thread of ours.
    pub others_cores: f64,
}

impl CpuUse {
    /// CPU µs per request of the threads named `name`.
    pub fn per_request_us(&self, name: &str, requests: u64) -> f64 {
        match self.seconds.get(name) {
            Some(s) if requests > 0 => s * 1e6 / requests as f64,
            _ => 0.0,
        }
    }
}

/// The machine a bench ran on, for its report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// The 1-, 5- and 15-minute load averages from `/proc/loadavg` when read.
    pub loadavg: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            loadavg: loadavg(),
        }
    }
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn threads() -> Option<BTreeMap<u32, (String, u64)>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(parsed) = parse_task_stat(&stat) {
            out.insert(tid, parsed);
        }
    }
    Some(out)
}

/// `(name, utime + stime)` from a `/proc/…/stat` line: `tid (name) state
/// ppid … utime stime …`. The name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_task_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// `(busy, steal, total)` ticks from `/proc/stat`'s `cpu` line.
fn machine() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine(stat.lines().next()?)
}

fn parse_machine(line: &str) -> Option<(u64, u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already
    // inside user and nice).
    let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, v[7], total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_thread_stat_line() {
        let line =
            "4242 (aegis-ledger-wr) S 1 4242 4242 0 -1 4194368 120 0 0 0 37 5 0 0 20 0 9 0 1 0 0";
        assert_eq!(
            parse_task_stat(line),
            Some(("aegis-ledger-wr".to_owned(), 42))
        );
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0";
        assert_eq!(parse_task_stat(odd), Some(("a (b) c".to_owned(), 3)));
    }

    #[test]
    fn parses_the_machine_line() {
        let line = "cpu  100 5 50 800 10 1 2 7 0 0";
        assert_eq!(parse_machine(line), Some((165, 7, 975)));
        assert_eq!(parse_machine("cpu0 1 2 3 4 5 6 7 8"), None);
    }
}

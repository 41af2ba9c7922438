//! Counters: tool calls that reached a tool, and JSON-RPC messages by method.
//!
//! Tests read them to prove what reached the upstream (a denied call: zero).
//! Known tools and methods are atomics indexed by a closed enum, so the hot
//! path takes no lock; methods this server does not know are counted by name
//! under a short lock, up to a bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::method::Method;
use crate::tools::Tool;

/// Distinct unknown method names counted by name; beyond it they share
/// [`OVERFLOW_METHOD`], so a client cannot grow the map without bound.
const MAX_OTHER_METHODS: usize = 64;
/// Where unknown methods past [`MAX_OTHER_METHODS`] names are counted.
const OVERFLOW_METHOD: &str = "(other)";

/// What reached this server. Shared by every connection.
#[derive(Debug, Default)]
pub struct Stats {
    /// Per tool, indexed by `Tool as usize`: bumped when a `tools/call` for
    /// that tool is dispatched to it, whatever its arguments.
    tools: [AtomicU64; Tool::ALL.len()],
    /// Per known method, indexed by `Method::index`.
    methods: [AtomicU64; Method::KNOWN.len()],
    /// Unknown methods by name. Locked by requests with an unknown method,
    /// for one map update, never across an `.await`.
    other_methods: Mutex<HashMap<Box<str>, u64>>,
}

/// The counters at one moment, as `GET /stats` serves them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Every tool, with its executed calls (zero included).
    pub tools: BTreeMap<String, u64>,
    /// Every JSON-RPC method seen (requests and notifications), with counts.
    pub methods: BTreeMap<String, u64>,
}

impl Stats {
    /// Calls of tool `name` that reached it (0 for a tool that does not exist).
    pub fn tool_calls(&self, name: &str) -> u64 {
        Tool::from_name(name).map_or(0, |tool| self.tools[tool.index()].load(Ordering::Relaxed))
    }

    /// Calls that reached any tool.
    pub fn total_tool_calls(&self) -> u64 {
        self.tools.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Messages (requests and notifications) with this method that were
    /// admitted (valid, with a valid session where one is needed).
    pub fn method_calls(&self, method: &str) -> u64 {
        match Method::from_name(method).index() {
            Some(i) => self.methods[i].load(Ordering::Relaxed),
            None => self
                .other_methods
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(method)
                .copied()
                .unwrap_or(0),
        }
    }

    /// Every counter at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        let tools = Tool::ALL
            .iter()
            .map(|tool| {
                (
                    tool.name().to_owned(),
                    self.tools[tool.index()].load(Ordering::Relaxed),
                )
            })
            .collect();
        let mut methods: BTreeMap<String, u64> = Method::KNOWN
            .iter()
            .filter_map(|method| {
                let n = self.methods[method.index()?].load(Ordering::Relaxed);
                (n > 0).then(|| (method.as_str().to_owned(), n))
            })
            .collect();
        let other = self
            .other_methods
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        methods.extend(other.iter().map(|(name, n)| (name.to_string(), *n)));
        StatsSnapshot { tools, methods }
    }

    pub(crate) fn count_tool(&self, tool: Tool) {
        self.tools[tool.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_method(&self, method: Method, name: &str) {
        if let Some(i) = method.index() {
            self.methods[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut other = self
            .other_methods
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = other.get_mut(name) {
            *n += 1;
        } else if other.len() < MAX_OTHER_METHODS {
            other.insert(name.into(), 1);
        } else {
            *other.entry(OVERFLOW_METHOD.into()).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tools_and_methods() {
        let stats = Stats::default();
        stats.count_tool(Tool::Echo);
        stats.count_tool(Tool::Echo);
        stats.count_tool(Tool::Big);
        stats.count_method(Method::ToolsCall, "tools/call");
        stats.count_method(Method::Other, "resources/list");
        assert_eq!(stats.tool_calls("echo"), 2);
        assert_eq!(stats.tool_calls("nope"), 0);
        assert_eq!(stats.total_tool_calls(), 3);
        assert_eq!(stats.method_calls("tools/call"), 1);
        assert_eq!(stats.method_calls("resources/list"), 1);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.tools.len(), Tool::ALL.len());
        assert_eq!(snapshot.tools["read_file"], 0);
        assert_eq!(snapshot.methods.len(), 2);
    }

    #[test]
    fn unknown_method_names_are_bounded() {
        let stats = Stats::default();
        for i in 0..MAX_OTHER_METHODS + 10 {
            stats.count_method(Method::Other, &format!("x/{i}"));
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.methods.len(), MAX_OTHER_METHODS + 1);
        assert_eq!(snapshot.methods[OVERFLOW_METHOD], 10);
    }
}

//! `decide()`: one proposed tool call, the session's facts and a compiled
//! manifest in; a [`Decision`] out. Pure, no I/O, no allocation on the allow
//! path (except rule 7's normalisation of path arguments, when the manifest
//! declares filesystem roots). The rule order is Aegis's (`README.md`, "Policy decisions";
//! `ARCHITECTURE.md`, "Policy semantics"); the first rule that matches
//! decides:
//!
//! 1. tool not declared → deny `PERMISSION_UNDECLARED`
//! 2. network tool (`net*`, `mcp.http*`) whose destination is not allowed → deny `EGRESS_DENY`
//! 3. any budget reached (`consumed >= max`) → deny `BUDGET_EXCEEDED`
//! 4. a loop recorded in the session, or one this call would complete → deny `LOOP_DETECTED`
//! 5. tainted session, high-risk sink, no registered sanitizer key → deny `TAINTED_TO_HIGH_RISK`
//! 6. exec tool whose binary is not allowlisted → deny `EXEC_DENY`
//! 7. filesystem tool whose path argument is not under the manifest's roots → deny `FS_DENY`
//! 8. tool requires approval → `require_approval` / `APPROVAL_REQUIRED`
//! 9. otherwise allow `OK`, with the output and time constraints.
//!
//! Rule 7 is ours (no Aegis pack exercises roots: PT-001's write is denied
//! earlier, as undeclared), placed with the other checks of what a call's arguments reach (2, 6). It
//! applies only when the manifest declares at least one root (`read_roots`
//! or `write_roots`): a manifest without any, as Aegis's packs write them,
//! keeps paths unchecked. Then a read tool's paths must lie under
//! `read_roots` and a write tool's under `write_roots`; a kind with no roots
//! admits no path. Read tools are `read_file` and `fs.read*`, write tools
//! `write_file` and `fs.write*`, each with its path in `args.path`;
//! `policy.fs_paths` maps any declared tool to its path arguments and access
//! instead. A mapped argument that is absent is skipped; one that is a
//! string, or a list of strings, is checked ([`crate::paths`]: every reading
//! of it must be under a root, a relative path starting at the first root);
//! any other value, or `args` that is neither an object nor absent, is
//! denied. What the check cannot see (symlinks, mounts, the tool's working
//! directory, paths in unmapped arguments) is listed in [`crate::paths`].
//!
//! Between 7 and 8, when the caller passes the session's token buckets, a
//! tool over its rate limit is denied `RATE_LIMITED`: last among the denials,
//! so that only a call that would otherwise run takes a token.

use std::collections::BTreeMap;

use foldhash::HashSet;
use std::time::Instant;

use serde_json::Value;

use crate::domain::{DomainSet, destination};
use crate::loops::{CallKey, LoopRules};
use crate::manifest::{FsAccess, FsPathRule, Manifest, RateLimit};
use crate::paths::{self, NormalPath};
use crate::rate::RateLimiter;
use crate::reason::{Outcome, Reason};
use crate::sanitize::Sanitizer;

/// Aegis's high-risk sink prefixes, used unless the manifest's
/// `policy.high_risk_sinks` overrides them.
pub const DEFAULT_HIGH_RISK_SINKS: &[&str] = &[
    "exec",
    "fs.write",
    "write_file",
    "db.write",
    "database.write",
    "net.post",
    "net.put",
    "net.patch",
    "net.delete",
    "mcp.https.post",
    "mcp.https.put",
];

/// A manifest compiled for deciding: sets and matchers built once at load.
#[derive(Debug, Clone)]
pub struct CompiledManifest {
    tools: HashSet<String>,
    approval_required: HashSet<String>,
    domains: DomainSet,
    /// `None` when the manifest declares no `exec` permission.
    exec_bins: Option<HashSet<String>>,
    sinks: Vec<String>,
    max_steps: u64,
    max_tool_calls: u64,
    max_wall_time_ms: u64,
    constraints: Constraints,
    loops: LoopRules,
    rate_limits: BTreeMap<String, RateLimit>,
    /// `None` when the manifest declares no filesystem root (rule 7 off).
    fs: Option<FsRoots>,
    /// `policy.sanitize`, compiled.
    sanitizers: BTreeMap<String, Sanitizer>,
}

/// Rule 7's roots, normalised, and the manifest's path-argument mapping.
#[derive(Debug, Clone)]
struct FsRoots {
    read: Vec<NormalPath>,
    write: Vec<NormalPath>,
    rules: BTreeMap<String, FsPathRule>,
}

/// The arguments a default filesystem tool names its path in.
const DEFAULT_PATH_ARGS: &[&str] = &["path"];

impl FsRoots {
    fn new(manifest: &Manifest) -> Option<FsRoots> {
        let fs = &manifest.permissions.fs;
        if !fs.is_enforced() {
            return None;
        }
        // Validated roots always normalise; one that did not would be
        // dropped, which admits less, never more.
        let normal = |roots: &[String]| {
            roots
                .iter()
                .filter_map(|r| paths::normalize_root(r).ok())
                .collect()
        };
        Some(FsRoots {
            read: normal(&fs.read_roots),
            write: normal(&fs.write_roots),
            rules: manifest.policy.fs_paths.clone(),
        })
    }

    /// Whether every path the call names lies under the roots of its access.
    fn admits(&self, tool: &str, args: &Value) -> bool {
        let (names, access): (Vec<&str>, FsAccess) = match self.rules.get(tool) {
            Some(rule) => (rule.args.iter().map(String::as_str).collect(), rule.access),
            None => match default_fs_access(tool) {
                Some(access) => (DEFAULT_PATH_ARGS.to_vec(), access),
                None => return true,
            },
        };
        let roots = match access {
            FsAccess::Read => &self.read,
            FsAccess::Write => &self.write,
        };
        let args = match args {
            Value::Null => return true,
            Value::Object(args) => args,
            _ => return false,
        };
        let under = |value: &Value| match value {
            Value::String(path) => paths::within_roots(path, roots).unwrap_or(false),
            _ => false,
        };
        names.iter().all(|name| match args.get(*name) {
            None => true,
            Some(Value::Array(items)) => items.iter().all(under),
            Some(value) => under(value),
        })
    }
}

/// The access of a filesystem tool known by name: `read_file` and
/// `fs.read*` read, `write_file` and `fs.write*` write.
pub fn default_fs_access(tool: &str) -> Option<FsAccess> {
    if tool == "read_file" || tool.starts_with("fs.read") {
        Some(FsAccess::Read)
    } else if tool == "write_file" || tool.starts_with("fs.write") {
        Some(FsAccess::Write)
    } else {
        None
    }
}

impl CompiledManifest {
    pub fn new(manifest: &Manifest) -> CompiledManifest {
        let p = &manifest.permissions;
        CompiledManifest {
            tools: p.tools.iter().cloned().collect(),
            approval_required: p.approval_required.iter().cloned().collect(),
            domains: DomainSet::new(p.net.domains.iter().cloned()),
            exec_bins: p
                .exec
                .as_ref()
                .map(|exec| exec.allowed_bins.iter().cloned().collect()),
            sinks: manifest.policy.high_risk_sinks.clone().unwrap_or_else(|| {
                DEFAULT_HIGH_RISK_SINKS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }),
            max_steps: p.budgets.max_steps,
            max_tool_calls: p.budgets.max_tool_calls,
            max_wall_time_ms: p.budgets.max_wall_time_ms,
            constraints: Constraints {
                max_output_bytes: p.budgets.max_output_bytes,
                timeout_ms: p.budgets.timeout_ms,
            },
            loops: LoopRules::new(&manifest.policy.loops),
            rate_limits: manifest.policy.rate_limits.clone(),
            fs: FsRoots::new(manifest),
            sanitizers: manifest
                .policy
                .sanitize
                .iter()
                .map(|(tool, rules)| (tool.clone(), Sanitizer::new(rules)))
                .collect(),
        }
    }

    /// The tool's argument rewrites (`policy.sanitize`), if it has any:
    /// applied by the caller before [`decide`], which then decides on the
    /// rewritten arguments.
    pub fn sanitizer(&self, tool: &str) -> Option<&Sanitizer> {
        self.sanitizers.get(tool)
    }

    /// The decision that lets a call run, with the manifest's output and
    /// time constraints: what an approval turns `require_approval` into.
    pub fn allow(&self) -> Decision {
        Decision {
            outcome: Outcome::Allow,
            reason: Reason::Ok,
            constraints: Some(self.constraints),
        }
    }

    /// The manifest's loop thresholds (`policy.loops`).
    pub fn loop_rules(&self) -> &LoopRules {
        &self.loops
    }

    /// Whether the manifest limits any tool's rate.
    /// Whether the manifest declares the tool (`permissions.tools`).
    pub fn declares(&self, tool: &str) -> bool {
        self.tools.contains(tool)
    }

    pub fn has_rate_limits(&self) -> bool {
        !self.rate_limits.is_empty()
    }

    /// A fresh set of token buckets for one session (`policy.rate_limits`).
    pub fn new_rate_limiter(&self) -> RateLimiter {
        RateLimiter::new(&self.rate_limits)
    }

    fn is_sink(&self, tool: &str) -> bool {
        self.sinks
            .iter()
            .any(|prefix| tool.starts_with(prefix.as_str()))
    }
}

/// A proposed tool call, as read from a `TOOL_CALL_PROPOSED` payload.
#[derive(Debug, Clone, Copy)]
pub struct Proposal<'a> {
    pub tool_name: &'a str,
    /// `payload.args` (`null` when absent).
    pub args: &'a Value,
    /// `payload.sanitizer_key`, when the caller claims its input was sanitised.
    pub sanitizer_key: Option<&'a str>,
    /// Digest of the canonical `args` (the ledger's `ToolCall::digest_args`),
    /// when the caller can compute it: lets rule 4 see a loop this call would
    /// complete. Without it, only a loop already recorded counts.
    pub args_digest: Option<[u8; 16]>,
}

impl<'a> Proposal<'a> {
    /// Reads a proposal from an event payload; `None` without a string
    /// `tool_name`.
    pub fn from_payload(payload: &'a Value) -> Option<Proposal<'a>> {
        Some(Proposal {
            tool_name: payload.get("tool_name")?.as_str()?,
            args: payload.get("args").unwrap_or(&Value::Null),
            sanitizer_key: payload.get("sanitizer_key").and_then(Value::as_str),
            args_digest: None,
        })
    }
}

/// What the decision needs to know about the session so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionFacts<'a> {
    pub steps_consumed: u64,
    pub tool_calls_consumed: u64,
    pub wall_time_ms: u64,
    pub is_tainted: bool,
    pub sanitized_keys: &'a [String],
    /// The loop found in the session, if any.
    pub loop_violation: Option<&'a str>,
    /// The session's recent proposals, oldest first (for rule 4 with
    /// [`Proposal::args_digest`]).
    pub history: &'a [CallKey<'a>],
    /// The session's token buckets and the time now; without them no rate
    /// limit applies.
    pub rate: Option<(&'a RateLimiter, Instant)>,
}

/// Limits an allowed call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constraints {
    pub max_output_bytes: u64,
    pub timeout_ms: u64,
}

/// The verdict on one proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: Reason,
    /// Set when the call may run (allow).
    pub constraints: Option<Constraints>,
}

impl Decision {
    fn deny(reason: Reason) -> Decision {
        Decision {
            outcome: Outcome::Deny,
            reason,
            constraints: None,
        }
    }

    /// A sentence for the agent (and the operator) saying why.
    pub fn explanation(&self) -> &'static str {
        match self.reason {
            Reason::PermissionUndeclared => "the tool is not declared in the agent's manifest",
            Reason::EgressDeny => "the destination is not in the manifest's network allowlist",
            Reason::BudgetExceeded => {
                "the session has used up a budget (steps, tool calls or wall time)"
            }
            Reason::LoopDetected => "the session is repeating the same calls",
            Reason::TaintedToHighRisk => {
                "untrusted content entered the session, and this tool is a high-risk sink"
            }
            Reason::ExecDeny => "the binary is not in the manifest's exec allowlist",
            Reason::ApprovalRequired => "the manifest requires a human approval for this tool",
            Reason::Ok => "allowed",
            Reason::RateLimited => "the tool's rate limit is reached",
            Reason::ManifestUnavailable => "no valid manifest is loaded",
            Reason::FsDeny => {
                "a path argument is not under the manifest's filesystem roots (or is not a plain path)"
            }
            Reason::ApprovalLimit => {
                "the call needs a human approval, and the session has as many waiting as allowed"
            }
            Reason::SanitizeRefused => {
                "the manifest rewrites this tool's arguments (policy.sanitize), and these arguments cannot be rewritten"
            }
        }
    }
}

/// Decides one proposal. Rules in the order listed in this module's
/// documentation; the first match wins.
pub fn decide(
    proposal: &Proposal<'_>,
    session: &SessionFacts<'_>,
    manifest: &CompiledManifest,
) -> Decision {
    let tool = proposal.tool_name;
    if !manifest.tools.contains(tool) {
        return Decision::deny(Reason::PermissionUndeclared);
    }
    if is_network_tool(tool) {
        let allowed =
            destination(proposal.args).is_ok_and(|host| manifest.domains.is_allowed(&host));
        if !allowed {
            return Decision::deny(Reason::EgressDeny);
        }
    }
    if session.steps_consumed >= manifest.max_steps
        || session.tool_calls_consumed >= manifest.max_tool_calls
        || session.wall_time_ms >= manifest.max_wall_time_ms
    {
        return Decision::deny(Reason::BudgetExceeded);
    }
    if session.loop_violation.is_some_and(|v| !v.is_empty())
        || completes_loop(proposal, session, manifest)
    {
        return Decision::deny(Reason::LoopDetected);
    }
    if session.is_tainted && manifest.is_sink(tool) {
        let sanitized = proposal
            .sanitizer_key
            .is_some_and(|key| session.sanitized_keys.iter().any(|k| k == key));
        if !sanitized {
            return Decision::deny(Reason::TaintedToHighRisk);
        }
    }
    if is_exec_tool(tool) {
        let allowed = match (&manifest.exec_bins, exec_binary(proposal.args)) {
            (Some(bins), Some(bin)) => bins.contains(bin),
            _ => false,
        };
        if !allowed {
            return Decision::deny(Reason::ExecDeny);
        }
    }
    if let Some(fs) = &manifest.fs
        && !fs.admits(tool, proposal.args)
    {
        return Decision::deny(Reason::FsDeny);
    }
    if let Some((limiter, now)) = session.rate
        && !limiter.check(tool, now)
    {
        return Decision::deny(Reason::RateLimited);
    }
    if manifest.approval_required.contains(tool) {
        return Decision {
            outcome: Outcome::RequireApproval,
            reason: Reason::ApprovalRequired,
            constraints: None,
        };
    }
    Decision {
        outcome: Outcome::Allow,
        reason: Reason::Ok,
        constraints: Some(manifest.constraints),
    }
}

/// Whether this call, recorded after the session's history, would form a loop.
fn completes_loop(
    proposal: &Proposal<'_>,
    session: &SessionFacts<'_>,
    manifest: &CompiledManifest,
) -> bool {
    let Some(args_digest) = proposal.args_digest else {
        return false;
    };
    let next = CallKey {
        seq: u64::MAX,
        tool_name: proposal.tool_name,
        args_digest,
    };
    manifest.loops.detect_with(session.history, next).is_some()
}

/// Network tools: `net`, `net.*` and `mcp.http*` (`mcp.https`, `mcp.http.get`...).
pub fn is_network_tool(tool: &str) -> bool {
    tool.starts_with("net") || tool.starts_with("mcp.http")
}

/// Exec tools: `exec` and `exec.*`.
pub fn is_exec_tool(tool: &str) -> bool {
    tool == "exec" || tool.starts_with("exec.")
}

/// The binary an exec call runs: `args.bin`, else the first word of `args.cmd`.
pub fn exec_binary(args: &Value) -> Option<&str> {
    if let Some(bin) = args.get("bin").and_then(Value::as_str) {
        return Some(bin);
    }
    args.get("cmd")
        .and_then(Value::as_str)
        .and_then(|cmd| cmd.split_whitespace().next())
}

#[cfg(test)]
mod fs_tests;
#[cfg(test)]
mod tests;

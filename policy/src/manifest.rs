//! The Aegis capability manifest (`aegis.dev/manifest/v0.1`) and our optional
//! `policy` section, loaded from JSON or YAML text or from a JSON value, and
//! validated in two stages: `raw` is what serde reads (everything optional,
//! unknown keys kept), `validate` turns it into a [`Manifest`] or a
//! [`ManifestError`] that lists **every** problem with its field path.
//!
//! Parsing only: this module never opens files (the manifest store does).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::domain::DomainPattern;
use crate::trust::TrustedContent;

mod check;
mod policy_section;
mod raw;
mod sanitize;
mod validate;

#[cfg(test)]
mod tests;

/// The only schema this sidecar understands; anything else is rejected.
pub const SCHEMA_V0_1: &str = "aegis.dev/manifest/v0.1";

/// Aegis's default step budget (agent actions per session).
pub const DEFAULT_MAX_STEPS: u64 = 24;
/// Aegis's default tool-call budget: twelve calls are forwarded, the 13th denied.
pub const DEFAULT_MAX_TOOL_CALLS: u64 = 12;
/// Aegis's default session wall time: two minutes from the first envelope.
pub const DEFAULT_MAX_WALL_TIME_MS: u64 = 120_000;
/// Aegis's default per-result size constraint (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1_048_576;
/// Aegis's default per-call upstream timeout constraint.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The third identical call is denied (Aegis's loop detector threshold).
pub const DEFAULT_IDENTICAL_CALLS: usize = 3;
/// Identical calls are counted within the last 20 tool calls.
pub const DEFAULT_IDENTICAL_WINDOW: usize = 20;
/// Shortest tool-name sequence whose immediate repetition is a loop.
pub const DEFAULT_MIN_SEQUENCE: usize = 3;
/// Longest tool-name sequence checked for immediate repetition.
pub const DEFAULT_MAX_SEQUENCE: usize = 7;
/// Upper bound on `policy.loops.max_sequence`: keeps the per-call check cheap.
pub const MAX_SEQUENCE_LIMIT: usize = 10;

/// A validated manifest: typed, owned, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub schema: String,
    pub name: String,
    pub version: String,
    pub publisher: String,
    pub permissions: Permissions,
    pub sandbox: Sandbox,
    /// Carried as written (an empty object when absent); `files`,
    /// `tree_sha256` and `signature` are type-checked, other keys are kept.
    pub integrity: Value,
    /// Our own knobs; Aegis ignores this section. Defaults when absent.
    pub policy: PolicySection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Permissions {
    /// Declared tool names, in manifest order, without duplicates.
    pub tools: Vec<String>,
    pub fs: FsPermissions,
    pub net: NetPermissions,
    pub secrets: Vec<String>,
    /// `None` when the manifest has no `permissions.exec` section.
    pub exec: Option<ExecPermissions>,
    /// Every entry is also in `tools`.
    pub approval_required: Vec<String>,
    pub budgets: Budgets,
}

/// Filesystem roots, as written; each is an absolute path (validated with
/// [`crate::paths::normalize_root`]). When both lists are empty, paths are
/// not checked (Aegis's manifests without `fs`); otherwise a read tool's
/// paths must lie under `read_roots` and a write tool's under `write_roots`
/// (`FS_DENY`), an empty list admitting nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FsPermissions {
    pub read_roots: Vec<String>,
    pub write_roots: Vec<String>,
}

impl FsPermissions {
    /// Whether any root is declared, which turns the path check on.
    pub fn is_enforced(&self) -> bool {
        !self.read_roots.is_empty() || !self.write_roots.is_empty()
    }
}

/// Which roots a tool's paths are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsAccess {
    Read,
    Write,
}

impl FsAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            FsAccess::Read => "read",
            FsAccess::Write => "write",
        }
    }
}

/// `policy.fs_paths[tool]`: the arguments of a tool that name paths, and
/// whether it reads or writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct FsPathRule {
    /// Argument names (`args.<name>`), non-empty, without duplicates.
    pub args: Vec<String>,
    pub access: FsAccess,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetPermissions {
    pub domains: Vec<DomainPattern>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecPermissions {
    pub allowed_bins: Vec<String>,
    pub arg_patterns: Vec<String>,
}

/// Per-session ceilings (`consumed >= max` denies) and per-call constraints;
/// every value is positive.
#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    pub max_steps: u64,
    pub max_tool_calls: u64,
    pub max_output_bytes: u64,
    pub timeout_ms: u64,
    pub max_wall_time_ms: u64,
    /// Listed in Aegis's field reference ("unlimited" when absent) though its
    /// Go model drops it; accepted so Aegis manifests load, `None` = unlimited.
    pub max_model_calls: Option<u64>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_steps: DEFAULT_MAX_STEPS,
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_wall_time_ms: DEFAULT_MAX_WALL_TIME_MS,
            max_model_calls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    pub required: bool,
    pub image: Option<String>,
    /// Free-form items (Aegis lists strings; other runtimes use mappings).
    pub mounts: Vec<Value>,
}

/// The optional `policy` section: our knobs, strictly validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicySection {
    /// Replaces the default Aegis sink prefixes when `Some` (even if empty).
    pub high_risk_sinks: Option<Vec<String>>,
    /// Tools whose results do not taint the session.
    pub non_tainting_tools: Vec<String>,
    pub loops: LoopSettings,
    /// Token bucket per tool name.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Path arguments per tool, replacing the default (`args.path` of
    /// `read_file`, `fs.read*`, `write_file`, `fs.write*`) for that tool.
    pub fs_paths: BTreeMap<String, FsPathRule>,
    /// Upstreams, resource URI patterns and prompt names whose content does
    /// not taint the session.
    pub trusted_content: TrustedContent,
    /// How a tool of `permissions.approval_required` is approved, when it
    /// is not the default (one approver, the sidecar's `approval.mode`).
    pub approvals: BTreeMap<String, ApprovalRule>,
    /// Rewrites of a tool's arguments before it is decided and forwarded
    /// ([`crate::sanitize`]), in order.
    pub sanitize: BTreeMap<String, Vec<crate::sanitize::SanitizeRule>>,
}

/// Most distinct approvers a tool may require.
pub const MAX_APPROVERS: u32 = 10;

/// `policy.approvals[tool]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Distinct identities that must approve (1..=[`MAX_APPROVERS`]).
    pub approvers: u32,
    /// `None`: the sidecar's `approval.mode`.
    pub mode: Option<ApprovalMode>,
}

impl Default for ApprovalRule {
    fn default() -> Self {
        ApprovalRule {
            approvers: 1,
            mode: None,
        }
    }
}

/// How a call that needs approval waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalMode {
    /// The agent's request is held open until the approval is decided (or
    /// the hold times out), then forwarded or refused.
    Hold,
    /// The agent is answered at once that approval is pending; the same
    /// call made again once approved is forwarded.
    Retry,
}

impl ApprovalMode {
    pub const ALL: [ApprovalMode; 2] = [ApprovalMode::Hold, ApprovalMode::Retry];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Hold => "hold",
            ApprovalMode::Retry => "retry",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalMode> {
        ApprovalMode::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl Manifest {
    /// How calls of `tool` are approved (the default when the manifest
    /// says nothing).
    pub fn approval_rule(&self, tool: &str) -> ApprovalRule {
        self.policy.approvals.get(tool).copied().unwrap_or_default()
    }
}

/// Loop thresholds; validated so `2 <= identical_calls <= identical_window`
/// and `2 <= min_sequence <= max_sequence <= MAX_SEQUENCE_LIMIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSettings {
    pub identical_calls: usize,
    pub identical_window: usize,
    pub min_sequence: usize,
    pub max_sequence: usize,
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            identical_calls: DEFAULT_IDENTICAL_CALLS,
            identical_window: DEFAULT_IDENTICAL_WINDOW,
            min_sequence: DEFAULT_MIN_SEQUENCE,
            max_sequence: DEFAULT_MAX_SEQUENCE,
        }
    }
}

/// A token bucket: refills `per_second` tokens a second (finite, > 0), holds
/// at most `burst` (>= 1).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// One thing wrong with a manifest. `path` is the field path
/// (`permissions.net.domains[2]`), empty for the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A manifest that could not be parsed (one problem) or failed validation
/// (every problem found, in field order). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestError {
    /// One `path: message` per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

impl ManifestError {
    fn syntax(message: impl fmt::Display) -> Self {
        ManifestError {
            problems: vec![Problem::new("", message.to_string())],
        }
    }
}

impl Manifest {
    /// Loads a manifest from bytes: JSON when the first non-whitespace byte is
    /// `{`, YAML otherwise. A leading UTF-8 byte-order mark is ignored.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ManifestError::syntax(format_args!("manifest is not UTF-8: {e}")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim_start().starts_with('{') {
            Manifest::from_json(text)
        } else {
            Manifest::from_yaml(text)
        }
    }

    /// Loads a manifest from JSON text.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ManifestError::syntax(format_args!("invalid JSON: {e}")))?;
        Manifest::from_value(&value)
    }

    /// Loads a manifest from YAML text (a single document). Only YAML 1.2
    /// booleans are booleans: `no`, `y` or `off` stay strings, so a tool
    /// named `no` is not silently turned into `false`. Syntax errors are one
    /// line with their location (no source snippet), like JSON's.
    pub fn from_yaml(text: &str) -> Result<Manifest, ManifestError> {
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        options.with_snippet = false;
        let value: Value = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| ManifestError::syntax(format_args!("invalid YAML: {e}")))?;
        Manifest::from_value(&value)
    }

    /// Validates a manifest already parsed into JSON (the `manifest` of a
    /// `/v1/policy/decide` body, or of a conformance test).
    pub fn from_value(value: &Value) -> Result<Manifest, ManifestError> {
        validate::manifest(value)
    }
}

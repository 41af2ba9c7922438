//! What serde reads: every field optional, every leaf wrapped in [`Field`], and
//! unknown keys captured instead of rejected, so that validation can report
//! every problem at once with its path (a serde error would stop at the
//! first). Validated by `super::validate` into [`super::Manifest`].
//!
//! Unknown keys are kept in an `unknown` map on each struct (reported as
//! problems), except inside `integrity` and `sandbox.mounts` items, which are
//! carried as free-form JSON.

use std::collections::BTreeMap;

use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use serde_json::Value;

/// A value that either deserialized as `T` or is kept as it was found, so the
/// validator can say what it expected and what it got.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<T> {
    Ok(T),
    Bad(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match T::deserialize(&value) {
            Ok(parsed) => Field::Ok(parsed),
            Err(_) => Field::Bad(value),
        })
    }
}

/// A list whose elements are checked one by one (so `tools[3]` can be blamed).
pub(crate) type List<T> = Field<Vec<Field<T>>>;

/// Keys we did not expect, by name.
pub(crate) type Unknown = BTreeMap<String, Value>;

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawManifest {
    pub schema: Option<Field<String>>,
    pub name: Option<Field<String>>,
    pub version: Option<Field<String>>,
    pub publisher: Option<Field<String>>,
    pub permissions: Option<Field<RawPermissions>>,
    pub sandbox: Option<Field<RawSandbox>>,
    /// Free-form beyond the known keys' types (`files`, `tree_sha256`, `signature`).
    pub integrity: Option<Value>,
    pub policy: Option<Field<RawPolicy>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const MANIFEST_FIELDS: &[&str] = &[
    "schema",
    "name",
    "version",
    "publisher",
    "permissions",
    "sandbox",
    "integrity",
    "policy",
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawPermissions {
    pub tools: Option<List<String>>,
    pub fs: Option<Field<RawFs>>,
    pub net: Option<Field<RawNet>>,
    pub secrets: Option<List<String>>,
    pub exec: Option<Field<RawExec>>,
    pub approval_required: Option<List<String>>,
    pub budgets: Option<Field<RawBudgets>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const PERMISSIONS_FIELDS: &[&str] = &[
    "tools",
    "fs",
    "net",
    "secrets",
    "exec",
    "approval_required",
    "budgets",
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawFs {
    pub read_roots: Option<List<String>>,
    pub write_roots: Option<List<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const FS_FIELDS: &[&str] = &["read_roots", "write_roots"];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawNet {
    pub domains: Option<List<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const NET_FIELDS: &[&str] = &["domains"];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawExec {
    pub allowed_bins: Option<List<String>>,
    pub arg_patterns: Option<List<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const EXEC_FIELDS: &[&str] = &["allowed_bins", "arg_patterns"];

/// Budget values stay raw JSON: the validator wants to echo `0`, `-1`, `2.5`
/// or `"24"` back in its message, not serde's.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawBudgets {
    pub max_steps: Option<Value>,
    pub max_tool_calls: Option<Value>,
    pub max_output_bytes: Option<Value>,
    pub timeout_ms: Option<Value>,
    pub max_wall_time_ms: Option<Value>,
    pub max_model_calls: Option<Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const BUDGETS_FIELDS: &[&str] = &[
    "max_steps",
    "max_tool_calls",
    "max_output_bytes",
    "timeout_ms",
    "max_wall_time_ms",
    "max_model_calls",
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawSandbox {
    pub required: Option<Field<bool>>,
    pub image: Option<Field<String>>,
    /// Items are free-form (Aegis lists strings; runtimes use mappings).
    pub mounts: Option<Field<Vec<Value>>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const SANDBOX_FIELDS: &[&str] = &["required", "image", "mounts"];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawPolicy {
    pub high_risk_sinks: Option<List<String>>,
    pub non_tainting_tools: Option<List<String>>,
    pub loops: Option<Field<RawLoops>>,
    pub rate_limits: Option<Field<BTreeMap<String, Field<RawRateLimit>>>>,
    pub fs_paths: Option<Field<BTreeMap<String, Field<RawFsPath>>>>,
    pub trusted_content: Option<Field<RawTrustedContent>>,
    pub approvals: Option<Field<BTreeMap<String, Field<RawApproval>>>>,
    pub sanitize: Option<Field<BTreeMap<String, List<RawSanitizeRule>>>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const POLICY_FIELDS: &[&str] = &[
    "high_risk_sinks",
    "non_tainting_tools",
    "loops",
    "rate_limits",
    "fs_paths",
    "trusted_content",
    "approvals",
    "sanitize",
];

/// One rule of `policy.sanitize[tool]`: every member kept as found (`set`
/// takes any value).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawSanitizeRule {
    pub field: Option<Value>,
    pub set: Option<Value>,
    pub drop: Option<Value>,
    pub redact: Option<Value>,
    pub replacement: Option<Value>,
    pub clamp: Option<Value>,
    pub reason: Option<Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const SANITIZE_RULE_FIELDS: &[&str] = &[
    "field",
    "set",
    "drop",
    "redact",
    "replacement",
    "clamp",
    "reason",
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawApproval {
    pub approvers: Option<Value>,
    pub mode: Option<Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const APPROVAL_FIELDS: &[&str] = &["approvers", "mode"];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawTrustedContent {
    pub upstreams: Option<List<String>>,
    pub resources: Option<List<String>>,
    pub prompts: Option<List<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const TRUSTED_CONTENT_FIELDS: &[&str] = &["upstreams", "resources", "prompts"];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawLoops {
    pub identical_calls: Option<Value>,
    pub identical_window: Option<Value>,
    pub min_sequence: Option<Value>,
    pub max_sequence: Option<Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const LOOPS_FIELDS: &[&str] = &[
    "identical_calls",
    "identical_window",
    "min_sequence",
    "max_sequence",
];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawRateLimit {
    pub per_second: Option<Value>,
    pub burst: Option<Value>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const RATE_LIMIT_FIELDS: &[&str] = &["per_second", "burst"];

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RawFsPath {
    pub args: Option<List<String>>,
    pub access: Option<Field<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

pub(crate) const FS_PATH_FIELDS: &[&str] = &["args", "access"];

//! Validation of our optional `policy` section (Aegis ignores it): sink
//! override, non-tainting tools, loop thresholds, per-tool rate limits, path
//! arguments per tool (`fs_paths`). Tool
//! names it mentions must be declared in `permissions.tools`, so a typo is
//! reported rather than silently configuring nothing.

use std::collections::BTreeMap;

use serde_json::Value;

use super::check::{DeclaredTools, Validator, got, key_path, quote};
use super::raw::{
    self, Field, RawApproval, RawFsPath, RawLoops, RawPolicy, RawRateLimit, RawTrustedContent,
};
use super::{
    ApprovalMode, ApprovalRule, FsAccess, FsPathRule, LoopSettings, MAX_APPROVERS,
    MAX_SEQUENCE_LIMIT, PolicySection, RateLimit,
};
use crate::trust::{TrustedContent, UriPattern};

impl Validator {
    pub(super) fn policy(
        &mut self,
        raw: RawPolicy,
        declared: DeclaredTools<'_>,
        fs_enforced: bool,
        approval_required: &[String],
    ) -> PolicySection {
        let high_risk_sinks = raw
            .high_risk_sinks
            .map(|sinks| self.string_list("policy.high_risk_sinks", Some(sinks)));
        let non_tainting_tools =
            self.string_list("policy.non_tainting_tools", raw.non_tainting_tools);
        if let Some(tools) = declared {
            for (i, tool) in non_tainting_tools.iter().enumerate() {
                if !tools.contains(tool) {
                    self.undeclared(format!("policy.non_tainting_tools[{i}]"), tool);
                }
            }
        }
        let loops = match self.section("policy.loops", raw.loops) {
            Some(loops) => self.loops(loops),
            None => LoopSettings::default(),
        };
        let rate_limits = match self.section("policy.rate_limits", raw.rate_limits) {
            Some(limits) => self.rate_limits(limits, declared),
            None => BTreeMap::new(),
        };
        let fs_paths = match self.section("policy.fs_paths", raw.fs_paths) {
            Some(rules) => self.fs_paths(rules, declared, fs_enforced),
            None => BTreeMap::new(),
        };
        let trusted_content = match self.section("policy.trusted_content", raw.trusted_content) {
            Some(raw) => self.trusted_content(raw),
            None => TrustedContent::default(),
        };
        let approvals = match self.section("policy.approvals", raw.approvals) {
            Some(rules) => self.approvals(rules, approval_required),
            None => BTreeMap::new(),
        };
        let sanitize = match self.section("policy.sanitize", raw.sanitize) {
            Some(rules) => self.sanitize(rules, declared),
            None => BTreeMap::new(),
        };
        self.unknown("policy", raw.unknown, raw::POLICY_FIELDS);
        PolicySection {
            high_risk_sinks,
            non_tainting_tools,
            loops,
            rate_limits,
            fs_paths,
            trusted_content,
            approvals,
            sanitize,
        }
    }

    fn approvals(
        &mut self,
        raw: BTreeMap<String, Field<RawApproval>>,
        approval_required: &[String],
    ) -> BTreeMap<String, ApprovalRule> {
        let mut rules = BTreeMap::new();
        for (tool, raw) in raw {
            let path = key_path("policy.approvals", &tool);
            if !approval_required.contains(&tool) {
                let message = format!(
                    "{} is not in permissions.approval_required, so its calls are never approved",
                    quote(&tool)
                );
                self.problem(path.clone(), message);
            }
            let raw = match raw {
                Field::Ok(raw) => raw,
                Field::Bad(v) => {
                    self.expected(path, "a mapping with approvers and/or mode", &v);
                    continue;
                }
            };
            let mut rule = ApprovalRule::default();
            if let Some(value) = raw.approvers {
                match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if (1..=MAX_APPROVERS).contains(&n) => rule.approvers = n,
                    _ => self.problem(
                        format!("{path}.approvers"),
                        format!(
                            "must be an integer from 1 to {MAX_APPROVERS}, got {}",
                            got(&value)
                        ),
                    ),
                }
            }
            if let Some(value) = raw.mode {
                match value.as_str().and_then(ApprovalMode::parse) {
                    Some(mode) => rule.mode = Some(mode),
                    None => self.problem(
                        format!("{path}.mode"),
                        format!("must be \"hold\" or \"retry\", got {}", got(&value)),
                    ),
                }
            }
            self.unknown(&path, raw.unknown, raw::APPROVAL_FIELDS);
            rules.insert(tool, rule);
        }
        rules
    }

    fn trusted_content(&mut self, raw: RawTrustedContent) -> TrustedContent {
        let base = "policy.trusted_content";
        let upstreams = self.string_list(&format!("{base}.upstreams"), raw.upstreams);
        let prompts = self.string_list(&format!("{base}.prompts"), raw.prompts);
        let mut resources = Vec::new();
        let path = format!("{base}.resources");
        self.each_string(&path, raw.resources, |v, i, text| {
            match UriPattern::new(&text) {
                Ok(pattern) => resources.push(pattern),
                Err(e) => v.problem(format!("{path}[{i}]"), format!("{}: {e}", quote(&text))),
            }
        });
        self.unknown(base, raw.unknown, raw::TRUSTED_CONTENT_FIELDS);
        TrustedContent {
            upstreams,
            resources,
            prompts,
        }
    }

    fn loops(&mut self, raw: RawLoops) -> LoopSettings {
        let defaults = LoopSettings::default();
        let calls = self.count(
            "identical_calls",
            raw.identical_calls,
            defaults.identical_calls,
        );
        let window = self.count(
            "identical_window",
            raw.identical_window,
            defaults.identical_window,
        );
        let min_seq = self.count("min_sequence", raw.min_sequence, defaults.min_sequence);
        let max_seq = self.count("max_sequence", raw.max_sequence, defaults.max_sequence);
        if let Some(calls) = calls {
            self.at_least("identical_calls", calls, 2, None);
            if let Some(window) = window {
                self.at_least("identical_window", window, calls, Some("identical_calls"));
            }
        }
        if let Some(min_seq) = min_seq {
            self.at_least("min_sequence", min_seq, 2, None);
            if let Some(max_seq) = max_seq {
                self.at_least("max_sequence", max_seq, min_seq, Some("min_sequence"));
            }
        }
        if let Some(max_seq) = max_seq.filter(|&n| n > MAX_SEQUENCE_LIMIT) {
            let message = format!("must be at most {MAX_SEQUENCE_LIMIT}, got {max_seq}");
            self.problem("policy.loops.max_sequence", message);
        }
        self.unknown("policy.loops", raw.unknown, raw::LOOPS_FIELDS);
        LoopSettings {
            identical_calls: calls.unwrap_or(defaults.identical_calls),
            identical_window: window.unwrap_or(defaults.identical_window),
            min_sequence: min_seq.unwrap_or(defaults.min_sequence),
            max_sequence: max_seq.unwrap_or(defaults.max_sequence),
        }
    }

    /// A loop threshold: `None` (reported) when not a non-negative integer.
    fn count(&mut self, field: &str, raw: Option<Value>, default: usize) -> Option<usize> {
        let Some(value) = raw else {
            return Some(default);
        };
        let count = value.as_u64().and_then(|n| usize::try_from(n).ok());
        if count.is_none() {
            let message = format!("must be an integer, got {}", got(&value));
            self.problem(format!("policy.loops.{field}"), message);
        }
        count
    }

    /// `value >= min`, where `min` may be another field (`named`).
    fn at_least(&mut self, field: &str, value: usize, min: usize, named: Option<&str>) {
        if value < min {
            let bound = match named {
                Some(name) => format!("{name} ({min})"),
                None => min.to_string(),
            };
            let message = format!("must be at least {bound}, got {value}");
            self.problem(format!("policy.loops.{field}"), message);
        }
    }

    fn rate_limits(
        &mut self,
        raw: BTreeMap<String, Field<RawRateLimit>>,
        declared: DeclaredTools<'_>,
    ) -> BTreeMap<String, RateLimit> {
        let mut limits = BTreeMap::new();
        for (tool, raw) in raw {
            let path = key_path("policy.rate_limits", &tool);
            if declared.is_some_and(|tools| !tools.contains(&tool)) {
                self.undeclared(path.clone(), &tool);
            }
            let raw = match raw {
                Field::Ok(raw) => raw,
                Field::Bad(v) => {
                    self.expected(path, "a mapping with per_second and burst", &v);
                    continue;
                }
            };
            let per_second = self.per_second(&path, raw.per_second);
            let burst = self.burst(&path, raw.burst);
            self.unknown(&path, raw.unknown, raw::RATE_LIMIT_FIELDS);
            if let (Some(per_second), Some(burst)) = (per_second, burst) {
                limits.insert(tool, RateLimit { per_second, burst });
            }
        }
        limits
    }

    fn per_second(&mut self, base: &str, raw: Option<Value>) -> Option<f64> {
        let path = format!("{base}.per_second");
        let Some(value) = raw else {
            self.problem(path, "required");
            return None;
        };
        match value.as_f64() {
            Some(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
            _ => {
                self.problem(
                    path,
                    format!("must be a positive number, got {}", got(&value)),
                );
                None
            }
        }
    }

    fn burst(&mut self, base: &str, raw: Option<Value>) -> Option<u32> {
        let path = format!("{base}.burst");
        let Some(value) = raw else {
            self.problem(path, "required");
            return None;
        };
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(burst) if burst > 0 => Some(burst),
            _ => {
                let message = format!(
                    "must be a positive integer up to {}, got {}",
                    u32::MAX,
                    got(&value)
                );
                self.problem(path, message);
                None
            }
        }
    }

    fn fs_paths(
        &mut self,
        raw: BTreeMap<String, Field<RawFsPath>>,
        declared: DeclaredTools<'_>,
        fs_enforced: bool,
    ) -> BTreeMap<String, FsPathRule> {
        if !raw.is_empty() && !fs_enforced {
            self.problem(
                "policy.fs_paths",
                "has no effect: permissions.fs declares no read_roots or write_roots, so no path is checked",
            );
        }
        let mut rules = BTreeMap::new();
        for (tool, raw) in raw {
            let path = key_path("policy.fs_paths", &tool);
            if declared.is_some_and(|tools| !tools.contains(&tool)) {
                self.undeclared(path.clone(), &tool);
            }
            let raw = match raw {
                Field::Ok(raw) => raw,
                Field::Bad(v) => {
                    self.expected(path, "a mapping with args and access", &v);
                    continue;
                }
            };
            let args_path = format!("{path}.args");
            match &raw.args {
                None => self.problem(&args_path, "required (the argument names that hold paths)"),
                Some(Field::Ok(list)) if list.is_empty() => {
                    self.problem(&args_path, "must name at least one argument")
                }
                Some(_) => {}
            }
            let mut args: Vec<String> = Vec::new();
            self.each_string(&args_path, raw.args, |v, i, arg| {
                if args.contains(&arg) {
                    v.problem(
                        format!("{args_path}[{i}]"),
                        format!("{} is listed twice", quote(&arg)),
                    );
                } else {
                    args.push(arg);
                }
            });
            let access_path = format!("{path}.access");
            let access = match raw.access {
                None => {
                    self.problem(&access_path, "required (read or write)");
                    None
                }
                Some(Field::Ok(s)) if s == "read" => Some(FsAccess::Read),
                Some(Field::Ok(s)) if s == "write" => Some(FsAccess::Write),
                Some(Field::Ok(s)) => {
                    self.problem(
                        &access_path,
                        format!("must be \"read\" or \"write\", got {}", quote(&s)),
                    );
                    None
                }
                Some(Field::Bad(v)) => {
                    self.expected(access_path, "\"read\" or \"write\"", &v);
                    None
                }
            };
            self.unknown(&path, raw.unknown, raw::FS_PATH_FIELDS);
            if let Some(access) = access.filter(|_| !args.is_empty()) {
                rules.insert(tool, FsPathRule { args, access });
            }
        }
        rules
    }
}

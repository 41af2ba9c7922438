//! Validation of `policy.sanitize` ([`crate::sanitize`]): per declared tool,
//! a list of rules, each a mapping with `field`, exactly one of `set`,
//! `drop`, `redact` (with `replacement`) or `clamp` (`min` and/or `max`),
//! and an optional `reason`.

use std::collections::BTreeMap;

use serde_json::{Number, Value};

use super::check::{DeclaredTools, Validator, got, key_path};
use super::raw::{self, Field, RawSanitizeRule};
use crate::sanitize::{
    DEFAULT_REPLACEMENT, MAX_RULES_PER_TOOL, SanitizeAction, SanitizeRule, compile_pattern,
};

impl Validator {
    pub(super) fn sanitize(
        &mut self,
        raw: BTreeMap<String, Field<Vec<Field<RawSanitizeRule>>>>,
        declared: DeclaredTools<'_>,
    ) -> BTreeMap<String, Vec<SanitizeRule>> {
        let mut tools = BTreeMap::new();
        for (tool, raw) in raw {
            let path = key_path("policy.sanitize", &tool);
            if declared.is_some_and(|tools| !tools.contains(&tool)) {
                self.undeclared(path.clone(), &tool);
            }
            let items = match raw {
                Field::Ok(items) if items.is_empty() => {
                    self.problem(path, "must list at least one rule");
                    continue;
                }
                Field::Ok(items) if items.len() > MAX_RULES_PER_TOOL => {
                    let message = format!(
                        "at most {MAX_RULES_PER_TOOL} rules per tool, got {}",
                        items.len()
                    );
                    self.problem(path, message);
                    continue;
                }
                Field::Ok(items) => items,
                Field::Bad(v) => {
                    self.expected(path, "a list of rules", &v);
                    continue;
                }
            };
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let path = format!("{path}[{i}]");
                match item {
                    Field::Ok(raw) => rules.extend(self.sanitize_rule(&path, raw)),
                    Field::Bad(v) => self.expected(path, "a mapping", &v),
                }
            }
            tools.insert(tool, rules);
        }
        tools
    }

    fn sanitize_rule(&mut self, path: &str, raw: RawSanitizeRule) -> Option<SanitizeRule> {
        let field = match raw.field {
            None => None,
            Some(Value::String(text)) => {
                let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    let message = format!(
                        "must be member names joined by dots (a.b.c), got {}",
                        got(&Value::String(text))
                    );
                    self.problem(format!("{path}.field"), message);
                }
                Some(segments)
            }
            Some(other) => {
                self.expected(format!("{path}.field"), "a string", &other);
                None
            }
        };
        let reason = match raw.reason {
            None => None,
            Some(Value::String(text)) if !text.trim().is_empty() => Some(text),
            Some(other) => {
                self.expected(format!("{path}.reason"), "a non-empty string", &other);
                None
            }
        };
        let given: Vec<&str> = [
            ("set", raw.set.is_some()),
            ("drop", raw.drop.is_some()),
            ("redact", raw.redact.is_some()),
            ("clamp", raw.clamp.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, there)| there.then_some(name))
        .collect();
        if given.len() != 1 {
            let message = match given.as_slice() {
                [] => {
                    "needs one of set, drop, redact or clamp (set: null is not a value; use drop)"
                        .to_owned()
                }
                many => format!(
                    "has {}; a rule does one of set, drop, redact or clamp",
                    many.join(" and ")
                ),
            };
            self.problem(path, message);
        }
        if raw.replacement.is_some() && raw.redact.is_none() {
            self.problem(
                format!("{path}.replacement"),
                "only a redact rule has a replacement",
            );
        }
        self.unknown(path, raw.unknown, raw::SANITIZE_RULE_FIELDS);
        if field.is_none() && raw.redact.is_none() {
            self.problem(
                format!("{path}.field"),
                "required (only redact may omit it, to cover all the arguments)",
            );
        }
        let action = if let Some(value) = raw.set {
            SanitizeAction::Set(value)
        } else if let Some(value) = raw.drop {
            if value != Value::Bool(true) {
                self.problem(
                    format!("{path}.drop"),
                    format!("must be true, got {}", got(&value)),
                );
            }
            SanitizeAction::Drop
        } else if let Some(value) = raw.redact {
            self.redact(path, value, raw.replacement)?
        } else if let Some(value) = raw.clamp {
            self.clamp(&format!("{path}.clamp"), value)?
        } else {
            return None;
        };
        Some(SanitizeRule {
            field,
            action,
            reason,
        })
    }

    fn redact(
        &mut self,
        path: &str,
        pattern: Value,
        replacement: Option<Value>,
    ) -> Option<SanitizeAction> {
        let replacement = match replacement {
            None => DEFAULT_REPLACEMENT.to_owned(),
            Some(Value::String(text)) => text,
            Some(other) => {
                self.expected(format!("{path}.replacement"), "a string", &other);
                return None;
            }
        };
        let Value::String(pattern) = pattern else {
            self.expected(format!("{path}.redact"), "a regular expression", &pattern);
            return None;
        };
        if let Err(e) = compile_pattern(&pattern) {
            let first = e.lines().next().unwrap_or_default().to_owned();
            self.problem(
                format!("{path}.redact"),
                format!("not a usable pattern: {first}"),
            );
            return None;
        }
        Some(SanitizeAction::Redact {
            pattern,
            replacement,
        })
    }

    fn clamp(&mut self, path: &str, value: Value) -> Option<SanitizeAction> {
        let Value::Object(mut bounds) = value else {
            self.expected(path, "a mapping with min and/or max", &value);
            return None;
        };
        let mut bound = |v: &mut Validator, name: &str| -> Result<Option<Number>, ()> {
            match bounds.remove(name) {
                None => Ok(None),
                Some(Value::Number(n)) => Ok(Some(n)),
                Some(other) => {
                    v.expected(format!("{path}.{name}"), "a number", &other);
                    Err(())
                }
            }
        };
        let (min, max) = (bound(self, "min"), bound(self, "max"));
        for key in bounds.keys() {
            self.problem(
                format!("{path}.{key}"),
                "unknown field (expected one of: min, max)",
            );
        }
        let (Ok(min), Ok(max)) = (min, max) else {
            return None;
        };
        match (&min, &max) {
            (None, None) => {
                self.problem(path, "needs min, max or both");
                return None;
            }
            (Some(lo), Some(hi)) if lo.as_f64() > hi.as_f64() => {
                self.problem(path, format!("min ({lo}) is above max ({hi})"));
                return None;
            }
            _ => {}
        }
        Some(SanitizeAction::Clamp { min, max })
    }
}

//! `policy.sanitize`: rewrites of a call's arguments made before it is
//! decided and forwarded. The decision is taken on the rewritten arguments,
//! and those are what the tool server receives (inline) or what the client
//! is told to run with (the aegislib decision API's `sanitize.params`), so
//! the sidecar never decides on one thing and forwards another.
//!
//! Rules of one tool apply in order, each to one field of `arguments`,
//! named by a dotted path of object members (`headers.authorization`):
//!
//! - `set: <value>` puts the value there (creating the members on the way);
//! - `drop: true` removes the field;
//! - `redact: <regex>` replaces every match in every string under the field
//!   (the whole arguments when `field` is omitted) with `replacement`
//!   (`[REDACTED]`), numbers included as their decimal text — a card number
//!   sent as a number is still a card number;
//! - `clamp: {min, max}` brings a number into the range. A clamped field
//!   that holds anything but a number refuses the call
//!   (`SANITIZE_REFUSED`): a limit sent as `"100000"` cannot be clamped
//!   and must not be let through.
//!
//! A rule whose field is absent does nothing (except `set`). Arguments that
//! are not an object (nor absent) refuse the call when the tool has rules.

use std::fmt;

use regex_automata::meta::Regex;
use serde_json::{Map, Number, Value};

/// What a redaction writes in place of a match, unless the rule says.
pub const DEFAULT_REPLACEMENT: &str = "[REDACTED]";

/// Most rules one tool may have.
pub const MAX_RULES_PER_TOOL: usize = 64;

/// One rule of `policy.sanitize[tool]`, as validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SanitizeRule {
    /// The field's path, member by member; `None` (redact only): the whole
    /// arguments.
    pub field: Option<Vec<String>>,
    pub action: SanitizeAction,
    /// Why, in words for the agent and the ledger.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SanitizeAction {
    Set(Value),
    Drop,
    Redact {
        pattern: String,
        replacement: String,
    },
    Clamp {
        min: Option<Number>,
        max: Option<Number>,
    },
}

impl SanitizeAction {
    pub fn name(&self) -> &'static str {
        match self {
            SanitizeAction::Set(_) => "set",
            SanitizeAction::Drop => "drop",
            SanitizeAction::Redact { .. } => "redact",
            SanitizeAction::Clamp { .. } => "clamp",
        }
    }
}

impl SanitizeRule {
    /// The field's path as written (`*` for the whole arguments).
    pub fn field_text(&self) -> String {
        match &self.field {
            Some(path) => path.join("."),
            None => "*".to_owned(),
        }
    }
}

/// Compiles a redaction pattern as validation and the sanitizer use it.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    let regex = Regex::builder()
        .configure(Regex::config().nfa_size_limit(Some(1 << 20)))
        .build(pattern)
        .map_err(|e| e.to_string())?;
    if regex.is_match("") {
        return Err("the pattern matches the empty string".to_owned());
    }
    Ok(regex)
}

/// One tool's rules, ready to apply.
#[derive(Debug, Clone)]
pub struct Sanitizer {
    rules: Vec<(SanitizeRule, Option<Regex>)>,
}

/// The arguments after a tool's rules changed them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    pub args: Value,
    /// `field action` for each rule that changed something, in order.
    pub changed: Vec<String>,
    /// The reasons of those rules (or a sentence naming the fields).
    pub message: String,
}

/// Why the rules could not be applied: the call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Sanitizer {
    /// `rules` come validated, so their patterns compile; one that did not
    /// would refuse every call of the tool (less, never more, gets through).
    pub fn new(rules: &[SanitizeRule]) -> Sanitizer {
        let rules = rules
            .iter()
            .map(|rule| {
                let regex = match &rule.action {
                    SanitizeAction::Redact { pattern, .. } => compile_pattern(pattern).ok(),
                    _ => None,
                };
                (rule.clone(), regex)
            })
            .collect();
        Sanitizer { rules }
    }

    /// Applies every rule to `args`: `Ok(None)` when nothing changed.
    pub fn apply(&self, args: &Value) -> Result<Option<Rewrite>, Refusal> {
        let mut out = match args {
            Value::Null => Value::Null,
            Value::Object(_) => args.clone(),
            other => {
                return Err(Refusal(format!(
                    "the arguments are {}, not an object, so policy.sanitize cannot apply",
                    kind(other)
                )));
            }
        };
        let mut changed = Vec::new();
        let mut reasons: Vec<&str> = Vec::new();
        for (rule, regex) in &self.rules {
            if apply_one(rule, regex.as_ref(), &mut out)? {
                changed.push(format!("{} {}", rule.field_text(), rule.action.name()));
                if let Some(reason) = rule.reason.as_deref()
                    && !reasons.contains(&reason)
                {
                    reasons.push(reason);
                }
            }
        }
        if changed.is_empty() {
            return Ok(None);
        }
        let message = if reasons.is_empty() {
            format!("arguments rewritten by policy: {}", changed.join(", "))
        } else {
            reasons.join("; ")
        };
        Ok(Some(Rewrite {
            args: out,
            changed,
            message,
        }))
    }
}

/// Applies one rule; whether it changed anything.
fn apply_one(
    rule: &SanitizeRule,
    regex: Option<&Regex>,
    args: &mut Value,
) -> Result<bool, Refusal> {
    let field = rule.field_text();
    match &rule.action {
        SanitizeAction::Set(value) => {
            let Some(path) = &rule.field else {
                return Ok(false);
            };
            let slot = slot(args, path).ok_or_else(|| {
                Refusal(format!(
                    "policy.sanitize cannot set {field}: a member on its path is not an object"
                ))
            })?;
            let before = slot.clone();
            *slot = value.clone();
            Ok(before != *slot)
        }
        SanitizeAction::Drop => {
            let Some((last, parents)) = rule.field.as_deref().and_then(<[String]>::split_last)
            else {
                return Ok(false);
            };
            Ok(find_mut(args, parents)
                .and_then(Value::as_object_mut)
                .and_then(|parent| parent.remove(last))
                .is_some())
        }
        SanitizeAction::Redact { replacement, .. } => {
            let Some(regex) = regex else {
                return Err(Refusal(format!(
                    "policy.sanitize's pattern for {field} did not compile"
                )));
            };
            let target = match &rule.field {
                Some(path) => find_mut(args, path),
                None => Some(args),
            };
            Ok(target.is_some_and(|value| redact(value, regex, replacement)))
        }
        SanitizeAction::Clamp { min, max } => {
            let Some(value) = rule.field.as_deref().and_then(|path| find_mut(args, path)) else {
                return Ok(false);
            };
            let Value::Number(n) = value else {
                return Err(Refusal(format!(
                    "policy.sanitize clamps {field} to a number range, and it is {}",
                    kind(value)
                )));
            };
            let x = n.as_f64().unwrap_or(f64::NAN);
            let bound = match (min, max) {
                (Some(min), _) if x < min.as_f64().unwrap_or(f64::NEG_INFINITY) => min,
                (_, Some(max)) if x > max.as_f64().unwrap_or(f64::INFINITY) => max,
                _ => return Ok(false),
            };
            *value = Value::Number(bound.clone());
            Ok(true)
        }
    }
}

/// The value at `path`, if every member on the way is there.
fn find_mut<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter()
        .try_fold(value, |value, key| value.as_object_mut()?.get_mut(key))
}

/// The slot at `path`, creating objects for absent members (and for absent
/// arguments); `None` when a member on the way is not an object.
fn slot<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |value, key| {
        if value.is_null() {
            *value = Value::Object(Map::new());
        }
        Some(
            value
                .as_object_mut()?
                .entry(key.clone())
                .or_insert(Value::Null),
        )
    })
}

/// Replaces matches in every string (and number's text) under `value`.
fn redact(value: &mut Value, regex: &Regex, replacement: &str) -> bool {
    match value {
        Value::String(text) => match replace_all(text, regex, replacement) {
            Some(new) => {
                *text = new;
                true
            }
            None => false,
        },
        Value::Number(n) => match replace_all(&n.to_string(), regex, replacement) {
            Some(new) => {
                *value = Value::String(new);
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |hit, item| redact(item, regex, replacement) | hit),
        Value::Object(members) => members
            .values_mut()
            .fold(false, |hit, item| redact(item, regex, replacement) | hit),
        Value::Null | Value::Bool(_) => false,
    }
}

fn replace_all(text: &str, regex: &Regex, replacement: &str) -> Option<String> {
    let mut out = String::new();
    let mut last = 0;
    let mut hit = false;
    for m in regex.find_iter(text) {
        out.push_str(text.get(last..m.start()).unwrap_or_default());
        out.push_str(replacement);
        last = m.end();
        hit = true;
    }
    if !hit {
        return None;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    Some(out)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;

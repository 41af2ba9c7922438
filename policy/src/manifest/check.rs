//! The field-level checks every part of validation uses: a [`Validator`]
//! that collects [`Problem`]s, and how values are named in messages.

use serde_json::Value;

use super::Problem;
use super::raw::{Field, List, Unknown};

/// Collects problems while building a best-effort [`super::Manifest`] (discarded
/// when any problem was found).
#[derive(Default)]
pub(super) struct Validator {
    pub(super) problems: Vec<Problem>,
}

/// The declared tools, when `permissions.tools` itself was readable.
pub(super) type DeclaredTools<'a> = Option<&'a [String]>;

impl Validator {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(super) fn expected(&mut self, path: impl Into<String>, what: &str, value: &Value) {
        self.problem(path, format!("expected {what}, got {}", got(value)));
    }

    pub(super) fn undeclared(&mut self, path: impl Into<String>, tool: &str) {
        self.problem(
            path,
            format!("{} is not declared in permissions.tools", quote(tool)),
        );
    }

    /// Reports each unknown key as its own problem.
    pub(super) fn unknown(&mut self, base: &str, unknown: Unknown, known: &[&str]) {
        for key in unknown.into_keys() {
            let message = format!("unknown field (expected one of: {})", known.join(", "));
            let path = if base.is_empty() {
                key
            } else {
                format!("{base}.{key}")
            };
            self.problem(path, message);
        }
    }

    /// A nested mapping: `None` when absent or not a mapping (reported).
    pub(super) fn section<T>(&mut self, path: &str, raw: Option<Field<T>>) -> Option<T> {
        match raw? {
            Field::Ok(section) => Some(section),
            Field::Bad(v) => {
                self.expected(path, "a mapping", &v);
                None
            }
        }
    }

    pub(super) fn required_string(&mut self, path: &str, raw: Option<Field<String>>) -> String {
        match raw {
            Some(raw) => self.string(path, raw),
            None => {
                self.problem(path, "required");
                String::new()
            }
        }
    }

    pub(super) fn string(&mut self, path: &str, raw: Field<String>) -> String {
        match raw {
            Field::Ok(s) if s.is_empty() => {
                self.problem(path, "must not be empty");
                s
            }
            Field::Ok(s) => s,
            Field::Bad(v) => {
                self.expected(path, "a string", &v);
                String::new()
            }
        }
    }

    pub(super) fn string_list(&mut self, path: &str, raw: Option<List<String>>) -> Vec<String> {
        let mut out = Vec::new();
        self.each_string(path, raw, |_, _, s| out.push(s));
        out
    }

    /// Calls `f` with each readable, non-empty entry of a list of strings and
    /// its index; every other entry is reported, so problems come in index
    /// order.
    pub(super) fn each_string(
        &mut self,
        path: &str,
        raw: Option<List<String>>,
        mut f: impl FnMut(&mut Self, usize, String),
    ) {
        let items = match raw {
            None => return,
            Some(Field::Bad(v)) => return self.expected(path, "a list of strings", &v),
            Some(Field::Ok(items)) => items,
        };
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Field::Ok(s) if s.is_empty() => {
                    self.problem(format!("{path}[{i}]"), "must not be empty")
                }
                Field::Ok(s) => f(self, i, s),
                Field::Bad(v) => self.expected(format!("{path}[{i}]"), "a string", &v),
            }
        }
    }

    /// A positive integer, or `default` when absent.
    pub(super) fn positive(&mut self, path: String, raw: Option<Value>, default: u64) -> u64 {
        match raw {
            None => default,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => n,
                _ => {
                    self.problem(path, format!("must be a positive integer, got {}", got(&v)));
                    default
                }
            },
        }
    }
}

/// `base["key"]`, the key JSON-quoted so dots and brackets stay unambiguous.
pub(super) fn key_path(base: &str, key: &str) -> String {
    format!("{base}[{}]", quote(key))
}

pub(super) fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// What was found instead: scalars verbatim (shortened), containers by kind.
pub(super) fn got(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    match value {
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
        scalar => {
            let text = scalar.to_string();
            if text.chars().count() <= MAX_CHARS {
                text
            } else {
                let short: String = text.chars().take(MAX_CHARS - 1).collect();
                format!("{short}…")
            }
        }
    }
}

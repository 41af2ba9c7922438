//! Checks the file's tree against the declarations: every key must be a
//! declared setting (or a section holding some, or a field of a structured
//! setting's entry), every value of the declared kind, and no key given
//! twice. Every problem is collected, each with its setting's path and where
//! it stands; the values themselves (ranges, addresses, enums) are checked
//! later with the other layers'.

use super::{At, Key, Node};
use crate::config::settings::{self, Field, Kind, REMOVED_KEYS};

/// A problem of the file's shape, at `path` (`mcp.upstreams[0].url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub path: String,
    pub message: String,
    pub at: At,
}

/// Every problem of the file whose tree is `root`, in file order.
pub fn walk(root: &Node) -> Vec<FileProblem> {
    let mut problems = Vec::new();
    if root.entries().is_some() {
        section("", root, &mut problems);
    } else if !root.is_null() {
        problems.push(FileProblem {
            path: "the file".to_owned(),
            message: format!("expected a mapping of settings, got {}", root.describe()),
            at: root.at,
        });
    }
    problems
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The keys declared directly under `prefix` (`""`: the top level), in
/// declaration order.
fn keys_under(prefix: &str) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for setting in settings::all() {
        let rest = if prefix.is_empty() {
            Some(setting.path)
        } else {
            setting
                .path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
        };
        if let Some(key) = rest.and_then(|rest| rest.split('.').next())
            && !keys.contains(&key)
        {
            keys.push(key);
        }
    }
    keys
}

/// A mapping of settings and sections at `prefix`.
fn section(prefix: &str, node: &Node, problems: &mut Vec<FileProblem>) {
    let Some(entries) = node.entries() else {
        if !node.is_null() {
            problems.push(expected(prefix, "a mapping", node));
        }
        return;
    };
    let mut seen: Vec<&Key> = Vec::new();
    for (key, value) in entries {
        let path = join(prefix, &key.name);
        if duplicate(&path, key, &mut seen, problems) {
            continue;
        }
        if let Some(replacement) = aegisd_key(&path, value) {
            // aegisd's config file, read as ours: named, with what replaces it.
            problems.push(FileProblem {
                path,
                message: format!("is aegisd's setting; {replacement}"),
                at: key.at,
            });
        } else if let Some(setting) = settings::find(&path) {
            check(&path, setting.kind, value, problems);
        } else if keys_under(&path).is_empty() {
            if !REMOVED_KEYS.contains(&path.as_str()) {
                problems.push(unknown(&path, key, "setting", &keys_under(prefix)));
            }
        } else {
            section(&path, value, problems);
        }
    }
}

/// What replaces a key of aegisd's config file (`dsn`, `addr`, `trust_mode`,
/// `telemetry`, and `manifest` given as a file name), which users of the
/// Aegis reference bring along.
fn aegisd_key(path: &str, value: &Node) -> Option<&'static str> {
    Some(match path {
        "dsn" => "the ledger here is a SQLite file: `ledger.path: aegis.db` (or --ledger)",
        "addr" => {
            "the /v1 API here is `admin.listen` (e.g. 127.0.0.1:8080; or --admin-listen); \
             agents' MCP traffic comes to `mcp.listen`"
        }
        "trust_mode" => {
            "access to /v1 here is `admin.auth` (tokens or client certificates, with roles); \
             with neither, only loopback clients, in dev mode"
        }
        "telemetry" => {
            "there is no trace file here: the ledger is the record, and /metrics the telemetry"
        }
        "manifest" if value.entries().is_none() && !value.is_null() => {
            "here it is `manifest: {path: FILE}` (or --manifest FILE)"
        }
        _ => return None,
    })
}

/// Records `key` as seen; `true` (and a problem) when it already was.
fn duplicate<'a>(
    path: &str,
    key: &'a Key,
    seen: &mut Vec<&'a Key>,
    problems: &mut Vec<FileProblem>,
) -> bool {
    if let Some(first) = seen.iter().find(|known| known.name == key.name) {
        problems.push(FileProblem {
            path: path.to_owned(),
            message: format!(
                "given twice (first at {}); give each setting once",
                first.at
            ),
            at: key.at,
        });
        return true;
    }
    seen.push(key);
    false
}

/// A value of `kind`; null is an unset value.
fn check(path: &str, kind: Kind, node: &Node, problems: &mut Vec<FileProblem>) {
    if node.is_null() {
        return;
    }
    match kind {
        Kind::Text | Kind::Path | Kind::Integer | Kind::Bool => scalar(path, kind, node, problems),
        Kind::Texts => list(path, Kind::Text, node, problems),
        Kind::Integers => list(path, Kind::Integer, node, problems),
        Kind::Entries(fields) => {
            let Some(items) = node.items() else {
                problems.push(expected(path, "a list of entries", node));
                return;
            };
            for (i, item) in items.iter().enumerate() {
                block(&format!("{path}[{i}]"), fields, item, problems);
            }
        }
        Kind::Block(fields) => block(path, fields, node, problems),
        Kind::TextMap => {
            let Some(entries) = node.entries() else {
                problems.push(expected(path, "a mapping of names to strings", node));
                return;
            };
            let mut seen = Vec::new();
            for (key, value) in entries {
                let path = format!("{path}.{}", key.name);
                if !duplicate(&path, key, &mut seen, problems) {
                    scalar(&path, Kind::Text, value, problems);
                }
            }
        }
        Kind::Ignored => {}
    }
}

fn scalar(path: &str, kind: Kind, node: &Node, problems: &mut Vec<FileProblem>) {
    let (fits, what) = match kind {
        Kind::Integer => (node.integer().is_some(), "a non-negative integer"),
        Kind::Bool => (node.bool_text().is_some(), "true or false"),
        _ => (node.text().is_some(), "a string"),
    };
    if !fits {
        problems.push(expected(path, what, node));
    }
}

fn list(path: &str, item_kind: Kind, node: &Node, problems: &mut Vec<FileProblem>) {
    let Some(items) = node.items() else {
        let what = match item_kind {
            Kind::Integer => "a list of non-negative integers",
            _ => "a list of strings",
        };
        problems.push(expected(path, what, node));
        return;
    };
    for (i, item) in items.iter().enumerate() {
        scalar(&format!("{path}[{i}]"), item_kind, item, problems);
    }
}

/// A mapping of `fields` (an entry of a structured setting).
fn block(path: &str, fields: &[Field], node: &Node, problems: &mut Vec<FileProblem>) {
    let Some(entries) = node.entries() else {
        problems.push(expected(path, "a mapping", node));
        return;
    };
    let names: Vec<&str> = fields.iter().map(|field| field.name).collect();
    let mut seen = Vec::new();
    for (key, value) in entries {
        let field_path = format!("{path}.{}", key.name);
        if duplicate(&field_path, key, &mut seen, problems) {
            continue;
        }
        match fields.iter().find(|field| field.name == key.name) {
            Some(field) => check(&field_path, field.kind, value, problems),
            None => problems.push(unknown(&field_path, key, "field", &names)),
        }
    }
    for field in fields.iter().filter(|field| field.required) {
        if node.get(field.name).is_none_or(Node::is_null) {
            problems.push(FileProblem {
                path: format!("{path}.{}", field.name),
                message: "missing; every entry needs one".to_owned(),
                at: node.at,
            });
        }
    }
}

fn expected(path: &str, what: &str, node: &Node) -> FileProblem {
    FileProblem {
        path: path.to_owned(),
        message: format!("expected {what}, got {}", node.describe()),
        at: node.at,
    }
}

/// An unknown key, with the closest known one when it looks like a typo,
/// else every key allowed there.
fn unknown(path: &str, key: &Key, what: &str, known: &[&str]) -> FileProblem {
    let typed = key.name.as_str();
    let closest = known
        .iter()
        .map(|name| (distance(typed, name), *name))
        .filter(|(d, name)| {
            *d <= 2.max(typed.len() / 4)
                || (typed.len() >= 3 && (name.starts_with(typed) || typed.starts_with(name)))
        })
        .min();
    let hint = match closest {
        Some((_, name)) => format!("did you mean `{name}`?"),
        None => format!("expected one of {}", known.join(", ")),
    };
    FileProblem {
        path: path.to_owned(),
        message: format!("unknown {what}; {hint}"),
        at: key.at,
    }
}

/// Levenshtein distance, on characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("listn", "listen"), 1);
        assert_eq!(distance("listne", "listen"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}

//! The workspace's modules form layers: no import cycle between them.
//!
//! Each crate's `src/` is read as modules (`a.rs` and `a/mod.rs` are `a`,
//! `a/b.rs` is `a::b`); an edge goes from a module to each module its code
//! names (`use` trees expanded, and paths in code) through `crate::`,
//! `super::` or `self::`. A module naming one of its own ancestors is not
//! an edge: a child may always use what its parent defines or re-exports
//! (the parent's `mod` declarations are not imports either). Every other
//! edge must keep the graph acyclic, so a module's code can be read without
//! reading its callers first — `mcp/relay.rs` and `mcp/server.rs` calling
//! each other was the shape this rules out. Comments and `#[cfg(test)]`
//! modules at the end of a file are not read.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proxy/ is inside the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Module = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("lib") if parts.len() == 1 => parts.clear(),
        // Binaries are crates of their own.
        Some("main") if parts.len() == 1 => return None,
        _ if parts.first().is_some_and(|p| p == "bin") => return None,
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

/// The code of a file: comments removed, trailing test module cut.
fn code(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
    let mut out = String::new();
    for line in text[..cut].lines() {
        let line = match line.find("//") {
            // `://` inside a string (a URL) is not a comment.
            Some(at) if !line[..at].ends_with(':') => &line[..at],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path a `use` tree names: `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = tree[open + 1..].trim_end().trim_end_matches('}');
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let tree = tree.split(" as ").next().unwrap_or(tree).trim();
        let path = if tree == "self" {
            prefix.to_owned()
        } else {
            join(prefix, tree)
        };
        out.push(path);
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}::{b}"),
    }
}

/// The paths a file's code names through `crate`, `super` or `self`.
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements, whole (they may span lines).
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let stmt = &rest[at..];
        let end = stmt.find(';').unwrap_or(stmt.len());
        let tree: String = stmt[4..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        expand(&tree, "", &mut out);
        rest = &stmt[end..];
    }
    // Paths in code.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            let boundary = begin == 0
                || !(bytes[begin - 1].is_ascii_alphanumeric()
                    || bytes[begin - 1] == b'_'
                    || bytes[begin - 1] == b':');
            if !boundary {
                continue;
            }
            let end = code[begin..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| begin + e);
            out.push(code[begin..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

fn find_use(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find("use ") {
        let i = from + at;
        let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
        let before = text[line_start..i].trim();
        if before.is_empty() || before == "pub" || before.starts_with("pub(") {
            return Some(i);
        }
        from = i + 4;
    }
    None
}

/// The module a path names, resolved from `module`: its longest prefix that
/// is a module of the crate.
fn resolve(path: &str, module: &Module, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut parts = path.split("::");
    let mut base: Module = match parts.next()? {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => {
            let mut m = module.clone();
            m.pop()?;
            m
        }
        _ => return None,
    };
    let mut resolved = base.clone();
    for part in parts {
        if part == "super" {
            base.pop()?;
            resolved = base.clone();
            continue;
        }
        base.push(part.to_owned());
        if modules.contains(&base) {
            resolved = base.clone();
        } else {
            break;
        }
    }
    Some(resolved)
}

/// The module graph of one crate's `src/`.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let parsed: Vec<(Module, String)> = files
        .iter()
        .filter_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            Some((module_of(src, f)?, code(&text)))
        })
        .collect();
    let modules: BTreeSet<Module> = parsed.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeMap::new();
    for (module, code) in &parsed {
        let targets: &mut BTreeSet<Module> = edges.entry(module.clone()).or_default();
        for path in named_paths(code) {
            let Some(target) = resolve(&path, module, &modules) else {
                continue;
            };
            let ancestor_or_self = module.starts_with(&target);
            if !ancestor_or_self {
                targets.insert(target);
            }
        }
    }
    edges
}

/// A cycle, if the graph has one.
fn cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        marks.insert(m.clone(), Mark::Open);
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut found = stack[at..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Mark::New => {
                    if let Some(found) = visit(next, edges, marks, stack) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(m.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in edges.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            let mut stack = Vec::new();
            if let Some(found) = visit(m, edges, &mut marks, &mut stack) {
                return Some(found);
            }
        }
    }
    None
}

/// Up to 50 cycles, each found after breaking the ones before it.
fn cycles(mut edges: BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let mut out = Vec::new();
    while let Some(found) = cycle(&edges) {
        if let [.., from, to] = &found[..]
            && let Some(targets) = edges.get_mut(from)
        {
            targets.remove(to);
        }
        out.push(found);
        if out.len() == 50 {
            break;
        }
    }
    out
}

fn show(cycle: &[Module]) -> String {
    cycle
        .iter()
        .map(|m| {
            if m.is_empty() {
                "crate".to_owned()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_crate_in_the_workspace_has_an_import_cycle() {
    let root = workspace();
    let mut checked = 0;
    for krate in [
        "proxy",
        "ledger",
        "policy",
        "bench",
        "tests",
        "examples/demo-upstream",
        "fuzz",
    ] {
        let src = root.join(krate).join("src");
        let edges = graph(&src);
        assert!(
            edges.len() > 1 || krate == "tests" || krate == "fuzz",
            "{krate}: no modules read"
        );
        checked += edges.len();
        let cycles = cycles(edges);
        assert!(
            cycles.is_empty(),
            "{krate}: import cycles:\n{}",
            cycles
                .iter()
                .map(|c| show(c))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(checked > 100, "only {checked} modules read");
}

#[test]
fn the_checker_finds_a_cycle_and_resolves_use_trees() {
    let mut out = Vec::new();
    expand(
        "super::{answers::{self, Outgoing}, body::ProxyBody}",
        "",
        &mut out,
    );
    assert_eq!(
        out,
        [
            "super::answers",
            "super::answers::Outgoing",
            "super::body::ProxyBody"
        ]
    );
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .collect();
    let ab: Module = vec!["a".into(), "b".into()];
    assert_eq!(
        resolve("super::super::c::X", &ab, &modules),
        Some(vec!["c".to_owned()])
    );
    assert_eq!(
        resolve("crate::a::b::f", &vec![], &modules),
        Some(ab.clone())
    );
    let mut edges = BTreeMap::new();
    edges.insert(vec!["a".to_owned()], BTreeSet::from([vec!["c".to_owned()]]));
    edges.insert(vec!["c".to_owned()], BTreeSet::from([ab.clone()]));
    edges.insert(ab.clone(), BTreeSet::new());
    assert!(
        cycle(&edges).is_none(),
        "a child using its parent is not a cycle"
    );
    edges.insert(ab.clone(), BTreeSet::from([vec!["c".to_owned()]]));
    assert_eq!(show(&cycle(&edges).unwrap()), "c -> a::b -> c");
    assert!(named_paths(&code("// crate::x::y\nlet u = \"http://x\";\n")).is_empty());
}

//! The config file as YAML: parsed into a generic tree of [`Node`]s that
//! remember where they stand (line and column), then checked against the
//! setting declarations ([`walk`]), collecting every problem of the file at
//! once instead of stopping at the first as a typed parse would.
//!
//! Only a YAML syntax error stops the parse; then it is the one problem.

mod walk;

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};

pub(super) use walk::{FileProblem, walk};

/// Where a node stands in the file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct At {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One YAML node and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub at: At,
    /// A scalar's text as written (a plain `8080`, `yes`, `-1`), for
    /// settings that take it as a string and for problems that quote it.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; a duplicate key stays, for the walk to report.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub at: At,
}

impl Node {
    /// The entry `key` of a mapping (the first, if duplicated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(_, node)| node),
            _ => None,
        }
    }

    /// The node at a dotted path of mapping keys (`mcp.identity.tenant`).
    pub fn at_path(&self, path: &str) -> Option<&Node> {
        path.split('.')
            .try_fold(self, |node, key| node.get(key))
            .filter(|node| !node.is_null())
    }

    pub fn is_null(&self) -> bool {
        self.value == Value::Null
    }

    /// A scalar as text: a string as it reads, another scalar as written;
    /// `None` for null, lists and mappings.
    pub fn text(&self) -> Option<String> {
        match &self.value {
            Value::Str(text) => Some(text.clone()),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => Some(self.raw.clone()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A boolean as `true`/`false` (so every layer's text is checked the
    /// same way); a string as it reads.
    pub fn bool_text(&self) -> Option<String> {
        match &self.value {
            Value::Bool(b) => Some(b.to_string()),
            Value::Str(text) => Some(text.clone()),
            _ => None,
        }
    }

    /// A non-negative integer (a quoted one too, as a typed parse takes it).
    pub fn integer(&self) -> Option<u64> {
        match &self.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    /// A list's items; `None` when this is not a list.
    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// A mapping's entries; `None` when this is not a mapping.
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// What the node is, for a problem saying what was expected instead.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Str(text) => format!("{text:?}"),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            Value::Null => "nothing".to_owned(),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => self.raw.clone(),
        }
    }
}

/// Parses `text` as one YAML document. Duplicate keys are kept (the walk
/// reports them with the others); the error is a syntax error, one line
/// naming the line and column.
pub fn parse(text: &str) -> Result<Node, String> {
    let options = serde_saphyr::options! { duplicate_keys: DuplicateKeyPolicy::PassThrough };
    let root: Spanned<Tree> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|err| err.without_snippet().to_string())?;
    Ok(node(root, text))
}

/// The tree serde builds; turned into [`Node`]s once the source text is at
/// hand for the scalars' raw text.
#[derive(Debug)]
enum Tree {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Tree>>),
    Map(Vec<(Spanned<String>, Spanned<Tree>)>),
}

fn at(location: &serde_saphyr::Location) -> At {
    At {
        line: location.line(),
        column: location.column(),
    }
}

fn node(spanned: Spanned<Tree>, text: &str) -> Node {
    // The text where the value is defined (an alias's anchor), as written.
    let span = spanned.defined.span();
    let raw = span
        .byte_offset()
        .zip(span.byte_len())
        .and_then(|(start, len)| {
            let start = usize::try_from(start).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            text.get(start..end)
        })
        .unwrap_or_default()
        .trim()
        .to_owned();
    let value = match spanned.value {
        Tree::Null => Value::Null,
        Tree::Bool(b) => Value::Bool(b),
        Tree::Int(n) => Value::Int(n),
        Tree::Float(x) => Value::Float(x),
        Tree::Str(s) => Value::Str(s),
        Tree::Seq(items) => Value::Seq(items.into_iter().map(|item| node(item, text)).collect()),
        Tree::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let key = Key {
                        name: key.value,
                        at: at(&key.referenced),
                    };
                    (key, node(value, text))
                })
                .collect(),
        ),
    };
    Node {
        value,
        at: at(&spanned.referenced),
        raw,
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tree, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        Tree::deserialize(deserializer)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Tree, E> {
        Ok(Tree::Int(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Tree, E> {
        Ok(Tree::Int(n.into()))
    }

    fn visit_i128<E>(self, n: i128) -> Result<Tree, E> {
        Ok(Tree::Int(n))
    }

    fn visit_u128<E>(self, n: u128) -> Result<Tree, E> {
        // Beyond any setting's range either way.
        Ok(i128::try_from(n).map_or(Tree::Float(n as f64), Tree::Int))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Tree, E> {
        Ok(Tree::Float(x))
    }

    fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
        Ok(Tree::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Tree, E> {
        Ok(Tree::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Tree::Map(entries))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Tree, E> {
        Err(E::custom("binary values are not settings"))
    }
}

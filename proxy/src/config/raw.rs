//! The config file as read: its YAML tree (`file`), the problems of its
//! shape found by walking it against the declarations, and the structured
//! settings' entries (`mcp.upstreams`, `admin.auth`) as plain structs.
//!
//! Values that need checking (addresses, enums, ranges) stay raw here; they
//! are validated in `layers`, where every problem is collected at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::{self, FileProblem, Node};
use super::settings::{self, Setting};
use super::tls::RawUpstreamTls;

/// The whole config file; an empty file (or one holding only comments) is all
/// defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RawConfig {
    root: Node,
    /// Unknown keys, wrong types, duplicates: reported with the other
    /// layers' problems by `Config::from_layers`.
    problems: Vec<FileProblem>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            root: Node {
                value: file::Value::Null,
                at: file::At::default(),
                raw: String::new(),
            },
            problems: Vec::new(),
        }
    }
}

/// One entry of `admin.auth.tokens`; `file` and `role` are required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawAdminToken {
    pub file: Option<PathBuf>,
    pub role: Option<String>,
    pub tenants: Option<Vec<String>>,
}

/// One entry of `admin.auth.mtls`: exactly one of the names, and a role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawAdminMtls {
    pub uri_san: Option<String>,
    pub dns_san: Option<String>,
    pub subject: Option<String>,
    pub role: Option<String>,
    pub tenants: Option<Vec<String>>,
}

/// One entry of `mcp.upstreams`; `name` and `url` are required (the walk
/// reports them missing; such an entry is skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawUpstream {
    /// Whether the entry's shape is right; one with a problem there (an
    /// unknown field, a wrong type) is reported for that alone.
    pub sound: bool,
    pub name: Option<String>,
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub headers: Option<Vec<RawHeader>>,
    /// Only for `https://` URLs.
    pub tls: Option<RawUpstreamTls>,
}

/// One entry of `mcp.upstreams[].headers`: a name and where its value is read
/// from, exactly one of an environment variable or a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeader {
    pub name: Option<String>,
    pub value_from_env: Option<String>,
    pub value_from_file: Option<PathBuf>,
    /// An inline `value:` is accepted by the parser only to be refused with a
    /// clear problem; its contents (a secret) are never kept.
    pub value: Option<InlineValue>,
}

/// An inline header value in the file: present, contents discarded unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineValue;

impl RawConfig {
    /// Parses YAML text. The error is a YAML syntax error, one line naming the
    /// line and column; every problem of the file's shape (unknown keys,
    /// wrong types, duplicates) is kept instead, and reported with the other
    /// layers' by [`crate::config::Config::from_layers`].
    pub fn from_yaml(text: &str) -> Result<RawConfig, String> {
        let root = file::parse(text)?;
        let problems = file::walk(&root);
        Ok(RawConfig { root, problems })
    }

    /// The file's problems, one line each: the setting's path, what is wrong
    /// and where (`source` being the file's name, when known).
    pub(super) fn problems(&self, source: Option<&Path>) -> Vec<String> {
        self.problems
            .iter()
            .map(|problem| {
                let file = source.map_or_else(String::new, |path| {
                    format!("config file \"{}\", ", path.display())
                });
                format!(
                    "{}: {} ({file}{})",
                    problem.path, problem.message, problem.at
                )
            })
            .collect()
    }

    /// The file's value of `setting`; `None` when unset (or null).
    pub(super) fn value(&self, setting: &Setting) -> Option<&Node> {
        self.root.at_path(setting.path)
    }

    /// Whether the section at `path` (`mcp.identity.jwt`) is in the file.
    pub(super) fn has(&self, path: &str) -> bool {
        self.root.at_path(path).is_some()
    }

    /// A list of strings; items of another kind (reported) are left out.
    pub(super) fn texts(&self, setting: &Setting) -> Option<Vec<String>> {
        self.value(setting).and_then(texts)
    }

    pub(super) fn integers(&self, setting: &Setting) -> Option<Vec<u64>> {
        let items = self.value(setting)?.items()?;
        Some(items.iter().filter_map(Node::integer).collect())
    }

    /// A mapping of names to strings, in name order.
    pub(super) fn text_map(&self, setting: &Setting) -> Option<BTreeMap<String, String>> {
        let entries = self.value(setting)?.entries()?;
        let mut map = BTreeMap::new();
        for (key, value) in entries {
            if let Some(text) = value.text() {
                map.entry(key.name.clone()).or_insert(text);
            }
        }
        Some(map)
    }

    /// Whether nothing at or under `path` (an entry, `mcp.upstreams[2]`) has
    /// a problem of its shape.
    fn sound(&self, path: &str) -> bool {
        !self.problems.iter().any(|problem| {
            problem
                .path
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    pub(super) fn upstreams(&self) -> Vec<RawUpstream> {
        let path = settings::MCP_UPSTREAMS.path;
        entries(self.value(&settings::MCP_UPSTREAMS), |i, entry| {
            RawUpstream {
                sound: self.sound(&format!("{path}[{i}]")),
                name: text(entry, "name"),
                url: text(entry, "url"),
                timeout_ms: entry.get("timeout_ms").and_then(Node::integer),
                headers: entry
                    .get("headers")
                    .filter(|n| !n.is_null())
                    .map(|headers| {
                        entries(Some(headers), |_, header| RawHeader {
                            name: text(header, "name"),
                            value_from_env: text(header, "value_from_env"),
                            value_from_file: text(header, "value_from_file").map(PathBuf::from),
                            value: header.get("value").map(|_| InlineValue),
                        })
                    }),
                tls: entry
                    .get("tls")
                    .filter(|n| !n.is_null())
                    .map(|tls| RawUpstreamTls {
                        ca_file: text(tls, "ca_file").map(PathBuf::from),
                        client_cert_file: text(tls, "client_cert_file").map(PathBuf::from),
                        client_key_file: text(tls, "client_key_file").map(PathBuf::from),
                        server_name: text(tls, "server_name"),
                    }),
            }
        })
    }

    /// The entries of `admin.auth.tokens`, by index; `None` for one whose
    /// shape has a problem (reported for that alone).
    pub(super) fn admin_tokens(&self) -> Vec<Option<RawAdminToken>> {
        let path = settings::ADMIN_AUTH_TOKENS.path;
        entries(self.value(&settings::ADMIN_AUTH_TOKENS), |i, entry| {
            self.sound(&format!("{path}[{i}]")).then(|| RawAdminToken {
                file: text(entry, "file").map(PathBuf::from),
                role: text(entry, "role"),
                tenants: entry.get("tenants").and_then(texts),
            })
        })
    }

    /// The entries of `admin.auth.mtls`, as [`RawConfig::admin_tokens`].
    pub(super) fn admin_mtls(&self) -> Vec<Option<RawAdminMtls>> {
        let path = settings::ADMIN_AUTH_MTLS.path;
        entries(self.value(&settings::ADMIN_AUTH_MTLS), |i, entry| {
            self.sound(&format!("{path}[{i}]")).then(|| RawAdminMtls {
                uri_san: text(entry, "uri_san"),
                dns_san: text(entry, "dns_san"),
                subject: text(entry, "subject"),
                role: text(entry, "role"),
                tenants: entry.get("tenants").and_then(texts),
            })
        })
    }
}

/// The entries of a list of mappings, each read by `read` with its index
/// (an item that is not a mapping, reported by the walk, reads as empty).
fn entries<T>(list: Option<&Node>, read: impl Fn(usize, &Node) -> T) -> Vec<T> {
    let items = list.and_then(Node::items).unwrap_or_default();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read(i, item))
        .collect()
}

fn text(entry: &Node, field: &str) -> Option<String> {
    entry.get(field).and_then(Node::text)
}

fn texts(node: &Node) -> Option<Vec<String>> {
    Some(node.items()?.iter().filter_map(Node::text).collect())
}

/// Reads and parses the config file at `path`. The error says what went wrong,
/// without the path (the caller adds it).
pub(super) fn read_file(path: &Path) -> Result<RawConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read: {err}"))?;
    RawConfig::from_yaml(&text)
}

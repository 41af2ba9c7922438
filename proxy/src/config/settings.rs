//! The declaration of every setting: one [`Setting`] per entry of the
//! config file, naming its dotted path, its environment variable and flag
//! (if any), its default as the README shows it, a one-line doc and the
//! kind of value the file holds there.
//!
//! The declarations drive three things, so none can drift from the others:
//! the file's shape check (`file::walk`: unknown keys, wrong types and
//! duplicates, all at once, each with its path), the layering file < env <
//! flag (`layers::Checker::layer`), and the README's configuration table
//! (a test compares them row by row; another checks every `run` flag).
//!
//! The declarations sit by section in the submodules, each next to its
//! environment variable (`ENV_*`) and its typed default (`DEFAULT_*`) with
//! the reason for it.

mod admin;
mod approval;
mod forward;
mod identity;
mod ledger;
mod mcp;

use std::path::PathBuf;

use crate::cli::RunFlags;

pub use admin::*;
pub use approval::*;
pub use forward::*;
pub use identity::*;
pub use ledger::*;
pub use mcp::*;

/// One setting of the config file, and where else it can come from.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The dotted path in the file (`admin.listen`), as problems name it.
    pub path: &'static str,
    /// The `AEGIS_*` variable that overrides the file.
    pub env: Option<&'static str>,
    /// The `run` flag that overrides the environment.
    pub flag: Option<Flag>,
    /// The default, as the README's table shows it.
    pub default: Shown,
    /// What the file holds at `path`.
    pub kind: Kind,
    /// What the setting is for, in one line.
    pub doc: &'static str,
}

/// A `run` flag: its name and how to read it from the parsed flags.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    /// The flag's value when given. `None` for a flag read whole by its
    /// setting's dedicated code (`--upstream`, repeatable).
    pub value: fn(&RunFlags) -> Option<FlagValue>,
}

/// A flag's value as clap leaves it: raw, checked with the other layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagValue {
    Text(String),
    Path(PathBuf),
    /// A switch that was given (`--fail-open`): `true`.
    On,
}

/// A default as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A value the file could hold (`127.0.0.1:8080`, `[80, 443]`): a test
    /// writes each into a file and checks the result is `Config::default()`.
    Value(&'static str),
    /// Prose, for settings whose default is no value or depends on others
    /// (`none (off)`, `the only upstream, if exactly one`).
    Note(&'static str),
}

impl Shown {
    pub fn text(self) -> &'static str {
        match self {
            Shown::Value(text) | Shown::Note(text) => text,
        }
    }
}

/// The shape of a value in the file. Values are checked further (ranges,
/// addresses, enums) with the other layers, in `layers`.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string; a plain scalar of another type (`8080`, `yes`) is taken as
    /// written.
    Text,
    /// A file path: a string, as [`Kind::Text`].
    Path,
    /// A non-negative integer.
    Integer,
    /// `true` or `false`.
    Bool,
    /// A list of strings.
    Texts,
    /// A list of non-negative integers.
    Integers,
    /// A mapping of names to strings.
    TextMap,
    /// A list of entries, each a mapping of these fields.
    Entries(&'static [Field]),
    /// A mapping of these fields.
    Block(&'static [Field]),
    /// Accepted whatever it holds, and never read (a header's inline
    /// `value`, refused without being kept).
    Ignored,
}

/// A field of an entry of a structured setting (`mcp.upstreams[].url`).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// A missing required field is a problem of the file.
    pub required: bool,
}

impl Field {
    pub const fn optional(name: &'static str, kind: Kind) -> Field {
        Field {
            name,
            kind,
            required: false,
        }
    }

    pub const fn required(name: &'static str, kind: Kind) -> Field {
        Field {
            name,
            kind,
            required: true,
        }
    }
}

impl Setting {
    /// A file-only setting whose default is `default`; `env`, `flag` and
    /// [`Setting::noted`] add the rest.
    pub const fn new(
        path: &'static str,
        kind: Kind,
        default: &'static str,
        doc: &'static str,
    ) -> Setting {
        Setting {
            path,
            env: None,
            flag: None,
            default: Shown::Value(default),
            kind,
            doc,
        }
    }

    /// A file-only setting whose default is prose, not a value (see
    /// [`Shown::Note`]).
    pub const fn noted(
        path: &'static str,
        kind: Kind,
        note: &'static str,
        doc: &'static str,
    ) -> Setting {
        Setting {
            default: Shown::Note(note),
            ..Setting::new(path, kind, "", doc)
        }
    }

    pub const fn env(self, name: &'static str) -> Setting {
        Setting {
            env: Some(name),
            ..self
        }
    }

    pub const fn flag(
        self,
        name: &'static str,
        value: fn(&RunFlags) -> Option<FlagValue>,
    ) -> Setting {
        Setting {
            flag: Some(Flag { name, value }),
            ..self
        }
    }
}

/// A text flag's value.
fn text(flag: &Option<String>) -> Option<FlagValue> {
    flag.clone().map(FlagValue::Text)
}

/// A path flag's value.
fn path(flag: &Option<PathBuf>) -> Option<FlagValue> {
    flag.clone().map(FlagValue::Path)
}

/// Every setting, in the order of the README's table.
pub fn all() -> impl Iterator<Item = &'static Setting> {
    [
        admin::SETTINGS,
        forward::SETTINGS,
        ledger::SETTINGS,
        approval::SETTINGS,
        mcp::SETTINGS,
        identity::SETTINGS,
        mcp::LATER_SETTINGS,
        ledger::LATER_SETTINGS,
    ]
    .into_iter()
    .flatten()
}

/// The setting at `path`, if one is declared there.
pub fn find(path: &str) -> Option<&'static Setting> {
    all().find(|setting| setting.path == path)
}

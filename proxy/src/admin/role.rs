//! What an admin/API credential may do.

use std::fmt;
use std::str::FromStr;

/// What a credential may do; ordered, each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads events, snapshots, verification reports and the manifest status.
    Reader,
    /// Also appends events and asks for decisions.
    Ingest,
    /// Also reloads the manifest and registers sanitizers.
    Operator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Ingest, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Ingest => "ingest",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s.trim())
            .ok_or_else(|| format!("expected reader, ingest or operator, got {s:?}"))
    }
}

//! Noticing that files changed: the JWK Set (`crate::identity`) and the
//! admin token files (`crate::admin::tokens`) are watched the way the
//! manifest is, by one implementation, `aegis_policy::watch` (directories,
//! not files; no event per write on Linux; debounced).

pub use aegis_policy::watch::{DEBOUNCE, FileWatch, MAX_DEBOUNCE, WatchError, watch};

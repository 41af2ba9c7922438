//! Reading `AEGIS_*` variables through a trait, so tests pass a map instead of
//! mutating the process environment.

use std::collections::HashMap;

/// Where environment variables come from.
pub trait Env {
    /// The variable's value, or `None` when it is not set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        // A value that is not UTF-8 is kept (lossily) rather than dropped, so it
        // shows up in an error instead of silently meaning "unset".
        std::env::var_os(key).map(|value| value.to_string_lossy().into_owned())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// The variable's value; set-but-empty counts as unset, so `AEGIS_X=` in a
/// manifest or shell falls back to the file and the default.
pub(super) fn string(env: &dyn Env, key: &str) -> Option<String> {
    env.var(key).filter(|value| !value.trim().is_empty())
}

//! `admin.tls` and `mcp.tls`: each file setting laid file < environment <
//! flag, then read and checked together (`config::tls`). Upstream TLS is in
//! the file only and is checked with its upstream (`upstreams.rs`).

use std::path::PathBuf;

use super::{Checker, Layered, flag_over, over_file};
use crate::config::env::{self, Env};
use crate::config::tls::{self, FileSetting, RawServerTls, ServerTls};

/// Where one listener's three TLS settings come from besides the file: the
/// environment variable and the flag of `cert_file`, `key_file` and
/// `client_ca_file`, in that order.
pub(super) struct Sources {
    pub env: [&'static str; 3],
    pub flags: [(&'static str, Option<PathBuf>); 3],
}

/// Resolves `{prefix}.tls` (`admin` or `mcp`); `None` when TLS is off.
pub(super) fn listener(
    prefix: &str,
    raw: Option<RawServerTls>,
    sources: Sources,
    env: &dyn Env,
    c: &mut Checker,
) -> Option<ServerTls> {
    let raw = raw.unwrap_or_default();
    let [cert_env, key_env, ca_env] = sources.env;
    let [cert_flag, key_flag, ca_flag] = sources.flags;
    let mut layered = |name: &str, file: Option<PathBuf>, env_key, (flag, given)| {
        let value = over_file(file, env::string(env, env_key).map(PathBuf::from), env_key);
        let value = flag_over(given, flag, value);
        file_setting(&format!("{prefix}.tls.{name}"), value, c)
    };
    let cert = layered("cert_file", raw.cert_file, cert_env, cert_flag);
    let key = layered("key_file", raw.key_file, key_env, key_flag);
    let client_ca = layered("client_ca_file", raw.client_ca_file, ca_env, ca_flag);
    tls::server(
        &format!("{prefix}.tls"),
        cert,
        key,
        client_ca,
        &mut c.problems,
    )
}

/// A layered path as a [`FileSetting`]; an empty path is a problem.
fn file_setting(
    path: &str,
    value: Option<Layered<PathBuf>>,
    c: &mut Checker,
) -> Option<FileSetting> {
    let Layered { value, origin } = value?;
    if value.as_os_str().is_empty() {
        c.problems
            .push(format!("{path}: must not be empty{}", origin.suffix()));
        return None;
    }
    Some(FileSetting {
        path: value,
        from: origin.suffix(),
    })
}

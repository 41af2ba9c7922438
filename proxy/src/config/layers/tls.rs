//! `admin.tls` and `mcp.tls`: each of the three file settings layered file <
//! environment < flag, then read and checked together (`config::tls`).
//! Upstream TLS is in the file only and is checked with its upstream
//! (`upstreams.rs`).

use std::path::PathBuf;

use super::{Checker, Layered};
use crate::config::settings::Setting;
use crate::config::tls::{self, FileSetting, ServerTls};

/// Resolves `{prefix}.tls` (`admin` or `mcp`) from its `cert_file`,
/// `key_file` and `client_ca_file` settings, in that order: `None` when TLS
/// is off. Also says whether any layer gave `client_ca_file`.
pub(super) fn listener(
    prefix: &str,
    [cert, key, client_ca]: [&Setting; 3],
    c: &mut Checker<'_>,
) -> (Option<ServerTls>, bool) {
    let cert = c.layer(cert);
    let cert = file_setting(&format!("{prefix}.tls.cert_file"), cert, c);
    let key = c.layer(key);
    let key = file_setting(&format!("{prefix}.tls.key_file"), key, c);
    let client_ca = c.layer(client_ca);
    let client_ca_given = client_ca.is_some();
    let client_ca = file_setting(&format!("{prefix}.tls.client_ca_file"), client_ca, c);
    let tls = tls::server(
        &format!("{prefix}.tls"),
        cert,
        key,
        client_ca,
        &mut c.problems,
    );
    (tls, client_ca_given)
}

/// A layered path as a [`FileSetting`]; an empty path is a problem.
fn file_setting(
    path: &str,
    value: Option<Layered<PathBuf>>,
    c: &mut Checker<'_>,
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

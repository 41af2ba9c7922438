//! `admin.auth` (file only): token entries (each file read and checked
//! now), mTLS entries, and the dev-mode rule (no credential only on a
//! loopback `admin.listen`).

use std::net::SocketAddr;

use super::{Checker, Origin};
use crate::admin::tokens::{TokenDigest, read_token};
use crate::config::auth::{AuthConfig, CertName, MtlsEntry, Role, TokenEntry, dev_mode_problem};
use crate::config::raw::{RawAdminMtls, RawAdminToken};

/// Resolves `admin.auth`. `listen` (from `listen_origin`) is checked against
/// dev mode; `client_ca_given` says whether `admin.tls.client_ca_file` is
/// set in any layer (mTLS entries need it).
pub(super) fn resolve(
    listen: SocketAddr,
    listen_origin: Origin,
    client_ca_given: bool,
    c: &mut Checker<'_>,
) -> AuthConfig {
    let raw_tokens = c.file.admin_tokens();
    let raw_mtls = c.file.admin_mtls();
    let any_given = !raw_tokens.is_empty() || !raw_mtls.is_empty();

    let mut digests: Vec<(usize, TokenDigest)> = Vec::new();
    let tokens = raw_tokens
        .into_iter()
        .enumerate()
        .filter_map(|(i, raw)| token(i, raw?, &mut digests, c))
        .collect();
    if !raw_mtls.is_empty() && !client_ca_given {
        c.problems.push(
            "admin.auth.mtls: needs admin.tls.client_ca_file (client certificates are \
             verified, and so can be mapped to roles, only on an mTLS admin listener)"
                .to_owned(),
        );
    }
    let mtls = raw_mtls
        .into_iter()
        .enumerate()
        .filter_map(|(i, raw)| mtls(i, raw?, c))
        .collect();
    let auth = AuthConfig { tokens, mtls };
    if !any_given && let Some(problem) = dev_mode_problem(listen, &auth) {
        c.problems
            .push(format!("{problem}{}", listen_origin.suffix()));
    }
    auth
}

fn token(
    i: usize,
    raw: RawAdminToken,
    digests: &mut Vec<(usize, TokenDigest)>,
    c: &mut Checker<'_>,
) -> Option<TokenEntry> {
    let path = format!("admin.auth.tokens[{i}]");
    let role = role(&path, raw.role, c);
    let tenants = tenants(&path, raw.tenants, c);
    let file = match raw.file {
        Some(file) if !file.as_os_str().is_empty() => file,
        Some(_) => {
            c.problems.push(format!("{path}.file: must not be empty"));
            return None;
        }
        None => {
            c.problems.push(format!(
                "{path}.file: missing; each token entry names its file"
            ));
            return None;
        }
    };
    match read_token(&file) {
        Ok(digest) => {
            if let Some((j, _)) = digests.iter().find(|(_, d)| d.ct_eq(&digest)) {
                c.problems.push(format!(
                    "{path}.file: \"{}\" holds the same token as admin.auth.tokens[{j}]; \
                     every entry needs its own token",
                    file.display()
                ));
            }
            digests.push((i, digest));
        }
        Err(why) => c
            .problems
            .push(format!("{path}.file: \"{}\": {why}", file.display())),
    }
    Some(TokenEntry {
        file,
        role: role?,
        tenants: tenants?,
    })
}

fn mtls(i: usize, raw: RawAdminMtls, c: &mut Checker<'_>) -> Option<MtlsEntry> {
    let path = format!("admin.auth.mtls[{i}]");
    let role = role(&path, raw.role, c);
    let tenants = tenants(&path, raw.tenants, c);
    let names: Vec<CertName> = [
        raw.uri_san.map(CertName::UriSan),
        raw.dns_san.map(CertName::DnsSan),
        raw.subject.map(CertName::Subject),
    ]
    .into_iter()
    .flatten()
    .collect();
    let name = match <[CertName; 1]>::try_from(names) {
        Ok([name]) => name,
        Err(names) => {
            c.problems.push(format!(
                "{path}: needs exactly one of uri_san, dns_san or subject, got {}",
                names.len()
            ));
            return None;
        }
    };
    let (CertName::UriSan(text) | CertName::DnsSan(text) | CertName::Subject(text)) = &name;
    if text.trim().is_empty() {
        c.problems
            .push(format!("{path}: the certificate name must not be empty"));
        return None;
    }
    Some(MtlsEntry {
        name,
        role: role?,
        tenants: tenants?,
    })
}

fn role(path: &str, raw: Option<String>, c: &mut Checker<'_>) -> Option<Role> {
    let Some(raw) = raw else {
        c.problems.push(format!(
            "{path}.role: missing; one of reader, ingest, operator"
        ));
        return None;
    };
    raw.parse()
        .map_err(|message| c.problems.push(format!("{path}.role: {message}")))
        .ok()
}

/// `Some(None)`: every tenant; `None`: a problem was recorded.
fn tenants(
    path: &str,
    raw: Option<Vec<String>>,
    c: &mut Checker<'_>,
) -> Option<Option<Vec<String>>> {
    let Some(tenants) = raw else {
        return Some(None);
    };
    if tenants.is_empty() {
        c.problems.push(format!(
            "{path}.tenants: must name at least one tenant; leave it out for every tenant"
        ));
        return None;
    }
    if tenants.iter().any(|t| t.trim().is_empty()) {
        c.problems
            .push(format!("{path}.tenants: a tenant must not be empty"));
        return None;
    }
    Some(Some(tenants))
}

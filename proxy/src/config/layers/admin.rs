//! The `admin:` section: the admin/API server's listeners, limits and TLS;
//! `admin.auth` in [`super::auth`].

use std::time::Duration;

use super::{Checker, Origin, bytes_at_most, positive, socket_addr};
use crate::config::settings;
use crate::config::*;

pub(super) fn resolve(c: &mut Checker<'_>) -> AdminConfig {
    let value = c.layer(&settings::ADMIN_LISTEN);
    let listen_origin = value.as_ref().map_or(Origin::File, |v| v.origin);
    let listen = c.setting("admin.listen", value, DEFAULT_ADMIN_LISTEN, socket_addr);

    let value = c.layer(&settings::ADMIN_METRICS_LISTEN);
    let metrics_origin = value.as_ref().map_or(Origin::File, |v| v.origin);
    let metrics_listen = c.setting("admin.metrics_listen", value, None, |text| {
        socket_addr(text).map(Some)
    });
    if let Some(addr) = metrics_listen
        && addr == listen
        && addr.port() != 0
    {
        c.problems.push(format!(
            "admin.metrics_listen: {addr} is also admin.listen; give them different addresses{}",
            metrics_origin.suffix()
        ));
    }

    let max_body_bytes = c.get(
        &settings::ADMIN_MAX_BODY_BYTES,
        DEFAULT_ADMIN_MAX_BODY_BYTES,
        |n| bytes_at_most(n, MAX_ADMIN_MAX_BODY_BYTES, "64 MiB"),
    );
    let max_connections = c.get(
        &settings::ADMIN_MAX_CONNECTIONS,
        DEFAULT_ADMIN_MAX_CONNECTIONS,
        positive,
    );
    let header_timeout_ms = c.get(
        &settings::ADMIN_HEADER_TIMEOUT_MS,
        DEFAULT_ADMIN_HEADER_TIMEOUT_MS,
        positive::<u64>,
    );
    let request_timeout_ms = c.get(
        &settings::ADMIN_REQUEST_TIMEOUT_MS,
        DEFAULT_ADMIN_REQUEST_TIMEOUT_MS,
        positive::<u64>,
    );
    let default_value = c.layer(&settings::ADMIN_LIST_LIMIT_DEFAULT);
    let default_origin = default_value.as_ref().map_or(Origin::File, |v| v.origin);
    let list_limit_default = c.setting(
        "admin.list_limit_default",
        default_value,
        DEFAULT_ADMIN_LIST_LIMIT_DEFAULT,
        positive,
    );
    let list_limit_max = c.get(
        &settings::ADMIN_LIST_LIMIT_MAX,
        DEFAULT_ADMIN_LIST_LIMIT_MAX,
        positive,
    );
    if list_limit_default > list_limit_max {
        c.problems.push(format!(
            "admin.list_limit_default: must not exceed admin.list_limit_max ({list_limit_max}), got {list_limit_default}{}",
            default_origin.suffix()
        ));
    }

    let tls_settings = [
        &settings::ADMIN_TLS_CERT,
        &settings::ADMIN_TLS_KEY,
        &settings::ADMIN_TLS_CLIENT_CA,
    ];
    let (tls, client_ca_given) = super::tls::listener("admin", tls_settings, c);
    let auth = super::auth::resolve(listen, listen_origin, client_ca_given, c);
    AdminConfig {
        listen,
        max_body_bytes,
        max_connections,
        header_timeout: Duration::from_millis(header_timeout_ms),
        request_timeout: Duration::from_millis(request_timeout_ms),
        list_limit_default,
        list_limit_max,
        tls,
        metrics_listen,
        auth,
    }
}

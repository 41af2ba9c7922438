//! The `mcp:` section apart from the upstream list: the listener, the default
//! upstream, limits, enforcement and timings; `mcp.identity` in
//! [`identity`], `mcp.results` in [`results`].

mod identity;
mod results;

use std::net::SocketAddr;
use std::time::Duration;

use super::upstreams::{self, Upstreams};
use super::{Checker, Origin, boolean, bytes_at_most, positive, socket_addr};
use crate::config::env;
use crate::config::settings::{self, Setting};
use crate::config::*;
use crate::front_door;

/// Resolves `mcp:`; `admin_listen` is checked against the MCP listener.
pub(super) fn resolve(admin_listen: SocketAddr, c: &mut Checker<'_>) -> McpConfig {
    let Upstreams {
        configs: upstreams,
        names,
        any_given,
    } = upstreams::resolve(c);

    let listen = listen(any_given, admin_listen, c);

    let chosen = c.get(&settings::MCP_DEFAULT_UPSTREAM, None, |name| {
        configured_name(name, &names).map(Some)
    });
    let default_upstream = chosen.or_else(|| match upstreams.as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    });

    let tls_settings = [
        &settings::MCP_TLS_CERT,
        &settings::MCP_TLS_KEY,
        &settings::MCP_TLS_CLIENT_CA,
    ];
    let (tls, _) = super::tls::listener("mcp", tls_settings, c);
    if tls.is_some() && upstreams.is_empty() {
        c.problems.push(
            "mcp.tls: the MCP listener is off (no upstream to proxy); add mcp.upstreams or --upstream NAME=URL"
                .to_owned(),
        );
    }

    let identity = identity::resolve(tls.as_ref(), c);
    let allowed_hosts = front_door_list(&settings::MCP_ALLOWED_HOSTS, c, |entry| {
        front_door::check_host_entry(entry).map(|()| entry.trim().to_owned())
    });
    let allowed_origins = front_door_list(
        &settings::MCP_ALLOWED_ORIGINS,
        c,
        front_door::normalise_origin,
    );
    let limits = limits(c);
    let results = results::resolve(c);

    let enforce = c.get(&settings::MCP_ENFORCE, DEFAULT_MCP_ENFORCE, boolean);
    let ready_checks_upstreams = c.get(
        &settings::MCP_READY_CHECKS_UPSTREAMS,
        DEFAULT_MCP_READY_CHECKS_UPSTREAMS,
        boolean,
    );
    let session_idle_ms = c.get(
        &settings::MCP_SESSION_IDLE_MS,
        DEFAULT_MCP_SESSION_IDLE_MS,
        positive::<u64>,
    );
    // 0 is allowed: stop at once, cutting in-flight calls.
    let shutdown_grace_ms = c.get(
        &settings::MCP_SHUTDOWN_GRACE_MS,
        DEFAULT_SHUTDOWN_GRACE_MS,
        Ok,
    );

    let drain_delay_ms = c.get(&settings::MCP_DRAIN_DELAY_MS, DEFAULT_DRAIN_DELAY_MS, Ok);

    McpConfig {
        listen,
        tls,
        upstreams,
        default_upstream,
        identity,
        allowed_hosts,
        allowed_origins,
        max_body_bytes: limits.max_body_bytes,
        max_connections: limits.max_connections,
        max_queued_per_session: limits.max_queued_per_session,
        header_timeout: limits.header_timeout,
        max_in_flight: limits.max_in_flight,
        result_capture_bytes: limits.result_capture_bytes,
        max_response_bytes: limits.max_response_bytes,
        results,
        enforce,
        ready_checks_upstreams,
        session_idle: Duration::from_millis(session_idle_ms),
        shutdown_grace: Duration::from_millis(shutdown_grace_ms),
        drain_delay: Duration::from_millis(drain_delay_ms),
    }
}

/// `mcp.allowed_hosts` or `mcp.allowed_origins`: the file's list, replaced
/// whole by the comma-separated environment variable; each entry checked
/// (and normalised) by `check`, every bad one reported with its index.
fn front_door_list(
    setting: &Setting,
    c: &mut Checker<'_>,
    check: impl Fn(&str) -> Result<String, String>,
) -> Vec<String> {
    let path = setting.path;
    let given = setting
        .env
        .and_then(|name| Some((env::string(c.env, name)?, name)));
    let (entries, from) = match given {
        Some((text, name)) => (
            text.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            format!(" (from {name})"),
        ),
        None => (c.file.texts(setting).unwrap_or_default(), String::new()),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        match check(entry) {
            Ok(normalised) => out.push(normalised),
            Err(why) => c.problems.push(format!("{path}[{i}]: {why}{from}")),
        }
    }
    out
}

/// The listener's address: the configured one (or the default) when there is
/// an upstream to proxy, else none. Asking for a listener without an upstream
/// is a problem, and so is sharing the admin server's address.
fn listen(any_upstream: bool, admin_listen: SocketAddr, c: &mut Checker<'_>) -> Option<SocketAddr> {
    let value = c.layer(&settings::MCP_LISTEN);
    let origin = value.as_ref().map(|value| value.origin);
    let listen = c.setting("mcp.listen", value, None, |text| {
        socket_addr(text).map(Some)
    });
    if let Some(origin) = origin
        && !any_upstream
    {
        c.problems.push(format!(
            "mcp.listen: no upstream to proxy; add mcp.upstreams or --upstream NAME=URL{}",
            origin.suffix()
        ));
    }
    if !any_upstream {
        return None;
    }
    let listen = listen.unwrap_or(DEFAULT_MCP_LISTEN);
    if listen == admin_listen && listen.port() != 0 {
        c.problems.push(format!(
            "mcp.listen: {listen} is also admin.listen; give them different addresses{}",
            origin.map_or_else(String::new, Origin::suffix)
        ));
    }
    Some(listen)
}

/// `name` when it is one of the configured upstreams.
fn configured_name(name: String, configured: &[String]) -> Result<String, String> {
    let name = name.trim();
    if configured.iter().any(|known| known == name) {
        return Ok(name.to_owned());
    }
    if configured.is_empty() {
        return Err(format!("no upstream named {name:?}: none is configured"));
    }
    Err(format!(
        "no upstream named {name:?}; configured: {}",
        configured.join(", ")
    ))
}

/// The egress forward proxy is plain TCP: it cannot verify a client
/// certificate, so with `mtls` its requests can only name their principal
/// with a JWT. Without one, its calls would run under another principal
/// than the same agent's MCP calls (another session, another budget).
pub(super) fn check_identity_with_forward(
    mcp: &McpConfig,
    forward_listen: Option<SocketAddr>,
    c: &mut Checker<'_>,
) {
    let identity = &mcp.identity;
    if identity.mtls.is_some() && identity.jwt.is_none() && forward_listen.is_some() {
        c.problems.push(
            "mcp.identity.mtls: the egress forward proxy (forward.listen) cannot verify client \
             certificates; configure mcp.identity.jwt as well (egress requests then carry a \
             JWT), or turn forward.listen off"
                .to_owned(),
        );
    }
}

/// The checked `mcp.limits`.
struct Limits {
    max_body_bytes: usize,
    max_connections: usize,
    max_queued_per_session: usize,
    header_timeout: Duration,
    max_in_flight: usize,
    result_capture_bytes: usize,
    max_response_bytes: usize,
}

fn limits(c: &mut Checker<'_>) -> Limits {
    let max_body_bytes = c.get(
        &settings::MCP_MAX_BODY_BYTES,
        DEFAULT_MCP_MAX_BODY_BYTES,
        |n| bytes_at_most(n, MAX_MCP_MAX_BODY_BYTES, "64 MiB"),
    );
    let max_connections = c.get(
        &settings::MCP_MAX_CONNECTIONS,
        DEFAULT_MCP_MAX_CONNECTIONS,
        positive,
    );
    let header_timeout_ms = c.get(
        &settings::MCP_HEADER_TIMEOUT_MS,
        DEFAULT_MCP_HEADER_TIMEOUT_MS,
        positive::<u64>,
    );
    let max_queued_per_session = c.get(
        &settings::MCP_MAX_QUEUED_PER_SESSION,
        DEFAULT_MCP_MAX_QUEUED_PER_SESSION,
        positive,
    );
    let max_in_flight = c.get(
        &settings::MCP_MAX_IN_FLIGHT,
        DEFAULT_MCP_MAX_IN_FLIGHT,
        positive,
    );
    let max_response_bytes = c.get(
        &settings::MCP_MAX_RESPONSE_BYTES,
        DEFAULT_MCP_MAX_RESPONSE_BYTES,
        |n| bytes_at_most(n, MAX_MCP_MAX_RESPONSE_BYTES, "256 MiB"),
    );
    // 0 is allowed: keep only the result's size and digest.
    let value = c.layer::<u64>(&settings::MCP_RESULT_CAPTURE_BYTES);
    let capture_origin = value.as_ref().map(|value| value.origin);
    let result_capture_bytes = c.setting(
        "mcp.limits.result_capture_bytes",
        value,
        DEFAULT_MCP_RESULT_CAPTURE_BYTES,
        |n| usize::try_from(n).map_err(|_| format!("{n} is too large")),
    );
    if result_capture_bytes > max_response_bytes {
        c.problems.push(format!(
            "mcp.limits.result_capture_bytes: must not exceed mcp.limits.max_response_bytes \
             ({max_response_bytes}), got {result_capture_bytes}{}",
            capture_origin.map_or_else(String::new, Origin::suffix)
        ));
    }

    Limits {
        max_body_bytes,
        max_connections,
        max_queued_per_session,
        header_timeout: Duration::from_millis(header_timeout_ms),
        max_in_flight,
        result_capture_bytes,
        max_response_bytes,
    }
}

//! The `mcp:` section apart from the upstream list: the listener, the default
//! upstream, identity, limits, enforcement and timings; `mcp.results` in
//! [`results`].

mod results;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::upstreams::{self, Upstreams};
use super::{
    Checker, Origin, boolean, bytes_at_most, flag_over, from_file, over_file, positive, socket_addr,
};
use crate::cli::RunFlags;
use crate::config::env::{self, Env};
use crate::config::raw::{RawIdentity, RawJwt, RawMcp, RawMcpLimits};
use crate::config::*;
use crate::front_door;
use crate::identity::{ClaimNames, IdentityConfig, JwtConfig, MAX_ID_LEN, MtlsConfig};

/// Resolves `mcp:`; `admin_listen` is checked against the MCP listener.
pub(super) fn resolve(
    raw: RawMcp,
    env: &dyn Env,
    flags: &RunFlags,
    admin_listen: SocketAddr,
    c: &mut Checker,
) -> McpConfig {
    let Upstreams {
        configs: upstreams,
        names,
        any_given,
    } = upstreams::resolve(raw.upstreams.unwrap_or_default(), env, flags, c);

    let listen = listen(raw.listen, env, flags, any_given, admin_listen, c);

    let value = over_file(
        raw.default_upstream,
        env::string(env, ENV_MCP_DEFAULT_UPSTREAM),
        ENV_MCP_DEFAULT_UPSTREAM,
    );
    let value = flag_over(flags.default_upstream.clone(), "--default-upstream", value);
    let chosen = c.setting("mcp.default_upstream", value, None, |name| {
        configured_name(name, &names).map(Some)
    });
    let default_upstream = chosen.or_else(|| match upstreams.as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    });

    let sources = super::tls::Sources {
        env: [ENV_MCP_TLS_CERT, ENV_MCP_TLS_KEY, ENV_MCP_TLS_CLIENT_CA],
        flags: [
            ("--tls-cert", flags.tls_cert.clone()),
            ("--tls-key", flags.tls_key.clone()),
            ("--tls-client-ca", flags.tls_client_ca.clone()),
        ],
    };
    let tls = super::tls::listener("mcp", raw.tls, sources, env, c);
    if tls.is_some() && upstreams.is_empty() {
        c.problems.push(
            "mcp.tls: the MCP listener is off (no upstream to proxy); add mcp.upstreams or --upstream NAME=URL"
                .to_owned(),
        );
    }

    let identity = identity(raw.identity.unwrap_or_default(), env, tls.as_ref(), c);
    let allowed_hosts = front_door_list(
        "mcp.allowed_hosts",
        raw.allowed_hosts,
        env,
        ENV_MCP_ALLOWED_HOSTS,
        c,
        |entry| front_door::check_host_entry(entry).map(|()| entry.trim().to_owned()),
    );
    let allowed_origins = front_door_list(
        "mcp.allowed_origins",
        raw.allowed_origins,
        env,
        ENV_MCP_ALLOWED_ORIGINS,
        c,
        front_door::normalise_origin,
    );
    let limits = limits(raw.limits.unwrap_or_default(), env, c);
    let results = results::resolve(raw.results.unwrap_or_default(), env, c);

    let value = over_file(
        raw.enforce.map(|enforce| enforce.to_string()),
        env::string(env, ENV_MCP_ENFORCE),
        ENV_MCP_ENFORCE,
    );
    let value = flag_over(flags.enforce.clone(), "--enforce", value);
    let enforce = c.setting("mcp.enforce", value, DEFAULT_MCP_ENFORCE, boolean);

    let value = env::number(env, ENV_MCP_SESSION_IDLE_MS, &mut c.problems);
    let value = over_file(raw.session_idle_ms, value, ENV_MCP_SESSION_IDLE_MS);
    let session_idle_ms = c.setting(
        "mcp.session_idle_ms",
        value,
        DEFAULT_MCP_SESSION_IDLE_MS,
        positive::<u64>,
    );

    // 0 is allowed: stop at once, cutting in-flight calls.
    let value = env::number(env, ENV_SHUTDOWN_GRACE_MS, &mut c.problems);
    let value = over_file(raw.shutdown_grace_ms, value, ENV_SHUTDOWN_GRACE_MS);
    let flag = "--shutdown-grace-ms";
    let given = flags.shutdown_grace_ms.as_deref();
    let ms = flag_millis(c, "mcp.shutdown_grace_ms", flag, given);
    let value = flag_over(ms, flag, value);
    let shutdown_grace_ms = c.setting(
        "mcp.shutdown_grace_ms",
        value,
        DEFAULT_SHUTDOWN_GRACE_MS,
        Ok,
    );

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
        max_in_flight: limits.max_in_flight,
        result_capture_bytes: limits.result_capture_bytes,
        max_response_bytes: limits.max_response_bytes,
        results,
        enforce,
        session_idle: Duration::from_millis(session_idle_ms),
        shutdown_grace: Duration::from_millis(shutdown_grace_ms),
    }
}

/// `mcp.allowed_hosts` or `mcp.allowed_origins`: the file's list, replaced
/// whole by the comma-separated `env_name`; each entry checked (and
/// normalised) by `check`, every bad one reported with its index.
fn front_door_list(
    path: &str,
    file: Option<Vec<String>>,
    env: &dyn Env,
    env_name: &str,
    c: &mut Checker,
    check: impl Fn(&str) -> Result<String, String>,
) -> Vec<String> {
    let (entries, from) = match env::string(env, env_name) {
        Some(text) => (
            text.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            format!(" (from {env_name})"),
        ),
        None => (file.unwrap_or_default(), String::new()),
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
fn listen(
    file: Option<String>,
    env: &dyn Env,
    flags: &RunFlags,
    any_upstream: bool,
    admin_listen: SocketAddr,
    c: &mut Checker,
) -> Option<SocketAddr> {
    let value = over_file(file, env::string(env, ENV_MCP_LISTEN), ENV_MCP_LISTEN);
    let value = flag_over(flags.listen.clone(), "--listen", value);
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

/// A `--*-ms` flag as milliseconds; a value that does not parse is a problem
/// under the setting's path, naming the flag, and counts as not given.
fn flag_millis(
    c: &mut Checker,
    path: &str,
    flag: &'static str,
    given: Option<&str>,
) -> Option<u64> {
    let text = given?;
    match text.trim().parse::<u64>() {
        Ok(ms) => Some(ms),
        Err(_) => {
            c.problems.push(format!(
                "{path}: expected a whole number of milliseconds, got {text:?}{}",
                Origin::Flag(flag).suffix()
            ));
            None
        }
    }
}

fn identity(
    raw: RawIdentity,
    env: &dyn Env,
    tls: Option<&ServerTls>,
    c: &mut Checker,
) -> IdentityConfig {
    let mut header = |path: &str, value: Option<String>, default: &'static str| {
        c.setting(
            path,
            from_file(value),
            HeaderName::from_static(default),
            header_name,
        )
    };
    let session_header = header(
        "mcp.identity.session_header",
        raw.session_header,
        DEFAULT_MCP_SESSION_HEADER,
    );
    let tenant_header = header(
        "mcp.identity.tenant_header",
        raw.tenant_header,
        DEFAULT_MCP_TENANT_HEADER,
    );
    let user_header = header(
        "mcp.identity.user_header",
        raw.user_header,
        DEFAULT_MCP_USER_HEADER,
    );

    let value = over_file(
        raw.trust_headers.map(|trust| trust.to_string()),
        env::string(env, ENV_MCP_TRUST_IDENTITY_HEADERS),
        ENV_MCP_TRUST_IDENTITY_HEADERS,
    );
    let trust_headers = c.setting(
        "mcp.identity.trust_headers",
        value,
        DEFAULT_MCP_TRUST_IDENTITY_HEADERS,
        boolean,
    );

    let value = over_file(raw.tenant, env::string(env, ENV_TENANT_ID), ENV_TENANT_ID);
    let default_tenant = c.setting(
        "mcp.identity.tenant",
        value,
        DEFAULT_TENANT_ID.to_owned(),
        |id| checked_id(id, false),
    );
    let value = over_file(raw.user, env::string(env, ENV_USER_ID), ENV_USER_ID);
    let default_user = c.setting(
        "mcp.identity.user",
        value,
        DEFAULT_USER_ID.to_owned(),
        |id| checked_id(id, true),
    );
    let value = over_file(
        raw.principal,
        env::string(env, ENV_PRINCIPAL),
        ENV_PRINCIPAL,
    );
    let principal = c.setting(
        "mcp.identity.principal",
        value,
        DEFAULT_PRINCIPAL.to_owned(),
        principal_id,
    );
    let value = over_file(
        raw.session_scope,
        env::string(env, ENV_SESSION_SCOPE),
        ENV_SESSION_SCOPE,
    );
    let session_scope = c.setting(
        "mcp.identity.session_scope",
        value,
        DEFAULT_SESSION_SCOPE,
        |text| text.parse(),
    );
    let replaced = "the session is the principal's now: set mcp.identity.principal \
                    (AEGIS_PRINCIPAL), or session_scope: client for clients trusted to name \
                    their own sessions";
    if raw.default_session.is_some() {
        c.problems
            .push(format!("mcp.identity.default_session: removed; {replaced}"));
    }
    if env::string(env, REMOVED_ENV_MCP_DEFAULT_SESSION).is_some() {
        c.problems.push(format!(
            "{REMOVED_ENV_MCP_DEFAULT_SESSION}: removed; {replaced}"
        ));
    }

    let mtls = raw.mtls.map(|raw| MtlsConfig {
        san: c.setting(
            "mcp.identity.mtls.san",
            from_file(raw.san),
            DEFAULT_MTLS_SAN,
            |text| text.parse(),
        ),
    });
    if mtls.is_some() && tls.and_then(|tls| tls.client_ca_file.as_ref()).is_none() {
        c.problems.push(
            "mcp.identity.mtls: needs mcp.tls.client_ca_file (the MCP listener must verify \
             client certificates for their SANs to name anyone)"
                .to_owned(),
        );
    }
    let jwt = raw.jwt.and_then(|raw| jwt(raw, c));

    IdentityConfig {
        principal,
        session_scope,
        session_header,
        tenant_header,
        user_header,
        trust_headers,
        default_tenant,
        default_user,
        mtls,
        jwt,
    }
}

/// `mcp.identity.jwt`; `None` (with the problems recorded) when a required
/// setting is missing.
fn jwt(raw: RawJwt, c: &mut Checker) -> Option<JwtConfig> {
    let mut required = |path: &str, value: Option<String>| -> Option<String> {
        let value = value.as_deref().map(str::trim).unwrap_or_default();
        if value.is_empty() {
            c.problems
                .push(format!("{path}: required when mcp.identity.jwt is set"));
            return None;
        }
        Some(value.to_owned())
    };
    let issuer = required("mcp.identity.jwt.issuer", raw.issuer);
    let audience = required("mcp.identity.jwt.audience", raw.audience);
    let jwks_file = required(
        "mcp.identity.jwt.jwks_file",
        raw.jwks_file.map(|p| p.to_string_lossy().into_owned()),
    );
    let header = c.setting(
        "mcp.identity.jwt.header",
        from_file(raw.header),
        HeaderName::from_static(DEFAULT_JWT_HEADER),
        header_name,
    );
    let forward = c.setting(
        "mcp.identity.jwt.forward",
        from_file(raw.forward.map(|forward| forward.to_string())),
        DEFAULT_JWT_FORWARD,
        boolean,
    );
    let leeway_s = c.setting(
        "mcp.identity.jwt.leeway_s",
        from_file(raw.leeway_s),
        DEFAULT_JWT_LEEWAY_S,
        |s| {
            if s > MAX_JWT_LEEWAY_S {
                return Err(format!("must be at most {MAX_JWT_LEEWAY_S} s, got {s}"));
            }
            Ok(s)
        },
    );
    let raw_claims = raw.claims.unwrap_or_default();
    let mut claim = |path: &str, name: Option<String>| {
        c.setting(path, from_file(name), None, |name| {
            let name = name.trim();
            if name.is_empty() {
                return Err("must not be empty (leave it out for the default)".to_owned());
            }
            Ok(Some(name.to_owned()))
        })
    };
    let principal = claim("mcp.identity.jwt.claims.principal", raw_claims.principal)
        .unwrap_or_else(|| DEFAULT_JWT_PRINCIPAL_CLAIM.to_owned());
    let tenant = claim("mcp.identity.jwt.claims.tenant", raw_claims.tenant);
    let user = claim("mcp.identity.jwt.claims.user", raw_claims.user);
    Some(JwtConfig {
        jwks_file: PathBuf::from(jwks_file?),
        issuer: issuer?,
        audience: audience?,
        header,
        forward,
        leeway: Duration::from_secs(leeway_s),
        claims: ClaimNames {
            principal,
            tenant,
            user,
        },
    })
}

/// The egress forward proxy is plain TCP: it cannot verify a client
/// certificate, so with `mtls` its requests can only name their principal
/// with a JWT. Without one, its calls would run under another principal
/// than the same agent's MCP calls (another session, another budget).
pub(super) fn check_identity_with_forward(
    mcp: &McpConfig,
    forward_listen: Option<SocketAddr>,
    c: &mut Checker,
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

/// A principal: 1..=[`MAX_ID_LEN`] bytes of visible ASCII (what mTLS SANs
/// and JWT claims must be too), surrounding spaces trimmed.
fn principal_id(text: String) -> Result<String, String> {
    let id = text.trim();
    crate::identity::usable_id(id.as_bytes()).ok_or_else(|| {
        format!("must be 1 to {MAX_ID_LEN} bytes of visible ASCII (no spaces), got {id:?}")
    })
}

fn header_name(text: String) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| format!("invalid header name {text:?}"))
}

/// An id that goes into ledger rows: at most [`MAX_ID_LEN`] bytes, no control
/// characters, surrounding spaces trimmed; empty only where `may_be_empty`.
fn checked_id(text: String, may_be_empty: bool) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() && !may_be_empty {
        return Err("must not be empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "must be at most {MAX_ID_LEN} bytes, got {}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("must not contain control characters, got {id:?}"));
    }
    Ok(id.to_owned())
}

/// The checked `mcp.limits`.
struct Limits {
    max_body_bytes: usize,
    max_connections: usize,
    max_in_flight: usize,
    result_capture_bytes: usize,
    max_response_bytes: usize,
}

fn limits(raw: RawMcpLimits, env: &dyn Env, c: &mut Checker) -> Limits {
    let number = |c: &mut Checker, file: Option<u64>, key: &'static str| {
        let value = env::number(env, key, &mut c.problems);
        over_file(file, value, key)
    };

    let value = number(c, raw.max_body_bytes, ENV_MCP_MAX_BODY_BYTES);
    let max_body_bytes = c.setting(
        "mcp.limits.max_body_bytes",
        value,
        DEFAULT_MCP_MAX_BODY_BYTES,
        |n| bytes_at_most(n, MAX_MCP_MAX_BODY_BYTES, "64 MiB"),
    );
    let value = number(c, raw.max_connections, ENV_MCP_MAX_CONNECTIONS);
    let max_connections = c.setting(
        "mcp.limits.max_connections",
        value,
        DEFAULT_MCP_MAX_CONNECTIONS,
        positive,
    );
    let value = number(c, raw.max_in_flight, ENV_MCP_MAX_IN_FLIGHT);
    let max_in_flight = c.setting(
        "mcp.limits.max_in_flight",
        value,
        DEFAULT_MCP_MAX_IN_FLIGHT,
        positive,
    );
    let value = number(c, raw.max_response_bytes, ENV_MCP_MAX_RESPONSE_BYTES);
    let max_response_bytes = c.setting(
        "mcp.limits.max_response_bytes",
        value,
        DEFAULT_MCP_MAX_RESPONSE_BYTES,
        |n| bytes_at_most(n, MAX_MCP_MAX_RESPONSE_BYTES, "256 MiB"),
    );
    // 0 is allowed: keep only the result's size and digest.
    let value = number(c, raw.result_capture_bytes, ENV_MCP_RESULT_CAPTURE_BYTES);
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
        max_in_flight,
        result_capture_bytes,
        max_response_bytes,
    }
}

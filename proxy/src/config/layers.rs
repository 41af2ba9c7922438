//! Laying the environment and the flags over the file, filling in defaults and
//! validating, with every problem collected rather than stopping at the first.
//!
//! A problem about a value that came from the environment or a flag says so
//! (`admin.listen: invalid socket address "x" (from AEGIS_ADMIN_LISTEN)`), so the
//! operator knows which layer to fix.
//!
//! The `mcp:` section is resolved in the two submodules: [`upstreams`] (the
//! upstream list, merged by name across layers, and header secrets) and
//! [`mcp`] (everything else in it).

mod auth;
mod forward;
mod mcp;
mod tls;
mod upstreams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aegis_ledger::Synchronous;

use super::env;
use super::*;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    File,
    Env(&'static str),
    Flag(&'static str),
}

impl Origin {
    /// What a problem message appends to name the origin; nothing for the file,
    /// which the setting's path already locates.
    fn suffix(self) -> String {
        match self {
            Origin::File => String::new(),
            Origin::Env(name) | Origin::Flag(name) => format!(" (from {name})"),
        }
    }
}

/// A setting's value and the layer that supplied it.
#[derive(Debug)]
struct Layered<T> {
    value: T,
    origin: Origin,
}

/// The environment's value if set, else the file's.
fn over_file<T>(file: Option<T>, env: Option<T>, env_key: &'static str) -> Option<Layered<T>> {
    match env {
        Some(value) => Some(Layered {
            value,
            origin: Origin::Env(env_key),
        }),
        None => file.map(|value| Layered {
            value,
            origin: Origin::File,
        }),
    }
}

/// The file's value, for settings no other layer sets.
fn from_file<T>(file: Option<T>) -> Option<Layered<T>> {
    file.map(|value| Layered {
        value,
        origin: Origin::File,
    })
}

/// The flag's value if given, else whatever the layers below chose.
fn flag_over<T>(
    flag: Option<T>,
    name: &'static str,
    below: Option<Layered<T>>,
) -> Option<Layered<T>> {
    match flag {
        Some(value) => Some(Layered {
            value,
            origin: Origin::Flag(name),
        }),
        None => below,
    }
}

/// Collects problems while settings are checked one by one.
#[derive(Debug)]
struct Checker {
    problems: Vec<String>,
}

impl Checker {
    /// The checked value of the setting at `path`, or `default` when no layer
    /// set it. When `check` fails the problem is recorded and `default` returned,
    /// so checking goes on; the result is discarded in that case anyway.
    fn setting<R, T>(
        &mut self,
        path: &str,
        value: Option<Layered<R>>,
        default: T,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> T {
        let Some(Layered { value, origin }) = value else {
            return default;
        };
        match check(value) {
            Ok(checked) => checked,
            Err(message) => {
                self.problems
                    .push(format!("{path}: {message}{}", origin.suffix()));
                default
            }
        }
    }
}

fn socket_addr(text: String) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("invalid socket address {text:?}: expected IP:PORT such as 127.0.0.1:8080")
    })
}

/// A count or size: greater than zero and fitting `T`.
fn positive<T: TryFrom<u64>>(number: u64) -> Result<T, String> {
    if number == 0 {
        return Err("must be greater than 0, got 0".to_owned());
    }
    T::try_from(number).map_err(|_| format!("{number} is too large"))
}

/// A size in bytes: greater than zero and at most `max` (`max_text` says it in
/// MiB).
fn bytes_at_most(number: u64, max: usize, max_text: &str) -> Result<usize, String> {
    let bytes: usize = positive(number)?;
    if bytes > max {
        return Err(format!("must be at most {max} ({max_text}), got {bytes}"));
    }
    Ok(bytes)
}

fn body_limit(number: u64) -> Result<usize, String> {
    bytes_at_most(number, MAX_ADMIN_MAX_BODY_BYTES, "64 MiB")
}

/// `true` or `false`, ignoring case and surrounding spaces. The file's YAML
/// booleans arrive here as text too, so every layer reads the same way.
fn boolean(text: String) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {text:?}")),
    }
}

fn non_empty_path(path: PathBuf) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(path)
}

fn synchronous_mode(text: String) -> Result<Synchronous, String> {
    text.parse()
        .map_err(|_| format!("expected \"normal\" or \"full\", got {text:?}"))
}

fn log_level(text: String) -> Result<String, String> {
    let level = text.trim();
    if level.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(level.to_owned())
}

/// See [`Config::from_layers`]; `problems` holds any found before (a config file
/// that could not be read) and are reported first.
pub(super) fn resolve(
    file: RawConfig,
    source: Option<PathBuf>,
    env: &dyn Env,
    flags: &RunFlags,
    problems: Vec<String>,
) -> Result<Config, ConfigError> {
    let admin = file.admin.unwrap_or_default();
    let ledger = file.ledger.unwrap_or_default();
    let log = file.log.unwrap_or_default();
    let manifest = file.manifest.unwrap_or_default();
    let mut c = Checker { problems };
    let env_string = |key: &'static str| env::string(env, key);
    let env_path = |key: &'static str| env::string(env, key).map(PathBuf::from);
    // Numbers from the environment are parsed here, so their problems (named
    // after the variable) land in the same list as everything else.
    let env_number = |c: &mut Checker, key: &'static str| env::number(env, key, &mut c.problems);

    let value = over_file(admin.listen, env_string(ENV_ADMIN_LISTEN), ENV_ADMIN_LISTEN);
    let value = flag_over(flags.admin_listen.clone(), "--admin-listen", value);
    let listen_origin = value.as_ref().map_or(Origin::File, |v| v.origin);
    let listen = c.setting("admin.listen", value, DEFAULT_ADMIN_LISTEN, socket_addr);

    let value = over_file(
        admin.metrics_listen,
        env_string(ENV_ADMIN_METRICS_LISTEN),
        ENV_ADMIN_METRICS_LISTEN,
    );
    let value = flag_over(flags.metrics_listen.clone(), "--metrics-listen", value);
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

    let value = env_number(&mut c, ENV_ADMIN_MAX_BODY_BYTES);
    let value = over_file(admin.max_body_bytes, value, ENV_ADMIN_MAX_BODY_BYTES);
    let max_body_bytes = c.setting(
        "admin.max_body_bytes",
        value,
        DEFAULT_ADMIN_MAX_BODY_BYTES,
        body_limit,
    );

    let value = env_number(&mut c, ENV_ADMIN_MAX_CONNECTIONS);
    let value = over_file(admin.max_connections, value, ENV_ADMIN_MAX_CONNECTIONS);
    let max_connections = c.setting(
        "admin.max_connections",
        value,
        DEFAULT_ADMIN_MAX_CONNECTIONS,
        positive,
    );

    let value = env_number(&mut c, ENV_ADMIN_REQUEST_TIMEOUT_MS);
    let value = over_file(
        admin.request_timeout_ms,
        value,
        ENV_ADMIN_REQUEST_TIMEOUT_MS,
    );
    let request_timeout_ms = c.setting(
        "admin.request_timeout_ms",
        value,
        DEFAULT_ADMIN_REQUEST_TIMEOUT_MS,
        positive::<u64>,
    );

    let value = env_number(&mut c, ENV_ADMIN_LIST_LIMIT_DEFAULT);
    let default_value = over_file(
        admin.list_limit_default,
        value,
        ENV_ADMIN_LIST_LIMIT_DEFAULT,
    );
    let default_origin = default_value.as_ref().map_or(Origin::File, |v| v.origin);
    let list_limit_default = c.setting(
        "admin.list_limit_default",
        default_value,
        DEFAULT_ADMIN_LIST_LIMIT_DEFAULT,
        positive,
    );

    let value = env_number(&mut c, ENV_ADMIN_LIST_LIMIT_MAX);
    let value = over_file(admin.list_limit_max, value, ENV_ADMIN_LIST_LIMIT_MAX);
    let list_limit_max = c.setting(
        "admin.list_limit_max",
        value,
        DEFAULT_ADMIN_LIST_LIMIT_MAX,
        positive,
    );

    if list_limit_default > list_limit_max {
        c.problems.push(format!(
            "admin.list_limit_default: must not exceed admin.list_limit_max ({list_limit_max}), got {list_limit_default}{}",
            default_origin.suffix()
        ));
    }

    let sources = tls::Sources {
        env: [
            ENV_ADMIN_TLS_CERT,
            ENV_ADMIN_TLS_KEY,
            ENV_ADMIN_TLS_CLIENT_CA,
        ],
        flags: [
            ("--admin-tls-cert", flags.admin_tls_cert.clone()),
            ("--admin-tls-key", flags.admin_tls_key.clone()),
            ("--admin-tls-client-ca", flags.admin_tls_client_ca.clone()),
        ],
    };
    let client_ca_given = admin
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_ca_file.is_some())
        || env_string(ENV_ADMIN_TLS_CLIENT_CA).is_some()
        || flags.admin_tls_client_ca.is_some();
    let admin_tls = tls::listener("admin", admin.tls, sources, env, &mut c);
    let auth = auth::resolve(admin.auth, listen, listen_origin, client_ca_given, &mut c);

    let value = over_file(ledger.path, env_path(ENV_LEDGER_PATH), ENV_LEDGER_PATH);
    let value = flag_over(flags.ledger.clone(), "--ledger", value);
    let path = c.setting(
        "ledger.path",
        value,
        PathBuf::from(DEFAULT_LEDGER_PATH),
        non_empty_path,
    );

    let value = over_file(
        ledger.synchronous,
        env_string(ENV_LEDGER_SYNCHRONOUS),
        ENV_LEDGER_SYNCHRONOUS,
    );
    let value = flag_over(
        flags.ledger_synchronous.clone(),
        "--ledger-synchronous",
        value,
    );
    let synchronous = c.setting(
        "ledger.synchronous",
        value,
        DEFAULT_LEDGER_SYNCHRONOUS,
        synchronous_mode,
    );

    let value = env_number(&mut c, ENV_LEDGER_QUEUE_CAPACITY);
    let value = over_file(ledger.queue_capacity, value, ENV_LEDGER_QUEUE_CAPACITY);
    let queue_capacity = c.setting(
        "ledger.queue_capacity",
        value,
        DEFAULT_LEDGER_QUEUE_CAPACITY,
        positive,
    );

    let value = env_number(&mut c, ENV_LEDGER_MAX_BATCH);
    let value = over_file(ledger.max_batch, value, ENV_LEDGER_MAX_BATCH);
    let max_batch = c.setting(
        "ledger.max_batch",
        value,
        DEFAULT_LEDGER_MAX_BATCH,
        positive,
    );

    let value = env_number(&mut c, ENV_LEDGER_CHECKPOINT_PAGES);
    let value = over_file(ledger.checkpoint_pages, value, ENV_LEDGER_CHECKPOINT_PAGES);
    let checkpoint_pages = c.setting(
        "ledger.checkpoint_pages",
        value,
        DEFAULT_LEDGER_CHECKPOINT_PAGES,
        positive,
    );

    let value = over_file(
        ledger.fail_open.map(|open| open.to_string()),
        env_string(ENV_LEDGER_FAIL_OPEN),
        ENV_LEDGER_FAIL_OPEN,
    );
    let value = flag_over(
        flags.fail_open.then(|| "true".to_owned()),
        "--fail-open",
        value,
    );
    let fail_open = c.setting("ledger.fail_open", value, DEFAULT_LEDGER_FAIL_OPEN, boolean);

    let value = over_file(
        ledger.result_commit,
        env_string(ENV_LEDGER_RESULT_COMMIT),
        ENV_LEDGER_RESULT_COMMIT,
    );
    let result_commit = c.setting(
        "ledger.result_commit",
        value,
        DEFAULT_LEDGER_RESULT_COMMIT,
        |text| {
            crate::gate::ResultCommit::parse(text.trim())
                .ok_or_else(|| format!("{text:?} is not after_answer or before_answer"))
        },
    );

    let value = over_file(log.level, env_string(ENV_LOG_LEVEL), ENV_LOG_LEVEL);
    let value = flag_over(flags.log_level.clone(), "--log-level", value);
    let level = c.setting("log.level", value, DEFAULT_LOG_LEVEL.to_owned(), log_level);

    let value = over_file(log.format, env_string(ENV_LOG_FORMAT), ENV_LOG_FORMAT);
    let value = flag_over(flags.log_format.clone(), "--log-format", value);
    let format = c.setting("log.format", value, DEFAULT_LOG_FORMAT, |text| text.parse());

    let value = over_file(manifest.path, env_path(ENV_MANIFEST), ENV_MANIFEST);
    let value = flag_over(flags.manifest.clone(), "--manifest", value);
    let manifest = c.setting("manifest.path", value, None, |path| {
        non_empty_path(path).map(Some)
    });

    let mcp = mcp::resolve(file.mcp.unwrap_or_default(), env, flags, listen, &mut c);
    let mut taken = vec![("admin.listen", listen)];
    taken.extend(metrics_listen.map(|addr| ("admin.metrics_listen", addr)));
    taken.extend(mcp.listen.map(|addr| ("mcp.listen", addr)));
    let forward = file.forward.unwrap_or_default();
    let forward = forward::resolve(forward, env, flags, &taken, &mut c);
    mcp::check_identity_with_forward(&mcp, forward.listen, &mut c);

    let value = over_file(file.ready_file, env_path(ENV_READY_FILE), ENV_READY_FILE);
    let value = flag_over(flags.ready_file.clone(), "--ready-file", value);
    let ready_file = c.setting("ready_file", value, None, |path| {
        non_empty_path(path).map(Some)
    });

    if !c.problems.is_empty() {
        return Err(ConfigError {
            problems: c.problems,
        });
    }
    Ok(Config {
        admin: AdminConfig {
            listen,
            max_body_bytes,
            max_connections,
            request_timeout: Duration::from_millis(request_timeout_ms),
            list_limit_default,
            list_limit_max,
            tls: admin_tls,
            metrics_listen,
            auth,
        },
        forward,
        ledger: LedgerSettings {
            path,
            synchronous,
            queue_capacity,
            max_batch,
            checkpoint_pages,
            fail_open,
            result_commit,
        },
        log: LogConfig { level, format },
        manifest,
        mcp,
        ready_file,
        source,
    })
}

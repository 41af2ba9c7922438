//! Laying the environment and the flags over the file, filling in defaults and
//! validating, with every problem collected rather than stopping at the first.
//!
//! [`Checker::layer`] is the one place that layers a declared setting
//! (`settings`): the flag if given, else the environment variable if set,
//! else the file. A problem about a value that came from the environment or
//! a flag says so (`admin.listen: invalid socket address "x" (from
//! AEGIS_ADMIN_LISTEN)`), so the operator knows which layer to fix.
//!
//! The sections are resolved here and in the submodules: [`upstreams`] (the
//! upstream list, merged by name across layers, and header secrets), [`mcp`]
//! (the rest of `mcp:`), [`admin`] (with [`auth`]), [`forward`] and [`tls`].

mod admin;
mod auth;
mod forward;
mod mcp;
mod tls;
mod upstreams;

use std::net::SocketAddr;
use std::path::PathBuf;

use aegis_ledger::Synchronous;

use super::env;
use super::file::Node;
use super::settings::{FlagValue, Kind, Setting};
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

/// A raw value one of the layers gives a setting: the file's node, the
/// environment's text or the flag's value, before the setting's own check.
trait FromLayer: Sized {
    /// The file's node, whose shape the walk has checked against `kind`.
    fn from_file(node: &Node, kind: Kind) -> Option<Self>;
    /// The environment's text; the error follows the variable's name.
    fn from_env(text: String) -> Result<Self, String>;
    /// The flag's value; the error follows the setting's path.
    fn from_flag(value: FlagValue, setting: &Setting) -> Result<Self, String>;
}

impl FromLayer for String {
    fn from_file(node: &Node, kind: Kind) -> Option<Self> {
        match kind {
            // The file's YAML booleans arrive as text too, so every layer
            // reads the same way.
            Kind::Bool => node.bool_text(),
            _ => node.text(),
        }
    }

    fn from_env(text: String) -> Result<Self, String> {
        Ok(text)
    }

    fn from_flag(value: FlagValue, _: &Setting) -> Result<Self, String> {
        Ok(match value {
            FlagValue::Text(text) => text,
            FlagValue::Path(path) => path.to_string_lossy().into_owned(),
            FlagValue::On => "true".to_owned(),
        })
    }
}

impl FromLayer for PathBuf {
    fn from_file(node: &Node, _: Kind) -> Option<Self> {
        node.text().map(PathBuf::from)
    }

    fn from_env(text: String) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }

    fn from_flag(value: FlagValue, _: &Setting) -> Result<Self, String> {
        Ok(match value {
            FlagValue::Path(path) => path,
            FlagValue::Text(text) => PathBuf::from(text),
            FlagValue::On => PathBuf::from("true"),
        })
    }
}

impl FromLayer for u64 {
    fn from_file(node: &Node, _: Kind) -> Option<Self> {
        node.integer()
    }

    /// Zero parses here and is rejected by the range check of the setting
    /// it feeds.
    fn from_env(text: String) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("expected a positive integer, got {text:?}"))
    }

    fn from_flag(value: FlagValue, setting: &Setting) -> Result<Self, String> {
        let text = String::from_flag(value, setting)?;
        let unit = if setting.path.ends_with("_ms") {
            " of milliseconds"
        } else {
            ""
        };
        text.trim()
            .parse()
            .map_err(|_| format!("expected a whole number{unit}, got {text:?}"))
    }
}

/// Collects problems while settings are layered and checked one by one.
struct Checker<'a> {
    problems: Vec<String>,
    file: &'a RawConfig,
    env: &'a dyn Env,
    flags: &'a RunFlags,
}

impl std::fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl Checker<'_> {
    /// `setting`'s raw value from the highest layer that gives one: flag >
    /// environment > file. An environment or flag value that does not even
    /// parse as the setting's kind is a problem naming it, and counts as not
    /// given. (The environment is read first, so its problems come first.)
    fn layer<R: FromLayer>(&mut self, setting: &Setting) -> Option<Layered<R>> {
        debug_assert!(
            settings::find(setting.path).is_some(),
            "{} is not in settings::all()",
            setting.path
        );
        let from_env = setting.env.and_then(|key| {
            let text = env::string(self.env, key)?;
            R::from_env(text)
                .map_err(|message| self.problems.push(format!("{key}: {message}")))
                .ok()
                .map(|value| Layered {
                    value,
                    origin: Origin::Env(key),
                })
        });
        let from_flag = setting.flag.and_then(|flag| {
            let given = (flag.value)(self.flags)?;
            let origin = Origin::Flag(flag.name);
            R::from_flag(given, setting)
                .map_err(|message| {
                    let path = setting.path;
                    self.problems
                        .push(format!("{path}: {message}{}", origin.suffix()));
                })
                .ok()
                .map(|value| Layered { value, origin })
        });
        from_flag.or(from_env).or_else(|| {
            let node = self.file.value(setting)?;
            R::from_file(node, setting.kind).map(|value| Layered {
                value,
                origin: Origin::File,
            })
        })
    }

    /// `setting`'s checked value, or `default` when no layer sets it.
    fn get<R: FromLayer, T>(
        &mut self,
        setting: &Setting,
        default: T,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> T {
        let value = self.layer(setting);
        self.setting(setting.path, value, default, check)
    }

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

/// `true` or `false`, ignoring case and surrounding spaces.
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
/// that could not be read) and are reported first, then the file's own.
pub(super) fn resolve(
    file: RawConfig,
    source: Option<PathBuf>,
    env: &dyn Env,
    flags: &RunFlags,
    mut problems: Vec<String>,
) -> Result<Config, ConfigError> {
    problems.extend(file.problems(source.as_deref()));
    if flags.addr.is_some() {
        problems.push(
            "--addr: is aegisd's flag; the /v1 API here is --admin-listen (e.g. \
             127.0.0.1:8080), and agents' MCP traffic comes to --listen"
                .to_owned(),
        );
    }
    let mut c = Checker {
        problems,
        file: &file,
        env,
        flags,
    };
    let admin = admin::resolve(&mut c);
    let ledger = ledger(&mut c);
    let approval = approval(&mut c);
    let level = c.get(
        &settings::LOG_LEVEL,
        DEFAULT_LOG_LEVEL.to_owned(),
        log_level,
    );
    let format = c.get(&settings::LOG_FORMAT, DEFAULT_LOG_FORMAT, |text: String| {
        text.parse()
    });
    let manifest = c.get(&settings::MANIFEST_PATH, None, |path| {
        non_empty_path(path).map(Some)
    });

    let mcp = mcp::resolve(admin.listen, &mut c);
    let mut taken = vec![("admin.listen", admin.listen)];
    taken.extend(
        admin
            .metrics_listen
            .map(|addr| ("admin.metrics_listen", addr)),
    );
    taken.extend(mcp.listen.map(|addr| ("mcp.listen", addr)));
    let forward = forward::resolve(&taken, &mut c);
    mcp::check_identity_with_forward(&mcp, forward.listen, &mut c);

    let ready_file = c.get(&settings::READY_FILE, None, |path| {
        non_empty_path(path).map(Some)
    });

    if !c.problems.is_empty() {
        return Err(ConfigError {
            problems: c.problems,
        });
    }
    Ok(Config {
        admin,
        approval,
        forward,
        ledger,
        log: LogConfig { level, format },
        manifest,
        mcp,
        ready_file,
        source,
    })
}

fn approval(c: &mut Checker<'_>) -> ApprovalConfig {
    let mode = c.get(
        &settings::APPROVAL_MODE,
        DEFAULT_APPROVAL_MODE,
        |text: String| {
            aegis_policy::ApprovalMode::parse(text.trim())
                .ok_or_else(|| format!("{text:?} is not hold or retry"))
        },
    );
    let ttl_ms = c.get(
        &settings::APPROVAL_TTL_MS,
        DEFAULT_APPROVAL_TTL_MS,
        positive::<u64>,
    );
    let hold_timeout_ms = c.get(
        &settings::APPROVAL_HOLD_TIMEOUT_MS,
        // Unset, it is cut to a shorter ttl rather than refused.
        DEFAULT_APPROVAL_HOLD_TIMEOUT_MS.min(ttl_ms),
        positive::<u64>,
    );
    if hold_timeout_ms > ttl_ms {
        // A call held past its approval's expiry could only be answered
        // expired.
        c.problems.push(format!(
            "approval.hold_timeout_ms: must not exceed approval.ttl_ms ({ttl_ms}), got {hold_timeout_ms}"
        ));
    }
    let max_pending_per_session = c.get(
        &settings::APPROVAL_MAX_PENDING_PER_SESSION,
        DEFAULT_APPROVAL_MAX_PENDING_PER_SESSION,
        positive::<u64>,
    );
    let max_pending = c.get(
        &settings::APPROVAL_MAX_PENDING,
        DEFAULT_APPROVAL_MAX_PENDING,
        positive::<u64>,
    );
    if max_pending_per_session > max_pending {
        c.problems.push(format!(
            "approval.max_pending_per_session: must not exceed approval.max_pending \
             ({max_pending}), got {max_pending_per_session}"
        ));
    }
    let webhook_url = c.get(&settings::APPROVAL_WEBHOOK_URL, None, |text: String| {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(Some(uri)),
            _ => Err(format!(
                "{text:?} must be an http:// or https:// URL with a host"
            )),
        }
    });
    ApprovalConfig {
        mode,
        ttl: Duration::from_millis(ttl_ms),
        hold_timeout: Duration::from_millis(hold_timeout_ms),
        max_pending_per_session,
        max_pending,
        webhook_url,
    }
}

fn ledger(c: &mut Checker<'_>) -> LedgerSettings {
    let path = c.get(
        &settings::LEDGER_PATH,
        PathBuf::from(DEFAULT_LEDGER_PATH),
        non_empty_path,
    );
    let synchronous = c.get(
        &settings::LEDGER_SYNCHRONOUS,
        DEFAULT_LEDGER_SYNCHRONOUS,
        synchronous_mode,
    );
    let queue_capacity = c.get(
        &settings::LEDGER_QUEUE_CAPACITY,
        DEFAULT_LEDGER_QUEUE_CAPACITY,
        positive,
    );
    let max_batch = c.get(
        &settings::LEDGER_MAX_BATCH,
        DEFAULT_LEDGER_MAX_BATCH,
        positive,
    );
    let checkpoint_pages = c.get(
        &settings::LEDGER_CHECKPOINT_PAGES,
        DEFAULT_LEDGER_CHECKPOINT_PAGES,
        positive,
    );
    let fail_open = c.get(
        &settings::LEDGER_FAIL_OPEN,
        DEFAULT_LEDGER_FAIL_OPEN,
        boolean,
    );
    let result_commit = c.get(
        &settings::LEDGER_RESULT_COMMIT,
        DEFAULT_LEDGER_RESULT_COMMIT,
        |text: String| {
            crate::gate::ResultCommit::parse(text.trim())
                .ok_or_else(|| format!("{text:?} is not after_answer or before_answer"))
        },
    );
    LedgerSettings {
        path,
        synchronous,
        queue_capacity,
        max_batch,
        checkpoint_pages,
        fail_open,
        result_commit,
    }
}

//! `mcp.upstreams`: the file's list, then `AEGIS_MCP_UPSTREAMS`, then the
//! `--upstream` flags. An entry of a later layer replaces the earlier entry of
//! the same name whole (default timeout, no extra headers) or is added after
//! them; within one layer a name may appear once.
//!
//! Header values are secrets: read from the environment (through [`Env`]) or
//! a file, never from the config file itself, and never quoted in a problem.
//! URLs are quoted with any `user:password@` masked.

use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::{Checker, Layered, Origin, positive};
use crate::config::env::{self, Env};
use crate::config::raw::{RawHeader, RawUpstream};
use crate::config::tls;
use crate::config::*;

/// The merged upstreams.
pub(super) struct Upstreams {
    /// The valid upstreams, in merged order.
    pub configs: Vec<UpstreamConfig>,
    /// The name of every merged entry, valid or not otherwise, so that
    /// `mcp.default_upstream` is not reported for a typo elsewhere.
    pub names: Vec<String>,
    /// Whether any layer gave an entry at all, even an invalid one.
    pub any_given: bool,
}

/// One merged entry: `config` is `None` when the entry has problems.
struct Entry {
    name: String,
    config: Option<UpstreamConfig>,
}

pub(super) fn resolve(c: &mut Checker<'_>) -> Upstreams {
    let (env, flags) = (c.env, c.flags);
    let file = c.file.upstreams();
    let mut any_given = !file.is_empty();
    let mut merged: Vec<Entry> = Vec::new();
    let mut file_index: Vec<(String, usize)> = Vec::new();
    for (index, raw) in file.into_iter().enumerate() {
        let Some(entry) = file_entry(index, raw, env, c) else {
            continue;
        };
        if let Some((_, first)) = file_index.iter().find(|(name, _)| *name == entry.name) {
            c.problems.push(format!(
                "mcp.upstreams[{index}].name: {:?} is also the name of mcp.upstreams[{first}]",
                entry.name
            ));
            continue;
        }
        file_index.push((entry.name.clone(), index));
        merged.push(entry);
    }

    if let Some(list) = env::string(env, ENV_MCP_UPSTREAMS) {
        let pairs: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .collect();
        any_given |= !pairs.is_empty();
        layer_pairs(pairs, Origin::Env(ENV_MCP_UPSTREAMS), &mut merged, c);
    }

    any_given |= !flags.upstream.is_empty();
    let pairs = flags.upstream.iter().map(|pair| pair.trim());
    layer_pairs(pairs, Origin::Flag("--upstream"), &mut merged, c);

    Upstreams {
        names: merged.iter().map(|entry| entry.name.clone()).collect(),
        configs: merged
            .into_iter()
            .filter_map(|entry| entry.config)
            .collect(),
        any_given,
    }
}

/// One entry of the file's list; `None` when its name is unusable (the
/// problem is recorded).
fn file_entry(index: usize, raw: RawUpstream, env: &dyn Env, c: &mut Checker<'_>) -> Option<Entry> {
    let path = format!("mcp.upstreams[{index}]");
    // Reported for its shape (a missing name or URL, an unknown field):
    // nothing more to say about the entry, but its name is known.
    let (Some(raw_name), Some(raw_url), true) = (&raw.name, &raw.url, raw.sound) else {
        let name = raw
            .name
            .as_deref()
            .and_then(|name| upstream_name(name).ok())?;
        return Some(Entry { name, config: None });
    };
    let before = c.problems.len();
    let name = upstream_name(raw_name)
        .map_err(|message| c.problems.push(format!("{path}.name: {message}")))
        .ok();
    let url = upstream_url(raw_url)
        .map_err(|message| c.problems.push(format!("{path}.url: {message}")))
        .ok();
    let timeout_ms = c.setting(
        &format!("{path}.timeout_ms"),
        raw.timeout_ms.map(|value| Layered {
            value,
            origin: Origin::File,
        }),
        DEFAULT_UPSTREAM_TIMEOUT_MS,
        positive::<u64>,
    );
    let headers = headers(&path, raw.headers.unwrap_or_default(), env, c);
    let tls = match &url {
        Some(url) => tls::upstream(&path, raw.tls, is_https(url), &mut c.problems),
        None => None,
    };
    let name = name?;
    let config = match url {
        Some(url) if c.problems.len() == before => Some(UpstreamConfig {
            name: name.clone(),
            url,
            timeout: Duration::from_millis(timeout_ms),
            headers,
            tls,
        }),
        _ => None,
    };
    Some(Entry { name, config })
}

/// `NAME=URL` entries of one layer (the environment's list or the flags),
/// each replacing the entry of the same name or added after the others.
fn layer_pairs<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
    origin: Origin,
    merged: &mut Vec<Entry>,
    c: &mut Checker<'_>,
) {
    let mut seen: Vec<String> = Vec::new();
    for pair in pairs {
        let problem = |message: String| {
            format!(
                "mcp.upstreams: {:?}: {message}{}",
                mask_userinfo(pair),
                origin.suffix()
            )
        };
        let Some((name, url)) = pair.split_once('=') else {
            c.problems.push(problem(
                "expected NAME=URL, such as tools=http://127.0.0.1:9000/mcp".to_owned(),
            ));
            continue;
        };
        let name = upstream_name(name)
            .map_err(|message| c.problems.push(problem(message)))
            .ok();
        let url = upstream_url(url)
            .map_err(|message| c.problems.push(problem(message)))
            .ok();
        let Some(name) = name else {
            continue;
        };
        if seen.contains(&name) {
            c.problems
                .push(problem(format!("upstream {name:?} is given twice")));
            continue;
        }
        seen.push(name.clone());
        let before = c.problems.len();
        let tls = url.as_ref().and_then(|url| {
            let path = format!("mcp.upstreams[{name}]");
            tls::upstream(&path, None, is_https(url), &mut c.problems)
        });
        let config = url
            .filter(|_| c.problems.len() == before)
            .map(|url| UpstreamConfig {
                name: name.clone(),
                url,
                timeout: Duration::from_millis(DEFAULT_UPSTREAM_TIMEOUT_MS),
                headers: Vec::new(),
                tls,
            });
        let entry = Entry { name, config };
        match merged.iter_mut().find(|known| known.name == entry.name) {
            Some(known) => *known = entry,
            None => merged.push(entry),
        }
    }
}

/// 1–63 characters of `[a-z0-9_-]`, starting with a letter or digit
/// (surrounding spaces ignored).
fn upstream_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let valid = (1..=MAX_UPSTREAM_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-'
        });
    if !valid {
        return Err(format!(
            "invalid name {name:?}: expected 1 to {MAX_UPSTREAM_NAME_LEN} of a-z, 0-9, '_' \
             and '-', starting with a letter or digit (it is served at /mcp/NAME)"
        ));
    }
    if name == crate::gate::EGRESS_UPSTREAM {
        return Err(format!(
            "invalid name {name:?}: reserved for the egress forward proxy's records"
        ));
    }
    Ok(name.to_owned())
}

/// Whether `url` is `https://` (its scheme was checked by [`upstream_url`]).
fn is_https(url: &Uri) -> bool {
    url.scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https"))
}

/// An absolute `http://` or `https://` URL with a host and no credentials; the path kept
/// (surrounding spaces ignored).
fn upstream_url(text: &str) -> Result<Uri, String> {
    let text = text.trim();
    let shown = mask_userinfo(text);
    let uri: Uri = text
        .parse()
        .map_err(|err| format!("invalid URL {shown:?}: {err}"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("URL scheme must be http or https, got {other:?}")),
        None => {
            return Err(format!(
                "{shown:?} is not an absolute URL: expected http[s]://HOST[:PORT][/PATH]"
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("URL {shown:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(
            "URL must not hold credentials (user:password@); send them as a header \
             with value_from_env or value_from_file"
                .to_owned(),
        );
    }
    if authority.host().is_empty() {
        return Err(format!("URL {shown:?} has no host"));
    }
    // `Authority::port` is `None` for a port that does not parse, so look at
    // what follows the host: nothing, or `:` and a valid port.
    let after_host = authority
        .as_str()
        .strip_prefix(authority.host())
        .unwrap_or_default();
    if !after_host.is_empty() && authority.port_u16().is_none() {
        return Err(format!("URL {shown:?} has an invalid port"));
    }
    Ok(uri)
}

/// `text` with the `user:password@` of a URL's authority replaced by `***@`,
/// for problem messages.
fn mask_userinfo(text: &str) -> String {
    let Some(start) = text.find("://").map(|at| at + 3) else {
        return text.to_owned();
    };
    let rest = &text[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &rest[at..]),
        None => text.to_owned(),
    }
}

/// An upstream's extra headers; problems are recorded under `path`.
fn headers(
    path: &str,
    raw: Vec<RawHeader>,
    env: &dyn Env,
    c: &mut Checker<'_>,
) -> Vec<ExtraHeader> {
    let mut headers: Vec<ExtraHeader> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let path = format!("{path}.headers[{index}]");
        // Missing (the walk said so).
        let Some(raw_name) = &raw.name else {
            continue;
        };
        let name = extra_header_name(raw_name)
            .and_then(|name| {
                if headers.iter().any(|known| known.name == name) {
                    return Err(format!("{name:?} is listed twice; give each header once"));
                }
                Ok(name)
            })
            .map_err(|message| c.problems.push(format!("{path}.name: {message}")))
            .ok();
        let value = secret_value(&path, &raw, env)
            .map_err(|problem| c.problems.push(problem))
            .ok();
        if let (Some(name), Some(value)) = (name, value) {
            headers.push(ExtraHeader { name, value });
        }
    }
    headers
}

/// A valid header name that the proxy does not manage itself.
fn extra_header_name(text: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| format!("invalid header name {text:?}"))?;
    if PROXY_MANAGED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("proxy-") {
        return Err(format!(
            "{text:?} is managed by the proxy itself and cannot be set"
        ));
    }
    Ok(name)
}

/// The header's value from exactly one of `value_from_env` and
/// `value_from_file`. The problem (with its path) never quotes the value.
fn secret_value(path: &str, raw: &RawHeader, env: &dyn Env) -> Result<SecretValue, String> {
    let from_env = raw.value_from_env.as_deref();
    let from_file = raw.value_from_file.as_deref();
    if raw.value.is_some() {
        return Err(format!(
            "{path}.value: inline header values are not accepted, so secrets stay out of \
             config files; use value_from_env or value_from_file"
        ));
    }
    match (from_env, from_file) {
        (Some(var), None) => {
            value_from_env(var, env).map_err(|message| format!("{path}.value_from_env: {message}"))
        }
        (None, Some(file)) => {
            value_from_file(file).map_err(|message| format!("{path}.value_from_file: {message}"))
        }
        (None, None) => Err(format!("{path}: needs value_from_env or value_from_file")),
        (Some(_), Some(_)) => Err(format!(
            "{path}: give one of value_from_env and value_from_file, not both"
        )),
    }
}

fn value_from_env(var: &str, env: &dyn Env) -> Result<SecretValue, String> {
    let var = var.trim();
    if var.is_empty() {
        return Err("must name an environment variable".to_owned());
    }
    let Some(value) = env.var(var) else {
        return Err(format!("environment variable {var} is not set"));
    };
    if value.trim().is_empty() {
        return Err(format!("environment variable {var} is empty"));
    }
    HeaderValue::from_str(&value)
        .map(SecretValue::new)
        .map_err(|_| format!("the value of {var} is not a valid header value{NOT_VALID_WHY}"))
}

/// The whole file, less one trailing newline (`\n` or `\r\n`).
fn value_from_file(file: &Path) -> Result<SecretValue, String> {
    let shown = file.display();
    let bytes = std::fs::read(file).map_err(|err| format!("cannot read \"{shown}\": {err}"))?;
    let bytes = bytes
        .strip_suffix(b"\n")
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .unwrap_or(&bytes);
    if bytes.trim_ascii().is_empty() {
        return Err(format!("\"{shown}\" is empty"));
    }
    HeaderValue::from_bytes(bytes)
        .map(SecretValue::new)
        .map_err(|_| {
            format!("the contents of \"{shown}\" are not a valid header value{NOT_VALID_WHY}")
        })
}

const NOT_VALID_WHY: &str = " (control characters and line breaks are not allowed)";

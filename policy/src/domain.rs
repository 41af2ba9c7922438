//! Network destinations and domain allowlists (rule 2 of
//! [`decide`](mod@crate::decide): `EGRESS_DENY`).
//!
//! A network tool call is allowed only when its *real* destination host is in
//! `permissions.net.domains`. Both sides are normalised the same way before
//! they are compared, and comparison is exact string equality on the
//! normalised form:
//!
//! - **Hosts** ([`Host::parse`], [`destination`]) go through the WHATWG host
//!   parser of the `url` crate: UTS-46 (IDNA) mapping to lower-case ASCII and
//!   punycode, which rejects disallowed code points and invalid `xn--`
//!   labels; IPv4 in any form a client would accept (`0x7f.1`, `127.1`,
//!   `2130706433`) becomes [`Host::Ip`]. Then one trailing dot is trimmed
//!   (`x.com..` is an error), and every label must be 1–63 bytes of
//!   `[a-z0-9-_]`, the name at most 253 bytes. Port and userinfo are removed.
//! - **Patterns** ([`DomainPattern::parse`]) are an exact host, `*.suffix`
//!   (any depth of subdomain, never the apex) or an IP literal, which matches
//!   only that same IP. Anything else — schemes, paths, ports, a wildcard
//!   anywhere but a leading `*.` label, a wildcard over an IP — is rejected
//!   when the manifest loads, with the reason.
//!
//! Bypasses this defends against, each pinned by a test:
//!
//! - `https://allowed.com@evil.com/`: only the URL's real host counts
//!   (`evil.com`); userinfo never does. `http://evil.com\@allowed.com` is
//!   `evil.com` too (a backslash ends the authority in special schemes).
//! - `evil.com/allowed.com` as a bare host: the authority ends at the first
//!   `/`, `?`, `#` or `\`, so it is `evil.com`.
//! - `allowed.com.evil.com` and `evilallowed.com`: suffixes match only on a
//!   label boundary and only at the end of the name.
//! - `ALLOWED.COM.`: lower-cased and trailing dot trimmed, so it *is*
//!   `allowed.com`, as DNS and every client would see it.
//! - Unicode look-alikes: Cyrillic `аllowed.com` becomes `xn--llowed-…` and
//!   never equals `allowed.com`. Fullwidth letters and dots (`ａｌｌｏｗｅｄ．ｃｏｍ`)
//!   are *compatibility-mapped* by IDNA to `allowed.com` — that is where a
//!   URL-parsing client really connects, so they are treated as that host.
//!   Likewise default-ignorable code points (zero-width space, soft hyphen)
//!   are dropped, and `ß` stays `xn--zca` (nontransitional), never `ss`.
//! - IPs written as names: a name whose last label is numeric is parsed as
//!   IPv4 (or rejected), so `127.1` cannot slip past IP rules as a "domain";
//!   a domain pattern never matches an IP.
//!
//! Percent-encoding is rejected in bare hosts and patterns; inside a URL the
//! `url` crate decodes it before the host is taken.
//!
//! [`Host`]'s `Display` is the normalised text; IPv6 is written in brackets
//! (`[::1]`), as in an authority, so the text parses back to the same host.

use foldhash::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

/// Longest DNS name in presentation form, without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;
/// Where an authority ends inside a bare host string (`\` as in special URLs).
const AUTHORITY_END: &[char] = &['/', '?', '#', '\\'];

/// Why a host, URL or pattern was refused; the caller denies (`EGRESS_DENY`)
/// or reports a manifest problem. Plain words, safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, DomainError> {
    Err(DomainError(msg.into()))
}

/// A normalised destination host: lower-case ASCII (IDNA/punycode), no
/// trailing dot, no port, no userinfo; or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Domain(String),
    Ip(IpAddr),
}

impl Host {
    /// Normalises a bare host or authority (`Example.COM.`, `bücher.de`,
    /// `user:pw@host:8443`, `[::1]:443`, `10.0.0.1`, also a bare `::1`).
    /// Anything after the authority (`/`, `?`, `#`, `\`) is ignored; a scheme
    /// (`https://…`) is an error: URLs belong in `args.url`.
    pub fn parse(s: &str) -> Result<Host, DomainError> {
        check_plain_text(s, "host")?;
        if s.contains("://") {
            return err(format!("host {s:?} is a URL, not a host"));
        }
        let authority = s.split(AUTHORITY_END).next().unwrap_or_default();
        // Userinfo ends at the last '@' of the authority.
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        if host_port.is_empty() {
            return err(format!("no host in {s:?}"));
        }
        if let Ok(v6) = host_port.parse::<Ipv6Addr>() {
            return Ok(Host::Ip(IpAddr::V6(v6)));
        }
        let host = if host_port.starts_with('[') {
            match host_port.find(']') {
                Some(end) => {
                    check_port(&host_port[end + 1..], s)?;
                    &host_port[..=end]
                }
                None => return err(format!("unclosed '[' in {s:?}")),
            }
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) => {
                    check_port(&format!(":{port}"), s)?;
                    host
                }
                None => host_port,
            }
        };
        parse_hostname(host)
    }

    /// The domain name, when this is not an IP.
    pub fn as_domain(&self) -> Option<&str> {
        match self {
            Host::Domain(d) => Some(d),
            Host::Ip(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Rejects empty text, whitespace, control characters and percent-encoding.
fn check_plain_text(s: &str, what: &str) -> Result<(), DomainError> {
    if s.is_empty() {
        return err(format!("empty {what}"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(format!(
            "{what} {s:?} contains whitespace or control characters"
        ));
    }
    if s.contains('%') {
        return err(format!("{what} {s:?} contains percent-encoding"));
    }
    Ok(())
}

/// `rest` is what follows the host: nothing, or `:` and a port number.
fn check_port(rest: &str, whole: &str) -> Result<(), DomainError> {
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Ok(()),
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok() => {
            Ok(())
        }
        _ => err(format!("invalid port in {whole:?}")),
    }
}

/// A host without port or userinfo (`[v6]` allowed), through the WHATWG host
/// parser (IDNA, IPv4 forms), then [`normalise_name`].
fn parse_hostname(host: &str) -> Result<Host, DomainError> {
    match url::Host::parse(host) {
        Ok(url::Host::Ipv4(ip)) => Ok(Host::Ip(IpAddr::V4(ip))),
        Ok(url::Host::Ipv6(ip)) => Ok(Host::Ip(IpAddr::V6(ip))),
        Ok(url::Host::Domain(d)) => normalise_name(&d).map(Host::Domain),
        Err(e) => err(format!("invalid host {host:?}: {e}")),
    }
}

/// Takes an IDNA-processed name: trims one trailing dot and checks DNS shape.
fn normalise_name(name: &str) -> Result<String, DomainError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return err(format!("empty host name {name:?}"));
    }
    if trimmed.len() > MAX_NAME_LEN {
        return err(format!("host name longer than {MAX_NAME_LEN} characters"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return err(format!("empty label in host name {name:?}"));
        }
        if label.len() > MAX_LABEL_LEN {
            return err(format!(
                "label longer than {MAX_LABEL_LEN} characters in {name:?}"
            ));
        }
        let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
        if !label.bytes().all(ok) {
            return err(format!(
                "host name {name:?} has characters outside [a-z0-9-_]"
            ));
        }
    }
    Ok(trimmed.to_owned())
}

/// Where a network tool call goes, from its arguments: `args.url` (parsed
/// with the `url` crate; only its real host counts), else `args.domain`,
/// else `args.host` (both through [`Host::parse`]). The first key present
/// decides; a present key that is not a non-empty string, a URL without a
/// host, or no key at all is an error, and the caller denies.
pub fn destination(args: &Value) -> Result<Host, DomainError> {
    if let Some(v) = args.get("url") {
        let Some(s) = v.as_str() else {
            return err("args.url is not a string");
        };
        return url_host(s);
    }
    for key in ["domain", "host"] {
        if let Some(v) = args.get(key) {
            return match v.as_str() {
                Some(s) => Host::parse(s),
                None => err(format!("args.{key} is not a string")),
            };
        }
    }
    err("no destination: none of args.url, args.domain, args.host")
}

fn url_host(s: &str) -> Result<Host, DomainError> {
    if s.is_empty() {
        return err("empty args.url");
    }
    let url = match url::Url::parse(s) {
        Ok(url) => url,
        Err(e) => return err(format!("args.url is not an absolute URL: {e}")),
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(Host::Ip(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(Host::Ip(IpAddr::V6(ip))),
        // Special schemes (http, https, ws, wss, ftp) already ran the host
        // parser (IDNA, IPv4 forms): only the name's shape is left to check.
        // For other schemes the host is opaque, so parse it here.
        Some(url::Host::Domain(d)) if url.is_special() => normalise_name(d).map(Host::Domain),
        Some(url::Host::Domain(d)) => parse_hostname(d),
        None => err("args.url has no host"),
    }
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// Exactly this normalised name.
    Exact(String),
    /// `*.example.com`, stored with its leading dot: `".example.com"`. Any
    /// depth of subdomain, never the apex.
    Suffix(String),
    /// Only this IP, compared literally.
    Ip(IpAddr),
}

impl DomainPattern {
    /// Validates and normalises a manifest entry. Malformed patterns are
    /// errors with a reason: empty, `*` alone, `*.` with no suffix, a
    /// wildcard anywhere but a leading `*.`, whitespace, a scheme, path,
    /// userinfo or port, invalid IDNA, over-long labels or names, a wildcard
    /// over an IP, IPv4 not written as four decimal numbers.
    pub fn parse(s: &str) -> Result<DomainPattern, DomainError> {
        check_plain_text(s, "domain pattern")?;
        let bad = |why: &str| err(format!("domain pattern {s:?}: {why}"));
        if s == "*" {
            return bad("a lone '*' would allow every host");
        }
        if s.contains("://") {
            return bad("has a scheme; write the bare host");
        }
        if s.contains(AUTHORITY_END) {
            return bad("has a path, query or fragment; write the bare host");
        }
        if s.contains('@') {
            return bad("has userinfo; write the bare host");
        }
        let (wildcard, body) = match s.strip_prefix("*.") {
            Some("") => return bad("'*.' has no suffix"),
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if body.contains('*') {
            return bad("a wildcard is only allowed as a whole leading '*.' label");
        }
        if body.starts_with('[') || body.contains(':') {
            let inner = body.strip_prefix('[').and_then(|b| b.strip_suffix(']'));
            return match inner.unwrap_or(body).parse::<Ipv6Addr>() {
                Ok(_) if wildcard => bad("a wildcard cannot apply to an IP address"),
                Ok(ip) => Ok(DomainPattern::Ip(IpAddr::V6(ip))),
                Err(_) => bad("has a port or is not a valid IPv6 address"),
            };
        }
        match parse_hostname(body) {
            Ok(Host::Ip(_)) if wildcard => bad("a wildcard cannot apply to an IP address"),
            Ok(Host::Ip(ip)) => match body.parse::<Ipv4Addr>() {
                Ok(v4) if IpAddr::V4(v4) == ip => Ok(DomainPattern::Ip(ip)),
                _ => bad("write an IPv4 address as four decimal numbers"),
            },
            Ok(Host::Domain(d)) if wildcard => Ok(DomainPattern::Suffix(format!(".{d}"))),
            Ok(Host::Domain(d)) => Ok(DomainPattern::Exact(d)),
            Err(e) => err(format!("domain pattern {s:?}: {e}")),
        }
    }

    /// Whether `host` is covered by this pattern. Domain patterns never match
    /// an IP and IP patterns never match a name.
    pub fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (DomainPattern::Exact(p), Host::Domain(d)) => p == d,
            (DomainPattern::Suffix(p), Host::Domain(d)) => d.len() > p.len() && d.ends_with(p),
            (DomainPattern::Ip(p), Host::Ip(ip)) => p == ip,
            _ => false,
        }
    }
}

impl fmt::Display for DomainPattern {
    /// The normalised pattern as a manifest would write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(d) => f.write_str(d),
            DomainPattern::Suffix(s) => write!(f, "*{s}"),
            DomainPattern::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A compiled allowlist, built once when a manifest loads. Matching does not
/// allocate: an exact-name lookup, then one suffix lookup per label boundary
/// of the host (`a.b.c.com` checks `.b.c.com`, `.c.com`, `.com`).
#[derive(Debug, Clone, Default)]
pub struct DomainSet {
    exact: HashSet<String>,
    /// Suffixes with their leading dot, as in [`DomainPattern::Suffix`].
    suffixes: HashSet<String>,
    ips: HashSet<IpAddr>,
}

impl DomainSet {
    pub fn new(patterns: impl IntoIterator<Item = DomainPattern>) -> DomainSet {
        let mut set = DomainSet::default();
        for pattern in patterns {
            match pattern {
                DomainPattern::Exact(d) => set.exact.insert(d),
                DomainPattern::Suffix(s) => set.suffixes.insert(s),
                DomainPattern::Ip(ip) => set.ips.insert(ip),
            };
        }
        set
    }

    /// Whether any pattern matches `host`.
    pub fn is_allowed(&self, host: &Host) -> bool {
        match host {
            Host::Ip(ip) => self.ips.contains(ip),
            Host::Domain(d) => {
                self.exact.contains(d.as_str())
                    || (!self.suffixes.is_empty()
                        && d.match_indices('.')
                            .any(|(i, _)| self.suffixes.contains(&d[i..])))
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty() && self.ips.is_empty()
    }

    /// Whether the manifest names this host or IP explicitly (an exact or IP
    /// entry, not a wildcard): SSRF guards let such hosts through.
    pub fn names_explicitly(&self, host: &Host) -> bool {
        match host {
            Host::Ip(ip) => self.ips.contains(ip),
            Host::Domain(d) => self.exact.contains(d.as_str()),
        }
    }
}

#[cfg(test)]
mod tests;

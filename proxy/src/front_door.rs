//! The MCP listener's front door: `Host` and `Origin` are checked before a
//! request is routed, authenticated or forwarded, so a web page the agent's
//! user opens cannot reach the sidecar through DNS rebinding (a name the
//! attacker controls, resolved to 127.0.0.1) and drive tools with the
//! browser's requests. The sidecar rewrites `Host` for the upstream, so an
//! upstream that checks it itself would never see the attacker's name: this
//! is the only place the check can happen.
//!
//! - **Host** (`Host`, or HTTP/2's `:authority`): must match
//!   `mcp.allowed_hosts` when configured; when not, and the listener is on
//!   a loopback address, it must be a loopback name (`localhost`,
//!   `127.0.0.1`, `[::1]`, any port); on any other address no `Host` is
//!   checked (the names a Service or ingress gives the pod are not known
//!   here — configure them).
//! - **Origin**: a request without one passes (non-browser clients send
//!   none; the MCP specification allows it); one with an `Origin` passes
//!   only if it is in `mcp.allowed_origins` (none by default), compared in
//!   its serialised form (`scheme://host[:port]`, lower-case, no path), or
//!   if it is the listener's own origin: `http://` or `https://` followed
//!   by exactly the `Host` the request carries, when that `Host` was checked
//!   above, passed, and names a port (`Origin: http://127.0.0.1:8081` with
//!   `Host: 127.0.0.1:8081`). A page with that origin was served from the
//!   listener's own address and port (which serves no pages), not by a
//!   foreign site or another local server: a rebound page's `Host` is the
//!   attacker's name and was refused already, and a page of another local
//!   server has another port. Where `Host` is not checked there is no such
//!   exception — a rebound page's requests are same-origin, so its `Origin`
//!   always matches its `Host` — and a `Host` without a port (the scheme's
//!   default, which an `Origin` of the other scheme does not share) never
//!   makes one. This is what a browser sends for a same-origin POST, and
//!   what the official MCP conformance suite's `dns-rebinding-protection`
//!   scenario requires to be accepted.
//!
//! Either refusal is `403` with a JSON-RPC error, counted in
//! `aegis_mcp_front_door_refusals_total{reason}`; nothing is forwarded.

use std::net::SocketAddr;

use http::{HeaderMap, Uri, header};

/// Why a request was turned away (the metric's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Host,
    Origin,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::Host, Refusal::Origin];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
        }
    }
}

/// One allowed host: a name or address, with or without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostEntry {
    /// Lower-case; IPv6 addresses in brackets.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

/// The listener's `Host` and `Origin` rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontDoor {
    /// `None`: `Host` is not checked.
    hosts: Option<Vec<HostEntry>>,
    /// Serialised origins, lower-case.
    origins: Vec<String>,
}

impl FrontDoor {
    /// The rules for a listener on `listen` with the validated
    /// `mcp.allowed_hosts` and `mcp.allowed_origins`.
    pub fn new(listen: Option<SocketAddr>, allowed_hosts: &[String], origins: &[String]) -> Self {
        let hosts = if !allowed_hosts.is_empty() {
            Some(allowed_hosts.iter().filter_map(|h| parse_host(h)).collect())
        } else if listen.is_some_and(|addr| addr.ip().is_loopback()) {
            Some(
                ["localhost", "127.0.0.1", "[::1]"]
                    .into_iter()
                    .map(|host| HostEntry {
                        host: host.to_owned(),
                        port: None,
                    })
                    .collect(),
            )
        } else {
            None
        };
        FrontDoor {
            hosts,
            origins: origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with this URI and these headers may come in.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        // The `Host` that passed the list, when one is checked.
        let mut checked_host = None;
        if let Some(allowed) = &self.hosts {
            let presented = authority(uri, headers).ok_or(Refusal::Host)?;
            let entry = parse_host(&presented).ok_or(Refusal::Host)?;
            let ok = allowed
                .iter()
                .any(|a| a.host == entry.host && (a.port.is_none() || a.port == entry.port));
            if !ok {
                return Err(Refusal::Host);
            }
            checked_host = Some(entry);
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        if let Some(origin) = origins.next() {
            if origins.next().is_some() {
                return Err(Refusal::Origin);
            }
            let origin = origin.to_str().map_err(|_| Refusal::Origin)?;
            let origin = origin.trim().to_ascii_lowercase();
            let own = checked_host
                .as_ref()
                .is_some_and(|host| is_own_origin(&origin, host));
            if !own && !self.origins.contains(&origin) {
                return Err(Refusal::Origin);
            }
        }
        Ok(())
    }
}

/// Whether `origin` (lower-case) is the listener's own: `http://` or
/// `https://` and then exactly `host`, a checked `Host` that names a port.
fn is_own_origin(origin: &str, host: &HostEntry) -> bool {
    if host.port.is_none() {
        return false;
    }
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    // `parse_host` refuses a path, a userinfo or a bad port.
    parse_host(authority).is_some_and(|entry| entry == *host)
}

/// The request's authority: HTTP/2's `:authority`, else a single `Host`.
fn authority(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(authority) = uri.authority() {
        return Some(authority.as_str().to_owned());
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next()?;
    if hosts.next().is_some() {
        return None;
    }
    host.to_str().ok().map(str::to_owned)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` when malformed (a
/// userinfo, path, or bad port is never a host).
fn parse_host(text: &str) -> Option<HostEntry> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() || text.contains(['/', '@', ' ', '\\']) {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (format!("[{v6}]"), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port.parse::<u16>().ok()?)),
            None => (text.clone(), None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(':')) {
        return None;
    }
    Some(HostEntry { host, port })
}

/// Validates one `mcp.allowed_hosts` entry for configuration.
pub fn check_host_entry(entry: &str) -> Result<(), String> {
    parse_host(entry)
        .map(|_| ())
        .ok_or_else(|| format!("{entry:?} is not a host, host:port, [IPv6] or [IPv6]:port"))
}

/// Validates and normalises one `mcp.allowed_origins` entry: an origin as
/// browsers send it, `scheme://host[:port]`, nothing after.
pub fn normalise_origin(entry: &str) -> Result<String, String> {
    let bad = || format!("{entry:?} is not an origin (scheme://host[:port], no path)");
    let url = url::Url::parse(entry.trim()).map_err(|_| bad())?;
    let bare = matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !bare {
        return Err(bad());
    }
    let serialised = url.origin().ascii_serialization();
    if serialised == "null" {
        return Err(bad());
    }
    Ok(serialised)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn uri() -> Uri {
        Uri::from_static("/mcp")
    }

    #[test]
    fn a_loopback_listener_takes_loopback_names_only() {
        let door = FrontDoor::new(Some("127.0.0.1:8081".parse().unwrap()), &[], &[]);
        for host in [
            "localhost:8081",
            "127.0.0.1:8081",
            "[::1]:8081",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert_eq!(
                door.check(&uri(), &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:8081",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8081",
            "user@localhost",
            "localhost:99999",
            "",
        ] {
            assert_eq!(
                door.check(&uri(), &headers(&[("host", host)])),
                Err(Refusal::Host),
                "{host}"
            );
        }
        // No Host at all, or two.
        assert_eq!(door.check(&uri(), &headers(&[])), Err(Refusal::Host));
        let two = headers(&[("host", "localhost"), ("host", "evil.example")]);
        assert_eq!(door.check(&uri(), &two), Err(Refusal::Host));
        // HTTP/2's :authority.
        let h2 = Uri::from_static("http://evil.example:8081/mcp");
        assert_eq!(door.check(&h2, &headers(&[])), Err(Refusal::Host));
    }

    #[test]
    fn configured_hosts_replace_the_default_and_ports_can_be_pinned() {
        let allowed = ["tools.agents.svc".to_owned(), "10.0.0.7:8081".to_owned()];
        let door = FrontDoor::new(Some("0.0.0.0:8081".parse().unwrap()), &allowed, &[]);
        let ok = |h: &str| door.check(&uri(), &headers(&[("host", h)]));
        assert_eq!(ok("tools.agents.svc"), Ok(()));
        assert_eq!(ok("tools.agents.svc:80"), Ok(()));
        assert_eq!(ok("10.0.0.7:8081"), Ok(()));
        assert_eq!(ok("10.0.0.7:9000"), Err(Refusal::Host));
        assert_eq!(ok("localhost"), Err(Refusal::Host));
        // Without a list, a non-loopback listener checks no Host.
        let open = FrontDoor::new(Some("0.0.0.0:8081".parse().unwrap()), &[], &[]);
        assert_eq!(
            open.check(&uri(), &headers(&[("host", "anything")])),
            Ok(())
        );
    }

    #[test]
    fn origins_pass_only_when_absent_or_allowed() {
        let door = FrontDoor::new(
            Some("127.0.0.1:8081".parse().unwrap()),
            &[],
            &["http://localhost:3000".to_owned()],
        );
        let with = |origin: &str| {
            door.check(
                &uri(),
                &headers(&[("host", "localhost:8081"), ("origin", origin)]),
            )
        };
        assert_eq!(
            door.check(&uri(), &headers(&[("host", "localhost")])),
            Ok(())
        );
        assert_eq!(with("http://localhost:3000"), Ok(()));
        assert_eq!(with("HTTP://LOCALHOST:3000"), Ok(()));
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost:3001",
            "https://localhost:3000",
        ] {
            assert_eq!(with(bad), Err(Refusal::Origin), "{bad}");
        }
        let two = headers(&[
            ("host", "localhost"),
            ("origin", "http://localhost:3000"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(door.check(&uri(), &two), Err(Refusal::Origin));
    }

    #[test]
    fn the_listeners_own_origin_passes_where_host_is_checked() {
        let door = FrontDoor::new(Some("127.0.0.1:8081".parse().unwrap()), &[], &[]);
        let with = |host: &str, origin: &str| {
            door.check(&uri(), &headers(&[("host", host), ("origin", origin)]))
        };
        for (host, origin) in [
            ("127.0.0.1:8081", "http://127.0.0.1:8081"),
            ("localhost:8081", "http://localhost:8081"),
            ("LOCALHOST:8081", "HTTP://localhost:8081"),
            ("[::1]:8081", "http://[::1]:8081"),
            ("localhost:8081", "https://localhost:8081"),
        ] {
            assert_eq!(with(host, origin), Ok(()), "{host} {origin}");
        }
        for (host, origin) in [
            // Another local server's page, another port or another name.
            ("localhost:8081", "http://localhost:3000"),
            ("localhost:8081", "http://127.0.0.1:8081"),
            // No port: the scheme's default, not shared across schemes.
            ("localhost", "http://localhost"),
            ("localhost", "https://localhost"),
            // Not an origin, or not only one.
            ("localhost:8081", "http://localhost:8081/"),
            ("localhost:8081", "http://u@localhost:8081"),
            ("localhost:8081", "ws://localhost:8081"),
            ("localhost:8081", "localhost:8081"),
            ("localhost:8081", "null"),
            // A rebound page: its Host is refused first.
            ("attacker.example:8081", "http://attacker.example:8081"),
        ] {
            assert!(with(host, origin).is_err(), "{host} {origin}");
        }
        // HTTP/2's :authority is the Host compared.
        let h2 = Uri::from_static("http://localhost:8081/mcp");
        let origin = headers(&[("origin", "http://localhost:8081")]);
        assert_eq!(door.check(&h2, &origin), Ok(()));

        // Where Host is not checked, a rebound page's own origin is no
        // exception: it is exactly what such a page sends.
        let open = FrontDoor::new(Some("0.0.0.0:8081".parse().unwrap()), &[], &[]);
        let rebound = headers(&[
            ("host", "attacker.example:8081"),
            ("origin", "http://attacker.example:8081"),
        ]);
        assert_eq!(open.check(&uri(), &rebound), Err(Refusal::Origin));
        // With configured hosts it applies to them.
        let named = FrontDoor::new(
            Some("0.0.0.0:8081".parse().unwrap()),
            &["tools.agents.svc".to_owned()],
            &[],
        );
        let own = headers(&[
            ("host", "tools.agents.svc:8081"),
            ("origin", "http://tools.agents.svc:8081"),
        ]);
        assert_eq!(named.check(&uri(), &own), Ok(()));
    }

    #[test]
    fn configuration_entries_are_checked() {
        assert!(check_host_entry("localhost").is_ok());
        assert!(check_host_entry("[::1]:8081").is_ok());
        for bad in ["", "http://x", "a/b", "x:port", "[zz]", "a b"] {
            assert!(check_host_entry(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalise_origin("HTTPS://App.Example:443").unwrap(),
            "https://app.example"
        );
        assert_eq!(
            normalise_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        for bad in [
            "localhost",
            "http://x/path",
            "http://u@x",
            "file:///etc",
            "null",
        ] {
            assert!(normalise_origin(bad).is_err(), "{bad}");
        }
    }
}

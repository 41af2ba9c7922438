//! Where a proxy request wants to go: `CONNECT host:port` (authority form)
//! or `http://host[:port]/path` (absolute form). Origin-form requests are
//! not proxy requests.

use std::net::IpAddr;

use aegis_policy::domain::Host;
use http::{Method, Uri};

/// The destination of one proxy request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Normalised as the policy engine normalises (`Host::parse`).
    pub host: Host,
    pub port: u16,
    /// `Connect` for a tunnel, `Http` for a forwarded request.
    pub kind: Kind,
}

/// The two ways through the proxy; also the `kind` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Http,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Http => "http",
        }
    }

    /// The tool name a proposal records (network tools, by the policy's
    /// `net*` prefix, so `permissions.net.domains` applies).
    pub fn tool_name(self) -> &'static str {
        match self {
            Kind::Connect => "net.connect",
            Kind::Http => "net.http",
        }
    }
}

impl Target {
    /// The host as the ledger and the policy see it (`[v6]` in brackets).
    pub fn domain(&self) -> String {
        self.host.to_string()
    }

    /// The IP when the request named one, not a name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip(ip) => Some(ip),
            Host::Domain(_) => None,
        }
    }
}

/// Reads the destination; the error is plain words for a 400 answer.
pub fn parse(method: &Method, uri: &Uri) -> Result<Target, String> {
    if method == Method::CONNECT {
        let authority = uri
            .authority()
            .ok_or("CONNECT needs host:port as its target")?;
        let port = authority
            .port_u16()
            .ok_or("CONNECT needs a port (host:port)")?;
        return Ok(Target {
            host: host(authority.host())?,
            port,
            kind: Kind::Connect,
        });
    }
    let Some(authority) = uri.authority() else {
        return Err(
            "not a proxy request: use an absolute URL (http://host/path) or CONNECT".to_owned(),
        );
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https:// goes through CONNECT, not as a request".to_owned()),
        _ => return Err("only http:// URLs are forwarded".to_owned()),
    }
    Ok(Target {
        host: host(authority.host())?,
        port: authority.port_u16().unwrap_or(80),
        kind: Kind::Http,
    })
}

fn host(text: &str) -> Result<Host, String> {
    if text.is_empty() {
        return Err("no host in the request target".to_owned());
    }
    Host::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target(method: Method, uri: &str) -> Result<Target, String> {
        parse(&method, &uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn connect_and_absolute_form_are_targets() {
        let t = target(Method::CONNECT, "API.Example.com:443").unwrap();
        assert_eq!(
            (t.domain(), t.port, t.kind),
            ("api.example.com".into(), 443, Kind::Connect)
        );
        let t = target(Method::CONNECT, "[::1]:8443").unwrap();
        assert_eq!(
            (t.domain(), t.ip()),
            ("[::1]".into(), Some("::1".parse().unwrap()))
        );
        let t = target(Method::GET, "http://example.org/x?y").unwrap();
        assert_eq!(
            (t.domain(), t.port, t.kind),
            ("example.org".into(), 80, Kind::Http)
        );
        let t = target(Method::POST, "http://127.0.0.1:8080/").unwrap();
        assert_eq!(t.ip(), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn everything_else_is_refused() {
        assert!(target(Method::CONNECT, "example.org").is_err());
        assert!(target(Method::GET, "/just/a/path").is_err());
        assert!(target(Method::GET, "https://example.org/").is_err());
        assert!(target(Method::GET, "ftp://example.org/").is_err());
    }
}

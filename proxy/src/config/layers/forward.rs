//! The `forward:` section: the egress forward proxy's listener, ports,
//! timeouts, limits and DNS overrides.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use aegis_policy::domain::Host;

use super::{Checker, Layered, Origin, boolean, positive, socket_addr};
use crate::config::forward::ForwardConfig;
use crate::config::settings::{
    self, DEFAULT_FORWARD_ALLOWED_PORTS, DEFAULT_FORWARD_CONNECT_TIMEOUT_MS,
    DEFAULT_FORWARD_HEADER_TIMEOUT_MS, DEFAULT_FORWARD_IDLE_TIMEOUT_MS,
    DEFAULT_FORWARD_MAX_CONNECTIONS, DEFAULT_FORWARD_RESULTS_TAINT,
};

/// Resolves `forward:`; `taken` are the other listeners' addresses (by
/// setting path), which the forward listener may not share.
pub(super) fn resolve(taken: &[(&str, SocketAddr)], c: &mut Checker<'_>) -> ForwardConfig {
    let value = c.layer(&settings::FORWARD_LISTEN);
    let origin = value.as_ref().map(|value| value.origin);
    let listen = c.setting("forward.listen", value, None, |text| {
        socket_addr(text).map(Some)
    });
    if let Some(listen) = listen
        && listen.port() != 0
    {
        for (path, addr) in taken {
            if *addr == listen {
                c.problems.push(format!(
                    "forward.listen: {listen} is also {path}; give them different addresses{}",
                    origin.map_or_else(String::new, Origin::suffix)
                ));
            }
        }
    }

    // A list in the file, comma-separated text in the environment.
    let ports_setting = &settings::FORWARD_ALLOWED_PORTS;
    let value = match c.layer::<String>(ports_setting) {
        Some(Layered {
            value,
            origin: origin @ Origin::Env(_),
        }) => Some(Layered {
            value: PortList::Text(value),
            origin,
        }),
        _ => c.file.integers(ports_setting).map(|ports| Layered {
            value: PortList::File(ports),
            origin: Origin::File,
        }),
    };
    let allowed_ports = c.setting(
        ports_setting.path,
        value,
        DEFAULT_FORWARD_ALLOWED_PORTS.to_vec(),
        ports,
    );

    let idle_timeout_ms = c.get(
        &settings::FORWARD_IDLE_TIMEOUT_MS,
        DEFAULT_FORWARD_IDLE_TIMEOUT_MS,
        positive::<u64>,
    );
    let connect_timeout_ms = c.get(
        &settings::FORWARD_CONNECT_TIMEOUT_MS,
        DEFAULT_FORWARD_CONNECT_TIMEOUT_MS,
        positive::<u64>,
    );
    let max_connections = c.get(
        &settings::FORWARD_MAX_CONNECTIONS,
        DEFAULT_FORWARD_MAX_CONNECTIONS,
        positive,
    );
    let header_timeout_ms = c.get(
        &settings::FORWARD_HEADER_TIMEOUT_MS,
        DEFAULT_FORWARD_HEADER_TIMEOUT_MS,
        positive::<u64>,
    );
    let results_taint = c.get(
        &settings::FORWARD_RESULTS_TAINT,
        DEFAULT_FORWARD_RESULTS_TAINT,
        boolean,
    );
    let value = c.file.text_map(&settings::FORWARD_DNS_OVERRIDES);
    let dns_overrides = c.setting(
        settings::FORWARD_DNS_OVERRIDES.path,
        value.map(|value| Layered {
            value,
            origin: Origin::File,
        }),
        BTreeMap::new(),
        overrides,
    );

    ForwardConfig {
        listen,
        allowed_ports,
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        max_connections,
        header_timeout: Duration::from_millis(header_timeout_ms),
        results_taint,
        dns_overrides,
    }
}

/// Ports as the file lists them, or as the environment writes them.
enum PortList {
    File(Vec<u64>),
    Text(String),
}

/// 1–65535 each, at least one; duplicates dropped, order kept.
fn ports(list: PortList) -> Result<Vec<u16>, String> {
    let numbers: Vec<u64> = match list {
        PortList::File(numbers) => numbers,
        PortList::Text(text) => text
            .split(',')
            .map(|part| {
                part.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("expected comma-separated ports, got {text:?}"))
            })
            .collect::<Result<_, _>>()?,
    };
    if numbers.is_empty() {
        return Err("must name at least one port".to_owned());
    }
    let mut ports = Vec::with_capacity(numbers.len());
    for number in numbers {
        let port = u16::try_from(number)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("{number} is not a port (1-65535)"))?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// Host → IP, hosts normalised the way the policy engine normalises
/// destinations, so a key matches whatever spelling a client sends.
fn overrides(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, IpAddr>, String> {
    let mut problems = Vec::new();
    let mut map = BTreeMap::new();
    for (host, ip) in raw {
        let name = match Host::parse(&host) {
            Ok(Host::Domain(name)) => name,
            Ok(Host::Ip(_)) => {
                problems.push(format!("{host:?} is an IP address, not a name"));
                continue;
            }
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        match ip.trim().parse::<IpAddr>() {
            Ok(ip) => {
                map.insert(name, ip);
            }
            Err(_) => problems.push(format!("{host}: {ip:?} is not an IP address")),
        }
    }
    if problems.is_empty() {
        Ok(map)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ports_are_checked_and_deduplicated() {
        assert_eq!(
            ports(PortList::Text("443, 80,443".into())),
            Ok(vec![443, 80])
        );
        assert_eq!(ports(PortList::File(vec![8080])), Ok(vec![8080]));
        assert!(ports(PortList::File(vec![])).is_err());
        assert!(ports(PortList::File(vec![0])).is_err());
        assert!(ports(PortList::File(vec![70_000])).is_err());
        assert!(ports(PortList::Text("80,x".into())).is_err());
    }

    #[test]
    fn override_hosts_are_normalised_and_values_are_ips() {
        let raw = BTreeMap::from([("API.Example.COM.".to_owned(), "10.0.0.7".to_owned())]);
        let map = overrides(raw).unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(map.get("api.example.com"), Some(&ip));
        let bad = BTreeMap::from([
            ("a.example".to_owned(), "not-an-ip".to_owned()),
            ("10.0.0.1".to_owned(), "10.0.0.2".to_owned()),
        ]);
        let problem = overrides(bad).unwrap_err();
        assert!(problem.contains("not an IP address"), "{problem}");
        assert!(
            problem.contains("is an IP address, not a name"),
            "{problem}"
        );
    }
}

//! SSRF guards: after resolving a destination, refuse addresses inside the
//! sidecar's own network — loopback, link-local (cloud metadata at
//! 169.254.169.254), private, shared (carrier-grade NAT), unique-local and
//! site-local, unspecified, broadcast, multicast, the benchmarking
//! (198.18.0.0/15) and reserved (240.0.0.0/4) blocks, IPv4 addresses written
//! as IPv6 (mapped, compatible, NAT64 in both prefixes, 6to4) and every
//! Teredo address (its relay reaches an IPv4 address the guard cannot see
//! reliably, and no service of an agent's lives there) — unless the manifest names the host or the IP explicitly (an
//! exact entry, never a wildcard). The caller then connects to exactly the
//! addresses checked here: no second lookup, so DNS rebinding cannot swap
//! the address between check and connect.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use aegis_policy::domain::{DomainPattern, Host};

/// Why an address is refused (plain words for the ledger), or `None`.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if ip.is_private() {
        Some("private (RFC 1918)")
    } else if a == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space (100.64.0.0/10)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking (198.18.0.0/15)")
    } else if a >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique local (fc00::/7)")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some("site-local (fec0::/10)")
    } else if segments[0] == 0x2001 && segments[1] == 0 {
        Some("Teredo (2001::/32)")
    } else if let Some(v4) = embedded_v4(ip) {
        forbidden_v4(v4)
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, and the
/// local-use `64:ff9b:1::/48` with the address in its last 32 bits) or 6to4
/// (`2002:aabb:ccdd::/48`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(v4(s[6], s[7])),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 1, ..] => Some(v4(s[6], s[7])),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// Whether `patterns` (the manifest's `permissions.net.domains`) name `host`
/// exactly, or `ip` by an IP entry.
pub fn named_explicitly(patterns: &[DomainPattern], host: &Host, ip: Option<IpAddr>) -> bool {
    patterns.iter().any(|pattern| match pattern {
        DomainPattern::Exact(_) => pattern.matches(host),
        DomainPattern::Ip(allowed) => pattern.matches(host) || ip == Some(*allowed),
        DomainPattern::Suffix(_) => false,
    })
}

/// Why resolution ended without an address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The SSRF guard refused an address (plain words).
    Guard(String),
    /// The name did not resolve (or too slowly).
    Unresolved(String),
}

/// The addresses to connect to for `host:port`: an IP literal as is, a
/// `dns_overrides` entry, else one DNS lookup; every address checked.
pub async fn resolve(
    host: &Host,
    port: u16,
    overrides: &BTreeMap<String, IpAddr>,
    patterns: &[DomainPattern],
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Refusal> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Domain(name) => match overrides.get(name) {
            Some(ip) => vec![SocketAddr::new(*ip, port)],
            None => {
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                match tokio::time::timeout(timeout, lookup).await {
                    Ok(Ok(found)) => found.collect(),
                    Ok(Err(e)) => return Err(Refusal::Unresolved(format!("{name}: {e}"))),
                    Err(_) => {
                        return Err(Refusal::Unresolved(format!("{name}: DNS lookup timed out")));
                    }
                }
            }
        },
    };
    if addrs.is_empty() {
        return Err(Refusal::Unresolved(format!("{host}: no address")));
    }
    for addr in &addrs {
        if let Some(why) = forbidden(addr.ip())
            && !named_explicitly(patterns, host, Some(addr.ip()))
        {
            return Err(Refusal::Guard(format!(
                "SSRF guard: {host} is {ip}, a {why} address; the manifest must name it exactly to reach it",
                ip = addr.ip()
            )));
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn internal_addresses_are_refused_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            // 6to4 of 127.0.0.1, 10.0.0.1 and 169.254.169.254.
            "2002:7f00:1::",
            "2002:a00:1:1::1",
            "2002:a9fe:a9fe::1",
            // Teredo, whatever it embeds (here 8.8.8.8 obfuscated, and 127.0.0.1).
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2001::80ff:fffe",
            "fec0::1",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "254.1.2.3",
        ] {
            assert!(
                forbidden(ip.parse().unwrap()).is_some(),
                "{ip} should be refused"
            );
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "198.17.255.255",
            "198.20.0.1",
            "2001:db8::1",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(forbidden(ip.parse().unwrap()), None, "{ip} should pass");
        }
    }

    #[tokio::test]
    async fn explicit_entries_let_internal_addresses_through_wildcards_do_not() {
        let overrides = BTreeMap::from([("svc.internal".to_owned(), "127.0.0.1".parse().unwrap())]);
        let host = Host::parse("svc.internal").unwrap();
        let secs = Duration::from_secs(1);
        let exact = [DomainPattern::parse("svc.internal").unwrap()];
        let wild = [DomainPattern::parse("*.internal").unwrap()];
        let by_ip = [DomainPattern::parse("127.0.0.1").unwrap()];
        let ok = resolve(&host, 80, &overrides, &exact, secs).await.unwrap();
        assert_eq!(ok, ["127.0.0.1:80".parse().unwrap()]);
        assert!(resolve(&host, 80, &overrides, &by_ip, secs).await.is_ok());
        let refused = resolve(&host, 80, &overrides, &wild, secs)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, Refusal::Guard(ref why) if why.contains("SSRF guard")),
            "{refused:?}"
        );
        let metadata = Host::parse("169.254.169.254").unwrap();
        assert!(
            resolve(&metadata, 80, &overrides, &wild, secs)
                .await
                .is_err()
        );
    }
}

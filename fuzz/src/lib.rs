//! The fuzz targets: each takes arbitrary bytes, drives one parser the
//! agent (or a tool server, or an operator's file) can feed, and checks what
//! must hold of its answer. A panic is a finding. `fuzz/libfuzzer` runs them
//! under libFuzzer (`cargo fuzz`, see `fuzz/README.md`); `tests/replay.rs`
//! runs every committed corpus file through them on stable, in CI.

use std::collections::HashMap;

use aegis_ledger::canon;
use aegis_policy::Manifest;
use aegis_policy::domain::{DomainPattern, DomainSet, Host, destination};
use aegis_proxy::cli::RunFlags;
use aegis_proxy::config::{Config, RawConfig};
use aegis_proxy::mcp::jsonrpc::{self, Body};
use aegis_proxy::mcp::request::check_method_headers;
use aegis_proxy::mcp::sse::SseParser;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

/// A target: takes any bytes, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory and libFuzzer binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("jsonrpc", jsonrpc),
    ("sse", sse),
    ("mcp_headers", mcp_headers),
    ("manifest_yaml", manifest_yaml),
    ("manifest_json", manifest_json),
    ("config", config),
    ("envelope_ingest", envelope_ingest),
    ("canonical_json", canonical_json),
    ("domain", domain),
];

/// JSON-RPC bodies as the MCP listener reads them. What it accepts, serde
/// accepts too (no body means one thing to the sidecar and another, or
/// nothing, to a tool server's JSON parser); a message's tool call, when it
/// has one, names the same method.
pub fn jsonrpc(data: &[u8]) {
    let Ok(body) = jsonrpc::parse(data) else {
        return;
    };
    assert!(
        serde_json::from_slice::<Value>(data).is_ok(),
        "accepted what serde_json refuses"
    );
    for message in body.messages() {
        let method = message.method().map(str::to_owned);
        if let Some(Ok(_call)) = message.tool_call() {
            assert_eq!(method.as_deref(), Some("tools/call"));
        }
    }
}

/// Server-sent events as the relay parses tool servers' streams: the
/// events do not depend on where the bytes were split.
pub fn sse(data: &[u8]) {
    const LIMIT: usize = 64 * 1024;
    let whole = {
        let mut parser = SseParser::new(LIMIT);
        let mut out = Vec::new();
        parser.feed(data, &mut out);
        (out, parser.last_event_id().map(str::to_owned))
    };
    let split = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let pieces = {
        let mut parser = SseParser::new(LIMIT);
        let mut out = Vec::new();
        parser.feed(&data[..split], &mut out);
        parser.feed(&data[split..], &mut out);
        (out, parser.last_event_id().map(str::to_owned))
    };
    assert_eq!(
        format!("{whole:?}"),
        format!("{pieces:?}"),
        "split at {split}"
    );
}

/// `Mcp-Method` / `Mcp-Name` against the body: the first line is the
/// method header, the second the name header, the rest the body. A header
/// the check lets through agrees with the body.
pub fn mcp_headers(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(method), Some(name), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(parsed) = jsonrpc::parse(body) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(method) {
        headers.insert("mcp-method", value);
    }
    if let Ok(value) = HeaderValue::from_bytes(name) {
        headers.insert("mcp-name", value);
    }
    if check_method_headers(&headers, &parsed).is_ok()
        && let (Some(sent), Body::Single(message)) = (headers.get("mcp-method"), &parsed)
    {
        assert_eq!(
            sent.to_str().ok(),
            message.method(),
            "a disagreeing method passed"
        );
    }
}

/// A manifest file (YAML); one that loads compiles.
pub fn manifest_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(manifest) = Manifest::from_yaml(text)
    {
        let _ = aegis_policy::CompiledManifest::new(&manifest);
    }
}

/// A manifest file (JSON); one that loads compiles.
pub fn manifest_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(manifest) = Manifest::from_json(text)
    {
        let _ = aegis_policy::CompiledManifest::new(&manifest);
    }
}

/// A config file, laid under an empty environment and no flags: a
/// problem is an error listing problems, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = RawConfig::from_yaml(text) else {
        return;
    };
    let env: HashMap<String, String> = HashMap::new();
    if let Err(e) = Config::from_layers(raw, None, &env, &RunFlags::default()) {
        assert!(!e.problems.is_empty(), "an error without a problem");
    }
}

/// `POST /v1/events` bodies, the SDKs' int-array hashes included.
pub fn envelope_ingest(data: &[u8]) {
    let _ = aegis_ledger::wire::parse_append(data);
}

/// The canonical form (RFC 8785) the hashes are taken over: a fixed point,
/// the same value read back, and so the same hash.
pub fn canonical_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = canon::parse(text) else {
        return;
    };
    let once = canon::to_vec(&value);
    let text_once = std::str::from_utf8(&once).expect("canonical JSON is UTF-8");
    let again = canon::parse(text_once).expect("canonical JSON parses");
    assert_eq!(
        canon::to_vec(&again),
        once,
        "the canonical form is not a fixed point"
    );
}

/// Hosts and URLs as the egress policy reads them. A URL's host is what the
/// `url` crate would connect to, and nothing outside an allowlist's entries
/// is allowed by it.
pub fn domain(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = url::Url::parse(text)
        && let Ok(host) = destination(&json!({"url": text}))
    {
        // A special scheme's host went through the host parser already; a
        // non-special scheme's is opaque text, which a client hands to its
        // resolver, so it is read the way the host parser reads hosts
        // (`ittp://012.1.2.3/` goes to 10.1.2.3, as inet_aton has it).
        let real = match parsed.host() {
            Some(url::Host::Domain(d)) if !parsed.is_special() => {
                url::Host::parse(d).unwrap_or_else(|_| url::Host::Domain(d.to_owned()))
            }
            Some(h) => h.to_owned(),
            None => panic!("a destination from a URL without a host: {text:?}"),
        };
        let connects_to = match real {
            url::Host::Domain(d) => d.trim_end_matches('.').to_owned(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => format!("[{ip}]"),
        };
        assert_eq!(host.to_string(), connects_to, "{text:?}");
    }
    let allowlist = DomainSet::new(
        ["allowed.example", "*.good.example", "10.1.2.3"]
            .iter()
            .map(|p| DomainPattern::parse(p).expect("a valid pattern")),
    );
    for host in [Host::parse(text), destination(&json!({"url": text}))]
        .into_iter()
        .flatten()
    {
        if allowlist.is_allowed(&host) {
            let name = host.to_string();
            assert!(
                name == "allowed.example" || name.ends_with(".good.example") || name == "10.1.2.3",
                "{text:?} normalised to {name:?}, which the allowlist allowed"
            );
        }
    }
}

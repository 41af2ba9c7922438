#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn dom(s: &str) -> Host {
    Host::Domain(s.to_owned())
}

fn ip(s: &str) -> Host {
    Host::Ip(s.parse::<IpAddr>().unwrap())
}

fn pat(s: &str) -> DomainPattern {
    DomainPattern::parse(s).unwrap_or_else(|e| panic!("pattern {s:?}: {e}"))
}

/// Bare hosts and authorities: input → normalised host, or `None` for an error.
#[test]
fn host_parse_table() {
    let rows: &[(&str, Option<Host>)] = &[
        ("example.com", Some(dom("example.com"))),
        ("Example.COM.", Some(dom("example.com"))),
        ("ALLOWED.COM.", Some(dom("allowed.com"))),
        ("b\u{fc}cher.de", Some(dom("xn--bcher-kva.de"))),
        ("XN--BCHER-KVA.de", Some(dom("xn--bcher-kva.de"))),
        ("user:pw@host.example:8443", Some(dom("host.example"))),
        ("allowed.com@evil.com", Some(dom("evil.com"))),
        ("a@allowed.com@evil.com", Some(dom("evil.com"))),
        ("evil.com/allowed.com", Some(dom("evil.com"))),
        ("evil.com?allowed.com", Some(dom("evil.com"))),
        ("evil.com#allowed.com", Some(dom("evil.com"))),
        ("evil.com\\allowed.com", Some(dom("evil.com"))),
        ("allowed.com.evil.com", Some(dom("allowed.com.evil.com"))),
        ("allowed.com:443", Some(dom("allowed.com"))),
        ("under_score.example", Some(dom("under_score.example"))),
        (
            "r3---sn-abc.googlevideo.com",
            Some(dom("r3---sn-abc.googlevideo.com")),
        ),
        // Fullwidth letters and dots are IDNA compatibility-mapped to ASCII.
        ("\u{ff41}llowed\u{ff0e}com", Some(dom("allowed.com"))),
        ("allowed\u{3002}com", Some(dom("allowed.com"))),
        ("allowed.com\u{3002}", Some(dom("allowed.com"))),
        // Default-ignorable code points are dropped by IDNA, as clients do.
        ("allo\u{200b}wed.com", Some(dom("allowed.com"))),
        ("allo\u{ad}wed.com", Some(dom("allowed.com"))),
        // Nontransitional UTS-46: sharp s stays distinct from "ss".
        ("stra\u{df}e.de", Some(dom("xn--strae-oqa.de"))),
        ("\u{430}llowed.com", Some(dom("xn--llowed-2nf.com"))),
        ("10.0.0.1", Some(ip("10.0.0.1"))),
        ("10.0.0.1:80", Some(ip("10.0.0.1"))),
        ("127.1", Some(ip("127.0.0.1"))),
        ("0x7f.1", Some(ip("127.0.0.1"))),
        ("2130706433", Some(ip("127.0.0.1"))),
        ("127.0.0.1.", Some(ip("127.0.0.1"))),
        ("[::1]", Some(ip("::1"))),
        ("[::1]:443", Some(ip("::1"))),
        ("::1", Some(ip("::1"))),
        ("[::ffff:10.0.0.1]", Some(ip("::ffff:10.0.0.1"))),
        ("", None),
        (".", None),
        ("x.com..", None),
        (".x.com", None),
        ("a..com", None),
        (" x.com", None),
        ("x .com", None),
        ("x.com\n", None),
        ("https://x.com", None),
        ("x.com:", None),
        ("x.com:99999", None),
        ("x.com:+1", None),
        ("x.com:8o", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[1.2.3]", None),
        ("allowed%2ecom", None),
        ("user@", None),
        ("/x.com", None),
        ("1.2.3.4.5", None),
        ("a.0x", None),
        ("xn--zz.com", None),
        ("a*b.com", None),
        ("a!b.com", None),
        ("\u{fffd}.com", None),
        ("a\u{2028}b.com", None),
        ("allo\u{200d}wed.com", None),
        (&"a".repeat(64), None),
    ];
    for (input, want) in rows {
        let got = Host::parse(input);
        match want {
            Some(h) => assert_eq!(got.as_ref(), Ok(h), "input {input:?}"),
            None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
        }
    }
}

#[test]
fn host_length_limits() {
    let l63 = "a".repeat(63);
    assert!(Host::parse(&format!("{l63}.com")).is_ok());
    assert!(Host::parse(&format!("{l63}a.com")).is_err());
    // 4 × 63 + 3 dots = 255 > 253; 3 × 63 + 61 + 3 dots = 253.
    let long = [l63.as_str(); 4].join(".");
    assert!(Host::parse(&long).is_err());
    let max = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
    assert_eq!(max.len(), 253);
    assert!(Host::parse(&max).is_ok());
    assert!(
        Host::parse(&format!("{max}.")).is_ok(),
        "trailing dot not counted"
    );
}

#[test]
fn cyrillic_look_alike_is_punycode_and_not_allowed() {
    let host = Host::parse("\u{430}llowed.com").unwrap();
    let Host::Domain(name) = &host else {
        panic!("{host:?}")
    };
    assert!(name.starts_with("xn--") && name.ends_with(".com"), "{name}");
    assert_ne!(name, "allowed.com");
    let set = DomainSet::new([pat("allowed.com"), pat("*.allowed.com")]);
    assert!(!set.is_allowed(&host));
    let sub = Host::parse("www.\u{430}llowed.com").unwrap();
    assert!(!set.is_allowed(&sub));
}

#[test]
fn display_is_normalised_text_and_round_trips() {
    for (input, text) in [
        ("Example.COM.", "example.com"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("[::1]:443", "[::1]"),
        ("::1", "[::1]"),
        ("b\u{fc}cher.de", "xn--bcher-kva.de"),
    ] {
        let host = Host::parse(input).unwrap();
        assert_eq!(host.to_string(), text);
        assert_eq!(Host::parse(text).unwrap(), host);
    }
    assert_eq!(dom("a.com").as_domain(), Some("a.com"));
    assert_eq!(ip("::1").as_domain(), None);
}

/// Tool arguments → destination, or `None` for an error (the caller denies).
#[test]
fn destination_table() {
    let rows: Vec<(serde_json::Value, Option<Host>)> = vec![
        (
            json!({"url": "https://allowed.com/x"}),
            Some(dom("allowed.com")),
        ),
        (
            json!({"url": "https://allowed.com@evil.com/"}),
            Some(dom("evil.com")),
        ),
        (
            json!({"url": "https://user:pw@allowed.com/"}),
            Some(dom("allowed.com")),
        ),
        (
            json!({"url": "http://evil.com\\@allowed.com"}),
            Some(dom("evil.com")),
        ),
        (
            json!({"url": "https://allowed.com:443/x"}),
            Some(dom("allowed.com")),
        ),
        (
            json!({"url": "HTTPS://ALLOWED.COM./"}),
            Some(dom("allowed.com")),
        ),
        (
            json!({"url": "https://evil.com/allowed.com"}),
            Some(dom("evil.com")),
        ),
        (
            json!({"url": "https://evil.com?u=https://allowed.com"}),
            Some(dom("evil.com")),
        ),
        (
            json!({"url": "https://allowed.com.evil.com/"}),
            Some(dom("allowed.com.evil.com")),
        ),
        (
            json!({"url": "https://allowed%2ecom/"}),
            Some(dom("allowed.com")),
        ),
        (
            json!({"url": "https://b\u{fc}cher.de/"}),
            Some(dom("xn--bcher-kva.de")),
        ),
        (
            json!({"url": "wss://Chat.Example.com/ws"}),
            Some(dom("chat.example.com")),
        ),
        (
            json!({"url": "foo://Example.COM./x"}),
            Some(dom("example.com")),
        ),
        (json!({"url": "http://0x7f.1/"}), Some(ip("127.0.0.1"))),
        (json!({"url": "http://2130706433/"}), Some(ip("127.0.0.1"))),
        (json!({"url": "http://0177.0.0.1/"}), Some(ip("127.0.0.1"))),
        (json!({"url": "http://[::1]:8080/"}), Some(ip("::1"))),
        (
            json!({"url": "https://a.com", "domain": "b.com"}),
            Some(dom("a.com")),
        ),
        (json!({"domain": "Allowed.COM."}), Some(dom("allowed.com"))),
        (
            json!({"domain": "evil.com/allowed.com"}),
            Some(dom("evil.com")),
        ),
        (
            json!({"domain": "a.com", "host": "b.com"}),
            Some(dom("a.com")),
        ),
        (json!({"host": "10.0.0.1:22"}), Some(ip("10.0.0.1"))),
        (json!({"url": 5}), None),
        (json!({"url": null, "domain": "a.com"}), None),
        (json!({"url": ""}), None),
        (json!({"url": "allowed.com"}), None),
        (json!({"url": "//allowed.com/"}), None),
        (json!({"url": "https://"}), None),
        (json!({"url": "file:///etc/passwd"}), None),
        (json!({"url": "mailto:a@allowed.com"}), None),
        (json!({"url": "https://x.com../"}), None),
        (json!({"domain": ""}), None),
        (json!({"domain": ["a.com"]}), None),
        (json!({"host": 1}), None),
        (json!({}), None),
        (json!({"path": "/tmp"}), None),
        (json!(["https://a.com"]), None),
        (json!("https://a.com"), None),
    ];
    for (args, want) in rows {
        let got = destination(&args);
        match want {
            Some(h) => assert_eq!(got, Ok(h), "args {args}"),
            None => assert!(got.is_err(), "args {args} gave {got:?}"),
        }
    }
}

/// Manifest entries → normalised pattern, or `None` for an error.
#[test]
fn pattern_parse_table() {
    let ex = |s: &str| Some(DomainPattern::Exact(s.to_owned()));
    let suf = |s: &str| Some(DomainPattern::Suffix(s.to_owned()));
    let pip = |s: &str| Some(DomainPattern::Ip(s.parse().unwrap()));
    let rows: &[(&str, Option<DomainPattern>)] = &[
        ("example.com", ex("example.com")),
        ("Example.COM.", ex("example.com")),
        ("b\u{fc}cher.de", ex("xn--bcher-kva.de")),
        ("*.example.com", suf(".example.com")),
        ("*.Example.COM.", suf(".example.com")),
        ("*.b\u{fc}cher.de", suf(".xn--bcher-kva.de")),
        ("*.com", suf(".com")),
        ("localhost", ex("localhost")),
        ("10.0.0.1", pip("10.0.0.1")),
        ("::1", pip("::1")),
        ("[::1]", pip("::1")),
        ("", None),
        ("*", None),
        ("*.", None),
        ("**.com", None),
        ("*.*.com", None),
        ("a.*.com", None),
        ("foo*.com", None),
        ("*foo.com", None),
        ("example.*", None),
        ("exa mple.com", None),
        (" example.com", None),
        ("https://x.com", None),
        ("x.com/p", None),
        ("x.com?q", None),
        ("x.com:443", None),
        ("[::1]:443", None),
        ("user@x.com", None),
        ("x%2ecom", None),
        ("x.com..", None),
        (".x.com", None),
        ("xn--zz.com", None),
        ("*.0.0.1", None),
        ("*.1", None),
        ("*.[::1]", None),
        ("*.::1", None),
        ("127.1", None),
        ("0x7f.0.0.1", None),
        ("1.2.3.4.5", None),
        ("a!.com", None),
    ];
    for (input, want) in rows {
        let got = DomainPattern::parse(input).ok();
        assert_eq!(&got, want, "pattern {input:?}");
    }
}

#[test]
fn pattern_limits_and_display() {
    let l63 = "a".repeat(63);
    assert!(DomainPattern::parse(&format!("*.{l63}.com")).is_ok());
    assert!(DomainPattern::parse(&format!("*.{l63}a.com")).is_err());
    assert!(DomainPattern::parse(&[l63.as_str(); 4].join(".")).is_err());
    for text in ["example.com", "*.example.com", "10.0.0.1", "::1"] {
        assert_eq!(pat(text).to_string(), text);
    }
    let e = DomainPattern::parse("x.com:443").unwrap_err();
    assert!(e.to_string().contains("port"), "{e}");
    let e = DomainPattern::parse("*.0.0.1").unwrap_err();
    assert!(e.to_string().contains("IP"), "{e}");
}

/// (pattern, host, expected): `matches` and a one-pattern `DomainSet` agree.
#[test]
fn matching_table() {
    let rows: &[(&str, &str, bool)] = &[
        ("allowed.com", "allowed.com", true),
        ("allowed.com", "ALLOWED.COM.", true),
        ("allowed.com", "allowed.com:8443", true),
        ("allowed.com", "user:pw@allowed.com", true),
        ("allowed.com", "\u{ff41}llowed\u{ff0e}com", true),
        ("allowed.com", "sub.allowed.com", false),
        ("allowed.com", "allowed.com.evil.com", false),
        ("allowed.com", "evilallowed.com", false),
        ("allowed.com", "allowed.co", false),
        ("allowed.com", "\u{430}llowed.com", false),
        ("allowed.com", "allowed.com@evil.com", false),
        ("allowed.com", "evil.com/allowed.com", false),
        ("*.allowed.com", "sub.allowed.com", true),
        ("*.allowed.com", "SUB.Allowed.Com.", true),
        ("*.allowed.com", "a.b.c.allowed.com", true),
        ("*.allowed.com", "allowed.com", false),
        ("*.allowed.com", "evilallowed.com", false),
        ("*.allowed.com", "allowed.com.evil.com", false),
        ("*.allowed.com", "sub.allowed.com.evil.com", false),
        ("*.allowed.com", "www.\u{430}llowed.com", false),
        ("*.allowed.com", "xallowed.com", false),
        ("*.b\u{fc}cher.de", "www.xn--bcher-kva.de", true),
        ("b\u{fc}cher.de", "B\u{dc}CHER.de", true),
        ("10.0.0.1", "10.0.0.1", true),
        ("10.0.0.1", "10.0.0.1:443", true),
        ("10.0.0.1", "0xa.0.0.1", true),
        ("10.0.0.1", "10.0.0.2", false),
        ("10.0.0.1", "[::ffff:10.0.0.1]", false),
        ("::1", "[::1]:443", true),
        ("::1", "127.0.0.1", false),
        ("localhost", "127.0.0.1", false),
        ("*.com", "127.0.0.1", false),
    ];
    for &(p, h, want) in rows {
        let pattern = pat(p);
        let host = Host::parse(h).unwrap_or_else(|e| panic!("host {h:?}: {e}"));
        assert_eq!(pattern.matches(&host), want, "{p} vs {h}");
        let set = DomainSet::new([pattern]);
        assert_eq!(set.is_allowed(&host), want, "set {p} vs {h}");
    }
}

#[test]
fn domain_set_lookups() {
    let set = DomainSet::new(
        [
            "api.example.com",
            "*.cdn.example.com",
            "10.0.0.5",
            "[fd00::1]",
        ]
        .map(pat),
    );
    assert!(!set.is_empty());
    assert!(DomainSet::default().is_empty());
    assert!(!DomainSet::default().is_allowed(&dom("a.com")));
    assert!(set.is_allowed(&dom("api.example.com")));
    assert!(set.is_allowed(&dom("x.y.cdn.example.com")));
    assert!(!set.is_allowed(&dom("cdn.example.com")));
    assert!(!set.is_allowed(&dom("example.com")));
    assert!(!set.is_allowed(&dom("www.example.com")));
    assert!(set.is_allowed(&ip("10.0.0.5")));
    assert!(set.is_allowed(&ip("fd00::1")));
    assert!(!set.is_allowed(&ip("10.0.0.6")));
    // Only exact and IP entries name a host explicitly.
    assert!(set.names_explicitly(&dom("api.example.com")));
    assert!(set.names_explicitly(&ip("10.0.0.5")));
    assert!(!set.names_explicitly(&dom("x.cdn.example.com")));
    assert!(!set.names_explicitly(&dom("cdn.example.com")));
}

/// The bypass attempts listed in the issue, end to end from tool arguments.
#[test]
fn issue_bypass_attempts_are_denied() {
    let set = DomainSet::new([pat("allowed.com"), pat("*.allowed.com")]);
    let denied = [
        json!({"url": "https://allowed.com.evil.com/"}),
        json!({"domain": "allowed.com.evil.com"}),
        json!({"domain": "evil.com/allowed.com"}),
        json!({"host": "evil.com/allowed.com"}),
        json!({"url": "https://evil.com/allowed.com"}),
        json!({"url": "https://allowed.com@evil.com/"}),
        json!({"url": "http://evil.com\\@allowed.com"}),
        json!({"url": "https://\u{430}llowed.com/"}),
        json!({"domain": "\u{430}llowed.com"}),
        json!({"domain": "evilallowed.com"}),
    ];
    for args in denied {
        let allowed = destination(&args).is_ok_and(|h| set.is_allowed(&h));
        assert!(!allowed, "{args}");
    }
    for args in [
        json!({"url": "HTTPS://ALLOWED.COM./"}),
        json!({"domain": "ALLOWED.COM."}),
        json!({"url": "https://allowed.com:443/x"}),
        json!({"url": "https://a.b.allowed.com/"}),
    ] {
        assert!(set.is_allowed(&destination(&args).unwrap()), "{args}");
    }
}

fn ldh_label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
        .prop_filter("xn-- is an A-label, not plain LDH", |l| {
            !l.to_ascii_lowercase().starts_with("xn--")
        })
}

proptest! {
    #[test]
    fn wildcard_matches_ldh_subdomains_never_apex(label in ldh_label(), depth in 1usize..4) {
        let p = pat("*.x.com");
        prop_assert!(!p.matches(&Host::parse("x.com").unwrap()));
        let name = format!("{}.x.com", vec![label.as_str(); depth].join("."));
        let host = Host::parse(&name).unwrap();
        prop_assert_eq!(host.to_string(), name.to_ascii_lowercase());
        prop_assert!(p.matches(&host));
        prop_assert!(DomainSet::new([p]).is_allowed(&host));
    }

    #[test]
    fn arbitrary_labels_never_reach_the_apex_or_escape_the_suffix(label in "\\PC{0,20}") {
        let p = pat("*.x.com");
        let set = DomainSet::new([p.clone()]);
        if let Ok(host) = Host::parse(&format!("{label}.x.com")) {
            let matched = p.matches(&host);
            prop_assert_eq!(matched, set.is_allowed(&host));
            if matched {
                let text = host.to_string();
                prop_assert!(text.ends_with(".x.com") && text != "x.com");
            }
        }
    }

    #[test]
    fn parse_is_idempotent(input in "\\PC{0,30}") {
        if let Ok(host) = Host::parse(&input) {
            prop_assert_eq!(Host::parse(&host.to_string()), Ok(host));
        }
        if let Ok(p) = DomainPattern::parse(&input) {
            prop_assert_eq!(DomainPattern::parse(&p.to_string()), Ok(p));
        }
    }
}

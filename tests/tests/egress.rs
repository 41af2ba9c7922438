//! The egress forward proxy end to end: a sidecar with `forward.listen`,
//! test servers on loopback reached by names mapped with
//! `forward.dns_overrides`, and a client speaking the proxy protocol by hand
//! (`CONNECT host:port` and absolute-form requests, as curl does).
//!
//! Every destination name maps to 127.0.0.1, so the SSRF guard lets a name
//! through only when the manifest names it exactly.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aegis_e2e::{HANG_GUARD, Sidecar, run, wait_for};
use aegis_proxy::config::Role;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Declares the egress tools; `allowed.test` and `later-ok.test` are named
/// exactly, `*.wild.test` only by a wildcard.
fn manifest(domains: &[&str]) -> String {
    format!(
        r#"
schema: aegis.dev/manifest/v0.1
name: egress-agent
version: "1.0.0"
publisher: aegis-tests
sandbox:
  required: true
  image: demo
permissions:
  tools: [net.connect, net.http]
  net:
    domains: [{}]
  budgets:
    max_steps: 1000
    max_tool_calls: 1000
    max_wall_time_ms: 3600000
policy:
  loops:
    identical_calls: 100
    identical_window: 100
"#,
        domains
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A loopback server that counts the connections it accepts: an echo
/// server, or an HTTP server answering `hello <Host> <proxy-authorization?>`.
#[derive(Debug, Clone)]
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    async fn start(http: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if http {
                        let head = read_head(&mut stream).await;
                        let host = header(&head, "host").unwrap_or_default();
                        let leaked = header(&head, "proxy-authorization").is_some()
                            || header(&head, "x-aegis-session-id").is_some();
                        let body = format!("hello {host} leaked={leaked}");
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                    } else {
                        let (mut read, mut write) = stream.split();
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                    }
                });
            }
        });
        Server { addr, accepted }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads up to the end of a message head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// One answer from the proxy: status, head, body (by content-length).
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

async fn read_reply(stream: &mut TcpStream) -> Reply {
    let head = read_head(stream).await;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let length: usize = header(&head, "content-length")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    Reply {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends `CONNECT target` with `headers`; the stream is the tunnel after 200.
async fn connect(proxy: SocketAddr, target: &str, headers: &str) -> (Reply, TcpStream) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    (reply, stream)
}

/// Sends one absolute-form GET through the proxy.
async fn get(proxy: SocketAddr, url: &str, headers: &str) -> Reply {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let request =
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_reply(&mut stream).await
}

/// `Proxy-Authorization: Basic` for `user:x`, as clients send it for
/// `http://user:x@proxy`.
fn basic(user: &str) -> String {
    use std::fmt::Write as _;
    // A tiny base64 encoder, so the tests need no extra dependency.
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:x").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut line = String::new();
    write!(line, "Proxy-Authorization: Basic {out}\r\n").unwrap();
    line
}

/// The sidecar with `domains` in its manifest, `ports` allowed, and every
/// name in `names` resolving to 127.0.0.1.
async fn sidecar(domains: &[&str], ports: &[u16], names: &[&str]) -> Sidecar {
    let manifest = manifest(domains);
    let ports = ports.to_vec();
    let overrides: BTreeMap<String, std::net::IpAddr> = names
        .iter()
        .map(|name| ((*name).to_owned(), "127.0.0.1".parse().unwrap()))
        .collect();
    // An operator token: one test reloads the manifest through the API.
    Sidecar::start_with_token(Role::Operator, move |config| {
        let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap();
        config.manifest = Some(path);
        config.forward.listen = Some("127.0.0.1:0".parse().unwrap());
        config.forward.allowed_ports = ports;
        config.forward.dns_overrides = overrides;
        // Connects to loopback: bounded only as a hang guard.
        config.forward.connect_timeout = HANG_GUARD;
        // The clients name their sessions (`x-aegis-session-id`, the proxy
        // username).
        aegis_e2e::mcp::client_sessions(config);
    })
    .await
}

/// The session's envelopes once `count` are there (results land after the
/// answer: a tunnel's when the sidecar has seen it close).
async fn events(sidecar: &Sidecar, session: &str, count: usize) -> Vec<Value> {
    let what = format!("{count} envelopes in {session}");
    wait_for(&what, || async {
        let events = sidecar.http.session_events("default", session).await;
        (events.len() >= count).then_some(events)
    })
    .await
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

async fn assert_chain_valid(sidecar: &Sidecar, session: &str) {
    let verify = sidecar
        .http
        .get(&format!("/v1/sessions/{session}/verify?tenant_id=default"))
        .await
        .json();
    assert_eq!(verify["valid"], true, "{verify}");
}

#[test]
fn allowed_requests_and_tunnels_reach_their_servers_and_are_recorded() {
    run(async {
        let web = Server::start(true).await;
        let echo = Server::start(false).await;
        let sidecar = sidecar(
            &["allowed.test"],
            &[web.port(), echo.port()],
            &["allowed.test"],
        )
        .await;
        let proxy = sidecar.running.forward_addr().unwrap();

        // Absolute form, session by header; the proxy's own headers stay here.
        let url = format!("http://allowed.test:{}/hello", web.port());
        let reply = get(proxy, &url, "x-aegis-session-id: s-http\r\n").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.body,
            format!("hello allowed.test:{} leaked=false", web.port())
        );
        assert_eq!(web.accepted(), 1);

        // CONNECT, session by the Proxy-Authorization username.
        let target = format!("allowed.test:{}", echo.port());
        let (reply, mut tunnel) = connect(proxy, &target, &basic("s-tunnel")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        tunnel.write_all(b"ping through the tunnel").await.unwrap();
        let mut echoed = vec![0u8; 23];
        tunnel.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"ping through the tunnel");
        drop(tunnel);
        assert_eq!(echo.accepted(), 1);

        let http = events(&sidecar, "s-http", 3).await;
        assert_eq!(
            types(&http),
            ["TOOL_CALL_PROPOSED", "TOOL_CALL_ALLOWED", "TOOL_RESULT"]
        );
        let proposed = &http[0]["payload"];
        assert_eq!(proposed["tool_name"], "net.http");
        assert_eq!(proposed["transport"], "egress");
        assert_eq!(proposed["args"]["domain"], "allowed.test");
        assert_eq!(proposed["args"]["port"], web.port());
        assert_eq!(proposed["args"]["method"], "GET");
        let result = &http[2]["payload"];
        assert_eq!(result["http_status"], 200);
        assert_eq!(result["status"], "ok");
        assert_eq!(result["proposal_seq"], http[0]["seq"]);
        assert!(result["bytes_down"].as_u64().unwrap() > 0, "{result}");

        let tunnel = events(&sidecar, "s-tunnel", 3).await;
        assert_eq!(
            types(&tunnel),
            ["TOOL_CALL_PROPOSED", "TOOL_CALL_ALLOWED", "TOOL_RESULT"]
        );
        assert_eq!(tunnel[0]["payload"]["tool_name"], "net.connect");
        assert_eq!(tunnel[0]["payload"]["args"]["method"], "CONNECT");
        let result = &tunnel[2]["payload"];
        assert_eq!(
            (result["bytes_up"].as_u64(), result["bytes_down"].as_u64()),
            (Some(23), Some(23)),
            "{result}"
        );
        assert_eq!(result["status"], "closed");

        assert_chain_valid(&sidecar, "s-http").await;
        assert_chain_valid(&sidecar, "s-tunnel").await;
        let allowed = sidecar
            .http
            .metric(r#"aegis_egress_attempts_total{kind="connect",outcome="allow",reason="OK"}"#)
            .await;
        assert_eq!(allowed, Some(1.0));
        assert_eq!(
            sidecar
                .http
                .metric(r#"aegis_egress_tunnel_bytes_total{direction="up"}"#)
                .await,
            Some(23.0)
        );
        sidecar.stop().await;
    });
}

#[test]
fn refusals_are_403_recorded_and_never_reach_a_server() {
    run(async {
        let victim = Server::start(true).await;
        let closed_port = Server::start(false).await;
        let sidecar = sidecar(
            &["allowed.test", "*.wild.test"],
            &[victim.port()],
            &["allowed.test", "other.test", "sneaky.wild.test"],
        )
        .await;
        let proxy = sidecar.running.forward_addr().unwrap();
        let session = "x-aegis-session-id: s-deny\r\n";
        let port = victim.port();

        let attempts = [
            // Outside the manifest.
            (
                format!("other.test:{port}"),
                "not in the manifest's network allowlist",
            ),
            // A port not in forward.allowed_ports, on an allowed host.
            (
                format!("allowed.test:{}", closed_port.port()),
                "forward.allowed_ports",
            ),
            // SSRF: loopback and metadata IPs, a wildcard name that resolves
            // to loopback.
            (format!("127.0.0.1:{port}"), "EGRESS_DENY"),
            (format!("[::1]:{port}"), "EGRESS_DENY"),
            ("169.254.169.254:80".to_owned(), "EGRESS_DENY"),
            (format!("sneaky.wild.test:{port}"), "SSRF guard"),
        ];
        for (target, says) in &attempts {
            let (reply, _) = connect(proxy, target, session).await;
            assert_eq!(reply.status, 403, "{target}: {reply:?}");
            assert!(
                reply.body.starts_with("EGRESS_DENY: "),
                "{target}: {reply:?}"
            );
            assert!(reply.body.contains(says), "{target}: {reply:?}");
            assert!(
                reply
                    .head
                    .to_ascii_lowercase()
                    .contains("x-aegis-reason: egress_deny")
            );
        }
        let reply = get(proxy, &format!("http://other.test:{port}/"), session).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        let reply = get(proxy, &format!("http://sneaky.wild.test:{port}/"), session).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert!(reply.body.contains("SSRF guard"), "{reply:?}");

        // Not a proxy request at all.
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"GET /local HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_reply(&mut stream).await.status, 400);

        assert_eq!(
            victim.accepted(),
            0,
            "a refused destination saw a connection"
        );
        assert_eq!(closed_port.accepted(), 0, "a refused port saw a connection");

        let recorded = events(&sidecar, "s-deny", 16).await;
        let expected: Vec<&str> = ["TOOL_CALL_PROPOSED", "TOOL_CALL_DENIED"].repeat(8);
        assert_eq!(types(&recorded), expected);
        for pair in recorded.chunks(2) {
            assert_eq!(pair[1]["payload"]["reason"], "EGRESS_DENY", "{pair:?}");
            assert_eq!(pair[1]["payload"]["proposal_seq"], pair[0]["seq"]);
        }
        let ssrf = &recorded[11]["payload"];
        assert!(
            ssrf["detail"].as_str().unwrap().contains("SSRF guard"),
            "{ssrf}"
        );
        assert_chain_valid(&sidecar, "s-deny").await;
        let denied = sidecar
            .http
            .metric(r#"aegis_egress_attempts_total{kind="connect",outcome="deny",reason="EGRESS_DENY"}"#)
            .await;
        assert_eq!(denied, Some(6.0));
        sidecar.stop().await;
    });
}

#[test]
fn a_manifest_reload_that_adds_a_domain_opens_the_next_connect() {
    run(async {
        let echo = Server::start(false).await;
        let sidecar = sidecar(&["allowed.test"], &[echo.port()], &["later.test"]).await;
        let proxy = sidecar.running.forward_addr().unwrap();
        let target = format!("later.test:{}", echo.port());

        let (reply, _) = connect(proxy, &target, "").await;
        assert_eq!(reply.status, 403, "{reply:?}");

        let path = sidecar.config.manifest.clone().unwrap();
        std::fs::write(&path, manifest(&["allowed.test", "later.test"])).unwrap();
        let reload = sidecar.http.post_json("/v1/manifest/reload", "{}").await;
        assert_eq!(reload.status, 200, "{}", reload.text());

        let (reply, mut tunnel) = connect(proxy, &target, "").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        tunnel.write_all(b"hi").await.unwrap();
        let mut echoed = [0u8; 2];
        tunnel.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"hi");
        drop(tunnel);
        assert_eq!(echo.accepted(), 1);

        // The default session holds both attempts.
        let recorded = events(&sidecar, "default", 5).await;
        assert_eq!(
            types(&recorded),
            [
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_DENIED",
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_ALLOWED",
                "TOOL_RESULT"
            ]
        );
        assert_chain_valid(&sidecar, "default").await;
        sidecar.stop().await;
    });
}

/// An HTTPS server on loopback for `name`, with a certificate from `pki`;
/// answers every request `hello secure`; counts accepted connections.
async fn https_server(pki: &aegis_e2e::pki::Pki, name: &str) -> Server {
    let (crt, key) = pki.leaf(name, &[name], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(aegis_e2e::pki::server_config(&crt, &key)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server {
        addr: listener.local_addr().unwrap(),
        accepted: Arc::new(AtomicUsize::new(0)),
    };
    let accepted = server.accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "hello secure";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    server
}

#[test]
fn https_through_the_tunnel_verifies_the_servers_own_certificate() {
    run(async {
        let pki = aegis_e2e::pki::Pki::new();
        let secure = https_server(&pki, "secure.test").await;
        let sidecar = sidecar(&["secure.test"], &[secure.port()], &["secure.test"]).await;
        let proxy = sidecar.running.forward_addr().unwrap();

        let target = format!("secure.test:{}", secure.port());
        let (reply, tunnel) = connect(proxy, &target, "x-aegis-session-id: s-https\r\n").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        // TLS end to end, through the tunnel: the client checks the server's
        // certificate for its own name; the sidecar sees only bytes.
        let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(None)));
        let name = rustls_pki_types::ServerName::try_from("secure.test").unwrap();
        let mut tls = connector.connect(name, tunnel).await.unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("hello secure"), "{answer}");
        drop(tls);
        assert_eq!(secure.accepted(), 1);

        let events = events(&sidecar, "s-https", 3).await;
        assert_eq!(
            types(&events),
            ["TOOL_CALL_PROPOSED", "TOOL_CALL_ALLOWED", "TOOL_RESULT"]
        );
        assert_eq!(events[0]["payload"]["args"]["domain"], "secure.test");
        let result = &events[2]["payload"];
        assert!(result["bytes_up"].as_u64().unwrap() > 200, "{result}");
        assert!(result["bytes_down"].as_u64().unwrap() > 500, "{result}");
        assert_chain_valid(&sidecar, "s-https").await;
        sidecar.stop().await;
    });
}

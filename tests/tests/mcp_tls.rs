//! TLS on every hop: agent → sidecar over TLS (a client trusting a test CA),
//! sidecar → upstream over TLS (the demo server behind a small TLS front,
//! verified against the same CA with a configured SNI name); mTLS on the MCP
//! listener; TLS on the admin listener. The CA and every certificate are
//! made here with rcgen.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, McpClient, start_upstream};
use aegis_e2e::pki::{Pki, certs};
use aegis_e2e::{HANG_GUARD, Sidecar, run, wait_until};
use aegis_proxy::cli::RunFlags;
use aegis_proxy::config::{Config, RawConfig};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::ExtendedKeyUsagePurpose;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A TLS front for a plain server: accepts TLS on a free port with the
/// certificate in `crt`/`key` and pipes each connection's bytes to `backend`.
async fn tls_front(backend: SocketAddr, crt: &Path, key: &Path) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs(crt), PrivateKeyDer::from_pem_file(key).unwrap())
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// The configuration `yaml` describes (files are read and checked as at
/// start-up), on a fresh ledger with the e2e manifest.
fn sidecar_config(yaml: &str) -> impl FnOnce(&mut Config) {
    let raw = RawConfig::from_yaml(yaml).unwrap();
    let loaded = Config::from_layers(raw, None, &HashMap::new(), &RunFlags::default())
        .unwrap_or_else(|e| panic!("config problems:\n{e}"));
    move |config: &mut Config| {
        let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        config.manifest = Some(path);
        config.mcp = loaded.mcp;
        config.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
        // The clients name their sessions (`x-aegis-session-id`).
        aegis_e2e::mcp::client_sessions(config);
        config.admin.tls = loaded.admin.tls;
    }
}

fn is_error(reply: &Value) -> bool {
    reply["result"]["isError"] == json!(true) || reply.get("error").is_some()
}

#[test]
fn tls_on_both_hops_allows_denies_and_records() {
    run(async {
        let pki = Pki::new();
        let ca = pki.ca_file();
        let server = pki.leaf(
            "sidecar",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let tools = pki.leaf(
            "tools",
            &["tools.test"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let demo = start_upstream(AnswerMode::Json).await;
        let front = tls_front(demo.addr(), &tools.0, &tools.1).await;
        let yaml = format!(
            "mcp:\n  tls:\n    cert_file: {}\n    key_file: {}\n  upstreams:\n    - name: tools\n      \
             url: https://{front}/mcp\n      tls:\n        ca_file: {}\n        server_name: tools.test\n",
            server.0.display(),
            server.1.display(),
            ca.display()
        );
        let sidecar = Sidecar::start_with(sidecar_config(&yaml)).await;
        let addr = sidecar.running.mcp_addr().unwrap();
        let mut client = McpClient::with_tls(addr, "/mcp/tools", pki.client_config(None))
            .with_header("x-aegis-session-id", "s-tls");

        client.initialize().await;
        let reply = client.call(1, "echo", json!({"text": "over tls"})).await;
        assert!(!is_error(&reply), "{reply}");
        assert_eq!(reply["result"]["content"][0]["text"], "over tls");
        assert_eq!(demo.stats().tool_calls("echo"), 1);

        let denied = client.call(2, "delete_everything", json!({})).await;
        assert!(is_error(&denied), "{denied}");
        assert_eq!(demo.stats().tool_calls("delete_everything"), 0);

        let verify = sidecar
            .http
            .get("/v1/sessions/s-tls/verify?tenant_id=default")
            .await
            .json();
        assert_eq!(verify["valid"], true, "{verify}");
        let events = sidecar.http.session_events("default", "s-tls").await;
        let types: Vec<&str> = events
            .iter()
            .filter_map(|e| e["event_type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_ALLOWED",
                "TOOL_RESULT",
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_DENIED"
            ],
            "{events:?}"
        );
        sidecar.stop().await;
    });
}

#[test]
fn mtls_refuses_a_client_without_a_certificate_and_admits_a_signed_one() {
    run(async {
        let pki = Pki::new();
        let ca = pki.ca_file();
        let server = pki.leaf(
            "sidecar",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let agent = pki.leaf("agent", &["agent"], ExtendedKeyUsagePurpose::ClientAuth);
        let demo = start_upstream(AnswerMode::Json).await;
        let yaml = format!(
            "mcp:\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n  \
             upstreams:\n    - name: tools\n      url: {}\n",
            server.0.display(),
            server.1.display(),
            ca.display(),
            demo.url()
        );
        let sidecar = Sidecar::start_with(sidecar_config(&yaml)).await;
        let addr = sidecar.running.mcp_addr().unwrap();

        let anonymous = https_get(addr, "/mcp/tools", pki.client_config(None)).await;
        assert!(
            anonymous.is_err(),
            "a client without a certificate got {anonymous:?}"
        );

        let mut client = McpClient::with_tls(addr, "/mcp/tools", pki.client_config(Some(&agent)))
            .with_header("x-aegis-session-id", "s-mtls");
        client.initialize().await;
        let reply = client.call(1, "echo", json!({"text": "mutual"})).await;
        assert!(!is_error(&reply), "{reply}");
        assert_eq!(demo.stats().tool_calls("echo"), 1);

        let failures = sidecar
            .running
            .metrics()
            .tls_handshake_failures
            .with_label_values(&["mcp"]);
        wait_until("an mcp handshake failure", || failures.get() >= 1).await;
        sidecar.stop().await;
    });
}

#[test]
fn the_admin_listener_serves_tls() {
    run(async {
        let pki = Pki::new();
        let admin = pki.leaf(
            "admin",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let yaml = format!(
            "admin:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            admin.0.display(),
            admin.1.display()
        );
        let sidecar = Sidecar::start_with(sidecar_config(&yaml)).await;
        let addr = sidecar.running.admin_addr();
        let (status, body) = https_get(addr, "/healthz", pki.client_config(None))
            .await
            .expect("GET /healthz over TLS");
        assert_eq!(status, 200, "{body:?}");

        // Plain HTTP to a TLS port: no answer, one handshake failure.
        let plain: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let uri = format!("http://{addr}/healthz");
        let refused = tokio::time::timeout(HANG_GUARD, plain.get(uri.parse().unwrap()))
            .await
            .expect("plain request timed out");
        assert!(refused.is_err(), "plain HTTP got {refused:?}");
        let failures = sidecar
            .running
            .metrics()
            .tls_handshake_failures
            .with_label_values(&["admin"]);
        wait_until("one admin handshake failure", || failures.get() == 1).await;
        sidecar.stop().await;
    });
}

/// GET `path` over TLS with `tls`; the status and body, or why it failed
/// (a refusal, never a timeout: no answer within [`HANG_GUARD`] panics).
async fn https_get(
    addr: SocketAddr,
    path: &str,
    tls: rustls::ClientConfig,
) -> Result<(u16, Bytes), String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::get(format!("https://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(HANG_GUARD, client.request(request))
        .await
        .expect("no answer (nor refusal) over TLS")
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

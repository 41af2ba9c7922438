//! What `identity.rs` needs around the sidecar: signing keys and their JWK
//! Sets, a loopback server that records the request heads it receives, a
//! proxy client speaking the forward-proxy protocol by hand, and a PKI
//! whose client certificates carry URI SANs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ------------------------------------------------------------------ keys

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A signing key (made with ring) and the JWK that verifies it.
pub struct Key {
    alg: &'static str,
    kid: String,
    jwk: Value,
    pair: Pair,
}

impl Key {
    pub fn es256(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                         "x": b64(&point[1..33]), "y": b64(&point[33..])});
        Key {
            alg: "ES256",
            kid: kid.into(),
            jwk,
            pair: Pair::Ec(pair),
        }
    }

    pub fn ed25519(kid: &str) -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                         "x": b64(pair.public_key().as_ref())});
        Key {
            alg: "EdDSA",
            kid: kid.into(),
            jwk,
            pair: Pair::Ed(pair),
        }
    }

    /// A compact JWS of `claims` under this key's alg and kid.
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

pub fn write_jwks(path: &Path, keys: &[&Key]) {
    std::fs::write(path, jwks(keys)).unwrap();
}

/// Writes `text` beside `path` and renames it over `path`, as a deploy
/// tool would: a reader never sees half a file.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn write_jwks_atomically(path: &Path, keys: &[&Key]) {
    replace_file(path, &jwks(keys));
}

// ------------------------------------------------------- recording server

/// A loopback HTTP/1.1 server recording every request head it receives;
/// it answers a JSON-RPC result for the body's `id` (an MCP upstream) or
/// `null` (a web server), then closes the connection.
#[derive(Debug, Clone)]
pub struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut stream).await;
                    if head.is_empty() {
                        return;
                    }
                    let length: usize = header(&head, "content-length")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    seen.lock().unwrap().push(head);
                    let id = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("id").cloned())
                        .unwrap_or(Value::Null);
                    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
                        "content": [{"type": "text", "text": "ok"}], "isError": false}})
                    .to_string();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Recorder { addr, heads }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn header(head: &str, name: &str) -> Option<String> {
    headers(head, name).into_iter().next()
}

fn headers(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .collect()
}

// ------------------------------------------------------------ proxy client

/// One answer from the forward proxy.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.head, name)
    }

    pub fn headers(&self, name: &str) -> Vec<String> {
        headers(&self.head, name)
    }
}

/// `Proxy-Authorization: Basic` for `user:password`, as a client sends it
/// for `http://user:password@proxy`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Proxy-Authorization: Basic {}\r\n",
        STANDARD.encode(format!("{user}:{password}"))
    )
}

/// One absolute-form request through the proxy, with `headers` (lines
/// ending in CRLF); a POST carries a small JSON body.
pub async fn proxy_request(proxy: SocketAddr, method: &str, url: &str, headers: &str) -> Reply {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let body = if method == "POST" { "{}" } else { "" };
    let request = format!(
        "{method} {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
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

// --------------------------------------------------------------------- PKI

pub const SAN_A: &str = "spiffe://cluster.local/ns/agents/sa/agent-a";
pub const SAN_B: &str = "spiffe://cluster.local/ns/agents/sa/agent-b";

/// A CA, the sidecar's server certificate, and client certificates:
/// `a` and `b` with URI SANs [`SAN_A`] and [`SAN_B`] (and a DNS SAN),
/// `dns-only` with a DNS SAN alone.
pub struct Pki {
    _dir: tempfile::TempDir,
    ca_cert: CertificateDer<'static>,
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub ca: std::path::PathBuf,
    pub server: (std::path::PathBuf, std::path::PathBuf),
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let server = (dir.path().join("server.crt"), dir.path().join("server.key"));
        std::fs::write(&server.0, cert.pem()).unwrap();
        std::fs::write(&server.1, key.serialize_pem()).unwrap();
        Pki {
            ca_cert: issuer.der().clone(),
            _dir: dir,
            issuer,
            ca,
            server,
        }
    }

    /// A client configuration trusting the CA, presenting client `name`'s
    /// certificate.
    pub fn client(&self, name: &str) -> rustls::ClientConfig {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let dns = SanType::DnsName(format!("{name}.agents.svc").try_into().unwrap());
        params.subject_alt_names = match name {
            "a" => vec![SanType::URI(SAN_A.try_into().unwrap()), dns],
            "b" => vec![dns, SanType::URI(SAN_B.try_into().unwrap())],
            _ => vec![dns],
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.clone()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.der().clone()], key)
        .unwrap()
    }
}

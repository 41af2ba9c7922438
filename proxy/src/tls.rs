//! TLS with rustls (the `ring` provider; no OpenSSL): reading PEM files,
//! building the listeners' [`ServerConfig`] (optionally verifying client
//! certificates: mTLS) and the upstream client's [`ClientConfig`].
//!
//! Everything here runs at start-up, from configuration validation
//! (`config::tls`), so a problem is a start-up error naming the setting.
//! Errors are plain text that quotes file paths, never their contents:
//! certificates and keys are not logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Longest wait for a client's TLS handshake, inside the connection's own
/// task: a slow or silent client holds one connection slot for at most this
/// long and never blocks accepting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN offered by the listeners: HTTP/2 first, HTTP/1.1 for the rest (hyper's
/// auto builder serves both).
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The one crypto provider every TLS config uses, named explicitly so that no
/// process-wide default has to be installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`, in file order; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            format!(
                "\"{}\" is not valid PEM: {}",
                path.display(),
                pem_error(&err)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "\"{}\" holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => format!(
            "\"{}\" holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ),
        other => format!(
            "\"{}\" is not valid PEM: {}",
            path.display(),
            pem_error(&other)
        ),
    })
}

/// A trust store holding exactly the certificates in `certs`.
pub fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|err| format!("not a usable CA certificate: {err}"))?;
    }
    Ok(roots)
}

/// The public web's roots (Mozilla's, from `webpki-roots`).
pub fn webpki_root_store() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Why a certificate and key could not be used together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// The key is not the certificate's.
    Mismatch,
    /// The key (or certificate) could not be used at all.
    Unusable(String),
}

fn key_problem(err: rustls::Error) -> KeyProblem {
    match err {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            KeyProblem::Mismatch
        }
        other => KeyProblem::Unusable(other.to_string()),
    }
}

/// A listener's TLS: `certs` (leaf first) and its `key`; with `client_roots`,
/// every client must present a certificate that chains to one of them.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
) -> Result<ServerConfig, KeyProblem> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| KeyProblem::Unusable(err.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| KeyProblem::Unusable(err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(key_problem)?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// An upstream's TLS: servers verified against `roots`; with `client_auth`
/// (certificates leaf first, key) a client certificate is offered. ALPN is
/// set by the HTTPS connector.
pub fn client_config(
    roots: RootCertStore,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, KeyProblem> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| KeyProblem::Unusable(err.to_string()))?
        .with_root_certificates(roots);
    match client_auth {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(key_problem),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read \"{}\": {err}", path.display()))
}

/// A PEM error in words, without the file's bytes.
fn pem_error(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => "a section is not valid base64".to_owned(),
        pem::Error::Io(err) => err.to_string(),
        pem::Error::NoItemsFound => "no PEM section found".to_owned(),
        _ => "malformed".to_owned(),
    }
}

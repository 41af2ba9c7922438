//! Who is on the other end of a connection: its address, and on a TLS
//! listener that verifies client certificates (mTLS), the names in the
//! certificate the client proved it holds the key of.
//!
//! The accept loop ([`crate::listener`]) builds one [`Peer`] per connection
//! after the handshake and puts it in every request's extensions, so a
//! handler reads it with `req.extensions().get::<Arc<Peer>>()`. Only
//! certificates that rustls verified against the listener's client CA are
//! ever here: without `client_ca_file` no certificate is asked for, and
//! [`Peer::cert`] is `None`.

use std::net::SocketAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The connection a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The verified client certificate's names (mTLS only).
    pub cert: Option<PeerCert>,
}

/// The names of a verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject's distinguished name, as RFC 4514 text (`CN=agent,O=acme`).
    pub subject: String,
    /// `uniformResourceIdentifier` SANs, in certificate order (a SPIFFE ID
    /// is one: `spiffe://cluster.local/ns/agents/sa/agent-7`).
    pub uri_sans: Vec<String>,
    /// `dNSName` SANs, in certificate order.
    pub dns_sans: Vec<String>,
}

impl PeerCert {
    /// Reads the names of a DER certificate. Errors are plain words.
    pub fn from_der(der: &[u8]) -> Result<PeerCert, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
        let mut names = PeerCert {
            subject: cert.subject().to_string(),
            ..PeerCert::default()
        };
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| format!("the client certificate's SAN extension is malformed: {e}"))?;
        if let Some(sans) = sans {
            for name in &sans.value.general_names {
                match name {
                    GeneralName::URI(uri) => names.uri_sans.push((*uri).to_owned()),
                    GeneralName::DNSName(dns) => names.dns_sans.push((*dns).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    #[test]
    fn names_come_from_the_certificate() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "agent-7");
        dn.push(DnType::OrganizationName, "acme");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::URI(
                "spiffe://cluster.local/ns/agents/sa/agent-7"
                    .try_into()
                    .unwrap(),
            ),
            SanType::DnsName("agent-7.agents.svc".try_into().unwrap()),
            SanType::URI("urn:example:second".try_into().unwrap()),
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let names = PeerCert::from_der(cert.der()).unwrap();
        assert_eq!(
            names.uri_sans,
            [
                "spiffe://cluster.local/ns/agents/sa/agent-7",
                "urn:example:second"
            ]
        );
        assert_eq!(names.dns_sans, ["agent-7.agents.svc"]);
        assert!(names.subject.contains("CN=agent-7"), "{}", names.subject);
        assert!(names.subject.contains("O=acme"), "{}", names.subject);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(PeerCert::from_der(b"not a certificate").is_err());
        assert!(PeerCert::from_der(&[]).is_err());
    }
}

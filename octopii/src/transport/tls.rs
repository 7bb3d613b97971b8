//! Identity and trust: a cluster CA, node certificates, mutual TLS 1.3.
//!
//! A cluster CA ([`ClusterCa`]) signs one certificate per node, whose subject
//! common name is the node's name. Every connection is mutually
//! authenticated: each side presents its certificate and verifies the
//! other's chain, validity period and key usage against the CA. Nodes are
//! dialled by address, so the server's certificate is not matched against a
//! DNS name; instead membership in the cluster (a valid chain to its CA) is
//! what is checked, and the peer's verified name is handed to higher layers
//! as [`PeerInfo::identity`](super::PeerInfo::identity).
//!
//! [`TlsConfig::insecure_accept_any_certificate`](crate::config::TlsConfig::insecure_accept_any_certificate)
//! turns verification off for local experiments; nothing else does.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName as TlsName, RootCertStore,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::{OctopiiError, Result};

/// The ALPN protocol name every Octopii connection negotiates.
pub const ALPN: &[u8] = b"octopii";

/// How long certificates made by [`ClusterCa`] stay valid.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A certificate authority for one cluster: it signs node certificates.
///
/// ```
/// use octopii::transport::tls::ClusterCa;
///
/// let ca = ClusterCa::generate().unwrap();
/// let node = ca.issue_node("node-1").unwrap();
/// assert_eq!(node.name(), "node-1");
/// ```
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Makes a new CA with a fresh key, in memory.
    pub fn generate() -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("Octopii cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, SystemTime::now(), VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| OctopiiError::Tls(format!("CA certificate: {e}")))?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
        })
    }

    /// The CA certificate, PEM encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM encoded. Keep it secret.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a certificate for the node `name`, valid for ten years.
    pub fn issue_node(&self, name: &str) -> Result<NodeCredentials> {
        self.issue_node_valid(name, SystemTime::now(), VALIDITY)
    }

    /// Issues a certificate for `name` valid from `not_before` for `lifetime`
    /// (tests use this to make expired certificates).
    pub fn issue_node_valid(
        &self,
        name: &str,
        not_before: SystemTime,
        lifetime: Duration,
    ) -> Result<NodeCredentials> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name = common_name(name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, not_before, lifetime);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCredentials {
            name: name.to_owned(),
            ca_cert: self.cert_der.clone(),
            cert: cert.der().clone(),
            key: Arc::new(PrivateKeyDer::Pkcs8(key.serialize_der().into())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn set_validity(params: &mut CertificateParams, not_before: SystemTime, lifetime: Duration) {
    // A minute of slack for clocks that differ a little between nodes.
    let start = not_before - Duration::from_secs(60);
    params.not_before = start.into();
    params.not_after = (start + lifetime).into();
}

/// A node's certificate and key, and the CA certificate it trusts.
#[derive(Clone)]
pub struct NodeCredentials {
    name: String,
    ca_cert: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// Loads credentials from PEM files: the CA certificate, this node's
    /// certificate and its private key.
    pub fn from_pem_files(ca_cert: &Path, cert: &Path, key: &Path) -> Result<Self> {
        let read = |path: &Path| std::fs::read(path).map_err(|e| OctopiiError::file(path, e));
        let ca_cert = CertificateDer::from_pem_slice(&read(ca_cert)?)
            .map_err(|e| OctopiiError::Tls(format!("{}: {e}", ca_cert.display())))?;
        let cert_pem = read(cert)?;
        let node_cert = CertificateDer::from_pem_slice(&cert_pem)
            .map_err(|e| OctopiiError::Tls(format!("{}: {e}", cert.display())))?;
        let key_pem = read(key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| OctopiiError::Tls(format!("{}: {e}", key.display())))?;
        let name = subject_common_name(&node_cert)
            .ok_or_else(|| OctopiiError::Tls(format!("{}: no subject name", cert.display())))?;
        Ok(NodeCredentials {
            name,
            ca_cert,
            cert: node_cert,
            key: Arc::new(key_der),
            cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
            key_pem: String::from_utf8_lossy(&key_pem).into_owned(),
        })
    }

    /// The node name in the certificate's subject.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's certificate, PEM encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// This node's private key, PEM encoded. Keep it secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// The subject common name of a DER certificate, if it has one.
pub fn subject_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_cert: &CertificateDer<'static>) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.clone())?;
    Ok(Arc::new(roots))
}

/// The rustls server configuration of a node (TLS 1.3, ALPN `octopii`).
pub fn server_config(creds: &NodeCredentials, insecure: bool) -> Result<rustls::ServerConfig> {
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = if insecure {
        Arc::new(InsecureAcceptAnyCertificate(
            provider.signature_verification_algorithms,
        ))
    } else {
        WebPkiClientVerifier::builder_with_provider(roots(&creds.ca_cert)?, provider.clone())
            .build()
            .map_err(|e| OctopiiError::Tls(e.to_string()))?
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![creds.cert.clone()], creds.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The rustls client configuration of a node (TLS 1.3, ALPN `octopii`).
pub fn client_config(creds: &NodeCredentials, insecure: bool) -> Result<rustls::ClientConfig> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(InsecureAcceptAnyCertificate(
            provider.signature_verification_algorithms,
        ))
    } else {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots(&creds.ca_cert)?,
            provider.clone(),
        )
        .build()
        .map_err(|e| OctopiiError::Tls(e.to_string()))?;
        Arc::new(ClusterMemberVerifier { inner })
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![creds.cert.clone()], creds.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Verifies a server's certificate chain, validity and key usage against the
/// cluster CA, without matching a DNS name: nodes are dialled by address, and
/// a valid chain to the cluster CA is what makes a peer a member.
#[derive(Debug)]
struct ClusterMemberVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterMemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki checks the name only after the chain, validity and key
            // usage have passed, so a name mismatch means a valid member.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate from either side. Handshake signatures are still
/// checked (the peer holds the key of what it presented), but who the peer is
/// is not: for local experiments only.
#[derive(Debug)]
struct InsecureAcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for InsecureAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

impl ClientCertVerifier for InsecureAcceptAnyCertificate {
    fn root_hint_subjects(&self) -> &[TlsName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Writes `text` to `path`, readable only by its owner when `secret`.
pub fn write_pem(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| OctopiiError::file(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| OctopiiError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let ca = ClusterCa::generate().unwrap();
        let node = ca.issue_node("node-7").unwrap();
        let cert = CertificateDer::from_pem_slice(node.cert_pem().as_bytes()).unwrap();
        assert_eq!(cert, node.cert);
        let key = PrivateKeyDer::from_pem_slice(node.key_pem().as_bytes()).unwrap();
        assert_eq!(key.secret_der(), node.key.secret_der());
        assert_eq!(subject_common_name(&cert).as_deref(), Some("node-7"));
        let again = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let other = again.issue_node("node-8").unwrap();
        assert_eq!(other.ca_cert, node.ca_cert);
    }
}

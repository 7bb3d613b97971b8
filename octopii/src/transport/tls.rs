//! Identity and trust: a cluster CA, role-bearing certificates, mutual TLS 1.3.
//!
//! A cluster CA ([`ClusterCa`]) signs one certificate per node or client,
//! whose subject common name is its holder's name and whose subject
//! alternative name carries one URI saying what the holder is (its
//! [`Role`]): `octopii://node/<raft id>`, `octopii://client/<name>` or
//! `octopii://admin/<name>`. Every connection is mutually authenticated:
//! each side presents its certificate and verifies the other's chain,
//! validity period and key usage against the CA. Nodes are dialled by
//! address, so the server's certificate is not matched against a DNS name;
//! a valid chain to the cluster CA is what is checked, and the peer's
//! verified name and role are handed to higher layers as
//! [`PeerInfo`](super::PeerInfo). What a role may do is decided above, by
//! each service's [`Policy`](crate::rpc::Policy).
//!
//! [`TlsConfig::insecure_accept_any_certificate`](crate::config::TlsConfig::insecure_accept_any_certificate)
//! turns verification off for local experiments; nothing else does.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
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

use super::TransportError;
use crate::identity::{CredentialsError, PemItem};
pub use crate::identity::{NodeCredentials, ROLE_URI_SCHEME, Role, subject_common_name};

/// Result of the TLS functions.
type Result<T, E = TransportError> = std::result::Result<T, E>;

/// The ALPN protocol name every Octopii connection negotiates.
pub const ALPN: &[u8] = b"octopii/2";

/// How long certificates made by [`ClusterCa`] stay valid.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A certificate authority for one cluster: it signs node, client and
/// admin certificates.
///
/// ```
/// use octopii::transport::tls::{ClusterCa, Role};
///
/// let ca = ClusterCa::generate().unwrap();
/// let node = ca.issue_node("node-1", 1).unwrap();
/// assert_eq!(node.name(), "node-1");
/// assert_eq!(node.role(), Role::Node { id: 1 });
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
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            TransportError::Credentials(CredentialsError::Pem {
                path: None,
                what: PemItem::CaCertificate,
                source,
            })
        })?;
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

    /// Issues a certificate for the node `name` with raft id `id`, valid
    /// for ten years. Its SAN URI is `octopii://node/<id>`.
    pub fn issue_node(&self, name: &str, id: u64) -> Result<NodeCredentials> {
        self.issue(name, Role::Node { id })
    }

    /// Issues a client certificate for `name` (SAN URI
    /// `octopii://client/<name>`), valid for ten years: it may call
    /// services as its policies allow, and is never a raft member.
    pub fn issue_client(&self, name: &str) -> Result<NodeCredentials> {
        self.issue(name, Role::Client)
    }

    /// Issues an admin certificate for `name` (SAN URI
    /// `octopii://admin/<name>`), valid for ten years: it may change raft
    /// membership without being a member.
    pub fn issue_admin(&self, name: &str) -> Result<NodeCredentials> {
        self.issue(name, Role::Admin)
    }

    /// Issues a certificate for `name` in `role`, valid for ten years.
    /// [`Role::Unknown`] makes one with no role URI, as certificates were
    /// before roles existed.
    pub fn issue(&self, name: &str, role: Role) -> Result<NodeCredentials> {
        self.issue_valid(name, role, SystemTime::now(), VALIDITY)
    }

    /// Issues a certificate for `name` in `role`, valid from `not_before`
    /// for `lifetime` (tests use this to make expired certificates).
    ///
    /// Refuses raft id 0 and a client or admin name that cannot be part
    /// of a URI (empty, or other than ASCII letters, digits, `-`, `_`, `.`).
    pub fn issue_valid(
        &self,
        name: &str,
        role: Role,
        not_before: SystemTime,
        lifetime: Duration,
    ) -> Result<NodeCredentials> {
        match role {
            Role::Node { id: 0 } => {
                return Err(TransportError::ZeroNodeId);
            }
            Role::Client | Role::Admin if !usable_in_uri(name) => {
                return Err(TransportError::UnusableName {
                    role,
                    name: name.to_owned(),
                });
            }
            _ => {}
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        if let Some(uri) = role.uri(name) {
            let uri = uri.try_into()?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
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
            role: Role::of_certificate(cert.der()),
            ca_cert: self.cert_der.clone(),
            cert: cert.der().clone(),
            key: Arc::new(PrivateKeyDer::Pkcs8(key.serialize_der().into())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn usable_in_uri(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_cert: &CertificateDer<'static>) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.clone())?;
    Ok(Arc::new(roots))
}

/// The rustls server configuration of a node (TLS 1.3, ALPN `octopii/2`).
pub fn server_config(creds: &NodeCredentials, insecure: bool) -> Result<rustls::ServerConfig> {
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = if insecure {
        Arc::new(InsecureAcceptAnyCertificate(
            provider.signature_verification_algorithms,
        ))
    } else {
        WebPkiClientVerifier::builder_with_provider(roots(&creds.ca_cert)?, provider.clone())
            .build()?
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![creds.cert.clone()], creds.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The rustls client configuration of a node (TLS 1.3, ALPN `octopii/2`).
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
        .build()?;
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
pub fn write_pem(path: &Path, text: &str, secret: bool) -> crate::Result<()> {
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
        .map_err(|e| crate::OctopiiError::file(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| crate::OctopiiError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let ca = ClusterCa::generate().unwrap();
        let node = ca.issue_node("node-7", 7).unwrap();
        let cert = CertificateDer::from_pem_slice(node.cert_pem().as_bytes()).unwrap();
        assert_eq!(cert, node.cert);
        let key = PrivateKeyDer::from_pem_slice(node.key_pem().as_bytes()).unwrap();
        assert_eq!(key.secret_der(), node.key.secret_der());
        assert_eq!(subject_common_name(&cert).as_deref(), Some("node-7"));
        let again = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let other = again.issue_node("node-8", 8).unwrap();
        assert_eq!(other.ca_cert, node.ca_cert);
        assert_eq!(Role::of_certificate(&cert), Role::Node { id: 7 });
    }

    #[test]
    fn each_role_reads_back_from_its_certificate() {
        let ca = ClusterCa::generate().unwrap();
        let cases = [
            (ca.issue_node("n", 3).unwrap(), Role::Node { id: 3 }),
            (
                ca.issue_node("n", u64::MAX).unwrap(),
                Role::Node { id: u64::MAX },
            ),
            (ca.issue_client("alice").unwrap(), Role::Client),
            (ca.issue_admin("ops").unwrap(), Role::Admin),
            (ca.issue("legacy", Role::Unknown).unwrap(), Role::Unknown),
        ];
        for (creds, role) in cases {
            assert_eq!(creds.role(), role);
            assert_eq!(Role::of_certificate(&creds.cert), role);
        }
        assert!(matches!(
            ca.issue_node("n", 0),
            Err(TransportError::ZeroNodeId)
        ));
        assert!(matches!(
            ca.issue_client("a/b"),
            Err(TransportError::UnusableName { role: Role::Client, name }) if name == "a/b"
        ));
        assert!(matches!(
            ca.issue_admin(""),
            Err(TransportError::UnusableName { role: Role::Admin, name }) if name.is_empty()
        ));
    }

    #[test]
    fn malformed_role_uris_name_no_role() {
        let cn = Some("alice");
        for uri in [
            "octopii://node/0",
            "octopii://node/",
            "octopii://node/+3",
            "octopii://node/ 3",
            "octopii://node/3/4",
            "octopii://node/18446744073709551616",
            "octopii://client/bob",
            "octopii://admin/",
            "octopii://root/alice",
            "octopii://client",
            "https://node/3",
        ] {
            assert_eq!(Role::parse_uri(uri, cn), None, "{uri}");
        }
        assert_eq!(
            Role::parse_uri("octopii://node/12", cn),
            Some(Role::Node { id: 12 })
        );
        assert_eq!(
            Role::parse_uri("octopii://client/alice", cn),
            Some(Role::Client)
        );
    }

    #[test]
    fn a_certificate_with_two_role_uris_names_no_role() {
        let ca = ClusterCa::generate().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["two".to_owned()]).unwrap();
        params.distinguished_name = common_name("two");
        for uri in ["octopii://node/1", "octopii://node/2"] {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        assert_eq!(Role::of_certificate(cert.der()), Role::Unknown);
    }
}

//! Who a certificate says its holder is: a [`Role`] (a node with its raft
//! id, a client, an admin), read from the certificate's `octopii://` SAN
//! URI, and [`NodeCredentials`], the certificate and key a node presents.
//!
//! Plain data below every layer: the configuration holds credentials, the
//! transport presents and verifies them, and services decide what a role
//! may do. Certificates are issued by
//! [`ClusterCa`](crate::transport::tls::ClusterCa).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{Error as PemError, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why credentials could not be loaded: a file that cannot be read, or
/// that holds no usable PEM item of the kind it should.
///
/// ```
/// use octopii::identity::{CredentialsError, NodeCredentials};
///
/// let missing = std::path::Path::new("no-such-dir/ca.pem");
/// match NodeCredentials::from_pem_files(missing, missing, missing) {
///     Err(CredentialsError::ReadFile { path, .. }) => assert_eq!(path, missing),
///     other => panic!("a missing file is named: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A file, or PEM text given in memory (`path` is `None`), holds no
    /// usable PEM item of the kind it should.
    #[error("{}no usable {what}: {source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Pem {
        /// The file, if the text came from one.
        path: Option<PathBuf>,
        /// What it should have held.
        what: PemItem,
        /// Why the PEM text was refused.
        source: rustls_pki_types::pem::Error,
    },

    /// A certificate file holds a certificate without a subject common
    /// name, so its holder has no name.
    #[error("{}: the certificate has no subject name", path.display())]
    NoSubjectName {
        /// The certificate file.
        path: PathBuf,
    },
}

/// What a PEM file or text should hold; see [`CredentialsError::Pem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemItem {
    /// The cluster CA's certificate.
    CaCertificate,
    /// A node's or client's certificate.
    Certificate,
    /// A private key.
    PrivateKey,
}

impl fmt::Display for PemItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemItem::CaCertificate => write!(f, "CA certificate"),
            PemItem::Certificate => write!(f, "certificate"),
            PemItem::PrivateKey => write!(f, "private key"),
        }
    }
}

/// The scheme of the SAN URI that names a certificate's [`Role`].
pub const ROLE_URI_SCHEME: &str = "octopii://";

/// What a certificate's holder is, as its `octopii://` SAN URI says.
///
/// ```
/// use octopii::identity::Role;
/// use octopii::ClusterCa;
///
/// let ca = ClusterCa::generate().unwrap();
/// assert_eq!(ca.issue_node("node-3", 3).unwrap().role(), Role::Node { id: 3 });
/// assert_eq!(ca.issue_client("alice").unwrap().role(), Role::Client);
/// assert_eq!(Role::Node { id: 3 }.node_id(), Some(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A cluster node with raft id `id` (`octopii://node/<id>`).
    Node {
        /// The node's raft id (never 0).
        id: u64,
    },
    /// A client: it may call services, it is no raft member
    /// (`octopii://client/<name>`).
    Client,
    /// An operator: may change raft membership without being a member
    /// (`octopii://admin/<name>`).
    Admin,
    /// The certificate names no role: it has no `octopii://` URI (it was
    /// made before roles existed), several, or a malformed one. Such a
    /// certificate has no rights to the built-in services.
    Unknown,
}

impl Role {
    /// The raft id of a node role.
    pub fn node_id(self) -> Option<u64> {
        match self {
            Role::Node { id } => Some(id),
            _ => None,
        }
    }

    /// Whether this is [`Role::Node`].
    pub fn is_node(self) -> bool {
        matches!(self, Role::Node { .. })
    }

    /// The role a DER certificate's SAN URIs give its holder, `Unknown`
    /// unless exactly one well-formed `octopii://` URI is present (a client
    /// or admin URI must name the certificate's subject common name).
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Role {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return Role::Unknown;
        };
        let uris: Vec<&str> = match parsed.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .filter(|uri| uri.starts_with(ROLE_URI_SCHEME))
                .collect(),
            _ => return Role::Unknown,
        };
        let [uri] = uris.as_slice() else {
            return Role::Unknown;
        };
        let common_name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        Role::parse_uri(uri, common_name).unwrap_or(Role::Unknown)
    }

    /// Parses `octopii://node/<id>`, `octopii://client/<name>` or
    /// `octopii://admin/<name>` (whose name must be `common_name`).
    pub(crate) fn parse_uri(uri: &str, common_name: Option<&str>) -> Option<Role> {
        let rest = uri.strip_prefix(ROLE_URI_SCHEME)?;
        let (kind, value) = rest.split_once('/')?;
        match kind {
            "node" => {
                // Digits only: no sign, no spaces, no leading `+`.
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let id: u64 = value.parse().ok()?;
                (id != 0).then_some(Role::Node { id })
            }
            "client" if Some(value) == common_name => Some(Role::Client),
            "admin" if Some(value) == common_name => Some(Role::Admin),
            _ => None,
        }
    }

    /// The SAN URI that says this role for the holder `name`.
    pub(crate) fn uri(self, name: &str) -> Option<String> {
        match self {
            Role::Node { id } => Some(format!("{ROLE_URI_SCHEME}node/{id}")),
            Role::Client => Some(format!("{ROLE_URI_SCHEME}client/{name}")),
            Role::Admin => Some(format!("{ROLE_URI_SCHEME}admin/{name}")),
            Role::Unknown => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Node { id } => write!(f, "node {id}"),
            Role::Client => f.write_str("client"),
            Role::Admin => f.write_str("admin"),
            Role::Unknown => f.write_str("no role"),
        }
    }
}

/// A node's (or client's) certificate and key, and the CA certificate it
/// trusts.
#[derive(Clone)]
pub struct NodeCredentials {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) ca_cert: CertificateDer<'static>,
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) key: Arc<PrivateKeyDer<'static>>,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// Loads credentials from PEM files: the CA certificate, this node's
    /// certificate and its private key.
    ///
    /// A file that cannot be read, or does not hold what it should, fails
    /// with a [`CredentialsError`] naming it.
    pub fn from_pem_files(
        ca_cert: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, CredentialsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CredentialsError::ReadFile {
                path: path.to_owned(),
                source,
            })
        };
        fn pem(path: &Path, what: PemItem) -> impl FnOnce(PemError) -> CredentialsError + '_ {
            move |source| CredentialsError::Pem {
                path: Some(path.to_owned()),
                what,
                source,
            }
        }
        let ca_cert = CertificateDer::from_pem_slice(&read(ca_cert)?)
            .map_err(pem(ca_cert, PemItem::CaCertificate))?;
        let cert_pem = read(cert)?;
        let node_cert =
            CertificateDer::from_pem_slice(&cert_pem).map_err(pem(cert, PemItem::Certificate))?;
        let key_pem = read(key)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem(key, PemItem::PrivateKey))?;
        let name =
            subject_common_name(&node_cert).ok_or_else(|| CredentialsError::NoSubjectName {
                path: cert.to_owned(),
            })?;
        Ok(NodeCredentials {
            name,
            role: Role::of_certificate(&node_cert),
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

    /// The role the certificate gives its holder.
    pub fn role(&self) -> Role {
        self.role
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_pem_names_the_file_and_the_item() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "this is not PEM").unwrap();
        let err = NodeCredentials::from_pem_files(&garbage, &garbage, &garbage).unwrap_err();
        match &err {
            CredentialsError::Pem {
                path: Some(path),
                what: PemItem::CaCertificate,
                ..
            } => assert_eq!(path, &garbage),
            other => panic!("not PEM: {other:?}"),
        }
        assert!(err.to_string().contains("garbage.pem"), "{err}");
    }
}

//! [`TransportError`]: why a connection, a handshake or a certificate
//! failed, as values a caller can match on.
//!
//! A refused handshake says who refused it and with which TLS alert; a
//! certificate file that does not load names the file and what it should
//! have held; a dial that did not finish names the address and the time it
//! was given. The transport is a layer below RPC, so its error names
//! nothing above it: the crate's top-level error wraps it, and the RPC
//! layer turns it into a call status in one place.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::identity::{CredentialsError, Role};

/// Why a transport operation failed.
///
/// ```
/// use octopii::transport::TransportError;
/// use octopii::transport::tls::{ClusterCa, Role};
///
/// let ca = ClusterCa::generate().unwrap();
/// match ca.issue_client("not/a/name") {
///     Err(TransportError::UnusableName { role: Role::Client, name }) => {
///         assert_eq!(name, "not/a/name");
///     }
///     other => panic!("a slash cannot be part of a role URI: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A connection to `addr` could not be started (an unusable address,
    /// the endpoint stopping, …).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// What quinn said.
        source: quinn::ConnectError,
    },

    /// The handshake with `addr` did not finish within `after`: nobody
    /// answers there, or the answers are lost.
    #[error("handshake with {addr} timed out after {after:?}")]
    HandshakeTimeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The handshake timeout (`transport.handshake_timeout_ms`).
        after: Duration,
    },

    /// Dials of `addr` failed `failures` times in a row, and the next is
    /// held back for `next_dial_in` (see `transport.redial_backoff_max_ms`).
    /// Nothing was sent.
    #[error("{failures} dials of {addr} failed in a row; the next is allowed in {next_dial_in:?}")]
    Backoff {
        /// The peer's address.
        addr: SocketAddr,
        /// Failed dials in a row.
        failures: u32,
        /// Time until the next dial is allowed.
        next_dial_in: Duration,
    },

    /// The TLS handshake was refused: a certificate from another CA,
    /// expired, or without the key usage a cluster member needs, or
    /// another protocol than Octopii's.
    #[error(
        "TLS handshake refused by {by}: {} (alert {alert})",
        if reason.is_empty() { "no reason given" } else { reason }
    )]
    HandshakeRefused {
        /// The side that refused.
        by: RefusedBy,
        /// The TLS alert number.
        alert: u8,
        /// The reason the refusing side gave (may be empty).
        reason: String,
    },

    /// An established connection failed or was closed (the peer went
    /// away, timed out, or this node is shutting down).
    #[error("QUIC connection error: {0}")]
    Connection(#[source] quinn::ConnectionError),

    /// The peer at `addr` completed the handshake without a certificate
    /// that names its holder.
    #[error("peer {addr} presented no named certificate")]
    NoPeerName {
        /// The peer's address.
        addr: SocketAddr,
    },

    /// Credentials (a certificate, a key, their files) are unusable.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),

    /// A node certificate was asked for with raft id 0, which raft does
    /// not use.
    #[error("a node's raft id must not be 0")]
    ZeroNodeId,

    /// A client or admin name that cannot be part of a role URI.
    #[error("unusable {role} name {name:?}: use ASCII letters, digits, `-`, `_` and `.`")]
    UnusableName {
        /// The role asked for.
        role: Role,
        /// The refused name.
        name: String,
    },

    /// Making or signing a certificate or key failed.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),

    /// rustls refused the credentials or the TLS settings (a key that does
    /// not match its certificate, an unusable CA certificate, …).
    #[error("TLS configuration refused: {0}")]
    TlsConfig(#[from] rustls::Error),

    /// The certificate verifier could not be built from the CA
    /// certificate.
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// The TLS configuration offers no cipher suite QUIC can use.
    #[error("TLS configuration unusable for QUIC: {0}")]
    QuicCrypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),

    /// The keys that let a restarted node reset its peers' stale
    /// connections could not be derived from its private key.
    #[error("cannot derive the endpoint keys from the node's private key")]
    KeyDerivation,

    /// The endpoint's UDP socket failed (reading its address, starting
    /// the endpoint).
    #[error("endpoint socket error: {0}")]
    Socket(#[source] io::Error),
}

/// The side that refused a TLS handshake; see
/// [`TransportError::HandshakeRefused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedBy {
    /// The peer refused this node's certificate or offer.
    Peer,
    /// This node refused the peer's.
    ThisNode,
}

impl fmt::Display for RefusedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusedBy::Peer => write!(f, "peer"),
            RefusedBy::ThisNode => write!(f, "this node"),
        }
    }
}

/// The TLS alert of a handshake whose sides share no ALPN protocol.
const NO_APPLICATION_PROTOCOL: u8 = 120;

impl TransportError {
    /// Turns a quinn connection error into a transport error, naming TLS
    /// refusals as such so the caller sees "certificate refused", not a
    /// code.
    pub fn from_connection(e: quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as E;
        let refused = |code: quinn::TransportErrorCode, reason: &str, by: RefusedBy| {
            // QUIC carries a TLS alert as transport error 0x100 + alert.
            let alert = u64::from(code).checked_sub(0x100).filter(|a| *a < 0x100)? as u8;
            let reason = if alert == NO_APPLICATION_PROTOCOL {
                // Another version: say so, not just "alert 120".
                let alpn = String::from_utf8_lossy(super::tls::ALPN);
                format!(
                    "no application protocol in common: one side does not speak {alpn} \
                     (another version of Octopii, or not Octopii){}{reason}",
                    if reason.is_empty() { "" } else { "; " }
                )
            } else {
                reason.to_owned()
            };
            Some(TransportError::HandshakeRefused { by, alert, reason })
        };
        let mapped = match &e {
            E::ConnectionClosed(close) => refused(
                close.error_code,
                &String::from_utf8_lossy(&close.reason),
                RefusedBy::Peer,
            ),
            E::TransportError(err) => refused(err.code, &err.reason, RefusedBy::ThisNode),
            _ => None,
        };
        mapped.unwrap_or(TransportError::Connection(e))
    }
}

impl From<quinn::ConnectionError> for TransportError {
    /// As [`TransportError::from_connection`].
    fn from(e: quinn::ConnectionError) -> Self {
        TransportError::from_connection(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_alert_from_the_peer_is_a_refusal_carrying_its_number_and_reason() {
        let close = quinn::ConnectionError::TransportError(quinn_proto::TransportError {
            code: quinn::TransportErrorCode::crypto(42),
            frame: None,
            reason: "bad certificate".into(),
        });
        let err = TransportError::from(close);
        match &err {
            TransportError::HandshakeRefused { by, alert, reason } => {
                assert_eq!(*by, RefusedBy::ThisNode);
                assert_eq!(*alert, 42);
                assert_eq!(reason, "bad certificate");
            }
            other => panic!("an alert is a refusal: {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "TLS handshake refused by this node: bad certificate (alert 42)"
        );
        // Anything else stays the connection error it was, as the source.
        let err = TransportError::from(quinn::ConnectionError::TimedOut);
        assert!(matches!(
            err,
            TransportError::Connection(quinn::ConnectionError::TimedOut)
        ));
        assert!(std::error::Error::source(&err).is_some());
    }
}

//! Endpoint keys derived from the node's private key, so that they survive
//! a restart.
//!
//! QUIC lets an endpoint that has lost a connection's state (a restarted
//! process) end that connection at once: it answers the peer's next packet
//! with a *stateless reset* carrying a token that only the original endpoint
//! could compute. quinn computes the token with an HMAC key, and before it
//! answers at all it checks that the packet's connection id is one it could
//! have issued, with a second key. Both are random per process by default,
//! so a restarted node stays silent and its peers keep sending into the dead
//! connection until it idles out (30 s by default). Deriving both keys from
//! the node's private key gives the restarted process the same ones, so its
//! peers drop the stale connection after one round trip and dial again.

use std::sync::Arc;

use quinn::EndpointConfig;
use quinn_proto::HashedConnectionIdGenerator;
use ring::{hkdf, hmac};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::TransportError;
use crate::identity::NodeCredentials;
use crate::identity::{CredentialsError, PemItem};

type Result<T, E = TransportError> = std::result::Result<T, E>;

/// Fixed salt of the derivation: these keys are used for nothing else.
const SALT: &[u8] = b"octopii endpoint keys v1";

/// An endpoint configuration whose reset tokens and connection ids are the
/// same for every process started with `creds`' private key.
pub(crate) fn endpoint_config(creds: &NodeCredentials) -> Result<EndpointConfig> {
    let keys = RestartKeys::derive(creds)?;
    let mut config = EndpointConfig::new(Arc::new(keys.reset));
    let cid_key = keys.connection_id;
    config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid_key)));
    // quinn sends one reset per 20 ms by default, across the endpoint: a
    // restarted node that many peers reach at once would leave all but one
    // waiting for their next loss probe, seconds away.
    config.min_reset_interval(std::time::Duration::from_millis(1));
    Ok(config)
}

/// The keys, revealing nothing about the private key they come from.
struct RestartKeys {
    /// Signs stateless-reset tokens.
    reset: hmac::Key,
    /// Keys the check that a connection id is one of ours.
    connection_id: u64,
}

impl RestartKeys {
    fn derive(creds: &NodeCredentials) -> Result<Self> {
        let key = PrivateKeyDer::from_pem_slice(creds.key_pem().as_bytes()).map_err(|source| {
            TransportError::Credentials(CredentialsError::Pem {
                path: None,
                what: PemItem::PrivateKey,
                source,
            })
        })?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(key.secret_der());
        // Expanding fails only for outputs over 255 hash lengths.
        let failed = |_| TransportError::KeyDerivation;
        let reset = prk
            .expand(&[b"stateless reset"], hmac::HMAC_SHA256)
            .map_err(failed)?
            .into();
        let mut cid = [0u8; 8];
        prk.expand(&[b"connection id"], Bytes(cid.len()))
            .and_then(|okm| okm.fill(&mut cid))
            .map_err(failed)?;
        Ok(RestartKeys {
            reset,
            connection_id: u64::from_le_bytes(cid),
        })
    }
}

/// An HKDF output length in bytes.
struct Bytes(usize);

impl hkdf::KeyType for Bytes {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use quinn::ConnectionIdGenerator;
    use quinn::crypto::HmacKey;

    use super::*;
    use crate::transport::tls::ClusterCa;

    fn token(keys: &RestartKeys, cid: &[u8]) -> Vec<u8> {
        let mut out = vec![0; keys.reset.signature_len()];
        keys.reset.sign(cid, &mut out);
        out
    }

    #[test]
    fn the_same_private_key_gives_the_same_keys() {
        let ca = ClusterCa::generate().unwrap();
        let creds = ca.issue_node("a", 1).unwrap();
        let first = RestartKeys::derive(&creds).unwrap();
        let again = RestartKeys::derive(&creds.clone()).unwrap();
        let other = RestartKeys::derive(&ca.issue_node("b", 2).unwrap()).unwrap();
        let cid = b"connection-id";
        assert_eq!(token(&first, cid), token(&again, cid));
        assert_ne!(token(&first, cid), token(&other, cid));
        assert_ne!(token(&first, cid), token(&first, b"another-id"));
        assert_eq!(first.connection_id, again.connection_id);
        assert_ne!(first.connection_id, other.connection_id);
        // An id issued by one process is recognised by its successor.
        let issued = HashedConnectionIdGenerator::from_key(first.connection_id).generate_cid();
        assert!(
            HashedConnectionIdGenerator::from_key(again.connection_id)
                .validate(&issued)
                .is_ok()
        );
    }
}

//! What a raft snapshot's data holds: the members' addresses and the
//! user's state, with the state's SHA-256 so a receiver can check it
//! before raft takes the snapshot.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RaftError;
use crate::rpc::codec;
use crate::{OctopiiError, Result};

/// The snapshot data (bincode, as [`codec`] encodes it; the fields in
/// this order, see `docs/PROTOCOL.md`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotData {
    /// Addresses of the members the sender knows.
    pub(crate) peers: Vec<(u64, SocketAddr)>,
    /// What `StateMachine::snapshot` returned.
    pub(crate) state: Vec<u8>,
    /// SHA-256 of `state`.
    pub(crate) state_sha256: [u8; 32],
}

impl SnapshotData {
    /// Encodes `state` and `peers`, with the state's digest.
    pub(crate) fn encode(peers: Vec<(u64, SocketAddr)>, state: Vec<u8>) -> Result<Vec<u8>> {
        let state_sha256 = Sha256::digest(&state).into();
        codec::encode(&SnapshotData {
            peers,
            state,
            state_sha256,
        })
    }

    /// Decodes snapshot data and checks the state against its digest.
    pub(crate) fn decode(data: &[u8]) -> Result<Self> {
        let bad = |why: String| OctopiiError::Raft(RaftError::Storage(why));
        let snapshot: SnapshotData =
            codec::decode(data).map_err(|e| bad(format!("snapshot data does not decode: {e}")))?;
        let digest: [u8; 32] = Sha256::digest(&snapshot.state).into();
        if digest != snapshot.state_sha256 {
            return Err(bad("snapshot state fails its SHA-256 check".into()));
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_state_fails_its_digest() {
        let peers = vec![(1, "127.0.0.1:7001".parse().unwrap())];
        let mut data = SnapshotData::encode(peers.clone(), b"the state".to_vec()).unwrap();
        let decoded = SnapshotData::decode(&data).unwrap();
        assert_eq!(
            (decoded.peers, decoded.state),
            (peers, b"the state".to_vec())
        );
        // The state's bytes sit just before the 32-byte digest.
        let at = data.len() - 33;
        data[at] ^= 1;
        let err = SnapshotData::decode(&data).unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
        assert!(SnapshotData::decode(b"short").is_err());
    }
}

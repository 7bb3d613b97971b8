//! [`NetworkFaults`]: a fault-injection hook that cuts raft traffic to and
//! from chosen peers, so tests can partition a cluster.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

/// Peers this node neither sends raft traffic to nor accepts it from
/// (raft messages, snapshots and forwarded proposals). Empty by default;
/// meant for tests and fault drills.
///
/// ```
/// use octopii::raft::NetworkFaults;
/// let faults = NetworkFaults::default();
/// faults.block(3);
/// assert!(faults.blocks(3));
/// faults.heal();
/// assert!(!faults.blocks(3));
/// ```
#[derive(Debug, Default)]
pub struct NetworkFaults {
    blocked: RwLock<HashSet<u64>>,
}

impl NetworkFaults {
    /// Drops all raft traffic between this node and `peer` from now on.
    pub fn block(&self, peer: u64) {
        self.blocked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer);
    }

    /// Lets traffic with `peer` through again.
    pub fn unblock(&self, peer: u64) {
        self.blocked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer);
    }

    /// Lets all traffic through again.
    pub fn heal(&self) {
        self.blocked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Whether traffic with `peer` is dropped.
    pub fn blocks(&self, peer: u64) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer)
    }
}

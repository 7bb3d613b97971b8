//! [`RaftConfig`]: how a [`RaftNode`](super::RaftNode) runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::node::ENTRY_OVERHEAD;
use crate::wal::WalOptions;
use crate::{OctopiiError, Result};

/// Settings of a [`RaftNode`](super::RaftNode). The defaults suit a LAN
/// cluster; tests shorten [`tick_interval`](Self::tick_interval).
///
/// ```
/// use std::time::Duration;
/// use octopii::raft::RaftConfig;
///
/// let config = RaftConfig {
///     peers: [(1, "127.0.0.1:7001".parse().unwrap()), (2, "127.0.0.1:7002".parse().unwrap())]
///         .into_iter()
///         .collect(),
///     tick_interval: Duration::from_millis(20),
///     ..RaftConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// Address of every known node by raft id (this node's own entry is
    /// optional). Nodes added later by a membership change carry their
    /// address in the change itself.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// `true`: on a fresh data directory, the cluster starts with the ids of
    /// [`peers`](Self::peers) (and this node) as its voters. `false`: the
    /// node joins a running cluster and waits to be added by
    /// [`RaftNode::add_voter`](super::RaftNode::add_voter) or
    /// [`add_learner`](super::RaftNode::add_learner). Ignored on restart.
    pub bootstrap: bool,
    /// One raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before a follower campaigns (randomized up
    /// to twice this).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Largest batch of entries in one append message, in bytes.
    pub max_size_per_msg: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Largest command accepted by [`propose`](super::RaftNode::propose).
    pub max_proposal_size: usize,
    /// Applied entries between two snapshots; each snapshot compacts the
    /// log prefix it covers.
    pub snapshot_interval: u64,
    /// Bytes of commands held since the last snapshot that also trigger a
    /// snapshot (the log since the last snapshot is kept in memory, so this
    /// bounds its size).
    pub snapshot_log_bytes: u64,
    /// How long [`propose`](super::RaftNode::propose) and
    /// [`read`](super::RaftNode::read) wait for an outcome.
    pub request_timeout: Duration,
    /// Raft messages queued for one peer before the peer counts as
    /// unreachable and further messages to it are dropped.
    pub peer_queue_capacity: usize,
    /// Options of the raft log's WAL.
    pub wal: WalOptions,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            peers: BTreeMap::new(),
            bootstrap: true,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_proposal_size: 1024 * 1024,
            snapshot_interval: 10_000,
            snapshot_log_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            peer_queue_capacity: 4096,
            wal: WalOptions::default(),
        }
    }
}

impl RaftConfig {
    /// Checks every value, naming the one refused.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: &str| {
            Err(OctopiiError::Config {
                field,
                message: message.into(),
            })
        };
        if self.peers.contains_key(&0) {
            return bad("raft.peers", "raft id 0 is reserved");
        }
        if self.tick_interval.is_zero() {
            return bad("raft.tick_interval", "must be longer than zero");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(
                "raft.election_ticks",
                "must be above raft.heartbeat_ticks, which must be at least 1",
            );
        }
        if self.max_inflight_msgs == 0 {
            return bad("raft.max_inflight_msgs", "must be at least 1");
        }
        let record_room = (self.wal.max_record_size as usize).saturating_sub(ENTRY_OVERHEAD);
        if self.max_proposal_size == 0 || self.max_proposal_size > record_room {
            return bad(
                "raft.max_proposal_size",
                "must be above 0 and at least 64 KiB below the WAL's max_record_size",
            );
        }
        if self.snapshot_interval == 0 {
            return bad("raft.snapshot_interval", "must be at least 1");
        }
        if self.snapshot_log_bytes == 0 {
            return bad("raft.snapshot_log_bytes", "must be at least 1");
        }
        if self.request_timeout.is_zero() {
            return bad("raft.request_timeout", "must be longer than zero");
        }
        if self.peer_queue_capacity == 0 {
            return bad("raft.peer_queue_capacity", "must be at least 1");
        }
        self.wal.validate()?;
        Ok(())
    }

    /// The time without a leader after which a follower campaigns.
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval * self.election_ticks as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: RaftConfig) -> &'static str {
        match config.validate() {
            Err(OctopiiError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = RaftConfig::default;
        assert!(base().validate().is_ok());
        let mut peers = BTreeMap::new();
        peers.insert(0, "127.0.0.1:1".parse().unwrap());
        assert_eq!(field_of(RaftConfig { peers, ..base() }), "raft.peers");
        let zero_tick = RaftConfig {
            tick_interval: Duration::ZERO,
            ..base()
        };
        assert_eq!(field_of(zero_tick), "raft.tick_interval");
        let short_election = RaftConfig {
            election_ticks: 2,
            ..base()
        };
        assert_eq!(field_of(short_election), "raft.election_ticks");
        let huge = RaftConfig {
            max_proposal_size: 16 * 1024 * 1024,
            ..base()
        };
        assert_eq!(field_of(huge), "raft.max_proposal_size");
        let never = RaftConfig {
            snapshot_interval: 0,
            ..base()
        };
        assert_eq!(field_of(never), "raft.snapshot_interval");
    }
}

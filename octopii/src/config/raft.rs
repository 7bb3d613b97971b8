//! [`RaftConfig`]: how a [`RaftNode`](crate::raft::RaftNode) runs, the
//! `[raft]` section of a node's TOML file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::wal::WalOptions;
use crate::{OctopiiError, Result};

/// Room for an entry's and a message's own fields around a proposal: a
/// proposal must fit in one WAL record and one frame with this much to spare.
pub(crate) const ENTRY_OVERHEAD: usize = 64 * 1024;

/// Settings of a [`RaftNode`](crate::raft::RaftNode). The defaults suit a LAN
/// cluster; tests shorten [`tick_interval_ms`](Self::tick_interval_ms).
///
/// In a node's TOML file this is the `[raft]` section (every key optional):
///
/// ```toml
/// [raft]
/// bootstrap = true
/// tick_interval_ms = 100
/// election_ticks = 10
/// request_timeout_ms = 10000
///
/// [raft.peers]
/// 1 = "10.0.0.1:7001"
/// 2 = "10.0.0.2:7001"
/// 3 = "10.0.0.3:7001"
///
/// [raft.wal]
/// segment_size = 67108864
/// flush_policy = { kind = "group_commit", linger_ms = 0, max_batch_bytes = 4194304 }
/// ```
///
/// ```
/// use octopii::raft::RaftConfig;
///
/// let config = RaftConfig {
///     peers: [(1, "127.0.0.1:7001".parse().unwrap()), (2, "127.0.0.1:7002".parse().unwrap())]
///         .into_iter()
///         .collect(),
///     tick_interval_ms: 20,
///     ..RaftConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Address of every known node by raft id (this node's own entry is
    /// optional). Nodes added later by a membership change carry their
    /// address in the change itself. In TOML, a table `[raft.peers]` of
    /// `id = "address"`.
    #[serde(deserialize_with = "peers_by_id")]
    pub peers: BTreeMap<u64, SocketAddr>,
    /// `true`: on a fresh data directory, the cluster starts with the ids of
    /// [`peers`](Self::peers) (and this node) as its voters. `false`: the
    /// node joins a running cluster and waits to be added by
    /// [`RaftNode::add_voter`](crate::raft::RaftNode::add_voter) or
    /// [`add_learner`](crate::raft::RaftNode::add_learner). Ignored on restart.
    pub bootstrap: bool,
    /// One raft tick, in milliseconds.
    pub tick_interval_ms: u64,
    /// Ticks without a leader before a follower campaigns, at least.
    pub election_ticks: usize,
    /// Ticks without a leader before a follower campaigns, at most (the
    /// bound itself excluded): each election timeout is drawn from
    /// `election_ticks..max_election_ticks`. `0`, the default, is twice
    /// `election_ticks`. `election_ticks + 1` fixes the timeout: raft-rs
    /// draws it from the operating system's randomness, so a deterministic
    /// simulation gives each node a fixed timeout of its own instead.
    pub max_election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Largest batch of entries in one append message, in bytes.
    pub max_size_per_msg: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Largest command accepted by [`propose`](crate::raft::RaftNode::propose).
    pub max_proposal_size: usize,
    /// Applied entries between two snapshots; each snapshot compacts the
    /// log prefix it covers.
    pub snapshot_interval: u64,
    /// Bytes of commands held since the last snapshot that also trigger a
    /// snapshot (the log since the last snapshot is kept in memory, so this
    /// bounds its size).
    pub snapshot_log_bytes: u64,
    /// How long [`propose`](crate::raft::RaftNode::propose) and
    /// [`read`](crate::raft::RaftNode::read) wait for an outcome, in
    /// milliseconds.
    pub request_timeout_ms: u64,
    /// Raft messages queued for one peer before the peer counts as
    /// unreachable and further messages to it are dropped.
    pub peer_queue_capacity: usize,
    /// Options of the raft log's WAL, the `[raft.wal]` section.
    pub wal: WalOptions,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            peers: BTreeMap::new(),
            bootstrap: true,
            tick_interval_ms: 100,
            election_ticks: 10,
            max_election_ticks: 0,
            heartbeat_ticks: 2,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_proposal_size: 1024 * 1024,
            snapshot_interval: 10_000,
            snapshot_log_bytes: 64 * 1024 * 1024,
            request_timeout_ms: 10_000,
            peer_queue_capacity: 4096,
            wal: WalOptions::default(),
        }
    }
}

/// TOML keys are strings: `[raft.peers]` maps `"3"` to an address.
fn peers_by_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<u64, SocketAddr>, D::Error> {
    let by_name = BTreeMap::<String, SocketAddr>::deserialize(deserializer)?;
    by_name
        .into_iter()
        .map(|(id, addr)| match id.parse::<u64>() {
            Ok(id) => Ok((id, addr)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "raft.peers key `{id}` is not a raft id (a number)"
            ))),
        })
        .collect()
}

impl RaftConfig {
    /// One raft tick.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.tick_interval_ms)
    }

    /// How long a proposal or a read waits for its outcome.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The time without a leader after which a follower campaigns.
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval() * self.election_ticks as u32
    }

    /// Checks every value; an error names the field as written in the
    /// TOML file (`raft.tick_interval_ms`).
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
        if self.tick_interval_ms == 0 {
            return bad("raft.tick_interval_ms", "must not be 0");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(
                "raft.election_ticks",
                "must be above raft.heartbeat_ticks, which must be at least 1",
            );
        }
        if self.max_election_ticks != 0 && self.max_election_ticks <= self.election_ticks {
            return bad(
                "raft.max_election_ticks",
                "must be 0 (twice raft.election_ticks) or above raft.election_ticks",
            );
        }
        if self.max_inflight_msgs == 0 {
            return bad("raft.max_inflight_msgs", "must be at least 1");
        }
        let record_room = (self.wal.max_record_size as usize).saturating_sub(ENTRY_OVERHEAD);
        if self.max_proposal_size == 0 || self.max_proposal_size > record_room {
            return bad(
                "raft.max_proposal_size",
                "must be above 0 and at least 64 KiB below raft.wal.max_record_size",
            );
        }
        if self.snapshot_interval == 0 {
            return bad("raft.snapshot_interval", "must be at least 1");
        }
        if self.snapshot_log_bytes == 0 {
            return bad("raft.snapshot_log_bytes", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return bad("raft.request_timeout_ms", "must not be 0");
        }
        if self.peer_queue_capacity == 0 {
            return bad("raft.peer_queue_capacity", "must be at least 1");
        }
        self.wal.validate().map_err(|e| match e {
            crate::wal::WalError::InvalidOption { field, reason } => OctopiiError::Config {
                field: raft_wal_field(field),
                message: reason.into(),
            },
            other => other.into(),
        })
    }
}

/// The TOML name of a WAL option under `[raft.wal]`.
fn raft_wal_field(field: &'static str) -> &'static str {
    match field {
        "wal.segment_size" => "raft.wal.segment_size",
        "wal.max_record_size" => "raft.wal.max_record_size",
        "wal.flush_policy" => "raft.wal.flush_policy",
        other => other,
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
            tick_interval_ms: 0,
            ..base()
        };
        assert_eq!(field_of(zero_tick), "raft.tick_interval_ms");
        let short_election = RaftConfig {
            election_ticks: 2,
            ..base()
        };
        assert_eq!(field_of(short_election), "raft.election_ticks");
        let empty_range = RaftConfig {
            max_election_ticks: 10,
            ..base()
        };
        assert_eq!(field_of(empty_range), "raft.max_election_ticks");
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
        let tiny_segments = RaftConfig {
            wal: WalOptions {
                segment_size: 1,
                ..WalOptions::default()
            },
            ..base()
        };
        assert_eq!(field_of(tiny_segments), "raft.wal.segment_size");
    }
}

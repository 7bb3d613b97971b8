//! [`RaftError`]: why the replicated state machine refused an operation.

use serde::{Deserialize, Serialize};

/// Why a [`RaftNode`](super::RaftNode) operation did not produce a value.
///
/// It travels inside [`RaftService`](super::service::RaftService) replies
/// (a forwarded proposal answered by the leader), so it is serializable.
///
/// ```
/// use octopii::raft::RaftError;
/// let e = RaftError::ProposalTooLarge { size: 2048, max: 1024 };
/// assert_eq!(e.to_string(), "proposal of 2048 bytes exceeds the maximum of 1024 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RaftError {
    /// This node is not the leader and could not hand the request on;
    /// `leader_hint` is the leader it last heard of, if any.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The node id of the leader this node last heard of.
        leader_hint: Option<u64>,
    },
    /// A proposal larger than [`RaftConfig::max_proposal_size`](super::RaftConfig::max_proposal_size).
    #[error("proposal of {size} bytes exceeds the maximum of {max} bytes")]
    ProposalTooLarge {
        /// Size of the refused proposal.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Raft refused the proposal (for example a membership change while
    /// another one is still in progress).
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// No outcome within the time limit: the proposal may or may not be
    /// applied later.
    #[error("no outcome within {millis} ms (the operation may still take effect)")]
    Timeout {
        /// The time limit, in milliseconds.
        millis: u64,
    },
    /// The durable raft state could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
    /// The raft node has stopped.
    #[error("the raft node has stopped")]
    Stopped,
    /// The raft node stopped on a failure (a storage error, or a panic in
    /// its driver or state machine); `reason` says which. The node must be
    /// restarted.
    #[error("the raft node stopped on a failure: {reason}")]
    Failed {
        /// What went wrong.
        reason: String,
    },
    /// A command or query reached a [`TypedStateMachine`](super::TypedStateMachine)
    /// as bytes that are not its type (proposed by a program that speaks
    /// another version, say); every node refused it alike.
    #[error("the state machine refused the bytes: {reason}")]
    Undecodable {
        /// What the decoder said.
        reason: String,
    },
    /// The caller may not make this request (for example a membership
    /// change that would move another member to a new address).
    #[error("refused: {0}")]
    Refused(String),
}

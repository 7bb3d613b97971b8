//! A replicated state machine over raft-rs, durable in the node's WAL.
//!
//! A [`RaftNode`] runs one raft group member on an [`OctopiiNode`](crate::OctopiiNode):
//! the user's [`StateMachine`] sees every committed command in the same
//! order on every member. raft-rs (the `raft` crate) is the consensus
//! engine; this module gives it storage, a transport and a driver:
//!
//! * [`storage`]: [`RaftStorage`], raft-rs's `Storage` over the WAL;
//! * `driver`: the one task per node that owns the `RawNode` and handles
//!   each `Ready` in raft-rs's documented order;
//! * [`service`]: [`RaftService`](service::RaftService), the built-in
//!   service that carries raft messages and forwarded proposals;
//! * `snapshot`: snapshot files, streamed to and from the state machine;
//! * `snapshot_transfer`: snapshots, sent from file to file as ChunkService
//!   transfers to each node's own `RaftSnapshot` chunk receiver, so their
//!   size is bound neither by the frame limit nor by memory;
//! * `peers`: one bounded, ordered send queue per peer; a peer that cannot
//!   keep up is reported unreachable rather than blocking the driver;
//! * [`RaftNode`]: `propose` (from any member: followers forward to the
//!   leader), `read` (linearizable through ReadIndex), membership changes.
//!
//! Proposals are matched to their callers by an id carried in each entry's
//! context (the proposing node's id, a random number drawn at each start
//! of the node and a sequence number), never by position in a queue, so
//! entries applied again after a restart answer nobody.
//!
//! `docs/ARCHITECTURE.md` (`## Raft`) describes the layers and file layout;
//! `docs/PROTOCOL.md` (`## RaftService`) the bytes on the wire.

mod driver;
mod driver_handle;
mod error;
mod machine;
mod metrics;
mod node;
mod peers;
pub mod service;
mod slog_bridge;
pub(crate) mod snapshot;
mod snapshot_transfer;
pub mod storage;
mod typed;
mod validate;
mod vouch;

pub use crate::config::RaftConfig;
pub use error::RaftError;
pub use machine::{RaftRole, RaftStatus, StateMachine, StateMachineError};
pub use node::RaftNode;
pub use service::Proposal;
pub use snapshot_transfer::{MAX_SNAPSHOT_MESSAGE, SNAPSHOT_DESTINATION, SNAPSHOT_SERVICE};
pub use storage::RaftStorage;
pub use typed::{Typed, TypedRaftNode, TypedStateMachine};
pub use vouch::{KnownMember, KnownMembers};

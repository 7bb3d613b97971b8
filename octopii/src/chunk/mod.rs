//! Verified bulk transfer of files and buffers to one or many peers.
//!
//! The built-in `Chunk` service is routed like any other service, on a
//! stream of its own, so transfers share a peer's pooled connection with
//! RPC calls (see `docs/PROTOCOL.md`, "ChunkService"):
//!
//! * [`source`]: [`ChunkSource`], read once in 64 KiB buffers and hashed
//!   on a blocking thread.
//! * [`sender`]: [`TransferOptions`], [`TransferResult`] and the fan-out of
//!   one source to many peers with bounded memory.
//! * `receiver`: the receiving side's checks: temporary file, fsync, rename after the hash
//!   matched, confinement to the receive directory.
//! * `resume`: partial files kept to resume an interrupted transfer.
//! * `names`: the receiver's temporary names, reserved from peers.
//! * `recv_dir`: the receive directory, created durably, locked while
//!   served, cleared of a previous receiver's temporary files.
//! * `blocking`: where file and hashing work runs.
//! * `fs_dir`: the same rules for a receive directory on a
//!   [`WalFs`](crate::wal::WalFs) of the service's own (raft's snapshots,
//!   a simulated disk).
//! * [`progress`]: [`Progress`] reports on both sides.
//! * [`service`]: [`ChunkService`], the receiving end, and its [`ChunkInbox`].
//!
//! Send with [`OctopiiNode::transfer_chunk_to_peers`](crate::OctopiiNode::transfer_chunk_to_peers),
//! receive with [`OctopiiNode::serve_chunks`](crate::OctopiiNode::serve_chunks).

mod blocking;
mod error;
mod fs_dir;
mod metrics;
mod names;
pub mod progress;
pub mod protocol;
mod receiver;
mod recv_dir;
mod resume;
pub mod sender;
pub mod service;
pub mod source;

pub use error::TransferError;
// For the fuzz target of destination names.
pub(crate) use blocking::run_blocking;
pub(crate) use metrics::ChunkMetrics;
pub(crate) use names::is_reserved;
pub use progress::{Progress, ProgressFn};
pub use protocol::Destination;
pub(crate) use receiver::resolve;
pub(crate) use sender::transfer;
pub use sender::{TransferOptions, TransferResult};
pub use service::{
    ChunkInbox, ChunkService, ChunkServiceBuilder, MemoryHandler, Received, ReceivedData,
};
pub use source::ChunkSource;

//! Snapshots between members travel as ChunkService transfers, not as
//! one RPC: a snapshot may be far larger than a frame, and the chunk
//! protocol streams it in 64 KiB pieces and checks its SHA-256.
//!
//! Each [`RaftNode`](super::RaftNode) serves a `ChunkService` of its own
//! under the name [`SNAPSHOT_SERVICE`], memory destinations only, capped by
//! [`RaftConfig::max_snapshot_size`](super::RaftConfig::max_snapshot_size).
//! What arrives is one protobuf-encoded `MsgSnapshot`; it is checked and
//! stepped into the driver before the receiver answers status 0, so the
//! sender's acknowledgement means the driver has taken the snapshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use futures::FutureExt;
use protobuf::Message as _;
use raft::SnapshotStatus;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::driver::Command;
use super::faults::NetworkFaults;
use super::service::{decode_message, sent_by_caller};
use super::snapshot::SnapshotData;
use crate::chunk::{ChunkService, ChunkSource, MemoryHandler, TransferOptions};
use crate::config::ChunkConfig;
use crate::transport::tls::Role;
use crate::{OctopiiNode, Result};

/// The service name of the `ChunkService` that receives snapshots.
pub const SNAPSHOT_SERVICE: &str = "RaftSnapshot";
/// The memory destination's name snapshots are sent to (a label: the
/// receiver takes any name).
pub const SNAPSHOT_DESTINATION: &str = "raft-snapshot";

/// The `ChunkService` that receives this node's snapshots and hands them
/// to its driver.
pub(crate) fn receiver(
    node: &OctopiiNode,
    id: u64,
    max_snapshot_size: u64,
    commands: mpsc::Sender<Command>,
    faults: Arc<NetworkFaults>,
    forged: Arc<AtomicU64>,
) -> Result<ChunkService> {
    let config = ChunkConfig {
        recv_dir: None,
        max_memory_bytes: max_snapshot_size,
        stall_timeout_ms: node.config().chunk.stall_timeout_ms,
        ..ChunkConfig::default()
    };
    let handler: MemoryHandler = Arc::new(move |peer, _name, data| {
        let (commands, faults, forged) = (commands.clone(), faults.clone(), forged.clone());
        async move {
            let message = decode_message(id, &faults, &data)
                .filter(|message| sent_by_caller(id, &peer, message, &forged))
                .ok_or_else(|| "unusable snapshot message".to_owned())?;
            take(id, &commands, message).await
        }
        .boxed()
    });
    // Only failures would reach the inbox: nothing to read there.
    let (service, _inbox) = ChunkService::with_memory_handler(SNAPSHOT_SERVICE, &config, handler)?;
    Ok(service)
}

/// Checks a received snapshot message and steps it into the driver; the
/// `Err` is the reason the sender gets with status 2.
async fn take(
    id: u64,
    commands: &mpsc::Sender<Command>,
    message: Message,
) -> std::result::Result<(), String> {
    if message.get_msg_type() != MessageType::MsgSnapshot {
        tracing::warn!(
            node = id,
            "dropping a non-snapshot message sent as a snapshot"
        );
        return Err("not a snapshot message".into());
    }
    // Checked before raft takes it: a snapshot whose state is damaged is
    // refused here (the leader retries) rather than installed, where it
    // would stop the driver.
    if let Err(e) = SnapshotData::decode(&message.get_snapshot().data) {
        tracing::warn!(node = id, from = message.from, "refusing a snapshot: {e}");
        return Err(e.to_string());
    }
    commands
        .send(Command::Step(message))
        .await
        .map_err(|_| "the raft node has stopped".to_owned())
}

/// Sends a `MsgSnapshot` (snapshot data inside) to `addr`: `Finish` once
/// the receiver acknowledged it with status 0, `Failure` otherwise.
pub(crate) async fn send(node: &OctopiiNode, addr: SocketAddr, message: Message) -> SnapshotStatus {
    let to = message.to;
    let bytes = match message.write_to_bytes() {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(peer = to, "cannot encode a snapshot message: {e}");
            return SnapshotStatus::Failure;
        }
    };
    // Only peer `to`'s own certificate may receive its snapshot.
    match node.connect(addr).await {
        Ok(conn) if conn.peer().role == Role::Node { id: to } => {}
        Ok(conn) => {
            let found = conn.peer();
            tracing::warn!(
                peer = to,
                %addr,
                name = %found.identity,
                role = %found.role,
                "not sending a snapshot to a node that is not the member expected"
            );
            return SnapshotStatus::Failure;
        }
        Err(e) => {
            tracing::warn!(peer = to, "sending a snapshot failed: {e}");
            return SnapshotStatus::Failure;
        }
    }
    let options = TransferOptions::to_memory(SNAPSHOT_DESTINATION)
        .service(SNAPSHOT_SERVICE)
        .stall_timeout(node.config().chunk.stall_timeout());
    match node
        .transfer_chunk(ChunkSource::Memory(bytes), addr, options)
        .await
    {
        Ok(_) => SnapshotStatus::Finish,
        Err(e) => {
            tracing::warn!(peer = to, "sending a snapshot failed: {e}");
            SnapshotStatus::Failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::protocol::{Destination, TransferRequest};
    use crate::rpc::codec;

    /// The arguments frame `docs/PROTOCOL.md` gives for a snapshot transfer.
    #[test]
    fn the_transfer_request_encodes_as_documented() {
        let request = TransferRequest {
            destination: Destination::Memory {
                name: SNAPSHOT_DESTINATION.into(),
            },
            size: 0x0102,
            resume: false,
        };
        let mut expected = vec![0, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"raft-snapshot");
        expected.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(codec::encode(&request).unwrap(), expected);
        assert_eq!(SNAPSHOT_SERVICE, "RaftSnapshot");
    }
}

//! Snapshots between members travel as ChunkService transfers, not as
//! one RPC, and straight from file to file: a snapshot may be far larger
//! than a frame, or than memory.
//!
//! Each [`RaftNode`](super::RaftNode) serves a `ChunkService` of its own
//! under the name [`SNAPSHOT_SERVICE`], receiving files into its raft
//! directory's `incoming-snapshots/`. The leader sends two transfers:
//!
//! 1. the snapshot file, from its raft directory (`ChunkSource::File`,
//!    resumable), to the file `snapshot-<index>-<term>`;
//! 2. the `MsgSnapshot` itself, protobuf-encoded, to memory. Its
//!    `snapshot.data` is only the file's fingerprint (length and CRC32C),
//!    so the memory it takes is capped at [`MAX_SNAPSHOT_MESSAGE`].
//!
//! On the message, the receiver moves the arrived file out of the
//! incoming directory (so no later transfer can replace it), checks it
//! against the fingerprint and its own CRC, leaves it where the storage
//! installs it from, and steps the message into the driver; only then does
//! it answer status 0, so the sender's acknowledgement means the driver
//! has taken the snapshot. Neither end ever holds the snapshot data in
//! memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::FutureExt;
use protobuf::Message as _;
use raft::SnapshotStatus;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::driver::Command;
use super::service::{decode_message, sent_by_caller};
use super::snapshot::{self, Fingerprint};
use super::storage::INCOMING_DIR;
use crate::chunk::run_blocking;
use crate::chunk::{ChunkService, ChunkSource, MemoryHandler, TransferOptions};
use crate::config::ChunkConfig;
use crate::identity::Role;
use crate::wal::WalFs;
use crate::{OctopiiNode, Result};

/// The service name of the `ChunkService` that receives snapshots.
pub const SNAPSHOT_SERVICE: &str = "RaftSnapshot";
/// The memory destination's name snapshot messages are sent to (a label:
/// the receiver takes any name).
pub const SNAPSHOT_DESTINATION: &str = "raft-snapshot";
/// Largest snapshot message (metadata and file fingerprint, no data) a
/// node takes into memory; a larger one is refused before any byte is sent.
pub const MAX_SNAPSHOT_MESSAGE: u64 = 1024 * 1024;

/// The `ChunkService` that receives this node's snapshots (files into
/// `dir/incoming-snapshots`, messages into memory) and hands them to its
/// driver.
pub(crate) fn receiver(
    node: &OctopiiNode,
    id: u64,
    fs: Arc<dyn WalFs>,
    dir: &Path,
    commands: mpsc::Sender<Command>,
    forged: Arc<AtomicU64>,
) -> Result<ChunkService> {
    let config = ChunkConfig {
        recv_dir: Some(dir.join(INCOMING_DIR)),
        max_memory_bytes: MAX_SNAPSHOT_MESSAGE,
        // A snapshot is as large as the replicated state, and only members
        // may send one: the node's limit for user transfers must not leave
        // a lagging follower refused forever.
        max_file_bytes: u64::MAX,
        ..node.config().chunk.clone()
    };
    let dir = dir.to_path_buf();
    let files = fs.clone();
    let handler: MemoryHandler = Arc::new(move |peer, _name, data| {
        let (commands, forged) = (commands.clone(), forged.clone());
        let (fs, dir) = (files.clone(), dir.clone());
        async move {
            let message = decode_message(id, &data)
                .filter(|message| sent_by_caller(id, &peer, message, &forged))
                .ok_or_else(|| "unusable snapshot message".to_owned())?;
            take(id, fs, &dir, &commands, message).await
        }
        .boxed()
    });
    // File arrivals and failures would reach the inbox: nothing to read
    // there, the message that follows a file is what counts.
    let (service, _inbox) = ChunkService::builder(&config)
        .name(SNAPSHOT_SERVICE)
        .node_id(id)
        .memory_handler(handler)
        .file_system(fs)
        .build()?;
    Ok(service)
}

/// Checks a received snapshot message and its file and steps it into the
/// driver; the `Err` is the reason the sender gets with status 2.
async fn take(
    id: u64,
    fs: Arc<dyn WalFs>,
    dir: &Path,
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
    let fingerprint = Fingerprint::from_reference(&message.get_snapshot().data)
        .ok_or_else(|| "unusable snapshot file reference".to_owned())?;
    let meta = message.get_snapshot().get_metadata();
    let (index, term, dir) = (meta.index, meta.term, dir.to_path_buf());
    // Checked before raft takes it: a damaged file is refused here (the
    // leader retries) rather than installed, where it would stop the driver.
    let inline = fs.never_blocks();
    let claimed = run_blocking(inline, move || {
        claim(fs.as_ref(), &dir, index, term, fingerprint)
    });
    if let Err(e) = claimed.await {
        tracing::warn!(node = id, from = message.from, "refusing a snapshot: {e}");
        return Err(e);
    }
    commands
        .send(Command::Step(message))
        .await
        .map_err(|_| "the raft node has stopped".to_owned())
}

/// Takes the arrived file of snapshot `index`/`term` out of the incoming
/// directory under a name of its own, checks it against `expected`, and
/// leaves it where the storage installs it from.
fn claim(
    fs: &dyn WalFs,
    dir: &Path,
    index: u64,
    term: u64,
    expected: Fingerprint,
) -> std::result::Result<(), String> {
    // Distinct per claim, so two messages for one snapshot never check
    // the same file; a leftover from before a restart is overwritten.
    static CLAIMS: AtomicU64 = AtomicU64::new(0);
    let name = snapshot::file_name(index, term);
    let arrived = dir.join(INCOMING_DIR).join(&name);
    let claim = CLAIMS.fetch_add(1, Ordering::Relaxed);
    let checking: PathBuf = dir.join(format!("{name}.checking-{claim}"));
    fs.rename(&arrived, &checking)
        .map_err(|e| format!("no snapshot file {name} has arrived: {e}"))?;
    let checked = match snapshot::verify(fs, &checking) {
        Ok(found) if found == expected => fs
            .rename(&checking, &snapshot::received_path(dir, index, term))
            .map_err(|e| format!("cannot keep the snapshot file {name}: {e}")),
        Ok(found) => Err(format!(
            "the snapshot file {name} holds {} bytes with CRC32C {:08x}, the message names {} \
             bytes with CRC32C {:08x}",
            found.len, found.crc32c, expected.len, expected.crc32c
        )),
        Err(e) => Err(e.to_string()),
    };
    if checked.is_err() {
        let _ = fs.remove_file(&checking);
    }
    checked
}

/// Sends a `MsgSnapshot` to `addr`: first its snapshot file from the raft
/// directory `dir`, then the message. `Finish` once the receiver
/// acknowledged the message with status 0, `Failure` otherwise.
pub(crate) async fn send(
    node: &OctopiiNode,
    fs: &Arc<dyn WalFs>,
    dir: &Path,
    addr: SocketAddr,
    message: Message,
) -> SnapshotStatus {
    let to = message.to;
    let meta = message.get_snapshot().get_metadata();
    let name = snapshot::file_name(meta.index, meta.term);
    let stall = node.config().chunk.stall_timeout();
    // Only peer `to`'s own certificate may receive its snapshot (file or
    // message).
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
    // Resumable: a broken transfer of a large file goes on where it broke.
    let options = TransferOptions::to_file(name.clone())
        .service(SNAPSHOT_SERVICE)
        .resume(true)
        .stall_timeout(stall);
    // Opened once: a newer snapshot replacing the file meanwhile does not
    // disturb this transfer.
    let source = ChunkSource::FileOn(fs.clone(), dir.join(&name));
    if let Err(e) = node.transfer_chunk(source, addr, options).await {
        tracing::warn!(peer = to, "sending the snapshot file {name} failed: {e}");
        return SnapshotStatus::Failure;
    }
    let bytes = match message.write_to_bytes() {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(peer = to, "cannot encode a snapshot message: {e}");
            return SnapshotStatus::Failure;
        }
    };
    let options = TransferOptions::to_memory(SNAPSHOT_DESTINATION)
        .service(SNAPSHOT_SERVICE)
        .stall_timeout(stall);
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
    use crate::codec;

    /// The arguments frames `docs/PROTOCOL.md` gives for a snapshot transfer.
    #[test]
    fn the_transfer_requests_encode_as_documented() {
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

        let request = TransferRequest {
            destination: Destination::File {
                path: snapshot::file_name(0x2a, 3),
            },
            size: 0x0102,
            resume: true,
        };
        let mut expected = vec![1, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"snapshot-000000000000002a-0000000000000003");
        expected.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(codec::encode(&request).unwrap(), expected);
    }
}

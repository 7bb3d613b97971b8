//! Outbound raft traffic: one bounded queue and one sending task per peer,
//! so messages to a peer keep their order and a slow peer never blocks the
//! driver.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::SnapshotStatus;
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use super::service::RaftServiceClient;
use super::snapshot_transfer;
use super::vouch::{self, Configuration, Vouched};
use crate::OctopiiNode;
use crate::wal::WalFs;

/// Messages sent in one `step` call at most.
const MAX_BATCH_MESSAGES: usize = 256;
/// Bytes sent in one `step` call at most (a batch always takes one
/// message); lower if half the transport's frame limit is lower.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What a sending task tells the driver.
#[derive(Debug)]
pub(crate) enum Feedback {
    /// A send to this peer failed: raft should probe it again later.
    Unreachable(u64),
    /// The outcome of a snapshot sent to this peer.
    Snapshot(u64, SnapshotStatus),
}

/// Known peer addresses, shared by the driver (which learns them from
/// membership changes) and the [`RaftNode`](super::RaftNode) (which
/// forwards proposals).
pub(crate) type AddressBook = Arc<RwLock<BTreeMap<u64, SocketAddr>>>;

/// Looks up a peer's address.
pub(crate) fn address_of(book: &AddressBook, id: u64) -> Option<SocketAddr> {
    book.read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .copied()
}

/// The driver's outbound side.
pub(crate) struct Peers {
    node: OctopiiNode,
    addresses: AddressBook,
    queues: HashMap<u64, mpsc::Sender<Message>>,
    capacity: usize,
    feedback: mpsc::UnboundedSender<Feedback>,
    call_deadline: Duration,
    vouched: Vouched,
}

impl Peers {
    pub(crate) fn new(
        node: OctopiiNode,
        addresses: AddressBook,
        capacity: usize,
        feedback: mpsc::UnboundedSender<Feedback>,
        call_deadline: Duration,
        vouched: Vouched,
    ) -> Self {
        Peers {
            node,
            addresses,
            queues: HashMap::new(),
            capacity,
            feedback,
            call_deadline,
            vouched,
        }
    }

    /// Asks the members of `configuration` whether they know node `id`,
    /// which this node (`me`, having applied up to the index given)
    /// refused (see `vouch`).
    pub(crate) fn ask_about(&self, me: u64, id: u64, configuration: (Configuration, u64)) {
        let ask = vouch::ask(
            self.node.clone(),
            self.addresses.clone(),
            me,
            id,
            configuration,
            self.vouched.clone(),
            self.call_deadline,
        );
        self.node.runtime_handle().spawn(ask);
    }

    /// Records where peer `id` listens (a changed address restarts its queue).
    pub(crate) fn set_address(&mut self, id: u64, addr: SocketAddr) {
        let previous = self
            .addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, addr);
        if previous != Some(addr) {
            self.queues.remove(&id);
        }
    }

    /// All known addresses.
    pub(crate) fn addresses(&self) -> Vec<(u64, SocketAddr)> {
        self.addresses
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, addr)| (*id, *addr))
            .collect()
    }

    /// Queues `message` for its peer without waiting. `false` if the peer
    /// is unknown or its queue is full: the caller reports it unreachable.
    pub(crate) fn send(&mut self, message: Message) -> bool {
        let to = message.to;
        let Some(queue) = self.queue(to) else {
            return false;
        };
        match queue.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(peer = to, "raft queue full, dropping a message");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queues.remove(&to);
                false
            }
        }
    }

    fn queue(&mut self, to: u64) -> Option<&mpsc::Sender<Message>> {
        if !self.queues.contains_key(&to) {
            let addr = address_of(&self.addresses, to)?;
            let (tx, rx) = mpsc::channel(self.capacity);
            // Only peer `to`'s own certificate may answer for it.
            let client = crate::rpc::Client::new(&self.node, addr)
                .expect_peer(crate::identity::Role::Node { id: to })
                .with_deadline(self.call_deadline);
            let client = RaftServiceClient::from_client(client);
            let frame = self.node.config().transport.max_frame_size as usize;
            let budget = MAX_BATCH_BYTES.min(frame / 2);
            let task = send_loop(to, client, rx, budget, self.feedback.clone());
            self.node.runtime_handle().spawn(task);
            self.queues.insert(to, tx);
        }
        self.queues.get(&to)
    }

    /// Sends a `MsgSnapshot` on its own, with its snapshot file from the
    /// raft directory `dir`, as ChunkService transfers, reporting the
    /// outcome as [`Feedback::Snapshot`]. The one place that moves
    /// snapshot data. The file is read from `fs`, where the raft state is.
    pub(crate) fn send_snapshot(
        &mut self,
        message: Message,
        fs: &Arc<dyn WalFs>,
        dir: &std::path::Path,
    ) {
        let to = message.to;
        let Some(addr) = address_of(&self.addresses, to) else {
            let _ = self
                .feedback
                .send(Feedback::Snapshot(to, SnapshotStatus::Failure));
            return;
        };
        let node = self.node.clone();
        let feedback = self.feedback.clone();
        let (fs, dir) = (fs.clone(), dir.to_path_buf());
        self.node.runtime_handle().spawn(async move {
            let status = snapshot_transfer::send(&node, &fs, &dir, addr, message).await;
            let _ = feedback.send(Feedback::Snapshot(to, status));
        });
    }
}

/// Sends one peer's messages in order, batching what is queued.
async fn send_loop(
    to: u64,
    client: RaftServiceClient,
    mut queue: mpsc::Receiver<Message>,
    max_batch_bytes: usize,
    feedback: mpsc::UnboundedSender<Feedback>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message.write_to_bytes() {
                Ok(encoded) => {
                    bytes += encoded.len();
                    batch.push(encoded);
                }
                Err(e) => tracing::error!(peer = to, "cannot encode a raft message: {e}"),
            }
            if batch.len() < MAX_BATCH_MESSAGES && bytes < max_batch_bytes {
                next = queue.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = client.step(batch).await {
            tracing::debug!(peer = to, "sending raft messages failed: {e}");
            if feedback.send(Feedback::Unreachable(to)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::transport::tls::ClusterCa;
    use crate::{Config, OctopiiRuntime};

    #[test]
    fn a_peer_that_cannot_keep_up_is_refused_at_once_and_reported() {
        let runtime = OctopiiRuntime::new(1).unwrap();
        let ca = ClusterCa::generate().unwrap();
        let config = Config::builder()
            .bind_addr("127.0.0.1:0".parse().unwrap())
            .credentials(ca.issue_node("a", 1).unwrap())
            .build()
            .unwrap();
        let node = OctopiiNode::new(config, &runtime).unwrap();
        // A port that takes datagrams and never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let book: AddressBook = Arc::new(RwLock::new(BTreeMap::from([(
            2,
            silent.local_addr().unwrap(),
        )])));
        let (feedback, mut reports) = mpsc::unbounded_channel();
        let deadline = Duration::from_millis(200);
        let mut peers = Peers::new(
            node.clone(),
            book,
            1,
            feedback,
            deadline,
            Vouched::default(),
        );
        let message = |to| Message {
            to,
            ..Message::default()
        };

        let started = Instant::now();
        let accepted = (0..1000).filter(|_| peers.send(message(2))).count();
        // One batch in flight plus one queued message at most.
        assert!(accepted <= MAX_BATCH_MESSAGES + 1, "{accepted} accepted");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "sending never waits"
        );
        assert!(!peers.send(message(3)), "a peer without an address");

        let report = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), reports.recv()).await });
        assert!(
            matches!(report, Ok(Some(Feedback::Unreachable(2)))),
            "{report:?}"
        );
        runtime.block_on(node.shutdown());
    }
}

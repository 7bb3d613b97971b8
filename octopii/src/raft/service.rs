//! [`RaftService`]: the built-in service that carries raft traffic between
//! nodes, and the handler that feeds it to the local driver.
//!
//! Raft messages travel in raft-rs's own protobuf encoding
//! (`eraftpb::Message::write_to_bytes`), as byte strings inside the
//! service's bincode arguments; `docs/PROTOCOL.md` (`## RaftService`) gives
//! the bytes. Snapshots, which may exceed a frame, travel as ChunkService
//! transfers instead (`snapshot_transfer`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use protobuf::Message as _;
use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::RaftError;
use super::driver::Command;
use super::driver_handle::DriverHandle;
use super::machine::RaftStatus;
use super::peers::{AddressBook, address_of};
use super::vouch::{KnownMember, KnownMembers, Vouched};
use crate::identity::Role;
use crate::rpc::{Context, Policy};
use crate::transport::PeerInfo;

/// A change proposed to the replicated state machine, carried to the
/// leader by [`RaftService::propose`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// A command for the user's [`StateMachine`](super::StateMachine).
    Command(Vec<u8>),
    /// Adds node `id` (reachable at `addr`) as a voter, or promotes it if it
    /// is a learner.
    AddVoter {
        /// The node's raft id.
        id: u64,
        /// Where the node listens.
        addr: SocketAddr,
    },
    /// Adds node `id` (reachable at `addr`) as a learner (it receives the
    /// log but does not vote).
    AddLearner {
        /// The node's raft id.
        id: u64,
        /// Where the node listens.
        addr: SocketAddr,
    },
    /// Removes node `id` from the cluster.
    RemoveNode {
        /// The node's raft id.
        id: u64,
    },
}

/// Raft traffic between the nodes of one cluster.
#[crate::service]
pub trait RaftService {
    /// Steps raft messages, each one protobuf-encoded `eraftpb::Message`,
    /// in order. Messages that do not decode, are addressed to another
    /// node, or whose `from` is not the caller's own raft id are dropped
    /// with a log line. The reply acknowledges receipt, not durability
    /// (raft acknowledges what it persisted with messages of its own).
    /// Served to current members only.
    async fn step(&self, ctx: &Context, messages: Vec<Vec<u8>>);

    /// Proposes on this node, which should be the leader, and replies with
    /// the state machine's output once the proposal is committed and
    /// applied. A node that is not the leader answers
    /// [`RaftError::NotLeader`] (it does not forward). Served to current
    /// members and admins; a membership change that would give an existing
    /// member another address is [`RaftError::Refused`] unless it comes
    /// from that member or an admin.
    async fn propose(&self, ctx: &Context, proposal: Proposal) -> Result<Vec<u8>, RaftError>;

    /// The voters and learners this node knows, with the addresses it
    /// reaches them at, and its applied index: a member that refused a
    /// node it has not seen join asks its other members, and admits the
    /// node if one that has applied at least as much names it. Served to
    /// current members only.
    async fn members(&self, ctx: &Context) -> KnownMembers;
}

/// The members of the group as this node knows them, read from the
/// status the driver publishes after every change.
#[derive(Clone)]
pub(crate) struct Membership {
    pub(crate) status: watch::Receiver<RaftStatus>,
    /// Nodes members vouched for (see `vouch`).
    pub(crate) vouched: Vouched,
    /// Where a refused node is reported, so the driver asks about it.
    pub(crate) commands: mpsc::Sender<Command>,
}

impl Membership {
    /// Whether `id` is a voter or a learner.
    fn contains(&self, id: u64) -> bool {
        let status = self.status.borrow();
        status.voters.contains(&id) || status.learners.contains(&id)
    }

    /// Whether raft traffic from node `id` is served: it is a member, or
    /// this node is in no configuration yet (a node joining, waiting for
    /// the leader that added it, whose id it cannot know yet), or a
    /// member vouched for it since this node's configuration last changed.
    /// A node refused is reported so the driver asks about it.
    fn admits(&self, id: u64) -> bool {
        let status = self.status.borrow();
        if (status.voters.is_empty() && status.learners.is_empty())
            || status.voters.contains(&id)
            || status.learners.contains(&id)
        {
            return true;
        }
        let configuration = (status.voters.clone(), status.learners.clone());
        drop(status);
        if self.vouched.admits(id, &configuration) {
            return true;
        }
        if self.vouched.may_ask() {
            let _ = self.commands.try_send(Command::Vouch(id));
        }
        false
    }

    /// The members as this node knows them, with their addresses.
    fn known(&self, addresses: &AddressBook) -> KnownMembers {
        let status = self.status.borrow();
        let voters = status.voters.iter().map(|&id| (id, true));
        let learners = status.learners.iter().map(|&id| (id, false));
        KnownMembers {
            applied_index: status.applied_index,
            members: voters
                .chain(learners)
                .map(|(id, voter)| KnownMember {
                    id,
                    voter,
                    addr: address_of(addresses, id),
                })
                .collect(),
        }
    }

    /// The policy of `RaftService` and `RaftSnapshot`: current members
    /// only; `propose` also admins.
    pub(crate) fn policy(&self) -> Policy {
        let members = self.clone();
        let members = Policy::from_fn("current raft members", move |call| {
            call.node_id().is_some_and(|id| members.admits(id))
        });
        members
            .clone()
            .method("propose", members.or(Policy::admins()))
    }
}

/// Refuses to run raft on a node whose own certificate is not that of
/// node `node_id`: its peers would drop every message it sent.
pub(crate) fn check_own_certificate(node: &crate::OctopiiNode) -> crate::Result<()> {
    let id = node.id();
    let Some(tls) = node.config().tls.as_ref() else {
        return Ok(());
    };
    if tls.credentials.is_none() && tls.cert.is_none() {
        // The insecure opt-in's ephemeral certificate is made for `node_id`.
        return Ok(());
    }
    let role = tls.load_credentials()?.role();
    if role == (Role::Node { id }) {
        return Ok(());
    }
    Err(crate::OctopiiError::Config {
        field: "node_id",
        message: format!(
            "this node's certificate names {role}, not node {id}: its peers would drop its raft \
             messages (make one with `octopii certs node DIR --name NAME --id {id}`)"
        ),
    })
}

/// Whether `message` comes from the node that sent it: its `from` must be
/// the caller's own raft id. A forged sender is dropped, logged with the
/// caller's identity and counted in `forged`.
pub(crate) fn sent_by_caller(
    node: u64,
    caller: &PeerInfo,
    message: &Message,
    forged: &AtomicU64,
) -> bool {
    if caller.role.node_id() == Some(message.from) {
        return true;
    }
    forged.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        node,
        from = message.from,
        caller = %caller.identity,
        role = %caller.role,
        addr = %caller.addr,
        "dropping a raft message whose sender is not its caller"
    );
    false
}

/// The server side: decodes and hands everything to the driver.
pub(crate) struct RaftHandler {
    pub(crate) id: u64,
    pub(crate) driver: DriverHandle,
    pub(crate) max_proposal_size: usize,
    pub(crate) membership: Membership,
    pub(crate) addresses: AddressBook,
    /// Messages dropped because their sender was not their caller.
    pub(crate) forged: Arc<AtomicU64>,
}

impl RaftHandler {
    /// Refuses a membership change that would move an existing member to
    /// another address (its traffic would go to whoever proposed it),
    /// unless it comes from that member itself or an admin.
    fn check_proposer(&self, caller: &PeerInfo, proposal: &Proposal) -> Result<(), RaftError> {
        let (Proposal::AddVoter { id, addr } | Proposal::AddLearner { id, addr }) = proposal else {
            return Ok(());
        };
        let moves = self.membership.contains(*id)
            && address_of(&self.addresses, *id) != Some(*addr)
            && caller.role != Role::Admin
            && caller.role.node_id() != Some(*id);
        if !moves {
            return Ok(());
        }
        tracing::warn!(
            node = self.id,
            member = id,
            %addr,
            caller = %caller.identity,
            role = %caller.role,
            "refusing a proposal that moves another member to a new address"
        );
        Err(RaftError::Refused(format!(
            "{} `{}` may not give member {id} another address",
            caller.role, caller.identity
        )))
    }
}

/// Decodes one message for node `id`; `None` (logged) if it does not
/// decode or is addressed to another node.
pub(crate) fn decode_message(id: u64, bytes: &[u8]) -> Option<Message> {
    let message = match Message::parse_from_bytes(bytes) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(
                node = id,
                "dropping a raft message that does not decode: {e}"
            );
            return None;
        }
    };
    if message.to != id {
        tracing::warn!(
            node = id,
            to = message.to,
            "dropping a raft message addressed to another node"
        );
        return None;
    }
    Some(message)
}

impl RaftService for RaftHandler {
    async fn step(&self, ctx: &Context, messages: Vec<Vec<u8>>) {
        for bytes in messages {
            let Some(message) = decode_message(self.id, &bytes) else {
                continue;
            };
            if !sent_by_caller(self.id, ctx.peer(), &message, &self.forged) {
                continue;
            }
            if self
                .driver
                .commands
                .send(Command::Step(message))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn propose(&self, ctx: &Context, proposal: Proposal) -> Result<Vec<u8>, RaftError> {
        self.check_proposer(ctx.peer(), &proposal)?;
        if let Proposal::Command(command) = &proposal {
            if command.len() > self.max_proposal_size {
                return Err(RaftError::ProposalTooLarge {
                    size: command.len(),
                    max: self.max_proposal_size,
                });
            }
        }
        let propose = |reply| Command::Propose { proposal, reply };
        self.driver.ask(propose).await
    }

    async fn members(&self, _ctx: &Context) -> KnownMembers {
        self.membership.known(&self.addresses)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::FutureExt;
    use raft::SnapshotStatus;
    use raft::eraftpb::MessageType;

    use super::*;
    use crate::chunk::{ChunkService, MemoryHandler};
    use crate::codec;
    use crate::config::ChunkConfig;
    use crate::raft::SNAPSHOT_SERVICE;
    use crate::raft::snapshot_transfer;
    use crate::transport::tls::ClusterCa;
    use crate::{Config, OctopiiNode, OctopiiRuntime};

    /// A snapshot for node 2 is not sent to node 7's certificate, even
    /// at node 2's address; the same snapshot for node 7 is.
    #[test]
    fn a_snapshot_goes_only_to_the_member_it_is_for() {
        let runtime = OctopiiRuntime::new(1).unwrap();
        let ca = ClusterCa::generate().unwrap();
        let node = |creds| {
            let config = Config::builder()
                .bind_addr("127.0.0.1:0".parse().unwrap())
                .credentials(creds)
                .build()
                .unwrap();
            OctopiiNode::new(config, &runtime).unwrap()
        };
        let leader = node(ca.issue_node("node-1", 1).unwrap());
        let impostor = node(ca.issue_node("node-7", 7).unwrap());
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        let handler: MemoryHandler = Arc::new(move |_, _, _| {
            count.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }.boxed()
        });
        let (leader_dir, impostor_dir) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let fs: Arc<dyn crate::wal::WalFs> = Arc::new(crate::wal::StdFs);
        let file = leader_dir
            .path()
            .join(crate::raft::snapshot::file_name(0, 0));
        crate::raft::snapshot::write_file(&fs, &file, b"state").unwrap();
        let config = ChunkConfig {
            recv_dir: Some(impostor_dir.path().to_owned()),
            ..ChunkConfig::default()
        };
        let (service, _inbox) = ChunkService::builder(&config)
            .name(SNAPSHOT_SERVICE)
            .memory_handler(handler)
            .build()
            .unwrap();
        impostor.serve(service).unwrap();
        let snapshot = |to| {
            let mut message = Message::default();
            message.set_msg_type(MessageType::MsgSnapshot);
            message.from = 1;
            message.to = to;
            message
        };
        let addr = impostor.local_addr();
        let status = runtime.block_on(snapshot_transfer::send(
            &leader,
            &fs,
            leader_dir.path(),
            addr,
            snapshot(2),
        ));
        assert_eq!(status, SnapshotStatus::Failure);
        assert_eq!(received.load(Ordering::SeqCst), 0);
        let status = runtime.block_on(snapshot_transfer::send(
            &leader,
            &fs,
            leader_dir.path(),
            addr,
            snapshot(7),
        ));
        assert_eq!(status, SnapshotStatus::Finish);
        assert_eq!(received.load(Ordering::SeqCst), 1);
        runtime.block_on(async {
            leader.shutdown().await;
            impostor.shutdown().await;
        });
    }

    /// The bytes `docs/PROTOCOL.md` gives for a proposal.
    #[test]
    fn a_proposal_encodes_as_documented() {
        let proposal = Proposal::AddVoter {
            id: 4,
            addr: "127.0.0.1:7001".parse().unwrap(),
        };
        let bytes = codec::encode(&proposal).unwrap();
        let expected = [
            1, 0, 0, 0, // variant AddVoter
            4, 0, 0, 0, 0, 0, 0, 0, // id
            0, 0, 0, 0, // SocketAddr::V4
            127, 0, 0, 1, // the IPv4 octets
            0x59, 0x1b, // port 7001, little-endian
        ];
        assert_eq!(bytes, expected);
        let error = RaftError::NotLeader {
            leader_hint: Some(2),
        };
        let bytes = codec::encode(&error).unwrap();
        assert_eq!(bytes, [0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0]);
    }
}

//! [`RaftNode`]: the handle an application uses to replicate its state.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::driver::{Command, Driver, bootstrap_snapshot, peer_call_deadline};
use super::driver_handle::DriverHandle;
use super::machine::{RaftRole, RaftStatus, StateMachine};
use super::peers::{AddressBook, Peers, address_of};
use super::service::{Membership, Proposal, RaftHandler, RaftServiceClient, RaftServiceServer};
use super::snapshot_transfer;
use super::storage::{Bootstrap, RaftStorage};
use super::vouch::Vouched;
use super::{RaftConfig, RaftError};
use crate::config::ENTRY_OVERHEAD;
use crate::runtime::panic_message;
use crate::wal::{StdFs, WalFs};
use crate::{OctopiiError, OctopiiNode, Result};

/// Commands queued for the driver before callers wait.
const COMMAND_QUEUE: usize = 8192;
/// Attempts of a proposal that keeps meeting a stale leader hint.
const PROPOSE_ATTEMPTS: usize = 3;

/// One member of a raft group, replicating a [`StateMachine`] over an
/// [`OctopiiNode`]'s connections and durable in a WAL under the node's
/// `data_dir` (`<data_dir>/raft`).
///
/// The node's [`Config::node_id`](crate::Config::node_id) is its raft id.
/// [`propose`](Self::propose) works on any member: a follower forwards the
/// proposal to the leader it knows over [`RaftService`](super::service::RaftService)
/// and relays the answer; if no leader is known it fails at once with
/// [`RaftError::NotLeader`]` { leader_hint: None }` (retry after an
/// election timeout).
///
/// ```no_run
/// # use octopii::raft::{RaftConfig, RaftNode, StateMachine};
/// # use octopii::{OctopiiNode, Result};
/// # async fn example(node: OctopiiNode, machine: impl StateMachine) -> Result<()> {
/// let raft = RaftNode::start(&node, RaftConfig::default(), machine)?;
/// raft.wait_for_leader(std::time::Duration::from_secs(5)).await?;
/// let output = raft.propose(b"set x 1".to_vec()).await?;   // committed and applied
/// let value = raft.read(b"get x".to_vec()).await?;          // linearizable
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    node: OctopiiNode,
    config: RaftConfig,
    /// The driver's command queue, and why it stopped once it has.
    driver: DriverHandle,
    status: watch::Receiver<RaftStatus>,
    addresses: AddressBook,
    forged: Arc<AtomicU64>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Stops the driver when sent or dropped.
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Disconnects once the driver's task has ended, however it ended.
    done: Mutex<Option<std_mpsc::Receiver<()>>>,
}

impl Drop for Inner {
    /// The last handle is gone without `shutdown`: stop the driver, and
    /// wait (bounded) for it to release the raft log, unless that would
    /// block a single-threaded runtime.
    fn drop(&mut self) {
        let stop = self.stop.get_mut().unwrap_or_else(PoisonError::into_inner);
        if stop.take().is_none() {
            return; // shut down already
        }
        let done = self.done.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(done) = done.take() else {
            return;
        };
        let limit = self.config.request_timeout();
        let wait = move || {
            let _ = done.recv_timeout(limit);
        };
        match tokio::runtime::Handle::try_current() {
            Err(_) => wait(),
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            Ok(_) => {}
        }
        tracing::info!(node = self.id, "raft node stopped (dropped)");
    }
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

impl RaftNode {
    /// Opens the raft state under `node`'s data directory, starts the
    /// driver on the node's runtime and serves
    /// [`RaftService`](super::service::RaftService) on the node, and the
    /// `ChunkService` named `RaftSnapshot` that receives snapshots.
    ///
    /// Fails, and joins nothing, if the durable state cannot be recovered
    /// exactly (a corrupt WAL or state file): the error names the file.
    pub fn start(
        node: &OctopiiNode,
        config: RaftConfig,
        machine: impl StateMachine,
    ) -> Result<Self> {
        let dir = node.config().data_dir.join("raft");
        Self::start_in(node, dir, config, machine)
    }

    /// As [`start`](Self::start), with the raft state in `dir`.
    pub fn start_in(
        node: &OctopiiNode,
        dir: impl Into<PathBuf>,
        config: RaftConfig,
        machine: impl StateMachine,
    ) -> Result<Self> {
        Self::start_in_with_fs(node, dir, config, machine, Arc::new(StdFs))
    }

    /// As [`start_in`](Self::start_in), with every file operation of the
    /// raft state (WAL, `raft-state`, snapshot files, directories) going
    /// through `fs`: for tests that make the disk fail.
    pub fn start_in_with_fs(
        node: &OctopiiNode,
        dir: impl Into<PathBuf>,
        config: RaftConfig,
        machine: impl StateMachine,
        fs: Arc<dyn WalFs>,
    ) -> Result<Self> {
        config.validate()?;
        super::service::check_own_certificate(node)?;
        // An entry (a proposal plus its framing) must fit in one frame.
        let frame = node.config().transport.max_frame_size as usize;
        if config.max_proposal_size.saturating_add(ENTRY_OVERHEAD) > frame {
            return Err(OctopiiError::Config {
                field: "raft.max_proposal_size",
                message: format!(
                    "{} bytes plus {ENTRY_OVERHEAD} of framing exceeds transport.max_frame_size ({frame})",
                    config.max_proposal_size
                ),
            });
        }
        let id = node.id();
        let bootstrap = if config.bootstrap {
            let mut voters: Vec<u64> = config.peers.keys().copied().collect();
            if !voters.contains(&id) {
                voters.push(id);
            }
            let snapshot_data = bootstrap_snapshot(&machine)?;
            Some(Bootstrap {
                voters,
                snapshot_data,
            })
        } else {
            None
        };
        let dir: PathBuf = dir.into();
        let storage =
            RaftStorage::open_with_fs(&dir, config.wal.clone(), bootstrap.as_ref(), fs.clone())?;
        let raft_config = raft_rs_config(&config, id, storage.snapshot_metadata().index);
        raft_config
            .validate()
            .map_err(|e| OctopiiError::Raft(RaftError::Storage(format!("raft config: {e}"))))?;
        let raw = raft::RawNode::new(&raft_config, storage, &super::slog_bridge::logger())
            .map_err(|e| OctopiiError::Raft(RaftError::Storage(e.to_string())))?;

        let addresses: AddressBook = Arc::new(RwLock::new(config.peers.clone()));
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let vouched = Vouched::default();
        let (feedback_tx, feedback_rx) = mpsc::unbounded_channel();
        let peers = Peers::new(
            node.clone(),
            addresses.clone(),
            config.peer_queue_capacity,
            feedback_tx,
            peer_call_deadline(&config),
            vouched.clone(),
        );
        let (status_tx, status_rx) = watch::channel(RaftStatus {
            id,
            leader_id: None,
            term: 0,
            role: RaftRole::Follower,
            last_index: 0,
            commit_index: 0,
            applied_index: 0,
            snapshot_index: 0,
            voters: Vec::new(),
            learners: Vec::new(),
            invalid_messages: 0,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let driver = Driver::new(
            raw,
            Box::new(machine),
            peers,
            config.clone(),
            commands_rx,
            feedback_rx,
            stop_rx,
            status_tx,
        )?;
        let (outcome_tx, outcome_rx) = watch::channel(None);
        let driver_handle = DriverHandle::new(commands_tx, outcome_rx, config.request_timeout());
        let membership = Membership {
            status: status_rx.clone(),
            vouched: vouched.clone(),
            commands: driver_handle.commands.clone(),
        };
        let forged = Arc::new(AtomicU64::new(0));
        let handler = RaftHandler {
            id,
            driver: driver_handle.clone(),
            max_proposal_size: config.max_proposal_size,
            membership: membership.clone(),
            addresses: addresses.clone(),
            forged: forged.clone(),
        };
        node.serve(RaftServiceServer::new(handler).authorize(membership.policy()))?;
        let snapshots = snapshot_transfer::receiver(
            node,
            id,
            fs,
            &dir,
            driver_handle.commands.clone(),
            forged.clone(),
        )?;
        node.serve(crate::rpc::Authorized::new(snapshots, membership.policy()))?;
        let (done_tx, done_rx) = std_mpsc::channel::<()>();
        let driver = node.runtime_handle().spawn(async move {
            let _done = done_tx;
            // A panic (in raft-rs or the state machine) stops the node with
            // the panic as its reason, rather than taking the runtime down.
            let outcome = match AssertUnwindSafe(driver.run()).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let why = panic_message(&*panic);
                    tracing::error!(node = id, "raft driver panicked, the node stops: {why}");
                    RaftError::Failed {
                        reason: format!("the raft driver panicked: {why}"),
                    }
                }
            };
            outcome_tx.send_replace(Some(outcome));
        });
        let started = status_rx.borrow().clone();
        tracing::info!(
            node = id,
            term = started.term,
            last_index = started.last_index,
            "raft node started"
        );
        Ok(RaftNode {
            inner: Arc::new(Inner {
                id,
                node: node.clone(),
                config,
                driver: driver_handle,
                status: status_rx,
                addresses,
                forged,
                task: Mutex::new(Some(driver)),
                stop: Mutex::new(Some(stop_tx)),
                done: Mutex::new(Some(done_rx)),
            }),
        })
    }

    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The node's current raft state.
    pub fn status(&self) -> RaftStatus {
        let mut status = self.inner.status.borrow().clone();
        if self.inner.status.has_changed().is_err() || self.stopped().is_some() {
            // The driver is gone.
            status.role = RaftRole::Stopped;
        }
        status
    }

    /// Why the node stopped: `None` while it runs,
    /// [`RaftError::Stopped`] after [`shutdown`](Self::shutdown), and
    /// [`RaftError::Failed`] naming the failure (a storage error, a panic
    /// in the driver or the state machine) if it stopped by itself. Every
    /// call made of a stopped node fails with this error.
    pub fn stopped(&self) -> Option<RaftError> {
        self.inner.driver.stopped()
    }

    /// Waits until this node knows a leader (possibly itself) and returns
    /// its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let mut status = self.inner.status.clone();
        let wait = status.wait_for(|s| s.leader_id.is_some() || s.role == RaftRole::Stopped);
        let leader = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| OctopiiError::Timeout(timeout))?
            .ok()
            .and_then(|status| status.leader_id);
        match leader {
            Some(leader) => Ok(leader),
            None => Err(self.inner.driver.stop_reason().await.into()),
        }
    }

    /// Hands this leader's leadership to voter `to`, or to another voter
    /// of its choice, and waits (up to
    /// [`RaftConfig::request_timeout_ms`]) until another node leads; the
    /// new leader's id. Before [`OctopiiNode::drain`] of a leader, so the
    /// group elects no new leader only after a timeout. A node that does
    /// not lead answers [`RaftError::NotLeader`].
    pub async fn transfer_leadership(&self, to: Option<u64>) -> Result<u64> {
        let voters = self.status().voters;
        let me = self.inner.id;
        let to = to
            .or_else(|| voters.iter().copied().find(|&voter| voter != me))
            .filter(|to| *to != me && voters.contains(to))
            .ok_or(RaftError::Refused("no other voter to lead".into()))?;
        let transfer = |reply| Command::TransferLeadership { to, reply };
        self.inner.driver.ask(transfer).await?;
        let limit = self.inner.config.request_timeout();
        let mut status = self.inner.status.clone();
        let elsewhere = status
            .wait_for(|s| s.leader_id.is_some_and(|l| l != me) || s.role == RaftRole::Stopped);
        let leader = tokio::time::timeout(limit, elsewhere)
            .await
            .map_err(|_| OctopiiError::Timeout(limit))?
            .ok()
            .and_then(|s| s.leader_id.filter(|&l| l != me));
        match leader {
            Some(leader) => Ok(leader),
            None => Err(self.inner.driver.stop_reason().await.into()),
        }
    }

    /// Raft messages this node dropped because their `from` was not the
    /// raft id of the node that sent them (a member speaking for another).
    pub fn forged_messages(&self) -> u64 {
        self.inner.forged.load(Ordering::Relaxed)
    }

    /// Replicates `command` and returns the state machine's output once it
    /// is committed and applied. Fails with [`RaftError::ProposalTooLarge`]
    /// above [`RaftConfig::max_proposal_size`], with
    /// [`RaftError::NotLeader`] if no leader is known, and with
    /// [`RaftError::Timeout`] if there is no outcome within
    /// [`RaftConfig::request_timeout_ms`] (the command may still be applied).
    pub async fn propose(&self, command: impl Into<Vec<u8>>) -> Result<Vec<u8>> {
        let command = command.into();
        let max = self.inner.config.max_proposal_size;
        if command.len() > max {
            return Err(RaftError::ProposalTooLarge {
                size: command.len(),
                max,
            }
            .into());
        }
        self.submit(Proposal::Command(command)).await
    }

    /// Adds node `id`, listening at `addr`, as a voter; promotes it if it
    /// is a learner. Resolves once the change is applied here.
    pub async fn add_voter(&self, id: u64, addr: SocketAddr) -> Result<()> {
        self.submit(Proposal::AddVoter { id, addr }).await.map(drop)
    }

    /// Adds node `id`, listening at `addr`, as a learner: it receives the
    /// log but does not vote until promoted with [`add_voter`](Self::add_voter).
    pub async fn add_learner(&self, id: u64, addr: SocketAddr) -> Result<()> {
        self.submit(Proposal::AddLearner { id, addr })
            .await
            .map(drop)
    }

    /// Removes node `id` from the group.
    pub async fn remove_node(&self, id: u64) -> Result<()> {
        self.submit(Proposal::RemoveNode { id }).await.map(drop)
    }

    /// Proposes here if this node leads, else on the leader it knows.
    async fn submit(&self, proposal: Proposal) -> Result<Vec<u8>> {
        let mut leader = None;
        for _ in 0..PROPOSE_ATTEMPTS {
            let result = match leader {
                None => {
                    let propose = |reply| Command::Propose {
                        proposal: proposal.clone(),
                        reply,
                    };
                    self.inner.driver.ask(propose).await.map_err(Into::into)
                }
                Some(leader) => self.forward(leader, proposal.clone()).await,
            };
            match result {
                Err(OctopiiError::Raft(RaftError::NotLeader {
                    leader_hint: Some(hint),
                })) if hint != self.inner.id && leader != Some(hint) => leader = Some(hint),
                other => return other,
            }
        }
        Err(RaftError::NotLeader {
            leader_hint: leader,
        }
        .into())
    }

    /// Sends `proposal` to the leader over [`RaftService`](super::service::RaftService).
    async fn forward(&self, leader: u64, proposal: Proposal) -> Result<Vec<u8>> {
        let Some(addr) = address_of(&self.inner.addresses, leader) else {
            return Err(RaftError::NotLeader {
                leader_hint: Some(leader),
            }
            .into());
        };
        // Only the leader's own certificate may answer for the leader.
        let client = crate::rpc::Client::new(&self.inner.node, addr)
            .expect_peer(crate::identity::Role::Node { id: leader })
            .with_deadline(self.inner.config.request_timeout());
        let client = RaftServiceClient::from_client(client);
        self.inner
            .node
            .run(async move { Ok(client.propose(proposal).await??) })
            .await
    }

    /// Reads `query` from the state machine, linearizably: through raft's
    /// ReadIndex, the answer reflects every write acknowledged before the
    /// call. Works on any member (a follower asks the leader for the read
    /// index, then answers from its own state).
    pub async fn read(&self, query: impl Into<Vec<u8>>) -> Result<Vec<u8>> {
        let query = query.into();
        let read = |reply| Command::Read { query, reply };
        Ok(self.inner.driver.ask(read).await?)
    }

    /// Takes this member out of service without a leaderless gap: a
    /// leader first hands its leadership on
    /// ([`transfer_leadership`](Self::transfer_leadership)), then raft
    /// stops ([`shutdown`](Self::shutdown)) and the node drains
    /// ([`OctopiiNode::drain`]) for up to `timeout`. Whether the node's
    /// running calls finished in time. The member stays in the
    /// configuration: remove it first if it is not coming back.
    pub async fn drain(&self, timeout: Duration) -> bool {
        if self.status().role == RaftRole::Leader {
            if let Err(e) = self.transfer_leadership(None).await {
                tracing::warn!(node = self.inner.id, "draining without a new leader: {e}");
            }
        }
        self.shutdown().await;
        self.inner.node.drain(timeout).await
    }

    /// Stops the driver and waits for it, releasing the raft log. The
    /// [`OctopiiNode`] keeps running (its RaftService answers
    /// [`RaftError::Stopped`]); to run raft again, start a new node on the
    /// same `data_dir`.
    ///
    /// Dropping the last handle without `shutdown` stops the driver too,
    /// and waits (up to [`RaftConfig::request_timeout_ms`]) for it to release
    /// the raft log, except inside a current-thread runtime, where it
    /// cannot block: there the driver stops just after.
    pub async fn shutdown(&self) {
        let stop = self
            .inner
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        tracing::info!(node = self.inner.id, "raft node stopped");
    }
}

/// What raft-rs runs with: `config`'s timers and limits, pre-vote and
/// check-quorum on.
fn raft_rs_config(config: &RaftConfig, id: u64, applied: u64) -> raft::Config {
    let max_election_tick = match config.max_election_ticks {
        0 => 2 * config.election_ticks,
        max => max,
    };
    raft::Config {
        id,
        election_tick: config.election_ticks,
        min_election_tick: config.election_ticks,
        max_election_tick,
        heartbeat_tick: config.heartbeat_ticks,
        applied,
        max_size_per_msg: config.max_size_per_msg,
        max_inflight_msgs: config.max_inflight_msgs,
        check_quorum: true,
        pre_vote: true,
        ..raft::Config::default()
    }
}

#[cfg(test)]
mod tests {
    use raft::storage::MemStorage;

    use super::*;

    /// The election timeouts raft-rs draws for a node run with `config`.
    fn drawn_timeouts(config: &RaftConfig) -> std::collections::BTreeSet<usize> {
        let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
        let logger = super::super::slog_bridge::logger();
        let mut raw = raft::RawNode::new(&raft_rs_config(config, 1, 0), storage, &logger).unwrap();
        (0..200)
            .map(|_| {
                raw.raft.reset_randomized_election_timeout();
                raw.raft.randomized_election_timeout()
            })
            .collect()
    }

    #[test]
    fn election_timeouts_are_drawn_from_the_configured_range() {
        let default = drawn_timeouts(&RaftConfig::default());
        assert!(default.len() > 1, "randomized by default: {default:?}");
        assert!(default.iter().all(|t| (10..20).contains(t)), "{default:?}");

        let fixed = RaftConfig {
            election_ticks: 13,
            max_election_ticks: 14,
            ..RaftConfig::default()
        };
        assert_eq!(
            drawn_timeouts(&fixed).into_iter().collect::<Vec<_>>(),
            vec![13],
            "a range of one is a fixed timeout, whatever the randomness"
        );
    }
}

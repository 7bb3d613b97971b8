//! The driver: the one task that owns a node's `RawNode`.
//!
//! It ticks on a timer, steps incoming messages, takes proposals and reads,
//! and handles each `Ready` in the order raft-rs documents:
//!
//! 1. send `messages` (those that need nothing persisted first);
//! 2. install the snapshot, if any (durably, then restore the state machine);
//! 3. note the `read_states`;
//! 4. apply `committed_entries`;
//! 5. persist `entries` (one WAL batch, fsynced) and the hard state;
//! 6. send `persisted_messages` (votes and acknowledgements: only now that
//!    what they vouch for is on disk);
//! 7. `advance`, then handle the light ready the same way (send its
//!    messages, apply its committed entries) and `advance_apply`.
//!
//! Everything queued while a Ready was persisted is taken before the next
//! one, so concurrent proposals share one WAL fsync.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, ReadState, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use super::machine::{RaftRole, RaftStatus, StateMachine};
use super::peers::{Feedback, Peers};
use super::service::Proposal;
use super::snapshot;
use super::storage::RaftStorage;
use super::{RaftConfig, RaftError};
use crate::Result;

/// Commands taken per loop turn at most, before the Ready is handled.
const MAX_COMMANDS_PER_TURN: usize = 4096;

/// The reply to a proposal or a read.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, RaftError>>;

/// What the rest of the node asks of the driver.
pub(crate) enum Command {
    /// A raft message from a peer.
    Step(Message),
    /// A proposal (answered `NotLeader` unless this node leads).
    Propose { proposal: Proposal, reply: Reply },
    /// A linearizable read.
    Read { query: Vec<u8>, reply: Reply },
    /// Stop the driver.
    Shutdown,
}

/// Identifies a proposal or read: the node that made it and a number it
/// gave it. Carried in the entry's (or read request's) context.
fn request_context(node: u64, seq: u64) -> Vec<u8> {
    let mut context = Vec::with_capacity(16);
    context.extend_from_slice(&node.to_le_bytes());
    context.extend_from_slice(&seq.to_le_bytes());
    context
}

fn parse_context(context: &[u8]) -> Option<(u64, u64)> {
    let node = u64::from_le_bytes(context.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(context.get(8..16)?.try_into().ok()?);
    Some((node, seq))
}

struct PendingRead {
    query: Vec<u8>,
    reply: Reply,
    asked: Instant,
}

pub(crate) struct Driver {
    id: u64,
    raw: RawNode<RaftStorage>,
    machine: Box<dyn StateMachine>,
    peers: Peers,
    config: RaftConfig,
    commands: mpsc::Receiver<Command>,
    feedback: mpsc::UnboundedReceiver<Feedback>,
    status: watch::Sender<RaftStatus>,
    next_seq: u64,
    proposals: HashMap<u64, Reply>,
    /// Reads waiting for their read index.
    reads: HashMap<u64, PendingRead>,
    /// Reads with a read index, waiting for it to be applied.
    ready_reads: Vec<(u64, Vec<u8>, Reply)>,
    applied: u64,
}

impl Driver {
    /// Restores the state machine from the storage's snapshot and builds
    /// the driver.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        raw: RawNode<RaftStorage>,
        mut machine: Box<dyn StateMachine>,
        mut peers: Peers,
        config: RaftConfig,
        commands: mpsc::Receiver<Command>,
        feedback: mpsc::UnboundedReceiver<Feedback>,
        status: watch::Sender<RaftStatus>,
    ) -> Result<Self> {
        let store = raw.store();
        let applied = store.snapshot_metadata().index;
        if let Some(path) = store.snapshot_path() {
            restore(&mut machine, &mut peers, &path)?;
        }
        let id = raw.raft.id;
        let driver = Driver {
            id,
            raw,
            machine,
            peers,
            config,
            commands,
            feedback,
            status,
            next_seq: 1,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            ready_reads: Vec::new(),
            applied,
        };
        driver.publish_status(true);
        Ok(driver)
    }

    /// Runs until shut down or until storage fails.
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = true;
        while running {
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                command = self.commands.recv() => match command {
                    Some(command) => running = self.handle(command),
                    None => running = false,
                },
                Some(feedback) = self.feedback.recv() => self.on_feedback(feedback),
            }
            for _ in 0..MAX_COMMANDS_PER_TURN {
                if !running {
                    break;
                }
                match self.commands.try_recv() {
                    Ok(command) => running = self.handle(command),
                    Err(_) => break,
                }
            }
            while let Ok(feedback) = self.feedback.try_recv() {
                self.on_feedback(feedback);
            }
            while running && self.raw.has_ready() {
                if let Err(e) = self.handle_ready().await {
                    tracing::error!(node = self.id, "raft node stops: {e}");
                    running = false;
                }
            }
            if running {
                if let Err(e) = self.maybe_snapshot().await {
                    tracing::error!(node = self.id, "raft node stops: {e}");
                    running = false;
                }
            }
            self.publish_status(running);
        }
        self.fail_all(RaftError::Stopped);
    }

    /// Handles a command; `false` to stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Step(message) => {
                if let Err(e) = self.raw.step(message) {
                    tracing::debug!(node = self.id, "raft refused a message: {e}");
                }
            }
            Command::Propose { proposal, reply } => self.propose(proposal, reply),
            Command::Read { query, reply } => {
                let seq = self.take_seq();
                self.raw.read_index(request_context(self.id, seq));
                let asked = Instant::now();
                self.reads.insert(
                    seq,
                    PendingRead {
                        query,
                        reply,
                        asked,
                    },
                );
            }
            Command::Shutdown => return false,
        }
        true
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn leader_hint(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != raft::INVALID_ID)
    }

    fn propose(&mut self, proposal: Proposal, reply: Reply) {
        if self.raw.raft.state != StateRole::Leader {
            let leader_hint = self.leader_hint();
            let _ = reply.send(Err(RaftError::NotLeader { leader_hint }));
            return;
        }
        let seq = self.take_seq();
        let context = request_context(self.id, seq);
        let change = match proposal {
            Proposal::Command(command) => {
                let result = self.raw.propose(context, command);
                return self.track(seq, result, reply);
            }
            Proposal::AddVoter { id, addr } => conf_change(ConfChangeType::AddNode, id, Some(addr)),
            Proposal::AddLearner { id, addr } => {
                conf_change(ConfChangeType::AddLearnerNode, id, Some(addr))
            }
            Proposal::RemoveNode { id } => conf_change(ConfChangeType::RemoveNode, id, None),
        };
        if self.raw.raft.has_pending_conf() {
            let why = "another membership change is still in progress";
            let _ = reply.send(Err(RaftError::ProposalDropped(why.into())));
            return;
        }
        let result = self.raw.propose_conf_change(context, change);
        self.track(seq, result, reply);
    }

    /// Remembers who waits for proposal `seq`, or tells them raft refused it.
    fn track(&mut self, seq: u64, result: raft::Result<()>, reply: Reply) {
        match result {
            Ok(()) => {
                self.proposals.insert(seq, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(RaftError::ProposalDropped(e.to_string())));
            }
        }
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        // Forget callers that gave up; ask again for reads whose request
        // may have been lost (no leader, leader change).
        self.proposals.retain(|_, reply| !reply.is_closed());
        self.reads.retain(|_, read| !read.reply.is_closed());
        let retry = self.config.election_timeout();
        let stale: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, read)| read.asked.elapsed() >= retry)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in stale {
            if let Some(read) = self.reads.get_mut(&seq) {
                read.asked = Instant::now();
            }
            self.raw.read_index(request_context(self.id, seq));
        }
    }

    fn on_feedback(&mut self, feedback: Feedback) {
        match feedback {
            Feedback::Unreachable(peer) => self.raw.report_unreachable(peer),
            Feedback::Snapshot(peer, status) => self.raw.report_snapshot(peer, status),
        }
    }

    async fn handle_ready(&mut self) -> Result<()> {
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone()).await?;
        }
        self.note_read_states(ready.take_read_states());
        self.apply(ready.take_committed_entries())?;
        self.raw.mut_store().append(ready.entries()).await?;
        if let Some(hard_state) = ready.hs() {
            self.raw.mut_store().set_hard_state(hard_state)?;
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.serve_reads();
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let to = message.to;
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.peers.send_snapshot(message, self.raw.store().dir());
            } else if !self.peers.send(message) {
                self.raw.report_unreachable(to);
            }
        }
    }

    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let index = snapshot.get_metadata().index;
        // The file is put in place first, then read back: on a crash in
        // between, the restart restores from it.
        self.raw.mut_store().apply_snapshot(snapshot).await?;
        let path = self.raw.store().snapshot_path();
        let path =
            path.ok_or_else(|| RaftError::Storage("the installed snapshot has no file".into()))?;
        restore(&mut self.machine, &mut self.peers, &path)?;
        self.applied = index;
        tracing::info!(
            node = self.id,
            index,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    fn note_read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            let Some((node, seq)) = parse_context(&state.request_ctx) else {
                continue;
            };
            if node != self.id {
                continue;
            }
            if let Some(read) = self.reads.remove(&seq) {
                self.ready_reads.push((state.index, read.query, read.reply));
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready_reads)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.ready_reads = waiting;
        for (_, query, reply) in ready {
            let _ = reply.send(Ok(self.machine.query(&query)));
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            self.applied = entry.index;
            let output = match entry.get_entry_type() {
                // The empty entry a new leader appends: nobody's proposal.
                EntryType::EntryNormal if entry.data.is_empty() && entry.context.is_empty() => {
                    continue;
                }
                EntryType::EntryNormal => Ok(self.machine.apply(&entry.data)),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry)?
                }
            };
            if let Some((node, seq)) = parse_context(&entry.context) {
                if node == self.id {
                    if let Some(reply) = self.proposals.remove(&seq) {
                        let _ = reply.send(output);
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a committed membership change. A change raft refuses (say,
    /// removing the last voter) is refused on every node alike and
    /// reported to its proposer; only a storage failure is an `Err`.
    fn apply_conf_change(&mut self, entry: &Entry) -> Result<Result<Vec<u8>, RaftError>> {
        let outcome = if entry.get_entry_type() == EntryType::EntryConfChange {
            match ConfChange::parse_from_bytes(&entry.data) {
                Ok(change) => {
                    if let Ok(addr) = std::str::from_utf8(&change.context)
                        .unwrap_or_default()
                        .parse::<SocketAddr>()
                    {
                        self.peers.set_address(change.node_id, addr);
                    }
                    self.raw.apply_conf_change(&change)
                }
                Err(e) => Err(raft::Error::CodecError(e)),
            }
        } else {
            match ConfChangeV2::parse_from_bytes(&entry.data) {
                Ok(change) => self.raw.apply_conf_change(&change),
                Err(e) => Err(raft::Error::CodecError(e)),
            }
        };
        match outcome {
            Ok(conf_state) => {
                tracing::info!(
                    node = self.id,
                    index = entry.index,
                    ?conf_state,
                    "membership changed"
                );
                self.raw.mut_store().set_conf_state(conf_state)?;
                Ok(Ok(Vec::new()))
            }
            Err(e) => {
                tracing::warn!(
                    node = self.id,
                    index = entry.index,
                    "membership change refused: {e}"
                );
                Ok(Err(RaftError::ProposalDropped(e.to_string())))
            }
        }
    }

    async fn maybe_snapshot(&mut self) -> Result<()> {
        let store = self.raw.store();
        let since = store.snapshot_metadata().index;
        let due = store.take_snapshot_request()
            || self.applied >= since + self.config.snapshot_interval
            || store.log_bytes() >= self.config.snapshot_log_bytes;
        if !due || self.applied <= since {
            return Ok(());
        }
        let (peers, machine) = (self.peers.addresses(), self.machine.as_ref());
        let index = self.applied;
        let write = |out: &mut dyn std::io::Write| snapshot::write_payload(out, &peers, machine);
        self.raw.mut_store().compact(index, write).await?;
        tracing::debug!(node = self.id, index, "snapshot taken, log compacted");
        Ok(())
    }

    fn publish_status(&self, running: bool) {
        let raft = &self.raw.raft;
        let mut conf = raft.prs().conf().to_conf_state();
        conf.voters.sort_unstable();
        conf.learners.sort_unstable();
        let role = match raft.state {
            _ if !running => RaftRole::Stopped,
            StateRole::Follower => RaftRole::Follower,
            StateRole::PreCandidate => RaftRole::PreCandidate,
            StateRole::Candidate => RaftRole::Candidate,
            StateRole::Leader => RaftRole::Leader,
        };
        let status = RaftStatus {
            id: self.id,
            leader_id: self.leader_hint(),
            term: raft.term,
            role,
            last_index: raft.raft_log.last_index(),
            commit_index: raft.raft_log.committed,
            applied_index: self.applied,
            snapshot_index: self.raw.store().snapshot_metadata().index,
            voters: conf.voters,
            learners: conf.learners,
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn fail_all(&mut self, error: RaftError) {
        for (_, reply) in self.proposals.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, read) in self.reads.drain() {
            let _ = read.reply.send(Err(error.clone()));
        }
        for (_, _, reply) in self.ready_reads.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// Snapshot data of a founding member's initial state (no addresses: each
/// member has its own from its configuration).
pub(crate) fn bootstrap_snapshot(machine: &dyn StateMachine) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    snapshot::write_payload(&mut payload, &[], machine)?;
    Ok(payload)
}

/// Restores the state machine and address book from a snapshot file.
fn restore(machine: &mut Box<dyn StateMachine>, peers: &mut Peers, path: &Path) -> Result<()> {
    for (id, addr) in snapshot::restore(path, machine.as_mut())? {
        peers.set_address(id, addr);
    }
    Ok(())
}

/// The raft-rs change for a membership proposal; the new member's address
/// travels in the change's context, so every node learns it.
fn conf_change(change_type: ConfChangeType, node_id: u64, addr: Option<SocketAddr>) -> ConfChange {
    let mut change = ConfChange {
        node_id,
        ..ConfChange::default()
    };
    change.set_change_type(change_type);
    if let Some(addr) = addr {
        change.context = addr.to_string().into_bytes().into();
    }
    change
}

/// The call deadline for raft messages to one peer: a peer that takes this
/// long to take a batch counts as unreachable.
pub(crate) fn peer_call_deadline(config: &RaftConfig) -> Duration {
    config.election_timeout()
}

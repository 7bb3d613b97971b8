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
//! A peer's message is checked (`validate`) before it is stepped, so no
//! peer input reaches a raft-rs panic.
//!
//! Everything queued while a Ready was persisted is taken before the next
//! one, so concurrent proposals share one WAL fsync.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, ReadState, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use super::machine::{RaftRole, RaftStatus, StateMachine};
use super::metrics::RaftMetrics;
use super::peers::{Feedback, Peers};
use super::service::Proposal;
use super::snapshot;
use super::storage::RaftStorage;
use super::validate;
use super::{RaftConfig, RaftError};
use crate::Result;
use crate::wal::WalFs;

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
    /// Hand leadership to voter `to` (answered `NotLeader` unless this
    /// node leads).
    TransferLeadership { to: u64, reply: Reply },
    /// Raft traffic from node `id`, not a member as far as this node
    /// knows, was refused: ask the members about it (see `vouch`).
    Vouch(u64),
}

/// Identifies a proposal or read: the node that made it, the driver
/// incarnation (a random number drawn at each start) and a number that
/// incarnation gave it. Carried in the entry's (or read request's)
/// context. The incarnation keeps the id unique across restarts: entries
/// of an earlier run, applied again after a restart, and late read
/// answers to an earlier run match no caller of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestId {
    node: u64,
    incarnation: u64,
    seq: u64,
}

impl RequestId {
    const LEN: usize = 24;

    fn encode(self) -> Vec<u8> {
        let mut context = Vec::with_capacity(Self::LEN);
        context.extend_from_slice(&self.node.to_le_bytes());
        context.extend_from_slice(&self.incarnation.to_le_bytes());
        context.extend_from_slice(&self.seq.to_le_bytes());
        context
    }

    fn parse(context: &[u8]) -> Option<Self> {
        if context.len() != Self::LEN {
            return None;
        }
        let word = |i: usize| {
            let bytes: [u8; 8] = context[i * 8..i * 8 + 8].try_into().unwrap_or_default();
            u64::from_le_bytes(bytes)
        };
        Some(RequestId {
            node: word(0),
            incarnation: word(1),
            seq: word(2),
        })
    }
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
    /// Resolves (sent or dropped) when the node is shut down or dropped.
    stop: oneshot::Receiver<()>,
    status: watch::Sender<RaftStatus>,
    /// This run's random number in every [`RequestId`].
    incarnation: u64,
    next_seq: u64,
    /// Peer messages refused by [`validate::check`].
    invalid_messages: u64,
    /// Proposals waiting for their entry, by sequence number. Ordered maps
    /// here: every walk over them (retried reads, failures) goes in the
    /// order they came, the same in every run of a simulation.
    proposals: BTreeMap<u64, Reply>,
    /// Reads waiting for their read index.
    reads: BTreeMap<u64, PendingRead>,
    /// Reads with a read index, waiting for it to be applied.
    ready_reads: Vec<(u64, Vec<u8>, Reply)>,
    applied: u64,
    metrics: RaftMetrics,
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
        stop: oneshot::Receiver<()>,
        status: watch::Sender<RaftStatus>,
    ) -> Result<Self> {
        let store = raw.store();
        let applied = store.snapshot_metadata().index;
        if let Some(path) = store.snapshot_path() {
            restore(store.fs().as_ref(), &mut machine, &mut peers, &path)?;
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
            stop,
            status,
            incarnation: rand::random(),
            next_seq: 1,
            invalid_messages: 0,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            applied,
            metrics: RaftMetrics::new(id),
        };
        // The state recovered from disk: where this run starts, not a change.
        let status = driver.current_status(true);
        driver.metrics.publish(RaftRole::Stopped, &status);
        driver.status.send_replace(status);
        Ok(driver)
    }

    /// Runs until shut down (returns [`RaftError::Stopped`]) or until
    /// storage fails (returns [`RaftError::Failed`]).
    pub(crate) async fn run(mut self) -> RaftError {
        let mut ticker = tokio::time::interval(self.config.tick_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outcome = None;
        while outcome.is_none() {
            // In a fixed order, not tokio's random one, so a seed replays
            // in every process; a tick is ready once per interval and the
            // commands behind it are drained below, so none starves.
            tokio::select! {
                biased;
                _ = &mut self.stop => outcome = Some(RaftError::Stopped),
                _ = ticker.tick() => self.on_tick(),
                Some(feedback) = self.feedback.recv() => self.on_feedback(feedback),
                Some(command) = self.commands.recv() => self.handle(command),
            }
            if outcome.is_some() {
                break;
            }
            for _ in 0..MAX_COMMANDS_PER_TURN {
                match self.commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                }
            }
            while let Ok(feedback) = self.feedback.try_recv() {
                self.on_feedback(feedback);
            }
            while outcome.is_none() && self.raw.has_ready() {
                if let Err(e) = self.handle_ready().await {
                    outcome = Some(self.storage_failure(e));
                }
            }
            if outcome.is_none() {
                if let Err(e) = self.maybe_snapshot().await {
                    outcome = Some(self.storage_failure(e));
                }
            }
            self.publish_status(outcome.is_none());
        }
        self.publish_status(false);
        let outcome = outcome.unwrap_or(RaftError::Stopped);
        self.fail_all(outcome.clone());
        outcome
    }

    fn storage_failure(&self, e: crate::OctopiiError) -> RaftError {
        tracing::error!(node = self.id, "raft node stops: {e}");
        RaftError::Failed {
            reason: e.to_string(),
        }
    }

    /// A new id for a proposal or read.
    fn request_id(&mut self) -> RequestId {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.id_of(seq)
    }

    /// The id this run gave (or gives) number `seq`.
    fn id_of(&self, seq: u64) -> RequestId {
        RequestId {
            node: self.id,
            incarnation: self.incarnation,
            seq,
        }
    }

    /// The sequence number of `context` if this run of this node made it.
    fn own_seq(&self, context: &[u8]) -> Option<u64> {
        let id = RequestId::parse(context)?;
        (id.node == self.id && id.incarnation == self.incarnation).then_some(id.seq)
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Step(message) => self.step(message),
            Command::Vouch(id) => {
                // As the status publishes them (sorted), which is what the
                // policy compares a vouch with.
                let status = self.current_status(true);
                let configuration = (status.voters, status.learners);
                self.peers
                    .ask_about(self.id, id, (configuration, status.applied_index));
            }
            Command::Propose { proposal, reply } => self.propose(proposal, reply),
            Command::TransferLeadership { to, reply } => {
                let answer = if self.raw.raft.state == StateRole::Leader {
                    self.raw.transfer_leader(to);
                    Ok(Vec::new())
                } else {
                    Err(RaftError::NotLeader {
                        leader_hint: self.leader_hint(),
                    })
                };
                let _ = reply.send(answer);
            }
            Command::Read { query, reply } => {
                let id = self.request_id();
                let seq = id.seq;
                self.raw.read_index(id.encode());
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
        }
    }

    /// Steps a peer's message, unless raft-rs would panic on it.
    fn step(&mut self, message: Message) {
        if let Err(why) = validate::check(&self.raw.raft, &message) {
            self.invalid_messages += 1;
            tracing::warn!(
                node = self.id,
                from = message.from,
                kind = ?message.get_msg_type(),
                dropped = self.invalid_messages,
                "dropping an invalid raft message: {why}"
            );
            return;
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(node = self.id, "raft refused a message: {e}");
        }
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
        let id = self.request_id();
        let (seq, context) = (id.seq, id.encode());
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
                self.metrics.proposed();
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
            self.raw.read_index(self.id_of(seq).encode());
        }
    }

    fn on_feedback(&mut self, feedback: Feedback) {
        match feedback {
            Feedback::Unreachable(peer) => self.raw.report_unreachable(peer),
            Feedback::Snapshot(peer, status) => {
                if status == raft::SnapshotStatus::Finish {
                    tracing::info!(node = self.id, peer, "snapshot delivered");
                } else {
                    tracing::warn!(
                        node = self.id,
                        peer,
                        "snapshot not delivered, raft retries later"
                    );
                }
                self.raw.report_snapshot(peer, status)
            }
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
                let metadata = message.get_snapshot().get_metadata();
                tracing::info!(
                    node = self.id,
                    peer = to,
                    index = metadata.index,
                    term = metadata.term,
                    "sending a snapshot"
                );
                let store = self.raw.store();
                self.peers.send_snapshot(message, store.fs(), store.dir());
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
        restore(
            self.raw.store().fs().as_ref(),
            &mut self.machine,
            &mut self.peers,
            &path,
        )?;
        self.applied = index;
        self.metrics.snapshot_installed();
        tracing::info!(
            node = self.id,
            index,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    fn note_read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            let Some(seq) = self.own_seq(&state.request_ctx) else {
                continue;
            };
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
            if let Some(seq) = self.own_seq(&entry.context) {
                if let Some(reply) = self.proposals.remove(&seq) {
                    let _ = reply.send(output);
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
                if self.raw.raft.state == StateRole::Leader && !conf_state.voters.contains(&self.id)
                {
                    // raft-rs keeps a leader that removed itself leading
                    // (untested there), and panics when its own entries
                    // are persisted next, since it has no progress of its
                    // own any more. It steps down instead; the remaining
                    // voters elect a leader.
                    tracing::info!(
                        node = self.id,
                        "this leader is no longer a voter: stepping down"
                    );
                    let term = self.raw.raft.term;
                    self.raw.raft.become_follower(term, raft::INVALID_ID);
                }
                self.raw.mut_store().set_conf_state(conf_state)?;
                // Before the proposer hears of it: once `remove_node`
                // returns, the services already judge callers by the new
                // membership.
                self.publish_status(true);
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
            || self.applied >= since.saturating_add(self.config.snapshot_interval)
            || store.log_bytes() >= self.config.snapshot_log_bytes;
        if !due || self.applied <= since {
            return Ok(());
        }
        let (peers, machine) = (self.peers.addresses(), self.machine.as_ref());
        let index = self.applied;
        let write = |out: &mut dyn std::io::Write| snapshot::write_payload(out, &peers, machine);
        self.raw.mut_store().compact(index, write).await?;
        self.metrics.snapshot_taken();
        tracing::debug!(node = self.id, index, "snapshot taken, log compacted");
        Ok(())
    }

    fn publish_status(&self, running: bool) {
        let status = self.current_status(running);
        self.status.send_if_modified(|current| {
            log_changes(current, &status);
            self.metrics.publish(current.role, &status);
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn current_status(&self, running: bool) -> RaftStatus {
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
        RaftStatus {
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
            invalid_messages: self.invalid_messages,
        }
    }

    fn fail_all(&mut self, error: RaftError) {
        for (_, reply) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, read) in std::mem::take(&mut self.reads) {
            let _ = read.reply.send(Err(error.clone()));
        }
        for (_, _, reply) in self.ready_reads.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// Logs a node's changes of role, leader and term.
fn log_changes(old: &RaftStatus, new: &RaftStatus) {
    if old.role != new.role {
        tracing::info!(
            node = new.id,
            term = new.term,
            from = ?old.role,
            to = ?new.role,
            "raft role changed"
        );
    }
    if old.leader_id != new.leader_id {
        tracing::info!(
            node = new.id,
            term = new.term,
            leader = ?new.leader_id,
            previous = ?old.leader_id,
            "raft leader changed"
        );
    }
    if old.term != new.term {
        tracing::info!(
            node = new.id,
            term = new.term,
            previous = old.term,
            "raft term changed"
        );
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
fn restore(
    fs: &dyn WalFs,
    machine: &mut Box<dyn StateMachine>,
    peers: &mut Peers,
    path: &Path,
) -> Result<()> {
    for (id, addr) in snapshot::restore(fs, path, machine.as_mut())? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_24_bytes_and_nothing_else_parses() {
        let id = RequestId {
            node: 2,
            incarnation: 0xdead_beef,
            seq: 7,
        };
        let bytes = id.encode();
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..8], &2u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &0xdead_beefu64.to_le_bytes());
        assert_eq!(&bytes[16..], &7u64.to_le_bytes());
        assert_eq!(RequestId::parse(&bytes), Some(id));
        // The 16-byte ids of older versions, and any other length, match
        // no caller.
        assert_eq!(RequestId::parse(&bytes[..16]), None);
        assert_eq!(RequestId::parse(&[]), None);
    }
}

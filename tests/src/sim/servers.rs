//! The serving side of a simulation: one node with its registers in
//! memory, or a raft group whose members keep theirs on simulated disks
//! ([`CrashFs`]) that lose what was not synced when a member crashes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use octopii::raft::{RaftConfig, RaftNode, RaftRole, Typed, TypedRaftNode};
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::net::SimNet;
use super::registers::{Observed, RegisterMachine, RegistersServer, Replicated, Store};
use crate::crash_fs::{CrashFs, Tear};

/// What serves the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// One node, its registers in memory; its crashes lose nothing.
    One,
    /// A raft group of this many members, each durable on its own
    /// simulated disk.
    Raft(u64),
}

impl Serving {
    /// How many nodes serve.
    pub fn nodes(self) -> u64 {
        match self {
            Serving::One => 1,
            Serving::Raft(members) => members,
        }
    }
}

/// One serving node, across its crashes and restarts.
struct Member {
    config: Config,
    /// The registers of [`Serving::One`].
    store: Arc<Store>,
    /// The raft state of [`Serving::Raft`].
    disk: CrashFs,
    node: Option<OctopiiNode>,
    raft: Option<RaftNode>,
    /// Why raft did not start on the member's last start, if it did not.
    start_error: Option<String>,
}

/// The serving nodes.
pub struct Servers {
    serving: Serving,
    members: Vec<Member>,
    /// Each raft member's registers, as its machine last left them.
    observed: Observed,
    /// Where each member's raft directory is. The raft state is on the
    /// member's simulated disk; only the directory that would receive
    /// snapshots from other members is real, and stays empty.
    scratch: tempfile::TempDir,
}

impl Servers {
    /// Starts the nodes of `configs` serving as `serving` says;
    /// `rng` draws each raft member's election timeout.
    pub fn start(serving: Serving, configs: &[Config], net: &SimNet, rng: &mut StdRng) -> Self {
        let mut servers = Servers {
            serving,
            members: configs
                .iter()
                .map(|config| Member {
                    config: config.clone(),
                    store: Arc::default(),
                    disk: CrashFs::never_blocking(),
                    node: None,
                    raft: None,
                    start_error: None,
                })
                .collect(),
            observed: Observed::default(),
            scratch: tempfile::tempdir().expect("scratch directory"),
        };
        for i in 0..servers.members.len() {
            servers.start_member(i, net, rng);
        }
        servers
    }

    /// The serving nodes' addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.config.bind_addr).collect()
    }

    /// Starts (or restarts) member `i`'s process: from its store, or from
    /// what its disk kept.
    fn start_member(&mut self, i: usize, net: &SimNet, rng: &mut StdRng) {
        let peers: BTreeMap<u64, SocketAddr> = self
            .members
            .iter()
            .map(|m| (m.config.node_id, m.config.bind_addr))
            .collect();
        let member = &mut self.members[i];
        let runtime = OctopiiRuntime::from_handle(tokio::runtime::Handle::current());
        let socket = net.socket(member.config.bind_addr);
        let node = OctopiiNode::with_socket(member.config.clone(), &runtime, socket).expect("node");
        let served = match self.serving {
            Serving::One => node.serve(RegistersServer::from_arc(member.store.clone())),
            Serving::Raft(_) => {
                let id = member.config.node_id;
                let machine = RegisterMachine::observed(id, self.observed.clone());
                let fs = Arc::new(member.disk.clone());
                member.start_error = None;
                match RaftNode::start_in_with_fs(
                    &node,
                    self.scratch.path().join(format!("member-{id}")),
                    raft_config(peers, rng),
                    Typed(machine),
                    fs,
                ) {
                    Ok(raft) => {
                        member.raft = Some(raft.clone());
                        node.serve(RegistersServer::new(Replicated(TypedRaftNode::from_raft(
                            raft,
                        ))))
                    }
                    Err(e) => {
                        member.start_error = Some(e.to_string());
                        Ok(())
                    }
                }
            }
        };
        served.expect("serve the registers");
        member.node = Some(node);
    }

    /// Crashes member `i` after `writes` more operations that change its
    /// disk (at once for 0, or after a second if it does not get that far):
    /// its socket is unplugged, so it tells nobody, and its disk keeps what
    /// `tear` says of what was not synced. It restarts after `down`.
    pub async fn crash(
        &mut self,
        i: usize,
        writes: u64,
        down: Duration,
        tear: Tear,
        net: &SimNet,
        rng: &mut StdRng,
    ) {
        let member = &mut self.members[i];
        if writes == 0 || self.serving == Serving::One {
            member.disk.power_off();
        } else {
            // The power fails mid-way through whatever the member is
            // writing; what it sent before that has left.
            member.disk.power_fails_after(writes);
            let give_up = Instant::now() + Duration::from_secs(1);
            while !member.disk.power_failed() && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            member.disk.power_off();
        }
        Self::stop_member(member, net).await;
        tokio::time::sleep(down).await;
        member.disk.crash(tear);
        self.start_member(i, net, rng);
    }

    /// The process of `member` ends, telling nobody (its socket is
    /// unplugged first).
    async fn stop_member(member: &mut Member, net: &SimNet) {
        net.unplug(member.config.bind_addr);
        if let Some(raft) = member.raft.take() {
            // Stopping the driver releases the log.
            raft.shutdown().await;
        }
        // Stopping the node lets go of what it holds (its snapshot
        // directory) before the restart.
        if let Some(node) = member.node.take() {
            node.shutdown().await;
        }
    }

    /// After `writes` more operations that change member `i`'s disk, the
    /// next fails with `kind`, once: the member's log becomes unusable and
    /// it stops, until [`restart_stopped`](Self::restart_stopped).
    pub fn disk_fails(&mut self, i: usize, writes: u64, kind: std::io::ErrorKind) {
        self.members[i].disk.fail_once_after(writes, kind);
    }

    /// Restarts, from their disks, the raft members that stopped by
    /// themselves or did not start (as a supervisor restarts a process
    /// that exited on an error); the ids restarted.
    pub async fn restart_stopped(&mut self, net: &SimNet, rng: &mut StdRng) -> Vec<u64> {
        let mut restarted = Vec::new();
        for i in 0..self.members.len() {
            let member = &mut self.members[i];
            let stopped = member.raft.as_ref().is_some_and(|r| r.stopped().is_some());
            if stopped || member.start_error.is_some() {
                Self::stop_member(member, net).await;
                restarted.push(member.config.node_id);
                self.start_member(i, net, rng);
            }
        }
        restarted
    }

    /// Takes back the disk failures that have not happened yet: the
    /// faults are over.
    pub fn calm_disks(&self) {
        for member in &self.members {
            member.disk.clear_failure();
        }
    }

    /// Raft members that did not start or stopped by themselves, with why.
    fn down(&self) -> Vec<String> {
        let mut down = Vec::new();
        for member in &self.members {
            let id = member.config.node_id;
            if let Some(e) = &member.start_error {
                down.push(format!("member {id} did not start from its disk: {e}"));
            }
            if let Some(why) = member.raft.as_ref().and_then(|r| r.stopped()) {
                down.push(format!("member {id} stopped: {why}"));
            }
        }
        down
    }

    /// Checked once the network has healed and the disks are calm: every
    /// raft member runs, and within `within` all have applied the same
    /// commands to the same registers.
    pub async fn agree(&self, within: Duration) -> Result<(), String> {
        if let Some(down) = self.down().first() {
            return Err(down.clone());
        }
        let rafts: Vec<&RaftNode> = self
            .members
            .iter()
            .filter_map(|m| m.raft.as_ref())
            .collect();
        if rafts.is_empty() {
            return Ok(());
        }
        let give_up = Instant::now() + within;
        loop {
            let statuses: Vec<_> = rafts.iter().map(|r| r.status()).collect();
            let leaders = statuses
                .iter()
                .filter(|s| s.role == RaftRole::Leader)
                .count();
            let commit = statuses.iter().map(|s| s.commit_index).max().unwrap_or(0);
            let caught_up = statuses.iter().all(|s| s.applied_index == commit);
            let observed = self
                .observed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let states: Vec<_> = observed.values().collect();
            let same = states.windows(2).all(|w| w[0] == w[1]);
            if leaders == 1 && caught_up && same {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(format!(
                    "members disagree {within:?} after healing: {leaders} leaders, \
                     commit {commit}, applied {:?}, registers {observed:?}",
                    statuses
                        .iter()
                        .map(|s| (s.id, s.applied_index))
                        .collect::<Vec<_>>()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every serving node.
    pub async fn shutdown(self) {
        for member in self.members {
            if let Some(raft) = member.raft {
                raft.shutdown().await;
            }
            if let Some(node) = member.node {
                node.shutdown().await;
            }
        }
    }
}

/// A member's raft settings: the group bootstraps with every member as a
/// voter; no snapshots (they travel over ChunkService, which writes real
/// files); election timeouts and the tick's length drawn from the seed.
///
/// raft-rs draws each election timeout from `rand::thread_rng`, which the
/// seed does not reach. A range one tick wide leaves it no choice, so the
/// seed draws the timeout instead, once per member incarnation: members
/// still time out at different moments, and the same seed picks the same.
/// Ticks of 18 to 22 ms make the members' timers run at rates up to 20 %
/// apart, as clocks that drift would.
fn raft_config(peers: BTreeMap<u64, SocketAddr>, rng: &mut StdRng) -> RaftConfig {
    let election_ticks = rng.gen_range(10..30);
    RaftConfig {
        peers,
        bootstrap: true,
        tick_interval_ms: rng.gen_range(18..=22),
        election_ticks,
        max_election_ticks: election_ticks + 1,
        heartbeat_ticks: 3,
        request_timeout_ms: 1_500,
        snapshot_interval: u64::MAX,
        snapshot_log_bytes: u64::MAX,
        ..RaftConfig::default()
    }
}

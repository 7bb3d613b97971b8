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
}

/// The serving nodes.
pub struct Servers {
    serving: Serving,
    members: Vec<Member>,
    /// Each raft member's registers, as its machine last left them.
    observed: Observed,
    /// What went wrong on the serving side (a member that could not
    /// restart from its disk, one that stopped by itself).
    pub problems: Vec<String>,
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
                })
                .collect(),
            observed: Observed::default(),
            problems: Vec::new(),
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
                        self.problems
                            .push(format!("member {id} did not restart from its disk: {e}"));
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
        net.unplug(member.config.bind_addr);
        if let Some(raft) = member.raft.take() {
            // Its writes fail from here on; stopping it releases the log.
            raft.shutdown().await;
        }
        // Unplugged, the node can tell nobody it stops; stopping it lets
        // go of what it holds (its snapshot directory) before the restart.
        if let Some(node) = member.node.take() {
            node.shutdown().await;
        }
        tokio::time::sleep(down).await;
        member.disk.crash(tear);
        self.start_member(i, net, rng);
    }

    /// Raft members that stopped by themselves, with why.
    fn stopped(&self) -> Vec<String> {
        self.members
            .iter()
            .filter_map(|m| m.raft.as_ref())
            .filter_map(|raft| {
                raft.stopped()
                    .map(|why| format!("member {} stopped: {why}", raft.id()))
            })
            .collect()
    }

    /// Checked once the network has healed: every raft member runs, and
    /// within `within` all have applied the same commands to the same
    /// registers.
    pub async fn agree(&self, within: Duration) -> Result<(), String> {
        if let Some(problem) = self.problems.first() {
            return Err(problem.clone());
        }
        if let Some(stopped) = self.stopped().first() {
            return Err(stopped.clone());
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
            let observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
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
            drop(observed);
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
/// files); election timeouts drawn from the seed.
///
/// raft-rs draws each election timeout from `rand::thread_rng`, which the
/// seed does not reach. A range one tick wide leaves it no choice, so the
/// seed draws the timeout instead, once per member incarnation: members
/// still time out at different moments, and the same seed picks the same.
fn raft_config(peers: BTreeMap<u64, SocketAddr>, rng: &mut StdRng) -> RaftConfig {
    let election_ticks = rng.gen_range(10..30);
    RaftConfig {
        peers,
        bootstrap: true,
        tick_interval_ms: 20,
        election_ticks,
        max_election_ticks: election_ticks + 1,
        heartbeat_ticks: 3,
        request_timeout_ms: 1_500,
        snapshot_interval: u64::MAX,
        snapshot_log_bytes: u64::MAX,
        ..RaftConfig::default()
    }
}

//! The serving side of a simulation: one node with its registers in
//! memory, or a raft group whose members keep theirs on simulated disks
//! ([`CrashFs`]) that lose what was not synced when a member crashes. A
//! changing group also takes snapshots every few entries, which travel
//! between members as ChunkService transfers onto those disks, and
//! changes its membership.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use octopii::raft::{RaftConfig, RaftNode, RaftRole, RaftStatus, TypedRaftNode};
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::net::SimNet;
use super::registers::{Observed, Observing, RegistersServer, Replicated, Store};
use crate::crash_fs::{CrashFs, Tear};

/// What serves the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// One node, its registers in memory; its crashes lose nothing.
    One,
    /// A raft group of this many members, each durable on its own
    /// simulated disk.
    Raft(u64),
    /// A raft group of this many members and a spare node, taking a
    /// snapshot every 5 to 30 entries; among the faults, the spare is
    /// added as a learner, promoted to voter, and then an original member
    /// is removed (so the voters never number fewer than this), disks
    /// slow down, and the leader is cut off from the other members while
    /// its clients still reach it.
    RaftChanging(u64),
}

impl Serving {
    /// How many nodes serve (a spare too).
    pub fn nodes(self) -> u64 {
        match self {
            Serving::One => 1,
            Serving::Raft(members) => members,
            Serving::RaftChanging(members) => members + 1,
        }
    }

    /// The members the group starts with.
    fn voters(self) -> u64 {
        match self {
            Serving::One => 0,
            Serving::Raft(members) | Serving::RaftChanging(members) => members,
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
    /// Under which each member's raft directory is named. The raft state,
    /// snapshots received included, is on the member's simulated disk.
    scratch: tempfile::TempDir,
    /// Why members stopped on a panic, for the end of the run.
    panics: Vec<String>,
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
            panics: Vec::new(),
        };
        for i in 0..servers.members.len() {
            servers.start_member(i, net, rng);
        }
        servers
    }

    /// What serves.
    pub fn serving(&self) -> Serving {
        self.serving
    }

    /// The serving nodes' addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.config.bind_addr).collect()
    }

    /// Starts (or restarts) member `i`'s process: from its store, or from
    /// what its disk kept. A spare starts blank, outside the group.
    fn start_member(&mut self, i: usize, net: &SimNet, rng: &mut StdRng) {
        let voters = self.serving.voters() as usize;
        let peers: BTreeMap<u64, SocketAddr> = self.members[..voters]
            .iter()
            .map(|m| (m.config.node_id, m.config.bind_addr))
            .collect();
        let member = &mut self.members[i];
        let runtime = OctopiiRuntime::from_handle(tokio::runtime::Handle::current());
        let socket = net.socket(member.config.bind_addr);
        let node = OctopiiNode::with_socket(member.config.clone(), &runtime, socket).expect("node");
        let served = match self.serving {
            Serving::One => node.serve(RegistersServer::from_arc(member.store.clone())),
            Serving::Raft(_) | Serving::RaftChanging(_) => {
                let id = member.config.node_id;
                let machine = Observing::new(id, self.observed.clone());
                let fs = Arc::new(member.disk.clone());
                member.start_error = None;
                // Drawn here only: one server draws nothing for raft, so
                // its seeds run as they did before raft plans existed.
                let mut raft = raft_config(peers, rng);
                raft.bootstrap = i < voters;
                if let Serving::RaftChanging(_) = self.serving {
                    raft.snapshot_interval = rng.gen_range(5..30);
                }
                match RaftNode::start_in_with_fs(
                    &node,
                    self.scratch.path().join(format!("member-{id}")),
                    raft,
                    machine,
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
            let stopped = member.raft.as_ref().and_then(|r| r.stopped());
            if let Some(why) = &stopped {
                // A disk error stops a member as it should; a panic never
                // should, even when a supervisor restarts it.
                if why.to_string().contains("panicked") {
                    self.panics
                        .push(format!("member {}: {why}", member.config.node_id));
                }
            }
            if stopped.is_some() || member.start_error.is_some() {
                Self::stop_member(member, net).await;
                restarted.push(member.config.node_id);
                self.start_member(i, net, rng);
            }
        }
        restarted
    }

    /// The index of a member that leads, if one does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.raft
                .as_ref()
                .is_some_and(|r| r.status().role == RaftRole::Leader)
        })
    }

    /// Member `i`'s disk takes `delay` to make each write durable.
    pub fn slow_disk(&self, i: usize, delay: Duration) {
        self.members[i].disk.slow_down(delay);
    }

    /// Takes back the disk failures that have not happened yet, and makes
    /// slow disks fast: the faults are over.
    pub fn calm_disks(&self) {
        for member in &self.members {
            member.disk.clear_failure();
            member.disk.slow_down(Duration::ZERO);
        }
    }

    /// The next membership change of a changing group, asked of a member
    /// the seed picks: the spare joins as a learner, is promoted to voter,
    /// then an original member is removed. What was asked and how it
    /// went; `None` when there is nothing left to change.
    pub async fn change_membership(&self, rng: &mut StdRng) -> Option<String> {
        let Serving::RaftChanging(voters) = self.serving else {
            return None;
        };
        let running: Vec<&RaftNode> = self
            .members
            .iter()
            .filter_map(|m| m.raft.as_ref())
            .collect();
        if running.is_empty() {
            return None;
        }
        let asked = running[rng.gen_range(0..running.len())];
        let config = self.configuration()?;
        let spare = &self.members[voters as usize].config;
        let (what, id, changed) = if config.learners.contains(&spare.node_id) {
            let promoted = asked.add_voter(spare.node_id, spare.bind_addr).await;
            ("promote", spare.node_id, promoted)
        } else if !config.voters.contains(&spare.node_id) {
            let added = asked.add_learner(spare.node_id, spare.bind_addr).await;
            ("add learner", spare.node_id, added)
        } else if config.voters.len() as u64 > voters {
            let originals: Vec<u64> = config
                .voters
                .iter()
                .copied()
                .filter(|&id| id != spare.node_id)
                .collect();
            let removed = originals[rng.gen_range(0..originals.len())];
            ("remove", removed, asked.remove_node(removed).await)
        } else {
            return None;
        };
        let how = match changed {
            Ok(()) => "done".to_owned(),
            Err(e) => e.to_string(),
        };
        Some(format!(
            "{what} member {id} (asked of member {}): {how}",
            asked.id()
        ))
    }

    /// The addresses of the serving nodes still in the group: not a
    /// spare that never joined, nor a member that was removed.
    pub fn group_addrs(&self) -> Vec<SocketAddr> {
        let Some(config) = self.configuration() else {
            return self.addrs();
        };
        self.members
            .iter()
            .map(|m| &m.config)
            .filter(|c| config.voters.contains(&c.node_id) || config.learners.contains(&c.node_id))
            .map(|c| c.bind_addr)
            .collect()
    }

    /// The group's configuration as the running member furthest ahead
    /// knows it.
    fn configuration(&self) -> Option<RaftStatus> {
        self.members
            .iter()
            .filter_map(|m| m.raft.as_ref())
            .map(|r| r.status())
            .max_by_key(|s| (s.commit_index, s.id))
    }

    /// Members of `group` that did not start or stopped by themselves,
    /// with why.
    fn down(&self, group: &[u64]) -> Vec<String> {
        let mut down = Vec::new();
        for member in &self.members {
            let id = member.config.node_id;
            if !group.contains(&id) {
                continue;
            }
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
        if let Some(panic) = self.panics.first() {
            return Err(format!("a member panicked: {panic}"));
        }
        let give_up = Instant::now() + within;
        loop {
            // The group as it ends up: a spare that never joined and a
            // member that was removed are not in it.
            let Some(config) = self.configuration() else {
                return match self.serving {
                    Serving::One => Ok(()),
                    _ => Err("no raft member is running".to_owned()),
                };
            };
            let group: Vec<u64> = config
                .voters
                .iter()
                .chain(&config.learners)
                .copied()
                .collect();
            if let Some(down) = self.down(&group).first() {
                return Err(down.clone());
            }
            let statuses: Vec<_> = self
                .members
                .iter()
                .filter_map(|m| m.raft.as_ref())
                .filter(|r| group.contains(&r.id()))
                .map(|r| r.status())
                .collect();
            let leaders = statuses
                .iter()
                .filter(|s| s.role == RaftRole::Leader)
                .count();
            let commit = statuses.iter().map(|s| s.commit_index).max().unwrap_or(0);
            let caught_up = statuses.iter().all(|s| s.applied_index == commit);
            let mut observed = self
                .observed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            observed.retain(|id, _| group.contains(id));
            let states: Vec<_> = observed.values().collect();
            let same = states.windows(2).all(|w| w[0] == w[1]);
            if leaders == 1 && caught_up && same {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(format!(
                    "members {group:?} disagree {within:?} after healing: {leaders} leaders, \
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

    /// Each running raft member's state: role, applied index, latest
    /// snapshot and the configuration it knows.
    pub fn summary(&self) -> Vec<String> {
        self.members
            .iter()
            .filter_map(|m| m.raft.as_ref())
            .map(|r| {
                let s = r.status();
                format!(
                    "member {}: {:?}, applied {}, snapshot {}, voters {:?}, learners {:?}",
                    s.id, s.role, s.applied_index, s.snapshot_index, s.voters, s.learners
                )
            })
            .collect()
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

/// A member's raft settings: the group bootstraps with `peers` as its
/// voters; no snapshots (a changing group sets its own interval);
/// election timeouts and the tick's length drawn from the seed.
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

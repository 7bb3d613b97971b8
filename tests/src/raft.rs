//! Raft test helpers: a small key-value state machine and a cluster of
//! nodes on loopback, or on a simulated network that can be partitioned,
//! that can be stopped, restarted and grown.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use octopii::ClusterCa;
use octopii::codec;
use octopii::config::TransportConfig;
use octopii::raft::{RaftConfig, RaftNode, RaftRole, StateMachine, StateMachineError};
use octopii::wal::WalOptions;
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use serde::{Deserialize, Serialize};

use crate::sim::net::SimNet;
use crate::wal_fs::{FileHook, FileOp, HookedFs};

/// A key-value command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key`; the output is the previous value.
    Put(String, String),
    /// Sets `key` to `new` if it holds `expected`; the output is whether it did.
    Cas(String, Option<String>, String),
    /// Makes the machine panic with this message (a bug in user code).
    Crash(String),
}

/// A key-value map replicated by raft.
#[derive(Debug, Default)]
pub struct KvMachine {
    map: HashMap<String, String>,
    /// Counts calls of `restore` (snapshots installed).
    pub restores: Arc<AtomicUsize>,
}

impl StateMachine for KvMachine {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let output = match codec::decode::<KvCommand>(command) {
            Ok(KvCommand::Put(key, value)) => KvOutput::Previous(self.map.insert(key, value)),
            Ok(KvCommand::Cas(key, expected, new)) => {
                let ok = self.map.get(&key) == expected.as_ref();
                if ok {
                    self.map.insert(key, new);
                }
                KvOutput::Swapped(ok)
            }
            Ok(KvCommand::Crash(message)) => panic!("{message}"),
            Err(_) => KvOutput::Invalid,
        };
        codec::encode(&output).unwrap_or_default()
    }

    fn query(&self, key: &[u8]) -> Vec<u8> {
        let key = String::from_utf8_lossy(key);
        codec::encode(&self.map.get(key.as_ref())).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        let sorted: BTreeMap<&String, &String> = self.map.iter().collect();
        codec::encode(&sorted).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        self.map = codec::decode(snapshot)?;
        self.restores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What a [`KvCommand`] returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// The value a put replaced.
    Previous(Option<String>),
    /// Whether a compare-and-set swapped.
    Swapped(bool),
    /// The command did not decode.
    Invalid,
}

/// Puts `key = value` through `raft`; returns the previous value.
pub async fn put(raft: &RaftNode, key: &str, value: &str) -> octopii::Result<Option<String>> {
    let command = codec::encode(&KvCommand::Put(key.into(), value.into()))?;
    match codec::decode(&raft.propose(command).await?)? {
        KvOutput::Previous(previous) => Ok(previous),
        other => panic!("a put answered {other:?}"),
    }
}

/// Compare-and-set through `raft`; returns whether it swapped.
pub async fn cas(
    raft: &RaftNode,
    key: &str,
    expected: Option<&str>,
    new: &str,
) -> octopii::Result<bool> {
    let command = codec::encode(&KvCommand::Cas(
        key.into(),
        expected.map(str::to_owned),
        new.into(),
    ))?;
    match codec::decode(&raft.propose(command).await?)? {
        KvOutput::Swapped(swapped) => Ok(swapped),
        other => panic!("a cas answered {other:?}"),
    }
}

/// Reads `key` linearizably through `raft`.
pub async fn get(raft: &RaftNode, key: &str) -> octopii::Result<Option<String>> {
    Ok(codec::decode(&raft.read(key.as_bytes().to_vec()).await?)?)
}

/// Raft settings for tests: 20 ms ticks, short timeouts, and the WAL's
/// default flush policy, so every append is fsynced before raft is told
/// it is durable (the cluster's files live on tmpfs where there is one,
/// see [`Cluster::start`]).
pub fn test_raft_config() -> RaftConfig {
    RaftConfig {
        tick_interval_ms: 20,
        election_ticks: 10,
        heartbeat_ticks: 2,
        request_timeout_ms: 3_000,
        wal: WalOptions {
            segment_size: 64 * 1024,
            ..WalOptions::default()
        },
        ..RaftConfig::default()
    }
}

/// A temporary directory on tmpfs (`/dev/shm`) where the system has one,
/// so fsync-on tests stay fast; else in the usual temporary directory.
pub fn fast_temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

/// Holds the `fdatasync`s of one node's raft log while closed: a disk
/// that has not yet made an append durable.
#[derive(Debug, Default)]
pub struct FsyncGate {
    held: Mutex<bool>,
    changed: Condvar,
}

impl FsyncGate {
    /// From now on, each `fdatasync` of the log waits until [`open`](Self::open).
    pub fn hold(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Lets the held `fdatasync`s (and all later ones) run.
    pub fn open(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.changed.notify_all();
    }
}

impl FileHook for FsyncGate {
    fn before(&self, op: FileOp) -> std::io::Result<()> {
        if op == FileOp::SyncData {
            let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let _open = self
                .changed
                .wait_while(held, |held| *held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Ok(())
    }
}

/// A raft cluster of nodes in one process, on loopback or on a [`SimNet`].
pub struct Cluster {
    /// The runtime every node runs on.
    pub runtime: OctopiiRuntime,
    ca: ClusterCa,
    dir: tempfile::TempDir,
    /// Raft settings used for every node (peers filled in per node).
    pub config: RaftConfig,
    /// Transport settings of every node.
    transport: TransportConfig,
    /// Address of every node ever started.
    pub addrs: BTreeMap<u64, SocketAddr>,
    running: BTreeMap<u64, (OctopiiNode, RaftNode)>,
    restores: BTreeMap<u64, Arc<AtomicUsize>>,
    gates: BTreeMap<u64, Arc<FsyncGate>>,
    /// The network the nodes run over, if simulated (else loopback).
    net: Option<SimNet>,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) that bootstrap one cluster.
    pub fn start(n: u64, config: RaftConfig) -> Self {
        Self::start_with_transport(n, config, TransportConfig::default())
    }

    /// As [`start`](Self::start), every node (also those started later)
    /// with `transport` settings.
    pub fn start_with_transport(n: u64, config: RaftConfig, transport: TransportConfig) -> Self {
        Self::start_over(n, config, transport, None)
    }

    /// As [`start`](Self::start), every node on one simulated network
    /// (running in real time, calm weather), so the cluster can be
    /// [`partition`](Self::partition)ed.
    pub fn start_on_sim_net(n: u64, config: RaftConfig) -> Self {
        Self::start_over(n, config, TransportConfig::default(), Some(SimNet::new(0)))
    }

    fn start_over(
        n: u64,
        config: RaftConfig,
        transport: TransportConfig,
        net: Option<SimNet>,
    ) -> Self {
        let mut cluster = Cluster {
            runtime: OctopiiRuntime::new(4).expect("runtime"),
            ca: ClusterCa::generate().expect("CA"),
            dir: fast_temp_dir(),
            config,
            transport,
            addrs: BTreeMap::new(),
            running: BTreeMap::new(),
            restores: BTreeMap::new(),
            gates: BTreeMap::new(),
            net,
        };
        let nodes: Vec<(u64, OctopiiNode)> = (1..=n)
            .map(|id| (id, cluster.octopii_node(id, cluster.new_addr(id))))
            .collect();
        for (id, node) in &nodes {
            cluster.addrs.insert(*id, node.local_addr());
        }
        for (id, node) in nodes {
            cluster.start_raft(id, node, true).expect("start raft");
        }
        cluster
    }

    /// The cluster's CA (to make certificates of other roles).
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// Where node `id` keeps its data.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Where a new node `id` binds: its own address on the simulated
    /// network, else an ephemeral loopback port.
    fn new_addr(&self, id: u64) -> SocketAddr {
        match self.net {
            Some(_) => {
                let host = u8::try_from(id).expect("ids below 256 on a simulated network");
                SocketAddr::from(([10, 0, 0, host], 7000))
            }
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    fn octopii_node(&self, id: u64, addr: SocketAddr) -> OctopiiNode {
        let creds = self
            .ca
            .issue_node(&format!("node-{id}"), id)
            .expect("certificate");
        let config = Config::builder()
            .node_id(id)
            .bind_addr(addr)
            .data_dir(self.data_dir(id))
            .worker_threads(2)
            .credentials(creds)
            .transport(self.transport.clone())
            .build()
            .expect("config");
        // A restarted node may find its port still held for a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let node = match &self.net {
                // A new socket at the address unplugs a stopped node's old one.
                Some(net) => {
                    OctopiiNode::with_socket(config.clone(), &self.runtime, net.socket(addr))
                }
                None => OctopiiNode::new(config.clone(), &self.runtime),
            };
            match node {
                Ok(node) => return node,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot start node {id}: {e}"),
            }
        }
    }

    fn start_raft(&mut self, id: u64, node: OctopiiNode, bootstrap: bool) -> octopii::Result<()> {
        let config = RaftConfig {
            peers: self.addrs.clone(),
            bootstrap,
            ..self.config.clone()
        };
        let machine = KvMachine::default();
        self.restores.insert(id, machine.restores.clone());
        let gate = self.gates.entry(id).or_default().clone();
        let dir = node.config().data_dir.join("raft");
        let raft =
            RaftNode::start_in_with_fs(&node, dir, config, machine, Arc::new(HookedFs(gate)))?;
        self.running.insert(id, (node, raft));
        Ok(())
    }

    /// The raft handle of running node `id`.
    pub fn raft(&self, id: u64) -> &RaftNode {
        &self.running.get(&id).expect("node is running").1
    }

    /// The Octopii node under running node `id`.
    pub fn octopii(&self, id: u64) -> &OctopiiNode {
        &self.running.get(&id).expect("node is running").0
    }

    /// The gate on the `fdatasync`s of node `id`'s raft log (kept across
    /// restarts).
    pub fn fsync_gate(&self, id: u64) -> &FsyncGate {
        &self.gates[&id]
    }

    /// How many snapshots node `id` has restored since it last started.
    pub fn restores(&self, id: u64) -> usize {
        self.restores[&id].load(Ordering::SeqCst)
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.running.keys().copied().collect()
    }

    /// Stops node `id` (raft driver and QUIC endpoint).
    pub fn stop(&mut self, id: u64) {
        let (node, raft) = self.running.remove(&id).expect("node is running");
        self.runtime.block_on(async {
            raft.shutdown().await;
            node.shutdown().await;
        });
        // Datagrams to a stopped node are lost, as at a closed port.
        if let Some(net) = &self.net {
            net.unplug(self.addrs[&id]);
        }
    }

    /// Drops node `id`'s raft handle without `shutdown`, checks that its
    /// raft log is free at once while the node still runs, then stops the
    /// node.
    pub fn drop_without_shutdown(&mut self, id: u64) {
        let (node, raft) = self.running.remove(&id).expect("node is running");
        drop(raft);
        // The driver has let go of its log by the time the drop returns,
        // while the node that hosted it still runs.
        let wal = self.data_dir(id).join("raft").join("wal");
        let reopened = octopii::wal::Wal::open(&wal, octopii::wal::WalOptions::default());
        reopened.expect("the raft log is free once its RaftNode is dropped");
        self.runtime.block_on(node.shutdown());
    }

    /// Restarts node `id` on its old address from its data directory.
    pub fn restart(&mut self, id: u64) -> octopii::Result<()> {
        let node = self.octopii_node(id, self.addrs[&id]);
        let result = self.start_raft(id, node.clone(), true);
        if result.is_err() {
            self.runtime.block_on(node.shutdown());
        }
        result
    }

    /// Starts node `id` that is not yet a member (to be added).
    pub fn start_joining(&mut self, id: u64) -> SocketAddr {
        let node = self.octopii_node(id, self.new_addr(id));
        let addr = node.local_addr();
        self.addrs.insert(id, addr);
        self.start_raft(id, node, false).expect("start raft");
        addr
    }

    /// Drops every datagram between nodes `a` and `b`, both ways, until
    /// [`heal`](Self::heal). Only on a cluster started
    /// [`on a simulated network`](Self::start_on_sim_net).
    pub fn partition(&self, a: u64, b: u64) {
        let net = self.net.as_ref().expect("a cluster on a simulated network");
        net.cut(self.addrs[&a], self.addrs[&b]);
        net.cut(self.addrs[&b], self.addrs[&a]);
    }

    /// Heals every partition.
    pub fn heal(&self) {
        self.net
            .as_ref()
            .expect("a cluster on a simulated network")
            .heal();
    }

    /// Waits until the running voters among `among` agree on one leader
    /// that is among them, and returns it.
    pub fn leader_among(&self, among: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses: Vec<_> = among.iter().map(|id| self.raft(*id).status()).collect();
            let leaders: Vec<u64> = statuses
                .iter()
                .filter(|s| s.role == RaftRole::Leader)
                .map(|s| s.id)
                .collect();
            if let [leader] = leaders[..] {
                if statuses.iter().all(|s| s.leader_id == Some(leader)) {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no single leader among {among:?}: {statuses:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The leader all running nodes agree on.
    pub fn leader(&self) -> u64 {
        self.leader_among(&self.running(), Duration::from_secs(10))
    }

    /// A running node that is not `leader`.
    pub fn follower_of(&self, leader: u64) -> u64 {
        self.running()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a running follower")
    }

    /// Waits until node `id` has applied at least `index`.
    pub fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.raft(id).status().applied_index < index {
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply {index}: {:?}",
                self.raft(id).status()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop the drivers (releasing the logs); the endpoints go with the
        // runtime, without waiting for peers to acknowledge closes.
        for gate in self.gates.values() {
            gate.open();
        }
        let running = std::mem::take(&mut self.running);
        self.runtime.block_on(futures::future::join_all(
            running.values().map(|(_, raft)| raft.shutdown()),
        ));
    }
}

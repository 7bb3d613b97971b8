//! A replicated key-value store: three nodes in three OS processes on
//! loopback, and a client that puts and gets, kills the leader and shows
//! the writes survive, then adds a fourth node to the running cluster.
//!
//! Run with `cargo run -p octopii-examples --example raft_kv`. The example
//! starts itself three more times with the argument `node <id> ...`; each
//! of those processes runs one raft member that serves a small `Kv`
//! service, implemented with [`RaftNode::propose`] (writes) and
//! [`RaftNode::read`] (linearizable reads).

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use octopii::codec;
use octopii::config::TlsConfig;
use octopii::raft::{RaftConfig, RaftNode, StateMachine, StateMachineError};
use octopii::transport::tls::{ClusterCa, write_pem};
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use serde::{Deserialize, Serialize};

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

const NODES: u64 = 3;

/// The key-value service each node serves to clients.
#[octopii::service]
pub trait Kv {
    /// Sets `key` to `value`, replicated; returns the previous value.
    async fn put(&self, key: String, value: String) -> Result<Option<String>, String>;
    /// Reads `key`, linearizably.
    async fn get(&self, key: String) -> Result<Option<String>, String>;
    /// The leader this node knows of.
    async fn leader(&self) -> Option<u64>;
    /// Adds node `id`, listening at `addr`, as a voter.
    async fn add_voter(&self, id: u64, addr: SocketAddr) -> Result<(), String>;
}

/// A replicated command.
#[derive(Serialize, Deserialize)]
struct Put {
    key: String,
    value: String,
}

/// The replicated state: a map.
#[derive(Default)]
struct Store(HashMap<String, String>);

impl StateMachine for Store {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let previous = codec::decode::<Put>(command)
            .ok()
            .and_then(|put| self.0.insert(put.key, put.value));
        codec::encode(&previous).unwrap_or_default()
    }

    fn query(&self, key: &[u8]) -> Vec<u8> {
        let value = self.0.get(String::from_utf8_lossy(key).as_ref());
        codec::encode(&value).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        let sorted: BTreeMap<_, _> = self.0.iter().collect();
        codec::encode(&sorted).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        self.0 = codec::decode(snapshot)?;
        Ok(())
    }
}

/// `Kv` served by one raft member.
struct ReplicatedKv(RaftNode);

impl Kv for ReplicatedKv {
    async fn put(&self, key: String, value: String) -> Result<Option<String>, String> {
        let command = codec::encode(&Put { key, value }).map_err(|e| e.to_string())?;
        let output = self.0.propose(command).await.map_err(|e| e.to_string())?;
        codec::decode(&output).map_err(|e| e.to_string())
    }

    async fn get(&self, key: String) -> Result<Option<String>, String> {
        let output = self
            .0
            .read(key.into_bytes())
            .await
            .map_err(|e| e.to_string())?;
        codec::decode(&output).map_err(|e| e.to_string())
    }

    async fn leader(&self) -> Option<u64> {
        self.0.status().leader_id
    }

    async fn add_voter(&self, id: u64, addr: SocketAddr) -> Result<(), String> {
        self.0.add_voter(id, addr).await.map_err(|e| e.to_string())
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("node") => run_node(&args[2..]),
        _ => run_cluster(),
    }
}

/// `node <id> <dir> <addr-1> <addr-2> <addr-3> [<addr-4>]`: one raft
/// member. Nodes 1 to 3 found the cluster; node 4 joins it later.
fn run_node(args: &[String]) -> Result<(), BoxError> {
    let id: u64 = args[0].parse()?;
    let dir = PathBuf::from(&args[1]);
    let addrs: Vec<SocketAddr> = args[2..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    // The founders, and this node: a founder's peers are the first voters.
    let peers: BTreeMap<u64, SocketAddr> = (1..)
        .zip(addrs.iter().copied())
        .filter(|(peer, _)| *peer <= NODES || *peer == id)
        .collect();
    let runtime = OctopiiRuntime::new(2)?;
    let config = Config::builder()
        .node_id(id)
        .bind_addr(peers[&id])
        .data_dir(dir.join(format!("node-{id}")))
        .tls(tls_files(&dir, &format!("node-{id}")))
        .build()?;
    let node = OctopiiNode::new(config, &runtime)?;
    let raft_config = RaftConfig {
        peers,
        bootstrap: id <= NODES,
        tick_interval_ms: 50,
        ..RaftConfig::default()
    };
    let raft = RaftNode::start(&node, raft_config, Store::default())?;
    node.serve(KvServer::new(ReplicatedKv(raft)))?;
    println!("  [node {id}] serving on {}", node.local_addr());
    // Runs until the parent process kills it.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn tls_files(dir: &Path, name: &str) -> TlsConfig {
    TlsConfig::from_files(
        dir.join("ca.pem"),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key.pem")),
    )
}

/// Kills the node processes when the example ends, however it ends.
struct Processes(BTreeMap<u64, Child>);

impl Processes {
    /// Starts this program again as node `id`.
    fn spawn(&mut self, id: u64, dir: &Path, addrs: &[SocketAddr]) -> Result<(), BoxError> {
        let child = Command::new(std::env::current_exe()?)
            .arg("node")
            .arg(id.to_string())
            .arg(dir)
            .args(addrs.iter().map(SocketAddr::to_string))
            .spawn()?;
        self.0.insert(id, child);
        Ok(())
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.0.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.0.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

fn free_loopback_addr() -> Result<SocketAddr, BoxError> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn run_cluster() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("octopii-raft-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = ClusterCa::generate()?;
    write_pem(&dir.join("ca.pem"), ca.cert_pem(), false)?;
    let nodes = (1..=NODES + 1).map(|id| {
        (
            format!("node-{id}"),
            ca.issue_node(&format!("node-{id}"), id),
        )
    });
    for (name, creds) in nodes.chain([("client".to_owned(), ca.issue_client("client"))]) {
        let creds = creds?;
        write_pem(&dir.join(format!("{name}.pem")), creds.cert_pem(), false)?;
        write_pem(&dir.join(format!("{name}.key.pem")), creds.key_pem(), true)?;
    }
    let addrs: Vec<SocketAddr> = (0..=NODES)
        .map(|_| free_loopback_addr())
        .collect::<Result<_, _>>()?;

    let mut processes = Processes(BTreeMap::new());
    for id in 1..=NODES {
        processes.spawn(id, &dir, &addrs)?;
    }

    let runtime = OctopiiRuntime::new(2)?;
    let config = Config::builder()
        .node_id(100)
        .tls(tls_files(&dir, "client"))
        .build()?;
    let client = OctopiiNode::new(config, &runtime)?;
    let kv = |id: u64| {
        KvClient::new(&client, addrs[id as usize - 1]).with_deadline(Duration::from_secs(5))
    };
    let result = runtime.block_on(async {
        let leader = wait_for_leader(&kv, &(1..=NODES).collect::<Vec<_>>()).await?;
        println!("leader: node {leader}");

        kv(1).put("language".into(), "rust".into()).await??;
        kv(2).put("transport".into(), "quic".into()).await??;
        println!("put language=rust through node 1, transport=quic through node 2");
        for id in 1..=NODES {
            let language = kv(id).get("language".into()).await??;
            let transport = kv(id).get("transport".into()).await??;
            println!("node {id} reads language={language:?} transport={transport:?}");
        }

        println!("killing the leader, node {leader}");
        processes.kill(leader);
        let survivors: Vec<u64> = (1..=NODES).filter(|&id| id != leader).collect();
        let new_leader = wait_for_leader(&kv, &survivors).await?;
        println!("new leader: node {new_leader}");
        kv(survivors[0])
            .put("after".into(), "failover".into())
            .await??;
        for &id in &survivors {
            let language = kv(id).get("language".into()).await??;
            let after = kv(id).get("after".into()).await??;
            println!("node {id} reads language={language:?} after={after:?}");
        }

        let new = NODES + 1;
        println!("starting node {new} and adding it to the running cluster");
        processes.spawn(new, &dir, &addrs)?;
        kv(survivors[0])
            .add_voter(new, addrs[new as usize - 1])
            .await??;
        let language = kv(new).get("language".into()).await??;
        println!("node {new} reads language={language:?}");
        Ok::<(), BoxError>(())
    });
    drop(processes);
    runtime.block_on(client.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Asks `nodes` until one of them names a leader among them.
async fn wait_for_leader(kv: &impl Fn(u64) -> KvClient, nodes: &[u64]) -> Result<u64, BoxError> {
    for _ in 0..100 {
        for &id in nodes {
            if let Ok(Some(leader)) = kv(id).leader().await {
                if nodes.contains(&leader) {
                    return Ok(leader);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("no leader was elected".into())
}

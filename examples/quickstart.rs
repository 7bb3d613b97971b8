//! Quickstart: a small cluster on loopback.
//!
//! Three nodes get certificates from an in-memory cluster CA and talk over
//! mutual TLS 1.3 on QUIC. The quickstart shows, in order:
//!
//! 1. a typed service call (`Greeter`), whose handler sees the caller's
//!    verified name;
//! 2. a verified file transfer from one node to the two others at once
//!    (ChunkService: SHA-256 checked, renamed into place only when it
//!    matches);
//! 3. replicated writes (raft over each node's write-ahead log) that
//!    survive the loss of the leader, and a fourth node joining the running
//!    cluster.
//!
//! Run with `cargo run -p octopii-examples --example quickstart`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::raft::{RaftConfig, RaftNode, StateMachine, StateMachineError};
use octopii::rpc::Context;
use octopii::{LocalCluster, OctopiiError, OctopiiNode, Result};

/// Any error, from the node, a call or the quickstart's own checks.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Greets whoever calls.
#[octopii::service]
pub trait Greeter {
    /// Returns a greeting for the verified caller.
    async fn greet(&self, ctx: &Context, message: String) -> String;
}

struct Hello;

impl Greeter for Hello {
    async fn greet(&self, ctx: &Context, message: String) -> String {
        format!("hello {}, you said {message:?}", ctx.caller())
    }
}

/// The replicated state: a log of lines; a command appends one and answers
/// how many lines there are.
#[derive(Default)]
struct Lines(Vec<String>);

impl StateMachine for Lines {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.push(String::from_utf8_lossy(command).into_owned());
        self.0.len().to_string().into_bytes()
    }
    fn query(&self, _query: &[u8]) -> Vec<u8> {
        self.0.join(", ").into_bytes()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.join("\n").into_bytes()
    }
    fn restore(&mut self, snapshot: &[u8]) -> std::result::Result<(), StateMachineError> {
        let text = std::str::from_utf8(snapshot)?;
        self.0 = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(())
    }
}

/// Starts the cluster's next node on a free loopback port, with its data
/// and received files under `root`, serving `Greeter` and file transfers.
fn start_node(root: &Path, cluster: &LocalCluster, name: &str) -> Result<OctopiiNode> {
    let dir = root.join(name);
    let mut config = cluster.config(name)?.data_dir(dir.join("data")).build()?;
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox)?;
    config.chunk.recv_dir = Some(inbox);
    let node = cluster.start(config)?;
    let id = node.id();
    node.serve(GreeterServer::new(Hello))?;
    // Arrivals are announced on this inbox; the quickstart looks at the
    // files themselves, so nothing reads it.
    drop(node.serve_chunks()?);
    println!("{name:<5} (node {id}) listens on {}", node.local_addr());
    Ok(node)
}

fn raft_config(peers: &BTreeMap<u64, SocketAddr>, bootstrap: bool) -> RaftConfig {
    RaftConfig {
        peers: peers.clone(),
        bootstrap,
        tick_interval_ms: 20,
        ..RaftConfig::default()
    }
}

fn main() -> std::result::Result<(), BoxError> {
    tracing_subscriber::fmt().with_env_filter("error").init();
    let root = std::env::temp_dir().join(format!("octopii-quickstart-{}", std::process::id()));
    let result = run(&root);
    let _ = std::fs::remove_dir_all(&root);
    result?;
    println!("quickstart done");
    Ok(())
}

fn run(root: &Path) -> std::result::Result<(), BoxError> {
    // Nodes 1, 2 and 3 on loopback, with certificates of one fresh CA.
    let cluster = LocalCluster::new()?;
    let runtime = cluster.runtime();
    let names = ["alice", "bob", "carol"];
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(start_node(root, &cluster, name)?);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(OctopiiNode::local_addr).collect();

    // 1. A typed service call.
    runtime.block_on(async {
        let to_bob = GreeterClient::new(&nodes[0], addrs[1]).with_deadline(Duration::from_secs(1));
        let reply = to_bob.greet("hi bob".into()).await?;
        println!("\n[service call]  alice -> bob: {reply}");
        Ok::<_, octopii::RpcError>(())
    })?;

    // 2. A verified file transfer to two peers at once.
    let file = root.join("report.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data)?;
    let results = runtime.block_on(nodes[0].transfer_chunk_to_peers(
        ChunkSource::File(file),
        &addrs[1..],
        TransferOptions::to_file("report.bin"),
    ));
    println!(
        "\n[file transfer] alice -> bob, carol: report.bin, {} bytes",
        data.len()
    );
    for (result, name) in results.iter().zip(&names[1..]) {
        let arrived = received(root, name, "report.bin");
        println!(
            "  {name:<5} verified and in place={} bytes={} in {:?}; identical on disk: {}",
            result.outcome.is_ok(),
            result.bytes_transferred,
            result.duration,
            arrived.as_deref() == Some(&data[..]),
        );
        if let Err(error) = &result.outcome {
            return Err(format!("transfer to {name} failed: {error}").into());
        }
    }

    // 3. Replicated writes, surviving the leader's loss.
    let peers: BTreeMap<u64, SocketAddr> = (1..).zip(addrs.iter().copied()).collect();
    let mut rafts = Vec::new();
    for node in &nodes {
        rafts.push(Some(RaftNode::start(
            node,
            raft_config(&peers, true),
            Lines::default(),
        )?));
    }
    runtime.block_on(async {
        let leader = rafts[0]
            .as_ref()
            .ok_or("raft 1")?
            .wait_for_leader(Duration::from_secs(10))
            .await?;
        println!("\n[raft] three voters; node {leader} leads");
        for (i, line) in ["first", "second", "third"].into_iter().enumerate() {
            // Any node may propose: a follower forwards to the leader.
            let raft = rafts[i].as_ref().ok_or("raft")?;
            let count = raft.propose(line).await?;
            println!(
                "  node {} proposed {line:?}: committed, {} lines",
                i + 1,
                String::from_utf8_lossy(&count)
            );
        }

        // Stop the leader: the two others elect a new one and keep every write.
        let gone = (leader - 1) as usize;
        if let Some(raft) = rafts[gone].take() {
            raft.shutdown().await;
        }
        nodes[gone].shutdown().await;
        println!("  node {leader} (the leader) stopped");
        let survivor = rafts.iter().flatten().next().ok_or("a survivor")?;
        let new_leader = wait_for_new_leader(survivor, leader).await?;
        survivor.propose("fourth").await?;
        let lines = survivor.read("all").await?;
        println!(
            "  node {new_leader} leads now; linearizable read: {}",
            String::from_utf8_lossy(&lines)
        );

        // A fourth node joins the running cluster and catches up.
        let dave = start_node(root, &cluster, "dave")?;
        let dave_raft = RaftNode::start(&dave, raft_config(&peers, false), Lines::default())?;
        survivor.add_voter(dave.id(), dave.local_addr()).await?;
        dave_raft.wait_for_leader(Duration::from_secs(10)).await?;
        let lines = dave_raft.read("all").await?;
        println!(
            "  dave (node 4) joined as a voter and reads: {}",
            String::from_utf8_lossy(&lines)
        );

        dave_raft.shutdown().await;
        dave.shutdown().await;
        for raft in rafts.iter().flatten() {
            raft.shutdown().await;
        }
        for node in &nodes {
            node.shutdown().await;
        }
        Ok::<_, BoxError>(())
    })
}

/// The bytes of `name` in `node`'s receive directory, if it is there.
fn received(root: &Path, node: &str, name: &str) -> Option<Vec<u8>> {
    let path: PathBuf = root.join(node).join("inbox").join(name);
    std::fs::read(path).ok()
}

/// Waits until `raft` knows a leader other than `old`.
async fn wait_for_new_leader(raft: &RaftNode, old: u64) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leader = raft.wait_for_leader(Duration::from_secs(10)).await?;
        if leader != old {
            return Ok(leader);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(OctopiiError::Timeout(Duration::from_secs(10)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

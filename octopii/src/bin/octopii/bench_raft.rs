//! `octopii bench raft`: committed proposals per second and commit latency
//! of a three-node raft cluster on loopback (fsync on), beside a same-run
//! baseline of the same number of writers appending the same bytes to one
//! WAL directly: the cost of replication over the local durable append.
//!
//! Two modes: the three members in the benchmark's process, proposed to
//! in-process (`RaftNode::propose`); and three member processes, proposed
//! to over the network through `RaftService.propose` by clients in the
//! benchmark's process (`bench_raft_processes.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use octopii::ClusterCa;
use octopii::raft::{RaftConfig, RaftNode, StateMachine, StateMachineError};
use octopii::wal::{Wal, WalOptions};
use octopii::{Config, OctopiiError, OctopiiNode, OctopiiRuntime};

use crate::Result;
use crate::bench_raft_processes::proposals;
use crate::report::{Latencies, Table, Window, duration_arg, gather};

/// Arguments of `octopii bench raft`.
#[derive(Debug, clap::Args)]
pub struct RaftBenchArgs {
    /// Seconds each measurement runs (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 3.0)]
    pub duration_secs: f64,
    /// Concurrent clients to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub clients: Vec<usize>,
    /// Bytes of each command.
    #[arg(long, default_value_t = 256)]
    pub command_bytes: usize,
    /// Directory for the nodes' and the baseline's logs (default: a new
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Worker threads of the runtime that runs all three nodes (of each
    /// member process, in the processes mode).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Where the members run: in this process, in three processes of
    /// their own, or both (a row each).
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Mode,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Where the members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// In the benchmark's process, proposed to in-process.
    OneProcess,
    /// Three processes, proposed to over the network by RPC.
    Processes,
    /// A row of each.
    Both,
}

/// A state machine that only counts: the benchmark measures replication.
pub(crate) struct Counter(pub(crate) u64);

impl StateMachine for Counter {
    fn apply(&mut self, _command: &[u8]) -> Vec<u8> {
        self.0 += 1;
        Vec::new()
    }
    fn query(&self, _query: &[u8]) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, snapshot: &[u8]) -> std::result::Result<(), StateMachineError> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| StateMachineError::new("counter snapshot is 8 bytes"))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Runs the raft benchmark.
pub fn run(args: RaftBenchArgs) -> Result<()> {
    let duration = duration_arg(args.duration_secs)?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let runtime = OctopiiRuntime::new(args.threads)?;
    let setup = format!(
        "3 nodes on loopback, {}-byte commands, fsync on, {} worker threads; baseline: WAL appends",
        args.command_bytes, args.threads
    );
    let mut table = Table::new("raft", setup);
    let secs = duration.as_secs_f64();
    for (round, &clients) in args.clients.iter().enumerate() {
        let round_dir = dir.join(format!("round-{round}"));
        let baseline = wal_appends(&round_dir.join("baseline"), clients, &args, duration)?;
        if args.mode != Mode::Processes {
            let raft = raft_proposals(&runtime, &round_dir, clients, &args, duration)?;
            let case = format!("{clients} clients, 1 process");
            table.compare(case, "proposals", secs, baseline.clone(), raft);
        }
        if args.mode != Mode::OneProcess {
            let processes = round_dir.join("processes");
            let raft = proposals(&runtime, &processes, clients, &args, duration)?;
            let case = format!("{clients} clients, 3 processes, RPC");
            table.compare(case, "proposals", secs, baseline, raft);
        }
    }
    table.print(args.json);
    Ok(())
}

/// `clients` tasks appending `command_bytes` records to one WAL.
fn wal_appends(
    dir: &Path,
    clients: usize,
    args: &RaftBenchArgs,
    duration: Duration,
) -> Result<Latencies> {
    let wal = Wal::open(dir, WalOptions::default())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let record = vec![7u8; args.command_bytes];
    runtime.block_on(async {
        let window = Window::new(duration);
        gather((0..clients).map(|_| {
            let (wal, record) = (wal.clone(), record.clone());
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                while let Some(began) = window.begin() {
                    wal.append(&record).await?;
                    window.record(&mut latencies, began);
                }
                Ok(latencies)
            })
        }))
        .await
    })
}

/// `clients` tasks proposing to the leader of a fresh three-node cluster.
fn raft_proposals(
    runtime: &OctopiiRuntime,
    dir: &Path,
    clients: usize,
    args: &RaftBenchArgs,
    duration: Duration,
) -> Result<Latencies> {
    let ca = ClusterCa::generate()?;
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let config = Config::builder()
            .node_id(id)
            .bind_addr("127.0.0.1:0".parse().map_err(|_| OctopiiError::Config {
                field: "bind_addr",
                message: "loopback".into(),
            })?)
            .data_dir(dir.join(format!("node-{id}")))
            .credentials(ca.issue_node(&format!("node-{id}"), id)?)
            .build()?;
        nodes.push(OctopiiNode::new(config, runtime)?);
    }
    let peers: BTreeMap<u64, _> = nodes.iter().map(|n| (n.id(), n.local_addr())).collect();
    let rafts = nodes
        .iter()
        .map(|node| {
            let config = RaftConfig {
                peers: peers.clone(),
                ..RaftConfig::default()
            };
            RaftNode::start(node, config, Counter(0))
        })
        .collect::<octopii::Result<Vec<_>>>()?;
    let command = vec![7u8; args.command_bytes];
    let latencies = runtime.block_on(async {
        let leader = rafts[0].wait_for_leader(Duration::from_secs(10)).await?;
        let leader = rafts
            .iter()
            .find(|r| r.id() == leader)
            .ok_or("leader not found")?
            .clone();
        let window = Window::new(duration);
        gather((0..clients).map(|_| {
            let (leader, command) = (leader.clone(), command.clone());
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                while let Some(began) = window.begin() {
                    leader.propose(command.clone()).await?;
                    window.record(&mut latencies, began);
                }
                Ok(latencies)
            })
        }))
        .await
    });
    runtime.block_on(async {
        for (raft, node) in rafts.iter().zip(&nodes) {
            raft.shutdown().await;
            node.shutdown().await;
        }
    });
    latencies
}

//! `octopii bench raft`'s processes mode: three raft members, each a
//! process of its own (`octopii bench raft-member`), and clients in the
//! benchmark's process that propose through `RaftService.propose` over
//! the network, as a user's client would: to the member they believe
//! leads, following `NotLeader` hints.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use octopii::config::TlsConfig;
use octopii::raft::service::RaftServiceClient;
use octopii::raft::{Proposal, RaftConfig, RaftError, RaftNode};
use octopii::transport::tls::{ClusterCa, write_pem};
use octopii::{Config, OctopiiNode, OctopiiRuntime};

use crate::Result;
use crate::bench_raft::{Counter, RaftBenchArgs};
use crate::report::{Latencies, Window, gather};

/// Arguments of `octopii bench raft-member`, started by `bench raft`.
#[derive(Debug, clap::Args)]
pub struct MemberArgs {
    /// Directory with ca.pem, node-ID.pem, node-ID.key.pem.
    #[arg(long)]
    certs: PathBuf,
    /// This member's raft id.
    #[arg(long)]
    id: u64,
    /// Where its log and state go.
    #[arg(long)]
    dir: PathBuf,
    /// Worker threads.
    #[arg(long)]
    threads: usize,
}

/// Runs one member: prints `ready ADDR`, reads the members' addresses as
/// one line `1=ADDR 2=ADDR 3=ADDR`, starts raft, prints `started`, and runs
/// until its stdin closes.
pub fn run_member(args: MemberArgs) -> Result<()> {
    let name = format!("node-{}", args.id);
    let config = Config::builder()
        .node_id(args.id)
        .bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .worker_threads(args.threads)
        .data_dir(args.dir)
        .tls(TlsConfig::from_files(
            args.certs.join("ca.pem"),
            args.certs.join(format!("{name}.pem")),
            args.certs.join(format!("{name}.key.pem")),
        ))
        .build()?;
    let runtime = OctopiiRuntime::new(args.threads)?;
    let node = OctopiiNode::new(config, &runtime)?;
    println!("ready {}", node.local_addr());
    std::io::stdout().flush()?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let peers = line
        .split_whitespace()
        .map(|pair| {
            let (id, addr) = pair.split_once('=')?;
            Some((id.parse().ok()?, addr.parse().ok()?))
        })
        .collect::<Option<BTreeMap<u64, SocketAddr>>>()
        .ok_or_else(|| format!("unreadable members line {line:?}"))?;
    let raft = RaftNode::start(
        &node,
        RaftConfig {
            peers,
            ..RaftConfig::default()
        },
        Counter(0),
    )?;
    println!("started");
    std::io::stdout().flush()?;
    while stdin.read_line(&mut line)? > 0 {
        line.clear();
    }
    runtime.block_on(async {
        raft.shutdown().await;
        node.shutdown().await;
    });
    Ok(())
}

/// A member process.
struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Member {
    fn spawn(certs: &Path, id: u64, dir: &Path, threads: usize) -> Result<Member> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["bench", "raft-member", "--id", &id.to_string()])
            .arg("--certs")
            .arg(certs)
            .arg("--dir")
            .arg(dir.join(format!("node-{id}")))
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("member has no pipes".into());
        };
        let mut member = Member {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let line = member.read_line()?;
        member.addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("member {id} said {line:?}"))?;
        Ok(member)
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    /// Tells the member where everyone listens; waits until raft runs.
    fn start(&mut self, members: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("member stopped")?;
        writeln!(stdin, "{members}")?;
        stdin.flush()?;
        match self.read_line()?.as_str() {
            "started" => Ok(()),
            other => Err(format!("member said {other:?}").into()),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `clients` tasks proposing through `RaftService.propose` to three member
/// processes, from a client node with an admin certificate.
pub fn proposals(
    runtime: &OctopiiRuntime,
    dir: &Path,
    clients: usize,
    args: &RaftBenchArgs,
    duration: Duration,
) -> Result<Latencies> {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let ca = ClusterCa::generate()?;
    write_pem(&certs.join("ca.pem"), ca.cert_pem(), false)?;
    for id in 1..=3u64 {
        let creds = ca.issue_node(&format!("node-{id}"), id)?;
        write_pem(
            &certs.join(format!("node-{id}.pem")),
            creds.cert_pem(),
            false,
        )?;
        write_pem(
            &certs.join(format!("node-{id}.key.pem")),
            creds.key_pem(),
            true,
        )?;
    }
    let mut members = (1..=3u64)
        .map(|id| Member::spawn(&certs, id, dir, args.threads))
        .collect::<Result<Vec<_>>>()?;
    let line = members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}={}", i + 1, m.addr))
        .collect::<Vec<_>>()
        .join(" ");
    for member in &mut members {
        member.start(&line)?;
    }
    let config = Config::builder()
        .bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .credentials(ca.issue_admin("bench-client")?)
        .build()?;
    let client = OctopiiNode::new(config, runtime)?;
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(members.iter().map(|m| m.addr).collect());
    let command = vec![7u8; args.command_bytes];
    let latencies = runtime.block_on(async {
        // Whom the clients believe leads (an index into `addrs`).
        let leader = Arc::new(AtomicUsize::new(0));
        // Until a proposal commits, nobody measures.
        propose(&client, &addrs, &leader, &command, Duration::from_secs(10)).await?;
        let window = Window::new(duration);
        gather((0..clients).map(|_| {
            let (client, addrs, leader, command) = (
                client.clone(),
                addrs.clone(),
                leader.clone(),
                command.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                while let Some(began) = window.begin() {
                    propose(&client, &addrs, &leader, &command, Duration::from_secs(5)).await?;
                    window.record(&mut latencies, began);
                }
                Ok(latencies)
            })
        }))
        .await
    });
    runtime.block_on(client.shutdown());
    drop(members);
    latencies
}

/// Proposes `command` to the member believed to lead, following
/// `NotLeader` hints and trying the next member otherwise, for up to
/// `patience`.
async fn propose(
    client: &OctopiiNode,
    addrs: &[SocketAddr],
    leader: &AtomicUsize,
    command: &[u8],
    patience: Duration,
) -> Result<()> {
    let give_up = tokio::time::Instant::now() + patience;
    loop {
        let believed = leader.load(Ordering::Relaxed);
        let at = believed % addrs.len();
        let raft = RaftServiceClient::new(client, addrs[at]).with_deadline(Duration::from_secs(2));
        let answer = raft.propose(Proposal::Command(command.to_vec())).await;
        let (next, why) = match answer {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(RaftError::NotLeader {
                leader_hint: Some(id),
            })) => ((id as usize).wrapping_sub(1), "not the leader".to_owned()),
            Ok(Err(e)) => (at + 1, e.to_string()),
            Err(e) => (at + 1, e.to_string()),
        };
        if tokio::time::Instant::now() >= give_up {
            let error = format!("no member took the proposal within {patience:?}; last: {why}");
            return Err(error.into());
        }
        // Others may have moved it already; only a stale belief is replaced.
        let next = next % addrs.len();
        let _ = leader.compare_exchange(believed, next, Ordering::Relaxed, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

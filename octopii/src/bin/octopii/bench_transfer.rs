//! `octopii bench transfer`: a verified file-to-file transfer on loopback
//! beside a raw copy of the same number of bytes over one QUIC stream
//! (no hashing, no disk), measured in the same run; then the same file to
//! several peers at once; and the peak memory of every process.
//!
//! Each receiver is a child process (this binary, `bench
//! transfer-receiver`), so peak RSS is measured per process: the sender
//! reads its own `VmHWM`, each receiver reports its own when told to stop.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::config::{ChunkConfig, TlsConfig};
use octopii::rpc::{
    self, CallStream, Client, Code, Context, HandlerFuture, RpcError, Service, StreamFuture,
};
use octopii::transport::tls::{ClusterCa, write_pem};
use octopii::{Config, OctopiiError, OctopiiNode, OctopiiRuntime};

use crate::Result;
use crate::report::work_dir;

/// Bytes of each write of the raw copy (the chunk protocol's buffer size).
const RAW_BUFFER: usize = octopii::chunk::protocol::BUFFER_SIZE;
const MIB: f64 = 1024.0 * 1024.0;

/// Arguments of `octopii bench transfer`.
#[derive(Debug, clap::Args)]
pub struct TransferBenchArgs {
    /// Bytes to transfer: a number with an optional unit (B, KiB, MiB, GiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub size: u64,
    /// Receivers of the fan-out case.
    #[arg(long, default_value_t = 3)]
    pub peers: usize,
    /// Directory for the source and received files (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rounds of every case; each case reports its fastest round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Worker threads of each node's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the receiving child process.
#[derive(Debug, clap::Args)]
pub struct ReceiverArgs {
    /// Directory with ca.pem, NAME.pem, NAME.key.pem.
    #[arg(long)]
    certs: PathBuf,
    /// This receiver's certificate name.
    #[arg(long)]
    name: String,
    /// Where received files go.
    #[arg(long)]
    recv_dir: PathBuf,
    /// Worker threads.
    #[arg(long)]
    threads: usize,
}

/// Parses `1GiB`, `64MiB`, `512KiB`, `100` (bytes); `K`, `M`, `G` and
/// `KB`, `MB`, `GB` are read as binary units too.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of bytes like 64MiB or 1GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// The peak resident set size of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `BenchSink.drain`: reads a stream to its end, then answers one byte.
/// The receiving end of the raw baseline.
struct Drain;

impl Service for Drain {
    fn name(&self) -> &'static str {
        "BenchSink"
    }
    fn methods(&self) -> &'static [&'static str] {
        &["drain"]
    }
    fn call(&self, method: &str, _ctx: Context, _args: Bytes) -> HandlerFuture {
        rpc::unimplemented("BenchSink", method)
    }
    fn serve_stream(
        &self,
        _method: &str,
        _ctx: Context,
        _args: Bytes,
        mut stream: CallStream,
    ) -> StreamFuture {
        Box::pin(async move {
            while let Ok(Some(_)) = stream.read_raw(usize::MAX).await {}
            let _ = stream.write_raw(&[0]).await;
            stream.finish();
        })
    }
}

/// Runs a receiver until its stdin closes, then prints its peak RSS.
pub fn run_receiver(args: ReceiverArgs) -> Result<()> {
    let mut config = Config::builder()
        .bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .worker_threads(args.threads)
        .tls(TlsConfig::from_files(
            args.certs.join("ca.pem"),
            args.certs.join(format!("{}.pem", args.name)),
            args.certs.join(format!("{}.key.pem", args.name)),
        ))
        .build()?;
    config.chunk = ChunkConfig {
        recv_dir: Some(args.recv_dir),
        ..ChunkConfig::default()
    };
    let runtime = OctopiiRuntime::new(args.threads)?;
    let node = OctopiiNode::new(config, &runtime)?;
    let mut inbox = node.serve_chunks()?;
    node.serve(Drain)?;
    runtime.spawn(async move { while inbox.recv().await.is_some() {} });
    println!("ready {}", node.local_addr());
    std::io::stdout().flush()?;
    // Runs until the parent closes our stdin.
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line)? > 0 {
        line.clear();
    }
    println!("rss_kib {}", peak_rss_kib().unwrap_or(0));
    runtime.block_on(node.shutdown());
    Ok(())
}

/// A receiver child process.
struct Receiver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Receiver {
    fn spawn(certs: &Path, name: &str, dir: PathBuf, threads: usize) -> Result<Receiver> {
        std::fs::create_dir_all(&dir).map_err(|e| OctopiiError::file(&dir, e))?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["bench", "transfer-receiver", "--name", name])
            .arg("--certs")
            .arg(certs)
            .arg("--recv-dir")
            .arg(&dir)
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("receiver has no pipes".into());
        };
        let mut stdout = BufReader::new(stdout);
        let line = read_line(&mut stdout)?;
        let addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| format!("receiver said {line:?}"))?;
        Ok(Receiver {
            child,
            stdin: Some(stdin),
            stdout,
            addr,
            dir,
        })
    }

    /// Stops the receiver; its peak RSS in KiB.
    fn stop(mut self) -> Result<u64> {
        drop(self.stdin.take());
        let line = read_line(&mut self.stdout)?;
        self.child.wait()?;
        line.strip_prefix("rss_kib ")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("receiver said {line:?}").into())
    }

    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn read_line(from: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    from.read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// Writes `size` random bytes to `path`, a MiB at a time.
fn write_source(path: &Path, size: u64) -> octopii::Result<()> {
    use rand_block::fill;
    let mut file = std::fs::File::create(path).map_err(|e| OctopiiError::file(path, e))?;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    while left > 0 {
        fill(&mut block, &mut seed);
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])
            .map_err(|e| OctopiiError::file(path, e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| OctopiiError::file(path, e))
}

/// Incompressible filler bytes without a random-number crate.
mod rand_block {
    /// Fills `block` from a xorshift generator seeded by `state`.
    pub fn fill(block: &mut [u8], state: &mut u64) {
        for word in block.chunks_mut(8) {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let bytes = state.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// Copies `size` bytes over one raw stream to `peer`; its duration.
async fn raw_copy(sender: &OctopiiNode, peer: SocketAddr, size: u64) -> Result<Duration> {
    let mut block = vec![0u8; RAW_BUFFER];
    rand_block::fill(&mut block, &mut 7);
    let block = Bytes::from(block);
    let started = Instant::now();
    let client = Client::new(sender, peer);
    let mut stream = client.open_stream("BenchSink", "drain", &()).await?;
    let mut left = size;
    while left > 0 {
        let n = left.min(RAW_BUFFER as u64) as usize;
        stream.write_bytes(block.slice(..n)).await?;
        left -= n as u64;
    }
    stream.finish();
    let mut ack = [0u8; 1];
    stream.read_raw_exact(&mut ack).await?;
    Ok(started.elapsed())
}

fn failed_transfer(result: &octopii::chunk::TransferResult) -> OctopiiError {
    let reason = result
        .outcome
        .as_ref()
        .err()
        .map_or_else(|| "no reason".to_owned(), ToString::to_string);
    OctopiiError::Rpc(RpcError::new(
        Code::Unknown,
        format!("transfer to {} failed: {reason}", result.peer),
    ))
}

/// Sends `source` to every receiver at once; each one's seconds.
async fn timed_transfer(
    sender: &OctopiiNode,
    source: &Path,
    receivers: &[Receiver],
) -> Result<Vec<f64>> {
    let peers: Vec<SocketAddr> = receivers.iter().map(|r| r.addr).collect();
    let results = sender
        .transfer_chunk_to_peers(
            ChunkSource::File(source.to_owned()),
            &peers,
            TransferOptions::to_file("bench.bin"),
        )
        .await;
    for receiver in receivers {
        receiver.remove("bench.bin");
    }
    if let Some(bad) = results.iter().find(|r| r.outcome.is_err()) {
        return Err(failed_transfer(bad).into());
    }
    Ok(results.iter().map(|r| r.duration.as_secs_f64()).collect())
}

/// The best figures over the rounds of a run.
struct Figures {
    size: u64,
    rounds: usize,
    load: String,
    raw_secs: f64,
    verified_secs: f64,
    fan_out_secs: Vec<f64>,
    sender_rss_kib: u64,
    receiver_rss_kib: Vec<u64>,
}

impl Figures {
    fn rate(&self, secs: f64) -> f64 {
        if secs > 0.0 {
            self.size as f64 / MIB / secs
        } else {
            0.0
        }
    }

    fn verified_ratio(&self) -> f64 {
        self.rate(self.verified_secs) / self.rate(self.raw_secs)
    }

    /// The slowest fan-out peer's rate.
    fn fan_out_rate(&self) -> f64 {
        let slowest = self.fan_out_secs.iter().copied().fold(0.0, f64::max);
        self.rate(slowest)
    }

    fn fan_out_ratio(&self) -> f64 {
        self.fan_out_rate() / self.rate(self.verified_secs)
    }

    fn text(&self, threads: usize) -> String {
        let peers = self.fan_out_secs.len();
        let mut out = format!(
            "octopii bench transfer: {} MiB file, loopback, {threads} worker threads per node, receivers in child processes, best of {} rounds, load average {}\n",
            self.size as f64 / MIB,
            self.rounds,
            self.load
        );
        out.push_str(&format!(
            "{:<34} {:>12} {:>12} {:>7} {:>8}\n",
            "case", "baseline MiB/s", "octopii MiB/s", "ratio", "target"
        ));
        out.push_str(&format!(
            "{:<34} {:>14.1} {:>13.1} {:>7.2} {:>8}\n",
            "verified file→file vs raw stream",
            self.rate(self.raw_secs),
            self.rate(self.verified_secs),
            self.verified_ratio(),
            "≥ 0.70"
        ));
        out.push_str(&format!(
            "{:<34} {:>14.1} {:>13.1} {:>7.2} {:>8}\n",
            format!("fan-out to {peers}, slowest peer"),
            self.rate(self.verified_secs),
            self.fan_out_rate(),
            self.fan_out_ratio(),
            "≥ 0.50"
        ));
        let receivers: Vec<String> = self
            .receiver_rss_kib
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect();
        out.push_str(&format!(
            "peak RSS (MiB, target < 64): sender {:.1}; receivers {}\n",
            self.sender_rss_kib as f64 / 1024.0,
            receivers.join(", ")
        ));
        out
    }

    fn json(&self) -> String {
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let fan_rates: Vec<f64> = self.fan_out_secs.iter().map(|&s| self.rate(s)).collect();
        let receivers: Vec<f64> = self
            .receiver_rss_kib
            .iter()
            .map(|&k| k as f64 / 1024.0)
            .collect();
        format!(
            "{{\"bench\":\"transfer\",\"size_bytes\":{},\"rounds\":{},\"load_average\":{:?},\"raw_mib_per_sec\":{:.1},\"verified_mib_per_sec\":{:.1},\"verified_ratio\":{:.3},\"fan_out_mib_per_sec\":[{}],\"fan_out_ratio\":{:.3},\"sender_peak_rss_mib\":{:.1},\"receiver_peak_rss_mib\":[{}]}}",
            self.size,
            self.rounds,
            self.load,
            self.rate(self.raw_secs),
            self.rate(self.verified_secs),
            self.verified_ratio(),
            list(&fan_rates),
            self.fan_out_ratio(),
            self.sender_rss_kib as f64 / 1024.0,
            list(&receivers),
        )
    }
}

/// Runs the transfer benchmark.
pub fn run(args: TransferBenchArgs) -> Result<()> {
    if args.size == 0 || args.peers == 0 || args.threads == 0 || args.rounds == 0 {
        return Err(OctopiiError::Config {
            field: "--size/--peers/--threads/--rounds",
            message: "must all be above 0".into(),
        }
        .into());
    }
    let (dir, _temp) = work_dir(args.dir.as_deref())?;
    // Fresh certificates each run (write_pem never overwrites).
    let certs_dir = tempfile::Builder::new().prefix("certs-").tempdir_in(&dir)?;
    let certs = certs_dir.path();
    let ca = ClusterCa::generate()?;
    write_pem(&certs.join("ca.pem"), ca.cert_pem(), false)?;
    let mut receivers = Vec::with_capacity(args.peers);
    for i in 0..args.peers {
        let name = format!("receiver-{i}");
        let creds = ca.issue_node(&name, 1)?;
        write_pem(&certs.join(format!("{name}.pem")), creds.cert_pem(), false)?;
        write_pem(
            &certs.join(format!("{name}.key.pem")),
            creds.key_pem(),
            true,
        )?;
        let recv_dir = dir.join(&name);
        receivers.push(Receiver::spawn(certs, &name, recv_dir, args.threads)?);
    }
    let source = dir.join("source.bin");
    write_source(&source, args.size)?;

    let config = Config::builder()
        .bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .worker_threads(args.threads)
        .credentials(ca.issue_node("sender", 1)?)
        .build()?;
    let runtime = OctopiiRuntime::new(args.threads)?;
    let sender = OctopiiNode::new(config, &runtime)?;
    let peers: Vec<SocketAddr> = receivers.iter().map(|r| r.addr).collect();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (raw, verified, fan_out) = runtime.block_on(async {
        for &peer in &peers {
            sender.connect(peer).await?;
        }
        // Each case keeps its fastest round: interference on a shared
        // machine only ever slows a round down.
        let (mut raw, mut verified, mut fan_out) = (f64::MAX, f64::MAX, vec![f64::MAX]);
        for _ in 0..args.rounds {
            raw = raw.min(raw_copy(&sender, peers[0], args.size).await?.as_secs_f64());
            verified = verified.min(timed_transfer(&sender, &source, &receivers[..1]).await?[0]);
            let fanned = timed_transfer(&sender, &source, &receivers).await?;
            let slowest = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
            if slowest(&fanned) < slowest(&fan_out) {
                fan_out = fanned;
            }
        }
        sender.shutdown().await;
        Ok::<_, crate::Error>((raw, verified, fan_out))
    })?;
    let _ = std::fs::remove_file(&source);
    let mut receiver_rss_kib = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        receiver_rss_kib.push(receiver.stop()?);
    }
    let figures = Figures {
        size: args.size,
        rounds: args.rounds,
        load: load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        raw_secs: raw,
        verified_secs: verified,
        fan_out_secs: fan_out,
        sender_rss_kib: peak_rss_kib().unwrap_or(0),
        receiver_rss_kib,
    };
    if args.json {
        println!("{}", figures.json());
    } else {
        print!("{}", figures.text(args.threads));
    }
    Ok(())
}

//! `octopii serve`: a node that receives chunk transfers into a directory
//! and reports each one, until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use octopii::chunk::ReceivedData;
use octopii::{OctopiiNode, OctopiiRuntime};

use crate::Result;
use tokio::signal::unix::{SignalKind, signal};

use crate::node_args::TlsArgs;

/// Arguments of `octopii serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Directory received files are written into (created if missing).
    #[arg(long)]
    pub recv_dir: PathBuf,
    /// Most bytes received into memory at once.
    #[arg(long)]
    pub max_memory_bytes: Option<u64>,
    /// On Ctrl-C or SIGTERM, let running transfers finish for up to this
    /// many seconds (new ones are refused) before stopping.
    #[arg(long, default_value_t = 30)]
    pub drain_secs: u64,
    /// Serve metrics in Prometheus text format on this address
    /// (e.g. 127.0.0.1:9100; scrape http://ADDR/metrics).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Runs the node until Ctrl-C or SIGTERM, then drains it: running
/// transfers finish, new ones are refused, then it stops.
pub fn run(args: ServeArgs) -> Result<()> {
    let mut config = args.tls.base_config()?;
    config.bind_addr = args.listen;
    config.chunk.recv_dir = Some(args.recv_dir.clone());
    if let Some(max) = args.max_memory_bytes {
        config.chunk.max_memory_bytes = max;
    }
    if let Some(addr) = args.metrics {
        config.metrics_addr = Some(addr);
    }
    config.validate()?;
    let runtime = OctopiiRuntime::new(config.worker_threads)?;
    let node = OctopiiNode::new(config, &runtime)?;
    let mut inbox = node.serve_chunks()?;
    say(format_args!(
        "listening on {}, receiving into {}",
        node.local_addr(),
        args.recv_dir.display()
    ));
    if let Some(addr) = node.config().metrics_addr {
        say(format_args!("metrics on http://{addr}/metrics"));
    }
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                received = inbox.recv() => {
                    let Some(received) = received else { break };
                    let from = format!("{} ({})", received.peer.identity, received.peer.addr);
                    match received.outcome {
                        Ok(ReceivedData::File(path)) => {
                            say(format_args!("received {} from {from}: verified", path.display()));
                        }
                        Ok(ReceivedData::Memory(bytes)) => {
                            say(format_args!("received {} bytes {:?} from {from}: verified", bytes.len(), received.name));
                        }
                        Err(e) => say(format_args!("transfer {:?} from {from} failed: {e}", received.name)),
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        say(format_args!("draining"));
        if !node.drain(Duration::from_secs(args.drain_secs)).await {
            say(format_args!("stopped with transfers still running after {}s", args.drain_secs));
        }
        Ok(())
    })
}

/// Prints one line; a closed stdout must not stop the node, so write
/// errors are ignored.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

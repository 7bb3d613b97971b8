//! `octopii send`: sends a file to one or many peers at once, with a
//! progress bar per peer and a table of results; fails if any peer failed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use octopii::chunk::{ChunkSource, Progress, TransferError, TransferOptions, TransferResult};
use octopii::{OctopiiError, OctopiiNode, OctopiiRuntime};

use crate::Result;
use crate::node_args::TlsArgs;

/// Arguments of `octopii send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The file to send.
    pub file: PathBuf,
    /// Receiving nodes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub to: Vec<SocketAddr>,
    /// Path to write it to below each receiver's directory (default: the
    /// file's name).
    #[arg(long = "as")]
    pub dest: Option<String>,
    /// Continue from what the receivers kept of an interrupted transfer.
    #[arg(long)]
    pub resume: bool,
    /// Give up on a peer that takes nothing for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub stall_timeout_secs: u64,
    /// Address to send from.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Sends the file and prints one row per peer.
pub fn run(args: SendArgs) -> Result<()> {
    let dest = match &args.dest {
        Some(dest) => dest.clone(),
        None => args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| OctopiiError::Config {
                field: "FILE",
                message: "names no file; give --as NAME".into(),
            })?,
    };
    let size = std::fs::metadata(&args.file)
        .map_err(|e| OctopiiError::file(&args.file, e))?
        .len();
    let mut config = args.tls.base_config()?;
    config.bind_addr = args.bind;
    config.validate()?;
    let runtime = OctopiiRuntime::new(config.worker_threads)?;
    let node = OctopiiNode::new(config, &runtime)?;

    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:>21} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
    )
    .map_err(|e| OctopiiError::Config {
        field: "progress",
        message: e.to_string(),
    })?
    .progress_chars("=> ");
    let by_peer: HashMap<SocketAddr, ProgressBar> = args
        .to
        .iter()
        .map(|&peer| {
            let bar = bars.add(ProgressBar::new(size).with_style(style.clone()));
            bar.set_prefix(peer.to_string());
            (peer, bar)
        })
        .collect();
    let by_peer = Arc::new(by_peer);
    let update = by_peer.clone();
    let options = TransferOptions::to_file(dest)
        .resume(args.resume)
        .stall_timeout(Duration::from_secs(args.stall_timeout_secs))
        .progress(Arc::new(move |p: &Progress| {
            if let Some(bar) = update.get(&p.peer) {
                bar.set_position(p.done);
            }
        }));
    let results = runtime.block_on(async {
        let results = node
            .transfer_chunk_to_peers(ChunkSource::File(args.file.clone()), &args.to, options)
            .await;
        node.shutdown().await;
        results
    });
    for (peer, bar) in by_peer.iter() {
        let failed = results
            .iter()
            .any(|r| r.peer == *peer && r.outcome.is_err());
        if failed {
            bar.abandon();
        } else {
            bar.finish();
        }
    }
    print!("{}", table(&results));
    let failed = results.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        return Err(format!(
            "{failed} of {} peers did not receive the file",
            results.len()
        )
        .into());
    }
    Ok(())
}

fn table(results: &[TransferResult]) -> String {
    let mut out = format!(
        "{:<21} {:<7} {:>14} {:>14} {:>8} {:>9} {:>11}  {}\n",
        "peer", "result", "bytes sent", "resumed from", "verified", "seconds", "MiB/s", "error"
    );
    for r in results {
        let secs = r.duration.as_secs_f64();
        let rate = if secs > 0.0 {
            r.bytes_transferred as f64 / secs / (1024.0 * 1024.0)
        } else {
            0.0
        };
        out.push_str(&format!(
            "{:<21} {:<7} {:>14} {:>14} {:>8} {:>9.2} {:>11.1}  {}\n",
            r.peer.to_string(),
            if r.outcome.is_ok() { "ok" } else { "FAILED" },
            r.bytes_transferred,
            r.resumed_from,
            if verified(&r.outcome) { "yes" } else { "no" },
            secs,
            rate,
            r.outcome
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ));
    }
    out
}

/// Whether the receiver found the data's SHA-256 correct: on success, and
/// when only the final directory sync failed.
fn verified(outcome: &Result<(), TransferError>) -> bool {
    matches!(outcome, Ok(()) | Err(TransferError::NotDurable(_)))
}

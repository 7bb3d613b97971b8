//! `octopii bench rpc`: small unary calls per second and their latency over
//! one connection, beside two baselines measured in the same run: a raw
//! quinn echo of the same bytes on reused streams, and the same echo
//! through tarpc over one TCP connection. With `--streaming`: server
//! streams of small items, beside a raw quinn stream of the same framed
//! bytes.

use std::future::Future;
use std::time::Duration;

use octopii::OctopiiRuntime;
use octopii::bench::rpc::{RawCaller, RpcBench, RpcCaller};
use octopii::bench::tarpc::{TarpcBench, TarpcCaller};

use crate::Result;
use crate::report::{Latencies, Table, Window, duration_arg, gather};

/// Arguments of `octopii bench rpc`.
#[derive(Debug, clap::Args)]
pub struct RpcBenchArgs {
    /// Seconds each measurement runs (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 2.0)]
    pub duration_secs: f64,
    /// Concurrent callers to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    pub concurrency: Vec<usize>,
    /// Bytes of the echoed payload.
    #[arg(long, default_value_t = 32)]
    pub payload: usize,
    /// Worker threads of the runtime that runs both ends.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Measure server streams of small items instead of unary calls: 16-byte
    /// structs, and log lines whose texts have `--payload` bytes.
    #[arg(long)]
    pub streaming: bool,
    /// Items per stream, with `--streaming`.
    #[arg(long, default_value_t = 100_000)]
    pub items: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the RPC benchmark.
pub fn run(args: RpcBenchArgs) -> Result<()> {
    if args.streaming {
        return crate::bench_streaming::run(args);
    }
    let duration = duration_arg(args.duration_secs)?;
    let runtime = OctopiiRuntime::new(args.threads)?;
    let most = args.concurrency.iter().copied().max().unwrap_or(1);
    let bench = RpcBench::start(&runtime, args.payload, most)?;
    let setup = format!(
        "{}-byte echo over one connection, {} worker threads, loopback",
        args.payload, args.threads
    );
    let tarpc = runtime.block_on(async {
        tokio::spawn(TarpcBench::start(args.payload, most))
            .await
            .map_err(|e| octopii::OctopiiError::from(std::io::Error::other(e)))?
    })?;
    let mut table = Table::new("rpc", setup);
    for &callers in &args.concurrency {
        let raw = runtime.block_on(raw_calls(&bench, callers, duration))?;
        let tarpc = runtime.block_on(tarpc_calls(&tarpc, callers, duration))?;
        let rpc = runtime.block_on(rpc_calls(&bench, callers, duration))?;
        let secs = duration.as_secs_f64();
        table.compare(
            format!("{callers} callers, vs raw quinn"),
            "calls",
            secs,
            raw,
            rpc.clone(),
        );
        table.compare(
            format!("{callers} callers, vs tarpc"),
            "calls",
            secs,
            tarpc,
            rpc,
        );
    }
    drop(tarpc);
    table.print(args.json);
    runtime.block_on(bench.shutdown());
    Ok(())
}

async fn raw_calls(bench: &RpcBench, callers: usize, duration: Duration) -> Result<Latencies> {
    let mut raw = Vec::with_capacity(callers);
    for _ in 0..callers {
        raw.push(bench.raw_caller().await?);
    }
    calls(raw, duration).await
}

async fn tarpc_calls(bench: &TarpcBench, callers: usize, duration: Duration) -> Result<Latencies> {
    calls((0..callers).map(|_| bench.caller()).collect(), duration).await
}

async fn rpc_calls(bench: &RpcBench, callers: usize, duration: Duration) -> Result<Latencies> {
    calls((0..callers).map(|_| bench.rpc_caller()).collect(), duration).await
}

/// One round trip of the measured kind.
trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<()>> + Send;
}

impl Caller for RawCaller {
    async fn call(&mut self) -> Result<()> {
        Ok(RawCaller::call(self).await?)
    }
}

impl Caller for RpcCaller {
    async fn call(&mut self) -> Result<()> {
        Ok(RpcCaller::call(self).await?)
    }
}

impl Caller for TarpcCaller {
    async fn call(&mut self) -> Result<()> {
        Ok(TarpcCaller::call(self).await?)
    }
}

/// Each of `callers` calls in a task of its own, one call after another,
/// through the measurement window.
async fn calls(callers: Vec<impl Caller>, duration: Duration) -> Result<Latencies> {
    let window = Window::new(duration);
    gather(callers.into_iter().map(|mut caller| {
        tokio::spawn(async move {
            let mut latencies = Latencies::default();
            while let Some(began) = window.begin() {
                caller.call().await?;
                window.record(&mut latencies, began);
            }
            Ok(latencies)
        })
    }))
    .await
}

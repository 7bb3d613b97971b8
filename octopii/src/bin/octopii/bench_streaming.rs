//! `octopii bench rpc --streaming`: server streams of small items, one at
//! a time over one connection, beside a raw quinn stream of the same
//! framed bytes, measured in the same run. A row counts whole streams (its
//! latencies are per stream); the items per second follow from them.

use std::time::Duration;

use octopii::bench::streaming::StreamingBench;
use octopii::{OctopiiRuntime, Result};

use crate::bench_rpc::RpcBenchArgs;
use crate::report::{Latencies, Table, Window, duration_arg};

/// Runs the streaming benchmark.
pub fn run(args: RpcBenchArgs) -> Result<()> {
    let duration = duration_arg(args.duration_secs)?;
    let runtime = OctopiiRuntime::new(args.threads)?;
    let bench = StreamingBench::start(&runtime, args.items, args.payload as u64)?;
    let setup = format!(
        "streams of {} items of {} bytes, one at a time over one connection, {} worker threads, loopback",
        args.items, args.payload, args.threads
    );
    let raw = runtime.block_on(streams(duration, || bench.raw_stream()))?;
    let rpc = runtime.block_on(streams(duration, || bench.rpc_stream()))?;
    let items_per_sec = |streams: &Latencies| {
        streams.count() as f64 * bench.items() as f64 / duration.as_secs_f64()
    };
    let (raw_items, rpc_items) = (items_per_sec(&raw), items_per_sec(&rpc));
    let mut table = Table::new("rpc --streaming", setup);
    table.compare(
        "server stream".into(),
        "streams",
        duration.as_secs_f64(),
        raw,
        rpc,
    );
    table.print(args.json);
    if !args.json {
        println!(
            "items per second: baseline {raw_items:.0}, octopii {rpc_items:.0}, ratio {:.2}",
            rpc_items / raw_items.max(1.0)
        );
    }
    runtime.block_on(bench.shutdown());
    Ok(())
}

/// Runs `stream` one after another for `duration`, timing each.
async fn streams<F, Fut>(duration: Duration, stream: F) -> Result<Latencies>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let window = Window::new(duration);
    let mut latencies = Latencies::default();
    while let Some(began) = window.begin() {
        stream().await?;
        window.record(&mut latencies, began);
    }
    Ok(latencies)
}

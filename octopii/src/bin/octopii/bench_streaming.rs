//! `octopii bench rpc --streaming`: server streams of small items, one at
//! a time over one connection, beside a raw quinn stream of the same
//! framed bytes, measured in the same run. A row counts whole streams (its
//! latencies are per stream); the items per second follow from them.

use std::time::Duration;

use octopii::OctopiiRuntime;
use octopii::bench::streaming::{Payload, StreamingBench};

use crate::Result;
use crate::bench_rpc::RpcBenchArgs;
use crate::report::{Latencies, Table, Window, duration_arg};

/// Runs the streaming benchmark: a row of 16-byte struct items, and a
/// row of log lines with `--payload`-byte texts.
pub fn run(args: RpcBenchArgs) -> Result<()> {
    let duration = duration_arg(args.duration_secs)?;
    let runtime = OctopiiRuntime::new(args.threads)?;
    let setup = format!(
        "streams of {} items, one at a time over one connection, {} worker threads, loopback",
        args.items, args.threads
    );
    let mut table = Table::new("rpc --streaming", setup);
    let mut items_per_sec = Vec::new();
    let cases = [
        ("16-byte struct".to_string(), Payload::Ticks),
        (
            format!("{}-byte line", args.payload),
            Payload::Lines(args.payload as u64),
        ),
    ];
    for (case, payload) in cases {
        let bench = StreamingBench::start(&runtime, args.items, payload)?;
        let raw = runtime.block_on(streams(duration, || bench.raw_stream()))?;
        let rpc = runtime.block_on(streams(duration, || bench.rpc_stream()))?;
        let rate = |streams: &Latencies| {
            streams.count() as f64 * args.items as f64 / duration.as_secs_f64()
        };
        items_per_sec.push((case.clone(), rate(&raw), rate(&rpc)));
        table.compare(case, "streams", duration.as_secs_f64(), raw, rpc);
        runtime.block_on(bench.shutdown());
    }
    table.print(args.json);
    if !args.json {
        for (case, raw, rpc) in items_per_sec {
            println!(
                "{case}: items per second: baseline {raw:.0}, octopii {rpc:.0}, ratio {:.2}",
                rpc / raw.max(1.0)
            );
        }
    }
    Ok(())
}

/// Runs `stream` one after another for `duration`, timing each.
async fn streams<F, Fut>(duration: Duration, stream: F) -> Result<Latencies>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = octopii::Result<()>>,
{
    let window = Window::new(duration);
    let mut latencies = Latencies::default();
    while let Some(began) = window.begin() {
        stream().await?;
        window.record(&mut latencies, began);
    }
    Ok(latencies)
}

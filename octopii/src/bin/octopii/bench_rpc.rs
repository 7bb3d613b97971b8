//! `octopii bench rpc`: small unary calls per second and their latency over
//! one connection, beside a same-run baseline: a raw quinn echo of the same
//! bytes on reused bidirectional streams, with no Octopii layer on the path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use octopii::transport::tls::ClusterCa;
use octopii::transport::{InboundHandler, PeerConnection};
use octopii::{Config, OctopiiError, OctopiiNode, OctopiiRuntime, Result};

use crate::report::{Latencies, Table};

/// Arguments of `octopii bench rpc`.
#[derive(Debug, clap::Args)]
pub struct RpcBenchArgs {
    /// Seconds each measurement runs.
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
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The measured service.
#[octopii::service]
pub trait Bench {
    /// Returns its argument.
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8>;
}

struct Echo;

impl Bench for Echo {
    async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// The baseline server: reads a request of a known size, writes a reply of
/// a known size, on the same stream, until the client finishes it.
struct RawEcho {
    request: usize,
    reply: Arc<Vec<u8>>,
}

impl InboundHandler for RawEcho {
    fn handle_stream(
        &self,
        _conn: PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let (mut request, reply) = (vec![0; self.request], self.reply.clone());
        Box::pin(async move {
            while recv.read_exact(&mut request).await.is_ok() {
                if send.write_all(&reply).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// Runs the RPC benchmark.
pub fn run(args: RpcBenchArgs) -> Result<()> {
    let duration = crate::report::duration_arg(args.duration_secs)?;
    let runtime = OctopiiRuntime::new(args.threads)?;
    let ca = ClusterCa::generate()?;
    let config = |name: &str| -> Result<Config> {
        let mut config = Config::builder()
            .bind_addr(([127, 0, 0, 1], 0).into())
            .credentials(ca.issue_node(name)?)
            .build()?;
        // Room for the largest concurrency measured.
        let most = args.concurrency.iter().copied().max().unwrap_or(1) as u32;
        config.transport.max_concurrent_bidi_streams = most.max(1024);
        config.rpc.max_concurrent_calls = config.rpc.max_concurrent_calls.max(most as usize);
        config.rpc.max_idle_streams_per_peer = most as usize;
        Ok(config)
    };

    // The baseline moves exactly the bytes an Octopii call moves.
    let payload = vec![7u8; args.payload];
    let (request, reply) = wire_sizes(&payload)?;
    let raw_server = OctopiiNode::with_handler(
        config("raw-server")?,
        &runtime,
        Arc::new(RawEcho {
            request,
            reply: Arc::new(vec![0; reply]),
        }),
    )?;
    let rpc_server = OctopiiNode::new(config("rpc-server")?, &runtime)?;
    rpc_server.serve(BenchServer::new(Echo))?;
    let client = OctopiiNode::new(config("client")?, &runtime)?;

    let mut table = Table::new(
        "rpc",
        format!("{}-byte echo, {} worker threads, loopback", args.payload, args.threads),
    );
    for &callers in &args.concurrency {
        let raw = runtime.block_on(raw_calls(&client, &raw_server, callers, request, reply, duration))?;
        let rpc = runtime.block_on(rpc_calls(&client, &rpc_server, callers, &payload, duration))?;
        let label = format!("{callers} callers");
        table.compare(label, "calls", duration.as_secs_f64(), raw, rpc);
    }
    table.print(args.json);
    runtime.block_on(async {
        client.shutdown().await;
        raw_server.shutdown().await;
        rpc_server.shutdown().await;
    });
    Ok(())
}

/// Request and response bytes on the wire for one `echo(payload)` call.
fn wire_sizes(payload: &[u8]) -> Result<(usize, usize)> {
    let header = octopii::rpc::frame::RequestHeader {
        service: BenchClient::SERVICE_NAME.into(),
        method: "echo".into(),
        timeout_micros: None,
        metadata: Vec::new().into(),
    };
    let mut request = Vec::new();
    octopii::rpc::frame::put_encoded(&mut request, &header)?;
    octopii::rpc::frame::put_encoded(&mut request, &(payload,))?;
    let value = octopii::rpc::codec::encode(&payload)?;
    Ok((request.len(), octopii::rpc::frame::response(&Ok(value)).len()))
}

/// Runs `callers` loops of `call` for `duration` (after a short warm-up)
/// and gathers every call's latency.
async fn drive<F, Fut>(callers: usize, call: F) -> Result<Latencies>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Latencies>> + Send + 'static,
{
    let tasks: Vec<_> = (0..callers).map(|i| tokio::spawn(call(i))).collect();
    let mut all = Latencies::default();
    for task in tasks {
        let part = task
            .await
            .map_err(|e| OctopiiError::Transport(format!("benchmark task failed: {e}")))??;
        all.merge(part);
    }
    Ok(all)
}

/// When a caller stops: warm up for a tenth of the run, then measure.
fn window(duration: Duration) -> (Instant, Instant) {
    let start = Instant::now() + duration / 10;
    (start, start + duration)
}

async fn raw_calls(
    client: &OctopiiNode,
    server: &OctopiiNode,
    callers: usize,
    request: usize,
    reply: usize,
    duration: Duration,
) -> Result<Latencies> {
    let conn = client.connect(server.local_addr()).await?;
    let (start, end) = window(duration);
    drive(callers, move |_| {
        let conn = conn.clone();
        async move {
            let io = |e: &dyn std::fmt::Display| OctopiiError::Transport(e.to_string());
            let (mut send, mut recv) = conn.open_bi().await?;
            let (out, mut back) = (vec![1u8; request], vec![0u8; reply]);
            let mut latencies = Latencies::default();
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                send.write_all(&out).await.map_err(|e| io(&e))?;
                recv.read_exact(&mut back).await.map_err(|e| io(&e))?;
                if began >= start {
                    latencies.record(began.elapsed());
                }
            }
            let _ = send.finish();
            Ok(latencies)
        }
    })
    .await
}

async fn rpc_calls(
    client: &OctopiiNode,
    server: &OctopiiNode,
    callers: usize,
    payload: &[u8],
    duration: Duration,
) -> Result<Latencies> {
    let bench = BenchClient::new(client, server.local_addr());
    let (start, end) = window(duration);
    drive(callers, move |_| {
        let (bench, payload) = (bench.clone(), payload.to_vec());
        async move {
            let mut latencies = Latencies::default();
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let back = bench
                    .echo(payload.clone())
                    .await
                    .map_err(|e| OctopiiError::Transport(e.to_string()))?;
                if back.len() != payload.len() {
                    return Err(OctopiiError::Transport("echo returned other bytes".into()));
                }
                if began >= start {
                    latencies.record(began.elapsed());
                }
            }
            Ok(latencies)
        }
    })
    .await
}

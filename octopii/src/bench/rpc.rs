//! Small unary calls: an Octopii `echo` call beside a raw quinn echo of the
//! same bytes on a reused bidirectional stream, with no Octopii layer on the
//! raw path (the fastest raw pattern: a stream per call is about 3× slower).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::codec;
use crate::rpc::TraceContext;
use crate::rpc::frame;
use crate::rpc::observe::{CallMetrics, Observed};
use crate::transport::tls::ClusterCa;
use crate::transport::{InboundHandler, PeerConnection};
use crate::{Config, OctopiiError, OctopiiNode, OctopiiRuntime, Result};

/// The measured service.
#[crate::service]
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

/// The baseline server: reads a request of a known size and writes a reply
/// of a known size, on the same stream, until the client finishes it.
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

/// A client node, an Octopii server and a raw echo server on loopback.
#[derive(Debug)]
pub struct RpcBench {
    client: OctopiiNode,
    raw_server: OctopiiNode,
    rpc_server: OctopiiNode,
    payload: Vec<u8>,
    request_len: usize,
    reply_len: usize,
}

impl RpcBench {
    /// Starts the three nodes on `runtime`, sized for `max_callers`
    /// concurrent callers echoing `payload` bytes.
    pub fn start(runtime: &OctopiiRuntime, payload: usize, max_callers: usize) -> Result<Self> {
        let ca = ClusterCa::generate()?;
        let config = |name: &str| -> Result<Config> {
            let mut config = Config::builder()
                .bind_addr(([127, 0, 0, 1], 0).into())
                .credentials(ca.issue_node(name, 1)?)
                .build()?;
            // Every baseline caller holds a stream of its own, and quinn
            // announces the credit of closed streams only once an eighth of
            // the limit is free: leave that much headroom over the callers.
            let streams = u32::try_from(max_callers + max_callers / 8 + 8).unwrap_or(u32::MAX);
            config.transport.max_concurrent_bidi_streams =
                config.transport.max_concurrent_bidi_streams.max(streams);
            config.rpc.max_concurrent_calls = config.rpc.max_concurrent_calls.max(max_callers);
            // All callers are one peer.
            config.rpc.max_concurrent_calls_per_peer =
                config.rpc.max_concurrent_calls_per_peer.max(max_callers);
            config.rpc.max_idle_streams_per_peer = max_callers;
            Ok(config)
        };
        // The baseline moves exactly the bytes an Octopii call moves.
        let payload = vec![7u8; payload];
        let (request_len, reply_len) = wire_sizes(&payload)?;
        let raw = RawEcho {
            request: request_len,
            reply: Arc::new(vec![0; reply_len]),
        };
        let raw_server = OctopiiNode::with_handler(config("raw-server")?, runtime, Arc::new(raw))?;
        let rpc_server = OctopiiNode::new(config("rpc-server")?, runtime)?;
        rpc_server.serve(BenchServer::new(Echo))?;
        let client = OctopiiNode::new(config("client")?, runtime)?;
        Ok(RpcBench {
            client,
            raw_server,
            rpc_server,
            payload,
            request_len,
            reply_len,
        })
    }

    /// A baseline caller with a stream of its own.
    pub async fn raw_caller(&self) -> Result<RawCaller> {
        let conn = self.client.connect(self.raw_server.local_addr()).await?;
        let (send, recv) = conn.open_bi().await?;
        Ok(RawCaller {
            send,
            recv,
            request: vec![1; self.request_len],
            reply: vec![0; self.reply_len],
        })
    }

    /// An Octopii caller (all share the node's pooled streams).
    pub fn rpc_caller(&self) -> RpcCaller {
        RpcCaller {
            client: BenchClient::new(&self.client, self.rpc_server.local_addr()),
            payload: self.payload.clone(),
        }
    }

    /// Stops the three nodes.
    pub async fn shutdown(&self) {
        for node in [&self.client, &self.raw_server, &self.rpc_server] {
            node.shutdown().await;
        }
    }
}

/// What observing one call costs, on both sides, with whatever `tracing`
/// subscriber and metrics recorder are installed (none in the benchmarks):
/// the caller's trace ids and span, the server's, and the two metrics each
/// side records. Compared with a whole call in the same run, it is the
/// share of a round trip that observation takes.
#[derive(Debug)]
pub struct ObserveOneCall {
    peer: crate::transport::PeerInfo,
    client: CallMetrics,
    server: CallMetrics,
}

impl Default for ObserveOneCall {
    fn default() -> Self {
        ObserveOneCall {
            peer: crate::transport::PeerInfo {
                addr: ([127, 0, 0, 1], 1).into(),
                identity: "client".into(),
                role: crate::identity::Role::Node { id: 1 },
                verified: true,
            },
            client: CallMetrics::client(),
            server: CallMetrics::server(),
        }
    }
}

impl ObserveOneCall {
    /// Observes one call of `Bench.echo`, as the client and the server do.
    pub fn observe(&self) {
        let trace = TraceContext::current().map_or_else(TraceContext::new_root, |t| t.child());
        let (service, method) = (BenchClient::SERVICE_NAME, "echo");
        let client = Observed::client(&self.client, service, method, self.peer.addr, &trace);
        let served = trace.child();
        let parent = Some(trace.span_id());
        let server = Observed::server(
            &self.server,
            (service, method),
            None,
            &self.peer,
            &served,
            parent,
        );
        server.finish(None);
        client.finish(None);
    }
}

/// Request and response bytes on the wire for one `echo(payload)` call.
fn wire_sizes(payload: &[u8]) -> Result<(usize, usize)> {
    let header = frame::RequestHeader {
        service: BenchClient::SERVICE_NAME.into(),
        method: "echo".into(),
        timeout_micros: None,
        metadata: Vec::new().into(),
        owns_stream: false,
        // A generated client sends both.
        trace: Some(TraceContext::new_root()),
        signature: Some(0),
    };
    let mut request = Vec::new();
    frame::put_encoded(&mut request, &header)?;
    frame::put_encoded(&mut request, &(payload,))?;
    let reply = frame::response(&Ok(codec::encode(&payload)?));
    Ok((request.len(), reply.len()))
}

/// One baseline caller: writes the request bytes, reads the reply bytes.
#[derive(Debug)]
pub struct RawCaller {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl RawCaller {
    /// One round trip.
    pub async fn call(&mut self) -> Result<()> {
        self.send
            .write_all(&self.request)
            .await
            .map_err(std::io::Error::from)?;
        self.recv
            .read_exact(&mut self.reply)
            .await
            .map_err(|e| match e {
                quinn::ReadExactError::ReadError(e) => std::io::Error::from(e).into(),
                quinn::ReadExactError::FinishedEarly(read) => mismatch(format!(
                    "the echo ended after {read} of {} bytes",
                    self.reply.len()
                )),
            })
    }
}

/// One Octopii caller.
#[derive(Debug, Clone)]
pub struct RpcCaller {
    client: BenchClient,
    payload: Vec<u8>,
}

impl RpcCaller {
    /// One `echo` call; checks the reply.
    pub async fn call(&self) -> Result<()> {
        let back = self.client.echo(self.payload.clone()).await?;
        if back != self.payload {
            return Err(mismatch("echo returned other bytes".into()));
        }
        Ok(())
    }
}

/// A reply other than the benchmark expects.
fn mismatch(what: String) -> OctopiiError {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what).into()
}

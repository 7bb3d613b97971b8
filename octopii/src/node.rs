//! [`OctopiiNode`]: one member of an Octopii cluster.
//!
//! A node owns a QUIC endpoint that both listens and dials, runs its accept
//! loop on the [`OctopiiRuntime`] it was started on, and serves the RPC
//! services added with [`OctopiiNode::serve`]. Clients made from a node share
//! its pooled connections and streams.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chunk::{
    self, ChunkInbox, ChunkMetrics, ChunkService, ChunkSource, TransferOptions, TransferResult,
};
use crate::health::HealthState;
use crate::rpc::{Connect, Router, RpcStats, ServeError, Service, StreamPool};
use crate::transport::{InboundHandler, PeerConnection, Transport, TransportStats};
use crate::{Config, OctopiiError, OctopiiRuntime, Result};

/// How long [`OctopiiNode::shutdown`] waits for peers to acknowledge the close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a drained node waits, beyond a few round trips, for its last
/// replies to arrive before it closes its connections.
const DRAIN_LINGER: Duration = Duration::from_millis(100);

/// A running node: endpoint, accept loop and connection pool.
///
/// ```
/// use octopii::{Config, OctopiiNode, OctopiiRuntime};
/// use octopii::ClusterCa;
///
/// let runtime = OctopiiRuntime::new(2).unwrap();
/// let ca = ClusterCa::generate().unwrap();
/// let config = |name: &str| Config::builder()
///     .bind_addr("127.0.0.1:0".parse().unwrap())
///     .credentials(ca.issue_node(name, 1).unwrap())
///     .build()
///     .unwrap();
/// let a = OctopiiNode::new(config("a"), &runtime).unwrap();
/// let b = OctopiiNode::new(config("b"), &runtime).unwrap();
///
/// let conn = runtime.block_on(a.connect(b.local_addr())).unwrap();
/// assert_eq!(conn.peer().identity, "b");
/// runtime.block_on(async { a.shutdown().await; b.shutdown().await });
/// ```
#[derive(Debug, Clone)]
pub struct OctopiiNode {
    inner: Arc<NodeInner>,
}

#[derive(Debug)]
struct NodeInner {
    config: Config,
    local_addr: SocketAddr,
    transport: Arc<Transport>,
    streams: Arc<StreamPool>,
    /// `None` for a node started with a raw [`InboundHandler`].
    router: Option<Arc<Router>>,
    /// What the built-in `Health` service answers.
    health: HealthState,
    /// The sending side of bulk transfer's metrics.
    chunk_metrics: ChunkMetrics,
    handle: Handle,
    accept_loop: Mutex<Option<JoinHandle<()>>>,
    /// Set by `shutdown`, and dropped with the node: either ends the tasks
    /// started with `run`.
    stop: watch::Sender<bool>,
}

impl Drop for NodeInner {
    /// The last handle is gone: stop accepting, close the connections
    /// (telling peers) and free the port, without blocking the dropper.
    fn drop(&mut self) {
        let accept_loop = self
            .accept_loop
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = accept_loop {
            task.abort();
            self.transport.close_in_background(CLOSE_TIMEOUT);
            tracing::info!(node = self.config.node_id, "node dropped, stopping");
        }
    }
}

impl OctopiiNode {
    /// Starts a node on `runtime`, serving the services added later with
    /// [`serve`](Self::serve).
    ///
    /// With [`Config::metrics_addr`] set, the process serves its metrics
    /// there from now on (see [`metrics`](crate::metrics)).
    pub fn new(config: Config, runtime: &OctopiiRuntime) -> Result<Self> {
        crate::metrics::serve_configured(&config)?;
        let transport = Transport::bind(&config, runtime.handle())?;
        Self::serving(config, runtime, transport)
    }

    /// As [`new`](Self::new), sending and receiving its datagrams through
    /// `socket` instead of a UDP socket bound on `config.bind_addr`: the
    /// seam a simulated network plugs into (with
    /// [`OctopiiRuntime::from_handle`] for simulated time).
    pub fn with_socket(
        config: Config,
        runtime: &OctopiiRuntime,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
    ) -> Result<Self> {
        crate::metrics::serve_configured(&config)?;
        let transport = Transport::with_socket(&config, runtime.handle(), socket)?;
        Self::serving(config, runtime, transport)
    }

    /// A node whose router serves its services over `transport`.
    fn serving(config: Config, runtime: &OctopiiRuntime, transport: Transport) -> Result<Self> {
        let router = Arc::new(Router::new(&config.rpc, &config.transport));
        let node = Self::start(
            config,
            runtime,
            transport,
            Arc::new(router.clone()),
            Some(router),
        )?;
        node.serve(node.inner.health.server())?;
        Ok(node)
    }

    /// Starts a node whose inbound streams all go to `handler` instead of
    /// RPC services: the low-level escape hatch (custom protocols, tests).
    pub fn with_handler(
        config: Config,
        runtime: &OctopiiRuntime,
        handler: Arc<dyn InboundHandler>,
    ) -> Result<Self> {
        crate::metrics::serve_configured(&config)?;
        let transport = Transport::bind(&config, runtime.handle())?;
        Self::start(config, runtime, transport, handler, None)
    }

    fn start(
        config: Config,
        runtime: &OctopiiRuntime,
        transport: Transport,
        handler: Arc<dyn InboundHandler>,
        router: Option<Arc<Router>>,
    ) -> Result<Self> {
        let handle = runtime.handle().clone();
        let transport = Arc::new(transport);
        let local_addr = transport.local_addr()?;
        let streams = Arc::new(StreamPool::new(
            transport.clone(),
            config.rpc.max_idle_streams_per_peer,
        ));
        let accept_loop = handle.spawn(transport.clone().run_accept_loop(handler));
        tracing::info!(node = config.node_id, %local_addr, "node started");
        let chunk_metrics = ChunkMetrics::new(Some(config.node_id));
        Ok(OctopiiNode {
            inner: Arc::new(NodeInner {
                config,
                local_addr,
                transport,
                streams,
                router,
                health: HealthState::new(),
                chunk_metrics,
                handle,
                accept_loop: Mutex::new(Some(accept_loop)),
                stop: watch::channel(false).0,
            }),
        })
    }

    /// Counters of the RPC server's budgets: bytes held in incomplete
    /// frames, refusals, timeouts. All zero for a node started
    /// [`with_handler`](Self::with_handler).
    pub fn rpc_stats(&self) -> RpcStats {
        self.inner
            .router
            .as_deref()
            .map(Router::stats)
            .unwrap_or_default()
    }

    /// Serves `service` (a generated `XServer`) to every peer.
    ///
    /// Fails if a service of the same name is already served, or if the node
    /// was started [`with_handler`](Self::with_handler).
    pub fn serve(&self, service: impl Service) -> Result<()> {
        let router = self
            .inner
            .router
            .as_deref()
            .ok_or(ServeError::CustomHandler)?;
        let name = service.name();
        router.add(Arc::new(service))?;
        self.inner.health.set(name, true);
        Ok(())
    }

    /// Tells the built-in [`Health`](crate::health) service whether
    /// `service` serves (`""`: the node as a whole, whose `false` makes
    /// every service answer `NotServing`). Calls are still served either
    /// way: this is what the node tells probes, so that a load balancer
    /// moves traffic away before the node stops.
    pub fn set_serving(&self, service: &str, serving: bool) {
        self.inner.health.set(service, serving);
    }

    /// Serves the built-in [`ChunkService`] under the node's
    /// [`chunk`](crate::config::ChunkConfig) configuration (files land in
    /// `chunk.recv_dir`, created if missing) and returns the inbox where
    /// received transfers are announced. Nodes do not receive transfers
    /// until this is called; to watch progress, build the service with
    /// [`ChunkService::builder`] and [`serve`](Self::serve) it instead.
    pub fn serve_chunks(&self) -> Result<ChunkInbox> {
        let (service, inbox) = ChunkService::builder(&self.inner.config.chunk)
            .node_id(self.id())
            .build()?;
        self.serve(service)?;
        Ok(inbox)
    }

    /// Sends `source` to every peer in `peers` at once, reading it once,
    /// and returns one [`TransferResult`] per peer, in the same order. A
    /// peer that fails, is unreachable or stalls (see
    /// [`TransferOptions::stall_timeout`]) fails alone.
    ///
    /// ```no_run
    /// # async fn send(node: octopii::OctopiiNode, peers: Vec<std::net::SocketAddr>) {
    /// use octopii::chunk::{ChunkSource, TransferOptions};
    /// let results = node
    ///     .transfer_chunk_to_peers(
    ///         ChunkSource::File("backup.tar".into()),
    ///         &peers,
    ///         TransferOptions::to_file("backup.tar"),
    ///     )
    ///     .await;
    /// for r in results {
    ///     match r.outcome {
    ///         Ok(()) => println!("{}: verified and in place", r.peer),
    ///         Err(e) => println!("{}: {e}", r.peer),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn transfer_chunk_to_peers(
        &self,
        source: ChunkSource,
        peers: &[SocketAddr],
        options: TransferOptions,
    ) -> Vec<TransferResult> {
        let streams = self.inner.streams.clone();
        let targets = peers.to_vec();
        // Runs on the node's runtime; dropping this future abandons it
        // (a JoinSet aborts its task when dropped).
        let mut run = tokio::task::JoinSet::new();
        run.spawn_on(
            async move { chunk::transfer(streams, source, &targets, options).await },
            &self.inner.handle,
        );
        let results = match run.join_next().await {
            Some(Ok(results)) => results,
            other => {
                let reason = match other {
                    Some(Err(e)) => format!("transfer task failed: {e}"),
                    _ => "transfer task vanished".to_owned(),
                };
                peers
                    .iter()
                    .map(|&peer| {
                        let error = chunk::TransferError::Connection(reason.clone());
                        TransferResult::failed(peer, error, Duration::ZERO)
                    })
                    .collect()
            }
        };
        for result in &results {
            self.inner.chunk_metrics.sent(result);
        }
        results
    }

    /// Sends `source` to one peer; an error unless it was delivered and
    /// verified.
    pub async fn transfer_chunk(
        &self,
        source: ChunkSource,
        peer: SocketAddr,
        options: TransferOptions,
    ) -> Result<TransferResult> {
        let result = self
            .transfer_chunk_to_peers(source, &[peer], options)
            .await
            .pop()
            .ok_or_else(|| chunk::TransferError::Connection("no result for the peer".into()))?;
        match &result.outcome {
            Err(error) => Err(error.clone().into()),
            Ok(()) => Ok(result),
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.config.node_id
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The address the node listens on (and dials from).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The node's transport, for the layers built on it.
    pub fn transport(&self) -> &Arc<Transport> {
        &self.inner.transport
    }

    /// The handle of the runtime the node runs on.
    pub fn runtime_handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// The pooled, mutually authenticated connection to the node at `addr`.
    ///
    /// The dial runs on the node's runtime, whatever runtime awaits it.
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerConnection> {
        let transport = self.inner.transport.clone();
        self.run(async move { Ok(transport.connect(addr).await?) })
            .await
    }

    /// Runs `future` on the node's runtime and waits for its output.
    ///
    /// The task belongs to the node: [`shutdown`](Self::shutdown), or the
    /// drop of the node's last handle, drops `future` where it stands (its
    /// caller, if still waiting, gets [`OctopiiError::Shutdown`]). A caller
    /// that stops waiting leaves the task running until then.
    pub async fn run<F, T>(&self, future: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut stop = self.inner.stop.subscribe();
        let task = self.inner.handle.spawn(async move {
            tokio::select! {
                biased;
                output = future => Some(output),
                // Set, or the sender dropped with the node: stop either way.
                _ = stop.wait_for(|stopped| *stopped) => None,
            }
        });
        match task.await {
            Ok(Some(output)) => output,
            Ok(None) => Err(OctopiiError::Shutdown("the node stopped".into())),
            Err(e) => Err(OctopiiError::Shutdown(format!(
                "node task did not finish: {e}"
            ))),
        }
    }

    /// Transport counters (pool, accepted and failed handshakes).
    pub fn stats(&self) -> TransportStats {
        self.inner.transport.stats()
    }

    /// Takes the node out of service without cutting a call short: its
    /// `Health` says `NotServing`, it accepts no new connection and
    /// answers new calls `Unavailable` ("draining"), so callers move to
    /// other nodes; the calls and transfers already running go on. Once
    /// they have finished, or `timeout` has passed, the node
    /// [shuts down](Self::shutdown). Whether every running call finished
    /// in time.
    ///
    /// A raft member drains with
    /// [`RaftNode::drain`](crate::raft::RaftNode::drain), which hands a
    /// leader's leadership on first.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let give_up = tokio::time::Instant::now() + timeout;
        self.set_serving("", false);
        self.inner.transport.refuse_new_connections();
        self.inner.transport.go_away();
        let finished = match &self.inner.router {
            Some(router) => tokio::time::timeout_at(give_up, router.drain())
                .await
                .is_ok(),
            None => true,
        };
        // A reply written as the last call ended is still on its way, and
        // closing the connection would discard it: give it a few round
        // trips to arrive.
        let rtt = self
            .inner
            .transport
            .connections()
            .iter()
            .map(|conn| conn.quinn().rtt())
            .max()
            .unwrap_or_default();
        let linger = DRAIN_LINGER + rtt * 4;
        tokio::time::sleep_until(give_up.min(tokio::time::Instant::now() + linger)).await;
        tracing::info!(node = self.id(), finished, "node drained");
        self.shutdown().await;
        finished
    }

    /// Stops accepting, ends the tasks started with [`run`](Self::run),
    /// closes every connection and waits briefly for peers to acknowledge,
    /// then drops the node's services (releasing what they hold, such as a
    /// chunk receive directory's lock, for a node restarted in-process).
    /// Dropping the last handle of a node does the same without waiting.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let accept_loop = self
            .inner
            .accept_loop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = accept_loop {
            task.abort();
        }
        self.inner.transport.close(CLOSE_TIMEOUT).await;
        if let Some(router) = &self.inner.router {
            router.clear();
        }
        tracing::info!(node = self.id(), "node stopped");
    }
}

impl Connect for OctopiiNode {
    fn stream_pool(&self) -> Arc<StreamPool> {
        self.inner.streams.clone()
    }
}

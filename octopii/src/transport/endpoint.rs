//! The node's QUIC endpoint: listening, dialling and the accept loop.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, ServerConfig, TransportConfig, VarInt};

use tokio::runtime::Handle;

use super::log_limit::LogLimit;
use super::metrics::TransportMetrics;
use super::pool::{ConnectionPool, PoolStats};
use super::quinn_runtime::PinnedRuntime;
use super::redial::Redial;
use super::restart_keys::endpoint_config;
use super::{PeerConnection, PeerInfo, TransportError, tls};
use crate::config::{Config, TransportConfig as Limits};
use crate::{OctopiiError, Result};

/// What a node does with each inbound bidirectional stream.
///
/// The RPC layer implements it; the accept loop calls it once per stream,
/// on its own task, so one slow stream never holds up another.
pub trait InboundHandler: Send + Sync + 'static {
    /// Serves one stream opened by `conn`'s peer.
    fn handle_stream(
        &self,
        conn: PeerConnection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Counters of a [`Transport`], for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    /// The outgoing connection pool's counters.
    pub pool: PoolStats,
    /// Inbound connections whose handshake succeeded.
    pub connections_accepted: u64,
    /// Inbound connections refused or failed during the handshake.
    pub handshakes_failed: u64,
    /// Inbound handshakes in progress now.
    pub handshakes_in_progress: usize,
    /// Connection attempts refused because
    /// `transport.max_concurrent_handshakes` were in progress.
    pub handshakes_refused: u64,
    /// Connection attempts answered with a QUIC Retry (address validation)
    /// because `transport.retry_handshakes_above` were in progress.
    pub handshakes_retried: u64,
}

/// A node's QUIC endpoint with its outgoing connection pool.
#[derive(Debug)]
pub struct Transport {
    endpoint: Endpoint,
    pool: ConnectionPool,
    limits: Limits,
    verified: bool,
    accepted: AtomicU64,
    failed: AtomicU64,
    in_progress: Arc<AtomicUsize>,
    refused: AtomicU64,
    retried: AtomicU64,
    failure_logs: LogLimit,
    metrics: TransportMetrics,
    handle: Handle,
    /// Bound by the transport itself, so its port is released at close;
    /// a socket the caller gave is the caller's.
    owns_socket: bool,
    /// Draws the jitter of retry pauses: from `transport.rng_seed` when
    /// it is set, so a simulation replays, else from the operating system.
    jitter: std::sync::Mutex<rand::rngs::StdRng>,
    /// Connections peers dialled, while they are served: the peers a
    /// draining node tells to go away.
    inbound: InboundList,
    /// Set by [`refuse_new_connections`](Self::refuse_new_connections).
    refusing: AtomicBool,
    /// Pauses between dials of a peer that could not be reached.
    redial: Redial,
}

impl Transport {
    /// Binds the endpoint on `config.bind_addr` with the configured TLS; all
    /// of quinn's tasks run on the runtime of `handle`.
    ///
    /// Unreadable certificates or an unusable address fail here, with a
    /// message saying which. Unlike the other transport operations this
    /// returns the crate's [`OctopiiError`]: it validates the whole
    /// [`Config`] ([`OctopiiError::Config`]) before the transport's own
    /// work ([`OctopiiError::Transport`]).
    pub fn bind(config: &Config, handle: &Handle) -> Result<Self> {
        Self::start(config, handle, None)
    }

    /// As [`bind`](Self::bind), over `socket` instead of a UDP socket of
    /// the operating system's: the seam a simulated network plugs into.
    /// `config.bind_addr` is not bound; the socket's own address is the
    /// node's.
    pub fn with_socket(
        config: &Config,
        handle: &Handle,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
    ) -> Result<Self> {
        Self::start(config, handle, Some(socket))
    }

    fn start(
        config: &Config,
        handle: &Handle,
        socket: Option<Arc<dyn quinn::AsyncUdpSocket>>,
    ) -> Result<Self> {
        config.validate()?;
        let tls_config = config.tls.as_ref().ok_or(OctopiiError::Config {
            field: "tls",
            message: "no certificates configured".into(),
        })?;
        let insecure = tls_config.insecure_accept_any_certificate;
        let creds = if insecure && tls_config.credentials.is_none() && tls_config.cert.is_none() {
            // Insecure mode may run without files: an ephemeral identity.
            tls::ClusterCa::generate()?.issue_node("insecure-node", config.node_id)?
        } else {
            tls_config.load_credentials()?
        };
        if insecure {
            tracing::warn!("TLS peer verification is OFF (insecure_accept_any_certificate)");
        }
        // A node that dialled lets the peer open one control stream (a
        // go-away when it drains); a node that was dialled allows none.
        let accepted = Arc::new(transport_config(&config.transport, 0)?);
        let dialled = Arc::new(transport_config(&config.transport, 1)?);

        let server_tls = QuicServerConfig::try_from(tls::server_config(&creds, insecure)?)
            .map_err(TransportError::from)?;
        let mut server = ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(accepted);

        let client_tls = QuicClientConfig::try_from(tls::client_config(&creds, insecure)?)
            .map_err(TransportError::from)?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
        client.transport_config(dialled);

        let runtime = Arc::new(PinnedRuntime(handle.clone()));
        // A restarted node resets its peers' stale connections: see `restart_keys`.
        let mut endpoint_config = endpoint_config(&creds)?;
        endpoint_config.rng_seed(config.transport.rng_seed.map(rng_seed));
        let owns_socket = socket.is_none();
        let socket = match socket {
            Some(socket) => socket,
            None => {
                let socket = std::net::UdpSocket::bind(config.bind_addr).map_err(|e| {
                    OctopiiError::Config {
                        field: "bind_addr",
                        message: format!("cannot bind {}: {e}", config.bind_addr),
                    }
                })?;
                quinn::Runtime::wrap_udp_socket(&*runtime, socket)
                    .map_err(TransportError::Socket)?
            }
        };
        let mut endpoint =
            Endpoint::new_with_abstract_socket(endpoint_config, Some(server), socket, runtime)
                .map_err(TransportError::Socket)?;
        endpoint.set_default_client_config(client);
        Ok(Transport {
            endpoint,
            pool: ConnectionPool::new(),
            limits: config.transport.clone(),
            verified: !insecure,
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_progress: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failure_logs: LogLimit::new(config.transport.handshake_failure_logs_per_second),
            metrics: TransportMetrics::new(config.node_id),
            handle: handle.clone(),
            owns_socket,
            jitter: std::sync::Mutex::new(match config.transport.rng_seed {
                Some(seed) => rand::SeedableRng::seed_from_u64(seed ^ JITTER_SEED),
                None => rand::SeedableRng::from_entropy(),
            }),
            inbound: Arc::default(),
            refusing: AtomicBool::new(false),
            redial: {
                let (initial, max) = config.transport.redial_backoff();
                Redial::new(initial, max)
            },
        })
    }

    /// A fraction in `[0, 1)` for the jitter of a retry pause.
    pub(crate) fn jitter(&self) -> f64 {
        let mut rng = self.jitter.lock().unwrap_or_else(PoisonError::into_inner);
        rand::Rng::gen_range(&mut *rng, 0.0..1.0)
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint.local_addr().map_err(TransportError::Socket)
    }

    /// The transport limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The pooled connection to `addr`, dialling it if needed.
    /// A peer whose dials keep failing is dialled again only after a
    /// backoff (see `transport.redial_backoff_max_ms`); meanwhile this
    /// fails at once with [`TransportError::Backoff`].
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerConnection, TransportError> {
        self.pool
            .get(addr, || async {
                self.redial.check(addr)?;
                let conn = match self.dial(addr).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        self.redial.failed(addr, self.jitter());
                        return Err(e);
                    }
                };
                self.redial.succeeded(addr);
                self.watch_pooled(&conn);
                Ok(conn)
            })
            .await
    }

    /// A new connection to `addr`, outside the pool.
    pub async fn dial(&self, addr: SocketAddr) -> Result<PeerConnection, TransportError> {
        // Nodes are dialled by address; the name only fills the TLS field
        // (certificates are checked against the cluster CA, not a name).
        let dialled = match self.endpoint.connect(addr, "octopii-node") {
            Ok(connecting) => self.finish_handshake(connecting, "outbound").await,
            Err(source) => Err(TransportError::Connect { addr, source }),
        };
        self.metrics.outbound(dialled.is_ok());
        dialled
    }

    /// Completes a handshake within the handshake timeout and reads the
    /// peer's verified identity.
    async fn finish_handshake(
        &self,
        connecting: quinn::Connecting,
        direction: &str,
    ) -> Result<PeerConnection, TransportError> {
        let timeout = self.limits.handshake_timeout();
        let addr = connecting.remote_address();
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| TransportError::HandshakeTimeout {
                addr,
                after: timeout,
            })??;
        let conn = PeerConnection::new(connection, self.verified)?;
        log_connected(&conn, direction);
        Ok(conn)
    }

    /// Logs when a pooled connection is lost. The watcher's handle keeps
    /// the connection no longer than the pool does: until it closes.
    fn watch_pooled(&self, conn: &PeerConnection) {
        let conn = conn.clone();
        let open = self.metrics.open_connection();
        // On the node's runtime, whoever dialled: the host's is not ours.
        self.handle.spawn(async move {
            let _open = open;
            conn.read_control_streams().await;
            let reason = conn.quinn().closed().await;
            if let quinn::ConnectionError::ApplicationClosed(close) = &reason
                && close.error_code == NODE_STOPPING
            {
                // Stopped, not lost: until it answers a new dial, a peer
                // that may go elsewhere should.
                conn.mark_going_away();
            }
            log_lost(conn.peer(), &reason);
        });
    }

    /// The pooled connections, open or closing.
    pub fn connections(&self) -> Vec<PeerConnection> {
        self.pool.connections()
    }

    /// Current counters.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            pool: self.pool.stats(),
            connections_accepted: self.accepted.load(Ordering::Relaxed),
            handshakes_failed: self.failed.load(Ordering::Relaxed),
            handshakes_in_progress: self.in_progress.load(Ordering::Relaxed),
            handshakes_refused: self.refused.load(Ordering::Relaxed),
            handshakes_retried: self.retried.load(Ordering::Relaxed),
        }
    }

    /// Accepts connections until the endpoint closes, serving each inbound
    /// stream with `handler`. A failed handshake is logged (at a limited
    /// rate) and counted; it never stops the loop.
    ///
    /// Handshakes cost the node memory and TLS work before it knows who is
    /// calling, so their number is bounded: past
    /// `transport.retry_handshakes_above` in progress, a client must first
    /// prove its address with a QUIC Retry (a spoofed flood cannot), and
    /// past `transport.max_concurrent_handshakes` attempts are refused.
    pub async fn run_accept_loop(self: Arc<Self>, handler: Arc<dyn InboundHandler>) {
        while let Some(incoming) = self.endpoint.accept().await {
            if self.refusing.load(Ordering::Relaxed) {
                // CONNECTION_REFUSED at once: the dialler goes elsewhere
                // instead of waiting out its handshake timeout.
                incoming.refuse();
                continue;
            }
            // Only this loop adds to the count, so it cannot pass the cap
            // between this check and the increment.
            let in_progress = self.in_progress.load(Ordering::Relaxed);
            if in_progress >= self.limits.max_concurrent_handshakes {
                self.refused.fetch_add(1, Ordering::Relaxed);
                self.metrics.refused();
                self.log_failure(
                    incoming.remote_address(),
                    &format!("refused: {in_progress} handshakes in progress"),
                );
                incoming.refuse();
                continue;
            }
            if in_progress >= self.limits.retry_handshakes_above
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                self.retried.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = incoming.retry() {
                    e.into_incoming().ignore();
                }
                continue;
            }
            let slot = HandshakeSlot::take(&self.in_progress);
            let this = self.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let handshake = this.handshake(incoming).await;
                drop(slot);
                this.metrics.inbound(handshake.is_ok());
                match handshake {
                    Ok(conn) => {
                        this.accepted.fetch_add(1, Ordering::Relaxed);
                        let _open = this.metrics.open_connection();
                        let _served = Inbound::register(&this.inbound, &conn);
                        serve_connection(conn, handler).await;
                    }
                    Err(e) => {
                        this.failed.fetch_add(1, Ordering::Relaxed);
                        this.log_failure(remote, &e.to_string());
                    }
                }
            });
        }
    }

    /// Logs a failed inbound handshake, unless too many were logged lately.
    fn log_failure(&self, remote: SocketAddr, reason: &str) {
        if let Some(suppressed) = self.failure_logs.allow(std::time::Instant::now()) {
            if suppressed == 0 {
                tracing::warn!(%remote, "inbound handshake failed: {reason}");
            } else {
                tracing::warn!(
                    %remote,
                    suppressed,
                    "inbound handshake failed: {reason} ({suppressed} more not logged)"
                );
            }
        }
    }

    async fn handshake(&self, incoming: quinn::Incoming) -> Result<PeerConnection, TransportError> {
        let connecting = incoming.accept()?;
        self.finish_handshake(connecting, "inbound").await
    }

    /// Refuses new connections from now on, each at once with QUIC's
    /// CONNECTION_REFUSED; established ones go on.
    pub fn refuse_new_connections(&self) {
        self.refusing.store(true, Ordering::Relaxed);
    }

    /// Tells every peer that dialled this node to make no new calls on its
    /// connection (a [`GO_AWAY`](super::GO_AWAY)), in the background.
    pub fn go_away(&self) {
        let peers: Vec<PeerConnection> = self
            .inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        self.handle.spawn(async move {
            futures::future::join_all(peers.iter().map(PeerConnection::send_go_away)).await;
        });
    }

    /// Whether the peer at `addr` said it is draining, or stopped, on the
    /// last pooled connection to it (see [`ConnectionPool::going_away`]).
    pub fn going_away(&self, addr: SocketAddr) -> bool {
        self.pool.going_away(addr)
    }

    /// Closes every connection, telling peers, and waits up to `timeout`
    /// for them to acknowledge; then frees the listening port.
    pub async fn close(&self, timeout: Duration) {
        self.endpoint.close(NODE_STOPPING, b"node shutting down");
        let _ = tokio::time::timeout(timeout, self.endpoint.wait_idle()).await;
        if self.owns_socket {
            release_port(&self.endpoint);
        }
    }

    /// As [`close`](Self::close), without waiting: the wait and the release
    /// of the port run as a task on the node's runtime (for `Drop`, which
    /// cannot wait).
    pub(crate) fn close_in_background(&self, timeout: Duration) {
        self.endpoint.close(NODE_STOPPING, b"node shutting down");
        let endpoint = self.endpoint.clone();
        let owns_socket = self.owns_socket;
        // On a runtime already shut down the task is dropped unrun, and the
        // port is freed when the runtime's sockets are.
        self.handle.spawn(async move {
            let _ = tokio::time::timeout(timeout, endpoint.wait_idle()).await;
            if owns_socket {
                release_port(&endpoint);
            }
        });
    }
}

impl Drop for Transport {
    /// Connections outlive their handles only while the transport does:
    /// the pool's watchers hold them until they close.
    fn drop(&mut self) {
        self.endpoint.close(NODE_STOPPING, b"node shutting down");
    }
}

/// Frees the listening port now, not when the last handle to the endpoint
/// goes away, so a restarted node can bind it again. quinn keeps the
/// previous socket until the new one receives a packet; a second rebind
/// replaces that one, and the listening socket is closed.
fn release_port(endpoint: &Endpoint) {
    let any_port = match endpoint.local_addr() {
        Ok(SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
        _ => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    for _ in 0..2 {
        let rebound = std::net::UdpSocket::bind(any_port).and_then(|s| endpoint.rebind(s));
        if let Err(e) = rebound {
            tracing::warn!("could not release the listening port: {e}");
            return;
        }
    }
}

/// Mixed into `transport.rng_seed` for the retry jitter, so it draws
/// other numbers than quinn does.
const JITTER_SEED: u64 = 0x6A17_7E55;

/// quinn's 32-byte seed from the configured one.
fn rng_seed(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ i as u64).to_le_bytes());
    }
    bytes
}

fn log_connected(conn: &PeerConnection, direction: &str) {
    let peer = conn.peer();
    tracing::info!(peer = %peer.addr, identity = %peer.identity, direction, "peer connected");
}

/// A close by either side is news; a timeout or reset is a loss.
fn log_lost(peer: &PeerInfo, reason: &quinn::ConnectionError) {
    use quinn::ConnectionError as E;
    let (addr, identity) = (peer.addr, &peer.identity);
    match reason {
        E::LocallyClosed | E::ApplicationClosed(_) => {
            tracing::info!(peer = %addr, %identity, "peer disconnected: {reason}");
        }
        _ => tracing::warn!(peer = %addr, %identity, "peer lost: {reason}"),
    }
}

/// Application error code of the connections of a node that stops.
const NODE_STOPPING: VarInt = VarInt::from_u32(0);

/// One inbound handshake in progress, counted until dropped.
struct HandshakeSlot(Arc<AtomicUsize>);

/// The connections peers dialled, by quinn's stable id.
type InboundList = Arc<std::sync::Mutex<HashMap<usize, PeerConnection>>>;

/// An inbound connection's place in the transport's list, for as long as
/// it is served.
struct Inbound {
    list: InboundList,
    id: usize,
}

impl Inbound {
    fn register(list: &InboundList, conn: &PeerConnection) -> Self {
        let id = conn.quinn().stable_id();
        list.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, conn.clone());
        Inbound {
            list: list.clone(),
            id,
        }
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl HandshakeSlot {
    fn take(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        HandshakeSlot(count.clone())
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(conn: PeerConnection, handler: Arc<dyn InboundHandler>) {
    loop {
        match conn.quinn().accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(handler.handle_stream(conn.clone(), send, recv));
            }
            Err(e) => {
                log_lost(conn.peer(), &e);
                return;
            }
        }
    }
}

fn transport_config(limits: &Limits, control_streams: u32) -> Result<TransportConfig> {
    let idle = IdleTimeout::try_from(limits.idle_timeout()).map_err(|_| OctopiiError::Config {
        field: "transport.idle_timeout_ms",
        message: "too large for QUIC".into(),
    })?;
    let mut transport = TransportConfig::default();
    transport
        .stream_receive_window(VarInt::from_u32(limits.stream_receive_window))
        .receive_window(VarInt::from_u32(limits.receive_window))
        .send_window(limits.send_window)
        .max_concurrent_bidi_streams(VarInt::from_u32(limits.max_concurrent_bidi_streams))
        // Unidirectional streams are control streams only.
        .max_concurrent_uni_streams(VarInt::from_u32(control_streams))
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(limits.keep_alive_interval()));
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::ClusterCa;

    fn jitters(seed: Option<u64>) -> Vec<f64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let creds = ClusterCa::generate().unwrap().issue_node("n", 1).unwrap();
        let mut config = Config::builder()
            .bind_addr("127.0.0.1:0".parse().unwrap())
            .credentials(creds)
            .build()
            .unwrap();
        config.transport.rng_seed = seed;
        let _entered = runtime.enter();
        let transport = Transport::bind(&config, runtime.handle()).unwrap();
        (0..8).map(|_| transport.jitter()).collect()
    }

    #[test]
    fn a_seeded_transport_draws_the_same_retry_jitter() {
        let seeded = jitters(Some(7));
        assert_eq!(seeded, jitters(Some(7)), "the seed replays");
        assert_ne!(seeded, jitters(Some(8)));
        assert_ne!(jitters(None), jitters(None), "unseeded, from the system");
        assert!(seeded.iter().all(|j| (0.0..1.0).contains(j)));
    }
}

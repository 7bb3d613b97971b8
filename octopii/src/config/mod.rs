//! [`Config`]: everything a node needs to start, from code or a TOML file.
//!
//! Every value is checked by [`Config::validate`] (called by the builder, by
//! [`Config::from_toml_file`] and by [`OctopiiNode::new`](crate::OctopiiNode::new)),
//! and a refused value is reported with the name of its field.
//!
//! A TOML file looks like this (every key but `tls` is optional):
//!
//! ```toml
//! node_id = 1
//! bind_addr = "127.0.0.1:7001"
//! data_dir = "/var/lib/octopii/node-1"
//! worker_threads = 4
//! # Prometheus scrape endpoint (needs the `prometheus` feature)
//! metrics_addr = "127.0.0.1:9100"
//!
//! [tls]
//! ca_cert = "certs/ca.pem"
//! cert = "certs/node-1.pem"
//! key = "certs/node-1.key.pem"
//!
//! [transport]
//! max_frame_size = 16777216
//! idle_timeout_ms = 30000
//! max_concurrent_handshakes = 256
//! retry_handshakes_above = 64
//!
//! [raft]
//! tick_interval_ms = 100
//!
//! [raft.peers]
//! 2 = "127.0.0.1:7002"
//! 3 = "127.0.0.1:7003"
//! ```
//!
//! Each section has a file of its own here; [`RaftConfig`] is the `[raft]`
//! section, which [`RaftNode`](crate::raft::RaftNode) runs with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::NodeCredentials;
use crate::{OctopiiError, Result};

mod raft;

pub(crate) use raft::ENTRY_OVERHEAD;
pub use raft::RaftConfig;

/// Where a node's certificates come from, and how it judges its peers'.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the cluster CA certificate that signs every node.
    pub ca_cert: Option<PathBuf>,
    /// PEM file of this node's certificate (signed by the cluster CA).
    pub cert: Option<PathBuf>,
    /// PEM file of this node's private key.
    pub key: Option<PathBuf>,
    /// In-memory credentials (see [`ClusterCa`](crate::transport::tls::ClusterCa));
    /// when set, the three paths are ignored.
    #[serde(skip)]
    pub credentials: Option<NodeCredentials>,
    /// Accept any peer certificate without verification. Traffic stays
    /// encrypted, but anyone can connect or impersonate a node. Only for
    /// local experiments; its name says so on purpose.
    #[serde(default)]
    pub insecure_accept_any_certificate: bool,
}

impl TlsConfig {
    /// TLS from in-memory credentials, verifying peers against their CA.
    pub fn from_credentials(credentials: NodeCredentials) -> Self {
        TlsConfig {
            ca_cert: None,
            cert: None,
            key: None,
            credentials: Some(credentials),
            insecure_accept_any_certificate: false,
        }
    }

    /// TLS from PEM files made by `octopii certs`.
    pub fn from_files(
        ca_cert: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        TlsConfig {
            ca_cert: Some(ca_cert.into()),
            cert: Some(cert.into()),
            key: Some(key.into()),
            credentials: None,
            insecure_accept_any_certificate: false,
        }
    }

    /// Loads the credentials, from memory or from the PEM files.
    pub fn load_credentials(&self) -> Result<NodeCredentials> {
        if let Some(credentials) = &self.credentials {
            return Ok(credentials.clone());
        }
        let (Some(ca), Some(cert), Some(key)) = (&self.ca_cert, &self.cert, &self.key) else {
            return Err(OctopiiError::Config {
                field: "tls",
                message: "set `ca_cert`, `cert` and `key`, or in-memory credentials".into(),
            });
        };
        Ok(NodeCredentials::from_pem_files(ca, cert, key)?)
    }
}

/// QUIC transport limits and timers.
///
/// The defaults suit high-bandwidth loopback and LAN links: receive windows
/// of several MiB so one stream can fill a fast link, and many concurrent
/// streams so pooled RPC streams and transfers share a connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Largest frame (length prefix) a peer may send, in bytes.
    pub max_frame_size: u32,
    /// Per-stream receive window, in bytes.
    pub stream_receive_window: u32,
    /// Per-connection receive window, in bytes.
    pub receive_window: u32,
    /// Per-connection send window, in bytes.
    pub send_window: u64,
    /// Bidirectional streams a peer may have open at once. Credit for
    /// closed streams is announced in steps of an eighth of this limit, so
    /// a peer may briefly see up to that many fewer.
    pub max_concurrent_bidi_streams: u32,
    /// Interval of keep-alive packets, in milliseconds (below the idle timeout).
    pub keep_alive_interval_ms: u64,
    /// A connection silent this long is closed, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Time allowed for a QUIC + TLS handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Inbound handshakes in progress at once; a connection attempt beyond
    /// it is refused (QUIC `CONNECTION_REFUSED`) before any TLS work.
    pub max_concurrent_handshakes: usize,
    /// With this many inbound handshakes in progress, a client that has not
    /// yet proved it receives at its address is first sent a QUIC Retry,
    /// which costs the node no state; 0 asks every client.
    pub retry_handshakes_above: usize,
    /// Failed inbound handshakes logged per second at most; the next line
    /// logged says how many were left out.
    pub handshake_failure_logs_per_second: u32,
    /// After a failed dial of a peer, the pool dials it again no sooner
    /// than this many milliseconds later (the first pause; each failure in
    /// a row doubles it). Calls to the peer meanwhile fail at once,
    /// `Unavailable`, without being sent.
    pub redial_backoff_initial_ms: u64,
    /// The longest pause between dials of a peer that keeps failing; 0
    /// turns the backoff off.
    pub redial_backoff_max_ms: u64,
    /// Seeds the QUIC endpoint's own random choices (connection ids,
    /// tokens) and the jitter of its clients' retry pauses, so that a
    /// simulation replays; `None`, the default, draws them from the
    /// operating system. Never set it in production.
    pub rng_seed: Option<u64>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        const MIB: u32 = 1024 * 1024;
        TransportConfig {
            max_frame_size: 16 * MIB,
            stream_receive_window: 8 * MIB,
            receive_window: 32 * MIB,
            send_window: 32 * MIB as u64,
            max_concurrent_bidi_streams: 1024,
            keep_alive_interval_ms: 5_000,
            idle_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            max_concurrent_handshakes: 256,
            retry_handshakes_above: 64,
            handshake_failure_logs_per_second: 10,
            redial_backoff_initial_ms: 50,
            redial_backoff_max_ms: 1_000,
            rng_seed: None,
        }
    }
}

impl TransportConfig {
    /// Interval of keep-alive packets.
    pub fn keep_alive_interval(&self) -> Duration {
        Duration::from_millis(self.keep_alive_interval_ms)
    }

    /// Idle timeout of a connection.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The first and the longest pause between failed dials of a peer.
    pub fn redial_backoff(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.redial_backoff_initial_ms),
            Duration::from_millis(self.redial_backoff_max_ms),
        )
    }

    /// Time allowed for a handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, message: &str) -> Result<()> {
            Err(OctopiiError::Config {
                field,
                message: message.into(),
            })
        }
        if self.max_frame_size < 1024 {
            return bad("transport.max_frame_size", "must be at least 1024 bytes");
        }
        if self.max_frame_size == u32::MAX {
            // `FF FF FF FF` opens a lane; no frame may announce it.
            return bad("transport.max_frame_size", "must be below 4294967295");
        }
        if self.stream_receive_window == 0 {
            return bad("transport.stream_receive_window", "must not be 0");
        }
        if self.receive_window < self.stream_receive_window {
            return bad(
                "transport.receive_window",
                "must be at least transport.stream_receive_window",
            );
        }
        if self.send_window == 0 {
            return bad("transport.send_window", "must not be 0");
        }
        if self.max_concurrent_bidi_streams == 0 {
            return bad("transport.max_concurrent_bidi_streams", "must not be 0");
        }
        if self.idle_timeout_ms == 0 {
            return bad("transport.idle_timeout_ms", "must not be 0");
        }
        if self.keep_alive_interval_ms == 0 || self.keep_alive_interval_ms >= self.idle_timeout_ms {
            return bad(
                "transport.keep_alive_interval_ms",
                "must be above 0 and below transport.idle_timeout_ms",
            );
        }
        if self.handshake_timeout_ms == 0 {
            return bad("transport.handshake_timeout_ms", "must not be 0");
        }
        if self.redial_backoff_max_ms > 0 && self.redial_backoff_initial_ms == 0 {
            return bad(
                "transport.redial_backoff_initial_ms",
                "must not be 0 while the backoff is on",
            );
        }
        if self.redial_backoff_initial_ms > self.redial_backoff_max_ms {
            return bad(
                "transport.redial_backoff_initial_ms",
                "must not exceed redial_backoff_max_ms",
            );
        }
        if self.max_concurrent_handshakes == 0 {
            return bad("transport.max_concurrent_handshakes", "must not be 0");
        }
        if self.retry_handshakes_above > self.max_concurrent_handshakes {
            return bad(
                "transport.retry_handshakes_above",
                "must not exceed transport.max_concurrent_handshakes",
            );
        }
        Ok(())
    }
}

/// Limits of the RPC layer: what a peer can make a node hold.
///
/// ```toml
/// [rpc]
/// max_concurrent_calls = 10000
/// max_concurrent_calls_per_peer = 1000
/// max_concurrent_raft_calls = 1024
/// max_incomplete_frame_bytes_per_connection = 67108864
/// max_incomplete_frame_bytes = 536870912
/// request_read_timeout_ms = 10000
/// stream_idle_timeout_ms = 60000
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// Handlers of user services a node runs at once, all peers together;
    /// calls beyond it are answered `ResourceExhausted` at once rather
    /// than queued.
    pub max_concurrent_calls: usize,
    /// Of those, the most one peer may run at once (peers are told apart
    /// by their verified certificate name, or by address without
    /// verification), so that one peer cannot take them all.
    pub max_concurrent_calls_per_peer: usize,
    /// Handlers of raft traffic (`RaftService`, `RaftSnapshot`) a node runs
    /// at once: a pool of their own, which user calls never take.
    pub max_concurrent_raft_calls: usize,
    /// Bytes a connection's streams may hold in frames they have begun but
    /// not finished reading (counted by their announced lengths); a frame
    /// that would go above it is refused with `ResourceExhausted`. At least
    /// `transport.max_frame_size`.
    pub max_incomplete_frame_bytes_per_connection: u64,
    /// The same, all connections of the node together. At least
    /// `max_incomplete_frame_bytes_per_connection`.
    pub max_incomplete_frame_bytes: u64,
    /// Once the first bytes of a request have arrived, its header and
    /// arguments must follow within this many milliseconds, or the stream
    /// is given up (`DeadlineExceeded`).
    pub request_read_timeout_ms: u64,
    /// A streaming call that waits this long on its peer (for an item, or
    /// for room to write one) is ended, with or without a deadline of the
    /// caller's, in milliseconds.
    pub stream_idle_timeout_ms: u64,
    /// Idle streams kept open per peer for reuse by later calls.
    pub max_idle_streams_per_peer: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        RpcConfig {
            max_concurrent_calls: 10_000,
            max_concurrent_calls_per_peer: 1_000,
            max_concurrent_raft_calls: 1_024,
            max_incomplete_frame_bytes_per_connection: 64 * MIB,
            max_incomplete_frame_bytes: 512 * MIB,
            request_read_timeout_ms: 10_000,
            stream_idle_timeout_ms: 60_000,
            max_idle_streams_per_peer: 256,
        }
    }
}

impl RpcConfig {
    /// The request read timeout.
    pub fn request_read_timeout(&self) -> Duration {
        Duration::from_millis(self.request_read_timeout_ms)
    }

    /// The streaming idle timeout.
    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.stream_idle_timeout_ms)
    }

    fn validate(&self, max_frame_size: u32) -> Result<()> {
        let bad = |field: &'static str, message: &str| {
            Err(OctopiiError::Config {
                field,
                message: message.into(),
            })
        };
        if self.max_concurrent_calls == 0 {
            return bad("rpc.max_concurrent_calls", "must be at least 1");
        }
        if self.max_concurrent_calls_per_peer == 0 {
            return bad("rpc.max_concurrent_calls_per_peer", "must be at least 1");
        }
        if self.max_concurrent_raft_calls == 0 {
            return bad("rpc.max_concurrent_raft_calls", "must be at least 1");
        }
        if self.max_incomplete_frame_bytes_per_connection < u64::from(max_frame_size) {
            return bad(
                "rpc.max_incomplete_frame_bytes_per_connection",
                "must be at least transport.max_frame_size",
            );
        }
        if self.max_incomplete_frame_bytes < self.max_incomplete_frame_bytes_per_connection {
            return bad(
                "rpc.max_incomplete_frame_bytes",
                "must be at least rpc.max_incomplete_frame_bytes_per_connection",
            );
        }
        if self.request_read_timeout_ms == 0 {
            return bad("rpc.request_read_timeout_ms", "must not be 0");
        }
        if self.stream_idle_timeout_ms == 0 {
            return bad("rpc.stream_idle_timeout_ms", "must not be 0");
        }
        Ok(())
    }
}

/// Limits of the chunk (bulk transfer) service.
///
/// ```toml
/// [chunk]
/// recv_dir = "received"          # files land here; unset refuses files
/// max_memory_bytes = 67108864    # in-memory transfers in flight, together
/// max_file_bytes = 68719476736   # one file transfer (64 GiB)
/// stall_timeout_ms = 30000
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// Directory received files are written into (created when served);
    /// peers can write nowhere else. `None` refuses transfers to files.
    pub recv_dir: Option<PathBuf>,
    /// Most bytes received into memory at once, all in-memory transfers
    /// together; a larger offer is refused before any byte is read.
    pub max_memory_bytes: u64,
    /// Most bytes one transfer to a file may offer; a larger offer is
    /// refused before any byte is read.
    pub max_file_bytes: u64,
    /// A transfer whose peer sends nothing for this long fails, in
    /// milliseconds.
    pub stall_timeout_ms: u64,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            recv_dir: None,
            max_memory_bytes: 64 * 1024 * 1024,
            max_file_bytes: 64 * 1024 * 1024 * 1024,
            stall_timeout_ms: 30_000,
        }
    }
}

impl ChunkConfig {
    /// The stall timeout.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: &str| {
            Err(OctopiiError::Config {
                field,
                message: message.into(),
            })
        };
        if self
            .recv_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return bad("chunk.recv_dir", "must not be empty");
        }
        if self.stall_timeout_ms == 0 {
            return bad("chunk.stall_timeout_ms", "must not be 0");
        }
        if self.max_file_bytes == 0 {
            return bad(
                "chunk.max_file_bytes",
                "must not be 0 (leave recv_dir unset to refuse files)",
            );
        }
        Ok(())
    }
}

/// A node's configuration.
///
/// ```
/// use octopii::Config;
/// use octopii::ClusterCa;
///
/// let ca = ClusterCa::generate().unwrap();
/// let config = Config::builder()
///     .node_id(1)
///     .bind_addr("127.0.0.1:0".parse().unwrap())
///     .credentials(ca.issue_node("node-1", 1).unwrap())
///     .build()
///     .unwrap();
/// assert_eq!(config.node_id, 1);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id within its cluster (used by Raft; must not be 0).
    #[serde(default = "default_node_id")]
    pub node_id: u64,
    /// Address the node's QUIC endpoint listens and dials from.
    #[serde(default = "default_bind_addr")]
    pub bind_addr: SocketAddr,
    /// Directory for durable state (the WAL lives below it).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Worker threads of the node's [`OctopiiRuntime`](crate::OctopiiRuntime).
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    /// Certificates and trust.
    pub tls: Option<TlsConfig>,
    /// QUIC limits and timers.
    #[serde(default)]
    pub transport: TransportConfig,
    /// RPC limits.
    #[serde(default)]
    pub rpc: RpcConfig,
    /// Bulk transfer: receive directory and limits.
    #[serde(default)]
    pub chunk: ChunkConfig,
    /// Replication: the cluster's members and raft's timers.
    #[serde(default)]
    pub raft: RaftConfig,
    /// Where to serve the process's metrics in Prometheus text format
    /// (TOML key `metrics_addr`, default none). The first node started
    /// with it installs the exporter
    /// ([`serve_prometheus`](crate::metrics)); later nodes of the same
    /// process may name the same address. Needs the `prometheus` feature:
    /// without it, [`validate`](Config::validate) refuses it.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
}

fn default_node_id() -> u64 {
    1
}
fn default_bind_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("octopii-data")
}
fn default_worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

impl Default for Config {
    /// Node 1 on an ephemeral loopback port, with no TLS material yet
    /// (`validate` refuses it until `tls` is set).
    fn default() -> Self {
        Config {
            node_id: default_node_id(),
            bind_addr: default_bind_addr(),
            data_dir: default_data_dir(),
            worker_threads: default_worker_threads(),
            tls: None,
            transport: TransportConfig::default(),
            rpc: RpcConfig::default(),
            chunk: ChunkConfig::default(),
            raft: RaftConfig::default(),
            metrics_addr: None,
        }
    }
}

impl Config {
    /// Starts a builder from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| OctopiiError::Config {
            field: "toml",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file. Relative certificate paths
    /// and `chunk.recv_dir` are taken relative to the file's directory.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| OctopiiError::file(path, e))?;
        let mut config = Self::from_toml_str(&text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.tls {
            for file in [&mut tls.ca_cert, &mut tls.cert, &mut tls.key]
                .into_iter()
                .flatten()
            {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        if let Some(dir) = &mut config.chunk.recv_dir {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }

    /// Checks every value; an error names the field at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: &str| {
            Err(OctopiiError::Config {
                field,
                message: message.into(),
            })
        };
        if self.node_id == 0 {
            return bad("node_id", "must not be 0");
        }
        if self.worker_threads == 0 {
            return bad("worker_threads", "must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty");
        }
        if self.metrics_addr.is_some() && !cfg!(feature = "prometheus") {
            return bad(
                "metrics_addr",
                "serving metrics needs octopii's `prometheus` feature",
            );
        }
        let another_at_mine = |(id, addr): (&u64, &SocketAddr)| {
            *id != self.node_id && *addr == self.bind_addr && addr.port() != 0
        };
        if self.raft.peers.iter().any(another_at_mine) {
            return bad("raft.peers", "names another node at this node's bind_addr");
        }
        match &self.tls {
            None => return bad("tls", "no certificates configured"),
            Some(tls) if tls.credentials.is_none() && !tls.insecure_accept_any_certificate => {
                if tls.ca_cert.is_none() || tls.cert.is_none() || tls.key.is_none() {
                    return bad("tls", "set `ca_cert`, `cert` and `key`");
                }
            }
            Some(_) => {}
        }
        self.rpc.validate(self.transport.max_frame_size)?;
        self.chunk.validate()?;
        self.raft.validate()?;
        self.transport.validate()
    }
}

/// Builds a [`Config`] step by step; [`build`](ConfigBuilder::build) validates it.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Sets the node id.
    pub fn node_id(mut self, id: u64) -> Self {
        self.config.node_id = id;
        self
    }

    /// Sets the listen/dial address.
    pub fn bind_addr(mut self, addr: SocketAddr) -> Self {
        self.config.bind_addr = addr;
        self
    }

    /// Sets the data directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = dir.into();
        self
    }

    /// Sets the number of worker threads.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.config.worker_threads = n;
        self
    }

    /// Sets the TLS configuration.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Uses in-memory credentials, verifying peers against their CA.
    pub fn credentials(self, credentials: NodeCredentials) -> Self {
        self.tls(TlsConfig::from_credentials(credentials))
    }

    /// Sets the transport limits.
    pub fn transport(mut self, transport: TransportConfig) -> Self {
        self.config.transport = transport;
        self
    }

    /// Sets the RPC limits.
    pub fn rpc(mut self, rpc: RpcConfig) -> Self {
        self.config.rpc = rpc;
        self
    }

    /// Sets the bulk-transfer limits and receive directory.
    pub fn chunk(mut self, chunk: ChunkConfig) -> Self {
        self.config.chunk = chunk;
        self
    }

    /// Sets the replication settings.
    pub fn raft(mut self, raft: RaftConfig) -> Self {
        self.config.raft = raft;
        self
    }

    /// Serves the process's metrics on `addr` (see [`Config::metrics_addr`]).
    pub fn metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.config.metrics_addr = Some(addr);
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: OctopiiError) -> &'static str {
        match err {
            OctopiiError::Config { field, .. } => field,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn toml_is_parsed_with_defaults() {
        let config = Config::from_toml_str(
            r#"
            node_id = 3
            bind_addr = "127.0.0.1:7003"
            [tls]
            ca_cert = "ca.pem"
            cert = "n3.pem"
            key = "n3.key.pem"
            [transport]
            max_frame_size = 4096
            [raft]
            tick_interval_ms = 20
            [raft.peers]
            1 = "127.0.0.1:7001"
            [raft.wal.flush_policy]
            kind = "interval"
            interval_ms = 5
            "#,
        )
        .unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.raft.peers[&1], "127.0.0.1:7001".parse().unwrap());
        assert_eq!(config.raft.tick_interval(), Duration::from_millis(20));
        assert_eq!(config.raft.election_ticks, 10);
        assert_eq!(
            config.raft.wal.flush_policy,
            crate::wal::FlushPolicy::Interval(Duration::from_millis(5))
        );
        assert_eq!(config.transport.max_frame_size, 4096);
        assert_eq!(config.transport.idle_timeout_ms, 30_000);
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = "[tls]\ninsecure_accept_any_certificate = true\n";
        let cases = [
            ("node_id = 0\n", "node_id"),
            ("worker_threads = 0\n", "worker_threads"),
            ("data_dir = \"\"\n", "data_dir"),
            (
                "node_id = 3\nbind_addr = \"127.0.0.1:9\"\n[raft.peers]\n4 = \"127.0.0.1:9\"\n",
                "raft.peers",
            ),
            ("[raft]\ntick_interval_ms = 0\n", "raft.tick_interval_ms"),
            ("[raft.wal]\nsegment_size = 5\n", "raft.wal.segment_size"),
        ];
        for (head, field) in cases {
            let err = Config::from_toml_str(&format!("{head}{base}")).unwrap_err();
            assert_eq!(field_of(err), field, "for {head:?}");
        }
        let transport = format!("{base}[transport]\nkeep_alive_interval_ms = 60000\n");
        let err = Config::from_toml_str(&transport).unwrap_err();
        assert_eq!(field_of(err), "transport.keep_alive_interval_ms");
        let err =
            Config::from_toml_str(&format!("{base}[transport]\nmax_frame_size = 5\n")).unwrap_err();
        assert_eq!(field_of(err), "transport.max_frame_size");
        let budgets = "max_incomplete_frame_bytes_per_connection = 4294967295\n\
                       max_incomplete_frame_bytes = 4294967295\n";
        let too_large = format!("{base}[transport]\nmax_frame_size = 4294967295\n[rpc]\n{budgets}");
        let err = Config::from_toml_str(&too_large).unwrap_err();
        assert_eq!(field_of(err), "transport.max_frame_size");
        for redial in [
            "redial_backoff_initial_ms = 0\n",
            "redial_backoff_initial_ms = 2000\nredial_backoff_max_ms = 1000\n",
        ] {
            let err = Config::from_toml_str(&format!("{base}[transport]\n{redial}")).unwrap_err();
            assert_eq!(
                field_of(err),
                "transport.redial_backoff_initial_ms",
                "{redial:?}"
            );
        }
        let off = "redial_backoff_initial_ms = 0\nredial_backoff_max_ms = 0\n";
        assert!(Config::from_toml_str(&format!("{base}[transport]\n{off}")).is_ok());
        let handshakes = "max_concurrent_handshakes = 8\nretry_handshakes_above = 9\n";
        let err = Config::from_toml_str(&format!("{base}[transport]\n{handshakes}")).unwrap_err();
        assert_eq!(field_of(err), "transport.retry_handshakes_above");
        let err = Config::from_toml_str(&format!(
            "{base}[transport]\nmax_concurrent_handshakes = 0\nretry_handshakes_above = 0\n"
        ))
        .unwrap_err();
        assert_eq!(field_of(err), "transport.max_concurrent_handshakes");
    }

    #[test]
    fn unparsable_toml_names_the_key() {
        let err = Config::from_toml_str("bind_addr = \"not an address\"\n").unwrap_err();
        assert!(err.to_string().contains("bind_addr"), "{err}");
        let err = Config::from_toml_str("no_such_field = 1\n").unwrap_err();
        assert!(err.to_string().contains("no_such_field"), "{err}");
    }

    #[test]
    fn chunk_section_is_parsed_and_checked() {
        let base = "[tls]\nca_cert = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let config = Config::from_toml_str(&format!(
            "{base}[chunk]\nrecv_dir = \"in\"\nmax_memory_bytes = 1024\n"
        ))
        .unwrap();
        assert_eq!(config.chunk.recv_dir, Some(PathBuf::from("in")));
        assert_eq!(config.chunk.max_memory_bytes, 1024);
        assert_eq!(config.chunk.stall_timeout_ms, 30_000);
        let err =
            Config::from_toml_str(&format!("{base}[chunk]\nstall_timeout_ms = 0\n")).unwrap_err();
        assert_eq!(field_of(err), "chunk.stall_timeout_ms");
        let err = Config::from_toml_str(&format!("{base}[chunk]\nrecv_dir = \"\"\n")).unwrap_err();
        assert_eq!(field_of(err), "chunk.recv_dir");
    }

    #[test]
    fn chunk_max_file_bytes_is_parsed_and_checked() {
        let base = "[tls]\nca_cert = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let config = Config::from_toml_str(base).unwrap();
        assert_eq!(config.chunk.max_file_bytes, 64 << 30);
        let config =
            Config::from_toml_str(&format!("{base}[chunk]\nmax_file_bytes = 5\n")).unwrap();
        assert_eq!(config.chunk.max_file_bytes, 5);
        let err =
            Config::from_toml_str(&format!("{base}[chunk]\nmax_file_bytes = 0\n")).unwrap_err();
        assert_eq!(field_of(err), "chunk.max_file_bytes");
    }

    #[test]
    fn rpc_section_is_parsed_and_checked() {
        let base = "[tls]\ninsecure_accept_any_certificate = true\n";
        let config = Config::from_toml_str(&format!(
            "{base}[rpc]\nmax_concurrent_calls_per_peer = 7\nrequest_read_timeout_ms = 50\n"
        ))
        .unwrap();
        assert_eq!(config.rpc.max_concurrent_calls_per_peer, 7);
        assert_eq!(config.rpc.request_read_timeout(), Duration::from_millis(50));
        assert_eq!(config.rpc.max_concurrent_raft_calls, 1_024);
        assert_eq!(config.rpc.stream_idle_timeout_ms, 60_000);
        let cases = [
            ("max_concurrent_calls = 0", "rpc.max_concurrent_calls"),
            (
                "max_concurrent_calls_per_peer = 0",
                "rpc.max_concurrent_calls_per_peer",
            ),
            (
                "max_concurrent_raft_calls = 0",
                "rpc.max_concurrent_raft_calls",
            ),
            (
                "max_incomplete_frame_bytes_per_connection = 1000",
                "rpc.max_incomplete_frame_bytes_per_connection",
            ),
            (
                "max_incomplete_frame_bytes = 16777216",
                "rpc.max_incomplete_frame_bytes",
            ),
            ("request_read_timeout_ms = 0", "rpc.request_read_timeout_ms"),
            ("stream_idle_timeout_ms = 0", "rpc.stream_idle_timeout_ms"),
        ];
        for (line, field) in cases {
            let err = Config::from_toml_str(&format!("{base}[rpc]\n{line}\n")).unwrap_err();
            assert_eq!(field_of(err), field, "for {line:?}");
        }
    }

    #[test]
    fn missing_tls_is_refused() {
        assert_eq!(field_of(Config::default().validate().unwrap_err()), "tls");
        let err = Config::from_toml_str("[tls]\nca_cert = \"ca.pem\"\n").unwrap_err();
        assert_eq!(field_of(err), "tls");
    }

    #[test]
    fn metrics_addr_is_read_and_needs_the_prometheus_feature() {
        let parsed = Config::from_toml_str(
            "metrics_addr = \"127.0.0.1:9100\"\n[tls]\ninsecure_accept_any_certificate = true\n",
        );
        if cfg!(feature = "prometheus") {
            let addr = parsed.unwrap().metrics_addr;
            assert_eq!(addr, Some("127.0.0.1:9100".parse().unwrap()));
        } else {
            assert_eq!(field_of(parsed.unwrap_err()), "metrics_addr");
        }
        let err = Config::from_toml_str("metrics_addr = \"not an address\"\n").unwrap_err();
        assert_eq!(field_of(err), "toml");
    }
}

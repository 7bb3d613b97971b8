//! Helpers shared by Octopii's integration tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use octopii::transport::tls::{ClusterCa, NodeCredentials};
use octopii::transport::{InboundHandler, PeerConnection};
use octopii::{Config, OctopiiNode, OctopiiRuntime};

pub mod captured_logs;
pub mod crash_fs;
pub mod hostile_sender;
pub mod sim;
pub mod wal_fs;

/// Largest message the echo handler reads.
pub const ECHO_LIMIT: usize = 1024 * 1024;

/// A plain multi-thread tokio runtime with `threads` workers, for tests of
/// layers that do not need an `OctopiiRuntime`.
pub fn tokio_runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()
        .expect("tokio runtime")
}

/// A config for a node on an ephemeral loopback port with `creds`.
pub fn config(creds: NodeCredentials) -> Config {
    Config::builder()
        .bind_addr("127.0.0.1:0".parse().expect("loopback address"))
        .worker_threads(2)
        .credentials(creds)
        .build()
        .expect("valid test config")
}

/// Starts a node named `name`, certified by `ca`, that echoes every stream.
pub fn echo_node(ca: &ClusterCa, name: &str, runtime: &OctopiiRuntime) -> OctopiiNode {
    let creds = ca.issue_node(name, 1).expect("issue node certificate");
    OctopiiNode::with_handler(config(creds), runtime, Arc::new(Echo)).expect("start node")
}

/// Sends `message` on a new stream of `conn` and returns the reply.
pub async fn echo(conn: &PeerConnection, message: &[u8]) -> octopii::Result<Vec<u8>> {
    use octopii::transport::TransportError;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(message).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => TransportError::from(e).into(),
        other => octopii::OctopiiError::from(std::io::Error::from(other)),
    })?;
    send.finish().map_err(std::io::Error::from)?;
    recv.read_to_end(ECHO_LIMIT).await.map_err(|e| match e {
        quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e)) => {
            TransportError::from(e).into()
        }
        quinn::ReadToEndError::Read(other) => std::io::Error::from(other).into(),
        quinn::ReadToEndError::TooLong => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("echo reply over {ECHO_LIMIT} bytes"),
        )
        .into(),
    })
}

/// Replies to each stream with the bytes it received, prefixed by the
/// caller's verified identity and a `:`.
pub struct Echo;

impl InboundHandler for Echo {
    fn handle_stream(
        &self,
        conn: PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(async move {
            let Ok(message) = recv.read_to_end(ECHO_LIMIT).await else {
                return;
            };
            let mut reply = format!("{}:", conn.peer().identity).into_bytes();
            reply.extend_from_slice(&message);
            if send.write_all(&reply).await.is_ok() {
                let _ = send.finish();
            }
        })
    }
}

/// Starts a node named `name` that serves chunk transfers under `chunk`
/// and returns it with its inbox.
pub fn chunk_node(
    ca: &ClusterCa,
    name: &str,
    runtime: &OctopiiRuntime,
    chunk: octopii::config::ChunkConfig,
) -> (OctopiiNode, octopii::chunk::ChunkInbox) {
    let mut config = config(ca.issue_node(name, 1).expect("issue node certificate"));
    config.chunk = chunk;
    let node = OctopiiNode::new(config, runtime).expect("start node");
    let inbox = node.serve_chunks().expect("serve chunks");
    (node, inbox)
}

/// The next transfer the receiver announces, waiting up to 20 s (a
/// generous bound: a cut connection may only be noticed at a keep-alive).
pub fn next_received(
    runtime: &OctopiiRuntime,
    inbox: &mut octopii::chunk::ChunkInbox,
) -> octopii::chunk::Received {
    runtime
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(20), inbox.recv()).await
        })
        .expect("the receiver announces the transfer within 20 s")
        .expect("the inbox is open")
}

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

/// The names in `dir`, sorted (hidden temporary files included).
pub fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

pub mod logs;

pub mod linearizability;
pub mod raft;

/// The header and arguments frames of a request for `service.method` with
/// encoded `args`, as a foreign client writes them (`docs/PROTOCOL.md`,
/// Request).
pub fn request_frames(service: &str, method: &str, args: &[u8], owns_stream: bool) -> Vec<u8> {
    let header = octopii::rpc::frame::RequestHeader {
        service: service.into(),
        method: method.into(),
        timeout_micros: None,
        metadata: vec![].into(),
        owns_stream,
        trace: None,
        signature: None,
    };
    let mut out = Vec::new();
    octopii::rpc::frame::put_encoded(&mut out, &header).expect("a header encodes");
    octopii::rpc::frame::put_bytes(&mut out, args).expect("arguments fit a frame");
    out
}

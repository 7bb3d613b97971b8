//! One source to many peers: the live ones all get it, verified, while a
//! dead peer and a stalled peer fail alone.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use octopii::ClusterCa;
use octopii::chunk::protocol::{Accept, METHOD, SERVICE};
use octopii::chunk::{ChunkSource, TransferError, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::rpc::{self, CallStream, Context, HandlerFuture, Service, StreamFuture};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{chunk_node, config, random_bytes};

/// A `Chunk` service that accepts a transfer and then never reads it.
struct Stalls;

impl Service for Stalls {
    fn name(&self) -> &'static str {
        SERVICE
    }
    fn methods(&self) -> &'static [&'static str] {
        &[METHOD]
    }
    fn call(&self, method: &str, _ctx: Context, _args: Bytes) -> HandlerFuture {
        rpc::unimplemented(SERVICE, method)
    }
    fn serve_stream(
        &self,
        _method: &str,
        _ctx: Context,
        _args: Bytes,
        mut stream: CallStream,
    ) -> StreamFuture {
        Box::pin(async move {
            let _ = stream
                .respond(&rpc::encode_output(&Accept { offset: 0 }))
                .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        })
    }
}

#[test]
fn live_peers_all_receive_while_a_dead_and_a_stalled_peer_fail_alone() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let receivers: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let chunk = ChunkConfig {
                recv_dir: Some(dir.path().to_owned()),
                ..ChunkConfig::default()
            };
            chunk_node(&ca, &format!("receiver-{i}"), &rt, chunk)
        })
        .collect();
    let stalled = OctopiiNode::new(config(ca.issue_node("stalled", 1).unwrap()), &rt).unwrap();
    stalled.serve(Stalls).unwrap();
    let dead_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead: SocketAddr = dead_socket.local_addr().unwrap();

    let mut sender_config = config(ca.issue_node("sender", 1).unwrap());
    sender_config.transport.handshake_timeout_ms = 1_000;
    let sender = OctopiiNode::new(sender_config, &rt).unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("fan.bin");
    // Beyond a stream's 8 MiB flow-control window plus the lane, so the
    // stalled peer really blocks the sender.
    let data = random_bytes(16 * 1024 * 1024 + 7);
    std::fs::write(&src, &data).unwrap();

    let mut peers: Vec<SocketAddr> = receivers.iter().map(|(n, _)| n.local_addr()).collect();
    peers.insert(1, dead);
    peers.push(stalled.local_addr());
    let options = TransferOptions::to_file("fan.bin").stall_timeout(Duration::from_secs(1));
    let results =
        rt.block_on(sender.transfer_chunk_to_peers(ChunkSource::File(src), &peers, options));

    assert_eq!(results.len(), 5);
    for (result, peer) in results.iter().zip(&peers) {
        assert_eq!(result.peer, *peer);
    }
    let dead_result = &results[1];
    assert!(
        matches!(dead_result.outcome, Err(TransferError::Connection(_))),
        "{dead_result:?}"
    );
    let stalled_result = &results[4];
    assert!(
        matches!(stalled_result.outcome, Err(TransferError::Stalled(_))),
        "{stalled_result:?}"
    );
    for result in [&results[0], &results[2], &results[3]] {
        assert!(result.outcome.is_ok(), "{result:?}");
        assert_eq!(result.bytes_transferred, data.len() as u64);
    }
    for dir in &dirs {
        assert_eq!(std::fs::read(dir.path().join("fan.bin")).unwrap(), data);
    }
}

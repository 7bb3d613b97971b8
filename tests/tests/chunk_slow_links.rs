//! The stall rule fails a peer that makes no progress, never an honest
//! slow link that keeps making some: on the receiver (a sender that
//! trickles its bytes) and on the sender (a receiver that reads slowly).

use std::time::Duration;

use bytes::Bytes;
use octopii::ClusterCa;
use octopii::chunk::protocol::{
    self, Accept, Destination, HASH_LEN, METHOD, SERVICE, SIZE_LEN, Status, TransferRequest,
};
use octopii::chunk::{ChunkSource, ReceivedData, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::rpc::{self, CallStream, Client, Context, HandlerFuture, Service, StreamFuture};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{chunk_node, config, next_received, random_bytes};
use sha2::{Digest, Sha256};

/// The stall timeout on the side that watches.
const STALL: Duration = Duration::from_millis(500);
/// The pause between two pieces of the slow side: far below `STALL`.
const PAUSE: Duration = Duration::from_millis(25);

#[test]
fn a_sender_that_trickles_its_bytes_is_not_broken_by_the_receiver() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        stall_timeout_ms: STALL.as_millis() as u64,
        ..ChunkConfig::default()
    };
    let (receiver, mut inbox) = chunk_node(&ca, "receiver", &rt, chunk);
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    // 40 bytes one at a time: the whole transfer lasts twice the stall
    // timeout, and no single pause comes near it.
    let data = random_bytes(40);
    let (status, reason) = rt.block_on(async {
        let request = TransferRequest {
            destination: Destination::File {
                path: "trickled.bin".into(),
            },
            size: data.len() as u64,
            resume: false,
        };
        let client = Client::new(&sender, receiver.local_addr());
        let mut stream = client.open_stream(SERVICE, METHOD, &request).await.unwrap();
        let accept = stream.read_frame().await.unwrap().unwrap();
        assert_eq!(accept[0], 0, "accepted");
        stream
            .write_raw(&protocol::size_header(data.len() as u64))
            .await
            .unwrap();
        for byte in &data {
            tokio::time::sleep(PAUSE).await;
            stream.write_raw(std::slice::from_ref(byte)).await.unwrap();
        }
        let hash: [u8; HASH_LEN] = Sha256::digest(&data).into();
        stream.write_raw(&hash).await.unwrap();
        stream.finish();
        protocol::read_status(&mut stream).await.unwrap()
    });
    assert_eq!((status, reason.as_str()), (Status::Ok, ""));
    let received = next_received(&rt, &mut inbox);
    assert!(matches!(received.outcome, Ok(ReceivedData::File(_))));
    assert_eq!(
        std::fs::read(recv_dir.path().join("trickled.bin")).unwrap(),
        data
    );
}

/// A `Chunk` receiver that reads 1 KiB per `PAUSE`, then answers the
/// verdict honestly.
struct SlowReader;

impl Service for SlowReader {
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
        args: Bytes,
        mut stream: CallStream,
    ) -> StreamFuture {
        Box::pin(async move {
            let request: TransferRequest = rpc::decode_args(&args).unwrap();
            let accept = rpc::encode_output(&Accept { offset: 0 });
            stream.respond(&accept).await.unwrap();
            let mut header = [0u8; SIZE_LEN];
            stream.read_raw_exact(&mut header).await.unwrap();
            let mut hasher = Sha256::new();
            let mut left = request.size;
            while left > 0 {
                tokio::time::sleep(PAUSE).await;
                let want = left.min(1024) as usize;
                let piece = stream.read_raw(want).await.unwrap().unwrap();
                hasher.update(&piece);
                left -= piece.len() as u64;
            }
            let mut hash = [0u8; HASH_LEN];
            stream.read_raw_exact(&mut hash).await.unwrap();
            let status = if hash == <[u8; HASH_LEN]>::from(hasher.finalize()) {
                Status::Ok
            } else {
                Status::ChecksumMismatch
            };
            let _ = protocol::write_status(&mut stream, status, "").await;
            stream.finish();
        })
    }
}

#[test]
fn a_receiver_that_reads_slowly_is_not_failed_by_the_sender() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let mut slow_config = config(ca.issue_node("slow", 2).unwrap());
    // A small window: the sender's writes wait on the slow reads, its
    // 64 KiB buffer for longer than the stall timeout.
    slow_config.transport.stream_receive_window = 8 * 1024;
    let slow = OctopiiNode::new(slow_config, &rt).unwrap();
    slow.serve(SlowReader).unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let data = random_bytes(64 * 1024);
    let options = TransferOptions::to_file("slow.bin").stall_timeout(STALL);
    let result = rt
        .block_on(sender.transfer_chunk(
            ChunkSource::Memory(data.into()),
            slow.local_addr(),
            options,
        ))
        .unwrap();
    assert!(result.outcome.is_ok(), "{result:?}");
}

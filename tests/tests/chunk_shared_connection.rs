//! A large transfer shares its peer's connection with RPC calls without
//! holding them up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use octopii::ClusterCa;
use octopii::chunk::{ChunkSource, Progress, ReceivedData, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::rpc::{self, Client, Context, HandlerFuture, Service};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{chunk_node, config};

const SIZE: usize = 128 * 1024 * 1024;

/// `double(n) -> n * 2`.
struct Doubler;

impl Service for Doubler {
    fn name(&self) -> &'static str {
        "Doubler"
    }
    fn methods(&self) -> &'static [&'static str] {
        &["double"]
    }
    fn call(&self, method: &str, _ctx: Context, args: Bytes) -> HandlerFuture {
        if method != "double" {
            return rpc::unimplemented("Doubler", method);
        }
        Box::pin(async move {
            let (n,): (u64,) = rpc::decode_args(&args)?;
            rpc::encode_output(&(n * 2))
        })
    }
}

#[test]
fn a_call_during_a_128_mib_transfer_completes_before_the_transfer() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let chunk = ChunkConfig {
        max_memory_bytes: SIZE as u64,
        ..ChunkConfig::default()
    };
    let (receiver, mut inbox) = chunk_node(&ca, "receiver", &rt, chunk);
    receiver.serve(Doubler).unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let data = Bytes::from(vec![0x5A; SIZE]);

    let done = Arc::new(AtomicU64::new(0));
    let seen = done.clone();
    let options = TransferOptions::to_memory("large").progress(Arc::new(move |p: &Progress| {
        seen.store(p.done, Ordering::Relaxed);
    }));
    let addr = receiver.local_addr();
    let transfer = {
        let sender = sender.clone();
        let data = data.clone();
        rt.handle().spawn(async move {
            sender
                .transfer_chunk(ChunkSource::Memory(data), addr, options)
                .await
        })
    };
    rt.block_on(async {
        while done.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let client = Client::new(&sender, addr);
        let doubled: u64 = client.call("Doubler", "double", &(21u64,)).await.unwrap();
        assert_eq!(doubled, 42);
        let at_reply = done.load(Ordering::Relaxed);
        assert!(
            !transfer.is_finished() && at_reply < SIZE as u64,
            "the call waited for the transfer ({at_reply} of {SIZE} bytes sent)"
        );

        let result = transfer.await.unwrap().unwrap();
        assert!(result.outcome.is_ok());
        let received = inbox.recv().await.unwrap();
        match received.outcome.unwrap() {
            ReceivedData::Memory(bytes) => assert!(bytes == data),
            other => panic!("expected memory, got {other:?}"),
        }
    });
    assert_eq!(sender.stats().pool.handshakes, 1, "one shared connection");
}

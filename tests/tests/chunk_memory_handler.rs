//! A `ChunkService` under a name of its own whose in-memory transfers go
//! to a handler: the handler's verdict is the sender's acknowledgement.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::FutureExt;
use octopii::ClusterCa;
use octopii::chunk::{ChunkService, ChunkSource, MemoryHandler, TransferError, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::rpc::Code;
use octopii::{OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::{config, random_bytes};

#[test]
fn a_named_service_hands_memory_data_to_its_handler_and_answers_its_verdict() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let receiver = OctopiiNode::new(config(ca.issue_node("receiver", 1).unwrap()), &rt).unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let taken: Arc<Mutex<Vec<(String, String, Bytes)>>> = Arc::default();
    let seen = taken.clone();
    let handler: MemoryHandler = Arc::new(move |peer, name, data: Bytes| {
        let seen = seen.clone();
        async move {
            if name == "refused" {
                return Err("the handler refuses this one".to_owned());
            }
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.push((peer.identity, name, data));
            Ok(())
        }
        .boxed()
    });
    let (service, _inbox) = ChunkService::builder(&ChunkConfig::default())
        .name("Blobs")
        .memory_handler(handler)
        .build()
        .unwrap();
    receiver.serve(service).unwrap();
    let to = receiver.local_addr();
    rt.block_on(async {
        // Larger than one 64 KiB buffer, so it arrives in pieces.
        let data = Bytes::from(random_bytes(200 * 1024 + 7));
        let options = || TransferOptions::to_memory("accepted").service("Blobs");
        let result = sender
            .transfer_chunk(ChunkSource::Memory(data.clone()), to, options())
            .await
            .unwrap();
        assert!(result.outcome.is_ok(), "{result:?}");
        let seen = taken.lock().unwrap().clone();
        assert_eq!(seen, vec![("sender".into(), "accepted".into(), data)]);

        // The handler's refusal is the sender's error, with its reason.
        let refused = TransferOptions::to_memory("refused").service("Blobs");
        let err = sender
            .transfer_chunk(ChunkSource::Memory(Bytes::from_static(b"x")), to, refused)
            .await
            .unwrap_err();
        match err {
            OctopiiError::Chunk(TransferError::Receiver(reason)) => {
                assert!(reason.contains("the handler refuses this one"), "{reason}")
            }
            other => panic!("expected the handler's refusal, got {other}"),
        }

        // The default `Chunk` name is not served by this node.
        let plain = TransferOptions::to_memory("accepted");
        let err = sender
            .transfer_chunk(ChunkSource::Memory(Bytes::from_static(b"x")), to, plain)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                OctopiiError::Chunk(TransferError::Refused {
                    code: Code::Unimplemented,
                    ..
                })
            ),
            "{err}"
        );
    });
    assert_eq!(taken.lock().unwrap().len(), 1, "only the accepted transfer");
}

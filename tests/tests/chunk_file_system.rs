//! ChunkService on a file system of its own (`ChunkServiceBuilder::file_system`,
//! `ChunkSource::FileOn`): what raft's snapshots and the simulation use.
//! The same rules as on the real disk: only verified bytes appear at the
//! destination, durably, and a failure leaves nothing behind.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use octopii::chunk::{ChunkService, ChunkSource, ReceivedData, TransferError, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::rpc::Code;
use octopii::wal::WalFs;
use octopii::{ClusterCa, OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::crash_fs::{CrashFs, Tear};
use octopii_tests::{config, random_bytes};

struct Pair {
    rt: OctopiiRuntime,
    sender: OctopiiNode,
    receiver: OctopiiNode,
    inbox: octopii::chunk::ChunkInbox,
}

/// A receiver keeping its files in `/recv` on `disk`.
fn pair(disk: &CrashFs) -> Pair {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let receiver = OctopiiNode::new(config(ca.issue_node("receiver", 1).unwrap()), &rt).unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 2).unwrap()), &rt).unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some("/recv".into()),
        ..ChunkConfig::default()
    };
    let (service, inbox) = ChunkService::builder(&chunk)
        .file_system(Arc::new(disk.clone()))
        .build()
        .unwrap();
    receiver.serve(service).unwrap();
    Pair {
        rt,
        sender,
        receiver,
        inbox,
    }
}

/// A synced file of `bytes` at `path` on a fresh file system.
fn source(path: &str, bytes: &[u8]) -> CrashFs {
    let fs = CrashFs::new();
    let path = Path::new(path);
    fs.create_dir_all(path.parent().unwrap()).unwrap();
    let file = fs.create(path).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_all().unwrap();
    fs
}

fn temporary_files(disk: &CrashFs) -> Vec<String> {
    disk.read_dir(Path::new("/recv"))
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".octopii-"))
        .collect()
}

#[test]
fn a_file_sent_from_one_file_system_lands_durably_on_another() {
    let disk = CrashFs::new();
    let mut pair = pair(&disk);
    // Larger than one 64 KiB buffer.
    let data = random_bytes(200 * 1024 + 7);
    let from = Arc::new(source("/out/data", &data));
    let to = pair.receiver.local_addr();
    pair.rt.block_on(async {
        let sent = ChunkSource::FileOn(from, "/out/data".into());
        let result = pair
            .sender
            .transfer_chunk(sent, to, TransferOptions::to_file("data"))
            .await
            .unwrap();
        assert!(result.outcome.is_ok(), "{result:?}");
        let received = pair.inbox.recv().await.unwrap();
        match received.outcome {
            Ok(ReceivedData::File(path)) => assert_eq!(path, Path::new("/recv/data")),
            other => panic!("expected a file, got {other:?}"),
        }
    });
    assert_eq!(disk.read(Path::new("/recv/data")).unwrap(), data);
    assert!(temporary_files(&disk).is_empty());
    // Synced and its directory synced: it survives a crash.
    disk.crash(Tear::DropAll);
    assert_eq!(disk.read(Path::new("/recv/data")).unwrap(), data);

    // Only one plain name in the receive directory is taken.
    pair.rt.block_on(async {
        let bytes = ChunkSource::Memory(Bytes::from_static(b"x"));
        let err = pair
            .sender
            .transfer_chunk(bytes, to, TransferOptions::to_file("sub/x"))
            .await
            .unwrap_err();
        match err {
            OctopiiError::Chunk(TransferError::Refused { code, .. }) => {
                assert_eq!(code, Code::InvalidArgument)
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    });
}

#[test]
fn a_write_that_fails_leaves_nothing_at_the_destination() {
    let disk = CrashFs::new();
    let pair = pair(&disk);
    let data = random_bytes(300 * 1024);
    let from = Arc::new(source("/out/data", &data));
    // The third write into the temporary file fails.
    disk.fail_once_after(3, std::io::ErrorKind::StorageFull);
    let to = pair.receiver.local_addr();
    let result = pair.rt.block_on(async {
        let sent = ChunkSource::FileOn(from, "/out/data".into());
        pair.sender
            .transfer_chunk(sent, to, TransferOptions::to_file("data"))
            .await
    });
    let failed = format!("{result:?}");
    assert!(
        result.is_err() || result.unwrap().outcome.is_err(),
        "{failed}"
    );
    assert!(!disk.exists(Path::new("/recv/data")), "{failed}");
    assert!(temporary_files(&disk).is_empty(), "{failed}");
}

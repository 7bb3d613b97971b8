//! Verified transfers of edge sizes, to files and to memory, with progress
//! on both sides.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopii::ClusterCa;
use octopii::chunk::{
    ChunkService, ChunkSource, Progress, ProgressFn, ReceivedData, TransferOptions,
};
use octopii::config::ChunkConfig;
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{chunk_node, config, dir_entries, random_bytes};

const KIB64: usize = 64 * 1024;
const EDGE_SIZES: [usize; 5] = [0, 1, KIB64, 3 * KIB64, 3 * KIB64 + 1];

fn recv_config(dir: &std::path::Path) -> ChunkConfig {
    ChunkConfig {
        recv_dir: Some(dir.to_owned()),
        ..ChunkConfig::default()
    }
}

#[test]
fn files_of_edge_sizes_arrive_verified_and_complete() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let (receiver, mut inbox) = chunk_node(&ca, "receiver", &rt, recv_config(recv_dir.path()));
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    rt.block_on(async {
        for size in EDGE_SIZES {
            let data = random_bytes(size);
            let src = src_dir.path().join(format!("src-{size}"));
            std::fs::write(&src, &data).unwrap();
            let name = format!("file-{size}");
            let result = sender
                .transfer_chunk(
                    ChunkSource::File(src),
                    receiver.local_addr(),
                    TransferOptions::to_file(&name),
                )
                .await
                .unwrap();
            assert!(result.outcome.is_ok(), "{result:?}");
            assert_eq!(result.bytes_transferred, size as u64);
            assert_eq!(result.resumed_from, 0);
            let dest = recv_dir.path().join(&name);
            assert_eq!(std::fs::read(&dest).unwrap(), data, "size {size}");

            let received = inbox.recv().await.unwrap();
            assert_eq!(received.name, name);
            assert_eq!(received.peer.identity, "sender");
            match received.outcome.unwrap() {
                ReceivedData::File(path) => assert_eq!(path, dest.canonicalize().unwrap()),
                other => panic!("expected a file, got {other:?}"),
            }
        }
    });
    // Only the destinations: no temporary file left behind.
    let mut expected: Vec<String> = EDGE_SIZES.iter().map(|s| format!("file-{s}")).collect();
    expected.sort();
    assert_eq!(dir_entries(recv_dir.path()), expected);
}

#[test]
fn memory_transfers_of_edge_sizes_reach_the_inbox() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let (receiver, mut inbox) = chunk_node(&ca, "receiver", &rt, ChunkConfig::default());
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    rt.block_on(async {
        for size in EDGE_SIZES {
            let data = bytes::Bytes::from(random_bytes(size));
            let result = sender
                .transfer_chunk(
                    ChunkSource::Memory(data.clone()),
                    receiver.local_addr(),
                    TransferOptions::to_memory(format!("buf-{size}")),
                )
                .await
                .unwrap();
            assert!(result.outcome.is_ok());
            let received = inbox.recv().await.unwrap();
            assert_eq!(received.name, format!("buf-{size}"));
            match received.outcome.unwrap() {
                ReceivedData::Memory(bytes) => assert_eq!(bytes, data, "size {size}"),
                other => panic!("expected memory, got {other:?}"),
            }
        }
    });
}

#[test]
fn a_file_can_go_to_a_subdirectory_that_exists() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(recv_dir.path().join("sub")).unwrap();
    let (receiver, _inbox) = chunk_node(&ca, "receiver", &rt, recv_config(recv_dir.path()));
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let data = random_bytes(1000);
    rt.block_on(async {
        sender
            .transfer_chunk(
                ChunkSource::Memory(data.clone().into()),
                receiver.local_addr(),
                TransferOptions::to_file("sub/inner.bin"),
            )
            .await
            .unwrap();
    });
    assert_eq!(
        std::fs::read(recv_dir.path().join("sub/inner.bin")).unwrap(),
        data
    );
}

fn recorder() -> (ProgressFn, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let callback: ProgressFn = Arc::new(move |p: &Progress| sink.lock().unwrap().push(p.clone()));
    (callback, seen)
}

#[test]
fn progress_is_reported_on_both_sides() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let receiver = OctopiiNode::new(config(ca.issue_node("receiver", 1).unwrap()), &rt).unwrap();
    let (on_receive, received) = recorder();
    let (service, _inbox) = ChunkService::builder(&recv_config(recv_dir.path()))
        .on_progress(on_receive)
        .build()
        .unwrap();
    receiver.serve(service).unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let size = 10 * KIB64 + 5;
    let (on_send, sent) = recorder();
    rt.block_on(async {
        let options = TransferOptions::to_file("p.bin")
            .progress(on_send)
            .stall_timeout(Duration::from_secs(10));
        sender
            .transfer_chunk(
                ChunkSource::Memory(random_bytes(size).into()),
                receiver.local_addr(),
                options,
            )
            .await
            .unwrap();
    });
    for (side, seen) in [("sender", sent), ("receiver", received)] {
        let seen = seen.lock().unwrap();
        assert!(seen.len() >= 2, "{side}: {} reports", seen.len());
        assert!(
            seen.windows(2).all(|w| w[0].done <= w[1].done),
            "{side}: not monotonic"
        );
        let last = seen.last().unwrap();
        assert_eq!(
            (last.done, last.total),
            (size as u64, size as u64),
            "{side}"
        );
        assert_eq!(last.name, "p.bin");
        assert!(last.rate() > 0.0, "{side}: rate {}", last.rate());
    }
}

/// The default column of `docs/PROTOCOL.md`'s rows for `name`.
fn documented_default(protocol: &str, name: &str) -> String {
    let row = protocol
        .lines()
        .find(|line| line.starts_with(&format!("| {name} ")))
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md documents {name}"));
    row.split('|').nth(2).unwrap().trim().to_owned()
}

#[test]
fn the_documented_chunk_defaults_are_the_code_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let protocol = std::fs::read_to_string(path).unwrap();
    let defaults = ChunkConfig::default();
    let cases = [
        (
            "`chunk.stall_timeout_ms` (receiver)",
            defaults.stall_timeout_ms.to_string(),
        ),
        (
            "`TransferOptions::stall_timeout` (reference sender)",
            format!(
                "{} s",
                TransferOptions::to_memory("x").stall_timeout.as_secs()
            ),
        ),
        (
            "`chunk.max_memory_bytes`",
            defaults.max_memory_bytes.to_string(),
        ),
        (
            "`chunk.max_file_bytes`",
            defaults.max_file_bytes.to_string(),
        ),
    ];
    for (name, value) in cases {
        assert_eq!(documented_default(&protocol, name), value, "{name}");
    }
}

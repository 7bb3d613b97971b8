//! A write that fails mid-transfer (the disk is full) is status 2 with the
//! reason, and the temporary file is removed.
//!
//! A file-size limit (RLIMIT_FSIZE) makes writes fail with EFBIG the way a
//! full disk fails them with ENOSPC, and it binds root too. It applies to
//! the whole process, hence this test's file of its own.

use octopii::ClusterCa;
use octopii::chunk::{ChunkSource, TransferError, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{chunk_node, config, dir_entries, random_bytes};

const LIMIT: u64 = 1024 * 1024;

fn limit_file_size(bytes: u64) {
    // SAFETY: plain libc calls with valid arguments; ignoring SIGXFSZ makes
    // an oversized write fail with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

#[test]
fn a_failing_write_is_status_2_with_the_reason_and_nothing_is_kept() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        ..ChunkConfig::default()
    };
    let (receiver, mut inbox) = chunk_node(&ca, "receiver", &rt, chunk);
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    limit_file_size(LIMIT);
    for resume in [false, true] {
        let data = random_bytes(4 * LIMIT as usize);
        let result = rt
            .block_on(sender.transfer_chunk_to_peers(
                ChunkSource::Memory(data.into()),
                &[receiver.local_addr()],
                TransferOptions::to_file("full.bin").resume(resume),
            ))
            .pop()
            .unwrap();
        assert!(result.outcome.is_err(), "{result:?}");
        let Err(TransferError::Receiver(reason)) = &result.outcome else {
            panic!("expected status 2, got {:?}", result.outcome);
        };
        assert!(reason.contains("File too large"), "{reason}");
        let announced = rt.block_on(inbox.recv()).unwrap();
        assert!(matches!(announced.outcome, Err(TransferError::Receiver(_))));
        assert!(dir_entries(recv_dir.path()).is_empty(), "resume {resume}");
    }
    // Small files still arrive.
    let data = random_bytes(1000);
    rt.block_on(sender.transfer_chunk(
        ChunkSource::Memory(data.clone().into()),
        receiver.local_addr(),
        TransferOptions::to_file("small.bin"),
    ))
    .unwrap();
    assert_eq!(
        std::fs::read(recv_dir.path().join("small.bin")).unwrap(),
        data
    );
}

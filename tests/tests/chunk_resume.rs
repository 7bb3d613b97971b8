//! A connection cut mid-transfer: both sides report it, the temporary file
//! is removed, or kept and resumed from with the whole file still verified.

use std::sync::Arc;
use std::time::Duration;

use octopii::ClusterCa;
use octopii::chunk::{ChunkInbox, ChunkSource, Progress, TransferError, TransferOptions};
use octopii::config::ChunkConfig;
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{config, dir_entries, next_received, random_bytes};

const SIZE: usize = 16 * 1024 * 1024;
/// Cut when the sender has written this much: flow control (an 8 MiB
/// stream window) means the receiver has read at least 4 MiB by then.
const CUT_AT: u64 = 12 * 1024 * 1024;

struct Setup {
    rt: OctopiiRuntime,
    receiver: OctopiiNode,
    inbox: ChunkInbox,
    sender: OctopiiNode,
    recv_dir: tempfile::TempDir,
    src_dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        ..ChunkConfig::default()
    };
    let mut receiver_config = config(ca.issue_node("receiver", 1).unwrap());
    receiver_config.chunk = chunk;
    // The cut's close packet can be lost on a loaded loopback; the
    // receiver then learns of the cut from its next keep-alive (answered
    // by a close or a reset), so keep that interval short.
    receiver_config.transport.keep_alive_interval_ms = 200;
    receiver_config.transport.idle_timeout_ms = 5_000;
    let receiver = OctopiiNode::new(receiver_config, &rt).unwrap();
    let inbox = receiver.serve_chunks().unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    Setup {
        rt,
        receiver,
        inbox,
        sender,
        recv_dir,
        src_dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn source(&self, data: &[u8]) -> ChunkSource {
        let path = self.src_dir.path().join("source.bin");
        std::fs::write(&path, data).unwrap();
        ChunkSource::File(path)
    }

    /// Sends `data` and closes the whole connection once `CUT_AT` bytes
    /// were written; returns the sender's error.
    fn send_and_cut(&self, data: &[u8], resume: bool) -> TransferError {
        let conn = self
            .rt
            .block_on(self.sender.connect(self.receiver.local_addr()))
            .unwrap();
        let cut = Arc::new(move |p: &Progress| {
            if p.done >= CUT_AT {
                conn.quinn().close(0u32.into(), b"cut by the test");
            }
        });
        let options = TransferOptions::to_file("big.bin")
            .resume(resume)
            .progress(cut)
            .stall_timeout(Duration::from_secs(5));
        let result = self
            .rt
            .block_on(self.sender.transfer_chunk_to_peers(
                self.source(data),
                &[self.receiver.local_addr()],
                options,
            ))
            .pop()
            .unwrap();
        assert!(result.outcome.is_err(), "{result:?}");
        result.outcome.unwrap_err()
    }

    /// The receiver's report of the broken transfer.
    fn receiver_error(&mut self) -> TransferError {
        let received = next_received(&self.rt, &mut self.inbox);
        assert_eq!(received.name, "big.bin");
        received.outcome.unwrap_err()
    }

    fn partial(&self) -> std::path::PathBuf {
        self.recv_dir.path().join(".big.bin.octopii-partial")
    }
}

#[test]
fn a_cut_connection_fails_both_sides_and_leaves_nothing() {
    let mut s = setup();
    let error = s.send_and_cut(&random_bytes(SIZE), false);
    assert!(matches!(error, TransferError::Connection(_)), "{error:?}");
    let error = s.receiver_error();
    assert!(matches!(error, TransferError::Connection(_)), "{error:?}");
    assert!(dir_entries(s.recv_dir.path()).is_empty());
}

#[test]
fn a_cut_transfer_resumes_from_what_the_receiver_holds() {
    let mut s = setup();
    let data = random_bytes(SIZE);
    s.send_and_cut(&data, true);
    s.receiver_error();
    // Only the partial file: nothing at the destination.
    assert_eq!(dir_entries(s.recv_dir.path()), [".big.bin.octopii-partial"]);
    let held = std::fs::metadata(s.partial()).unwrap().len();
    assert!(held > 0 && held < SIZE as u64, "held {held}");
    assert_eq!(std::fs::read(s.partial()).unwrap(), data[..held as usize]);

    let result =
        s.rt.block_on(s.sender.transfer_chunk(
            s.source(&data),
            s.receiver.local_addr(),
            TransferOptions::to_file("big.bin").resume(true),
        ))
        .unwrap();
    assert!(result.outcome.is_ok());
    assert_eq!(result.resumed_from, held);
    assert_eq!(result.bytes_transferred, SIZE as u64 - held);
    assert_eq!(
        std::fs::read(s.recv_dir.path().join("big.bin")).unwrap(),
        data
    );
    assert_eq!(dir_entries(s.recv_dir.path()), ["big.bin"]);
}

#[test]
fn a_resume_against_a_changed_source_fails_the_whole_file_hash() {
    let mut s = setup();
    let data = random_bytes(SIZE);
    s.send_and_cut(&data, true);
    s.receiver_error();
    assert!(s.partial().exists());
    // The source changed in the part the receiver already holds.
    let mut changed = data.clone();
    changed[10] ^= 1;
    let result =
        s.rt.block_on(s.sender.transfer_chunk_to_peers(
            s.source(&changed),
            &[s.receiver.local_addr()],
            TransferOptions::to_file("big.bin").resume(true),
        ))
        .pop()
        .unwrap();
    assert!(result.resumed_from > 0);
    assert_eq!(result.outcome, Err(TransferError::ChecksumMismatch));
    assert!(dir_entries(s.recv_dir.path()).is_empty());
}

#[test]
fn a_dropped_transfer_is_abandoned_and_the_receiver_keeps_nothing() {
    let mut s = setup();
    let data = random_bytes(SIZE);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = done.clone();
    let options = TransferOptions::to_file("big.bin").progress(Arc::new(move |p: &Progress| {
        seen.store(p.done, std::sync::atomic::Ordering::Relaxed);
    }));
    let source = s.source(&data);
    let to = [s.receiver.local_addr()];
    s.rt.block_on(async {
        let transfer = s.sender.transfer_chunk_to_peers(source, &to, options);
        tokio::select! {
            _ = transfer => panic!("the transfer finished before it was dropped"),
            () = async {
                while done.load(std::sync::atomic::Ordering::Relaxed) < 1024 * 1024 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } => {}
        }
    });
    // The receiver sees the stream end early or reset: a failure, no file.
    s.receiver_error();
    assert!(dir_entries(s.recv_dir.path()).is_empty());
}

#[test]
fn a_complete_transfer_removes_a_stale_partial_file() {
    let mut s = setup();
    let data = random_bytes(SIZE);
    s.send_and_cut(&data, true);
    s.receiver_error();
    assert!(s.partial().exists());
    // A later transfer without resume replaces the destination whole.
    let result =
        s.rt.block_on(s.sender.transfer_chunk(
            s.source(&data),
            s.receiver.local_addr(),
            TransferOptions::to_file("big.bin"),
        ))
        .unwrap();
    assert_eq!(result.resumed_from, 0);
    assert_eq!(dir_entries(s.recv_dir.path()), ["big.bin"]);
}

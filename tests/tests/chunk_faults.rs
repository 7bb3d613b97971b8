//! Bad input and faults: every failed transfer is reported with its
//! reason, leaves nothing at the destination, and the node keeps serving.
//! Corrupt data and lying size headers come from a sender written from
//! `docs/PROTOCOL.md` (`octopii_tests::hostile_sender`).

use std::net::SocketAddr;

use octopii::ClusterCa;
use octopii::chunk::{ChunkInbox, ChunkSource, TransferError, TransferOptions, TransferResult};
use octopii::config::ChunkConfig;
use octopii::rpc::Code;
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::hostile_sender::{self, Destination, Lie, Verdict};
use octopii_tests::{chunk_node, config, dir_entries, next_received, random_bytes};

struct Pair {
    rt: OctopiiRuntime,
    receiver: OctopiiNode,
    inbox: ChunkInbox,
    sender: OctopiiNode,
    recv_dir: tempfile::TempDir,
}

fn pair(max_memory_bytes: u64) -> Pair {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        max_memory_bytes,
        stall_timeout_ms: 5_000,
        ..ChunkConfig::default()
    };
    let (receiver, inbox) = chunk_node(&ca, "receiver", &rt, chunk);
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    Pair {
        rt,
        receiver,
        inbox,
        sender,
        recv_dir,
    }
}

impl Pair {
    fn send(&self, data: &[u8], options: TransferOptions) -> TransferResult {
        let source = ChunkSource::Memory(data.to_vec().into());
        let to = [self.receiver.local_addr()];
        let mut results = self
            .rt
            .block_on(self.sender.transfer_chunk_to_peers(source, &to, options));
        results.pop().unwrap()
    }

    /// Sends `data` with the sender written from the protocol document,
    /// lying as `lie` says.
    fn send_by_hand(&self, destination: Destination<'_>, data: &[u8], lie: Option<Lie>) -> Verdict {
        self.rt.block_on(async {
            let conn = self.sender.connect(self.receiver.local_addr()).await;
            hostile_sender::send(&conn.unwrap(), destination, data, lie).await
        })
    }

    /// The receiver still takes a good transfer afterwards.
    fn still_serves(&self) {
        let data = random_bytes(70_000);
        let result = self.send(&data, TransferOptions::to_file("after.bin"));
        assert!(result.outcome.is_ok(), "{result:?}");
        assert_eq!(
            std::fs::read(self.recv_dir.path().join("after.bin")).unwrap(),
            data
        );
        std::fs::remove_file(self.recv_dir.path().join("after.bin")).unwrap();
    }

    fn next_failure(&mut self) -> TransferError {
        next_received(&self.rt, &mut self.inbox)
            .outcome
            .expect_err("a failure")
    }
}

fn refused(result: &TransferResult) -> (Code, String) {
    assert!(result.outcome.is_err(), "{result:?}");
    assert_eq!(result.bytes_transferred, 0, "refused before any data");
    match &result.outcome {
        Err(TransferError::Refused { code, reason }) => (*code, reason.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_byte_flipped_in_flight_is_a_checksum_mismatch_and_nothing_is_kept() {
    let mut p = pair(1 << 20);
    // Told the truth, the hand-written sender delivers: only its lies fail.
    let data = random_bytes(70_000);
    let verdict = p.send_by_hand(Destination::File("honest.bin"), &data, None);
    assert_eq!((verdict.status, verdict.reason.as_str()), (0, ""));
    assert!(next_received(&p.rt, &mut p.inbox).outcome.is_ok());
    let honest = p.recv_dir.path().join("honest.bin");
    assert_eq!(std::fs::read(&honest).unwrap(), data);
    std::fs::remove_file(honest).unwrap();

    let file = Destination::File("flipped.bin");
    for size in [1usize, 65_536, 3 * 65_536 + 1] {
        let flip = Some(Lie::FlipByte(size / 2));
        let verdict = p.send_by_hand(file, &random_bytes(size), flip);
        assert_eq!(verdict.status, 1, "size {size}: {verdict:?}");
        assert_eq!(p.next_failure(), TransferError::ChecksumMismatch);
        assert!(dir_entries(p.recv_dir.path()).is_empty(), "size {size}");
    }
    // The same to memory: nothing reaches the application.
    let memory = Destination::Memory("flipped");
    let verdict = p.send_by_hand(memory, &random_bytes(100), Some(Lie::FlipByte(0)));
    assert_eq!(verdict.status, 1, "{verdict:?}");
    assert_eq!(p.next_failure(), TransferError::ChecksumMismatch);
    p.still_serves();
}

#[test]
fn a_size_header_that_differs_from_the_bytes_sent_is_status_2() {
    let mut p = pair(1 << 20);
    let file = Destination::File("sized.bin");
    for delta in [1i64, 1000, -1, -1000] {
        let lie = Some(Lie::SizeHeader(delta));
        let verdict = p.send_by_hand(file, &random_bytes(200_000), lie);
        assert_eq!(verdict.status, 2, "delta {delta}: {verdict:?}");
        let reason = &verdict.reason;
        assert!(reason.contains("size header"), "delta {delta}: {reason}");
        let failure = p.next_failure();
        assert!(
            matches!(&failure, TransferError::Receiver(why) if why.contains("size header")),
            "delta {delta}: {failure:?}"
        );
        assert!(dir_entries(p.recv_dir.path()).is_empty(), "delta {delta}");
    }
    p.still_serves();
}

#[test]
fn names_leading_out_of_the_receive_directory_are_refused() {
    let p = pair(1 << 20);
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), p.recv_dir.path().join("escape")).unwrap();
    let names = [
        "../evil.bin".to_owned(),
        "a/../../evil.bin".to_owned(),
        "./evil.bin".to_owned(),
        outside.path().join("evil.bin").display().to_string(),
        "escape/evil.bin".to_owned(),
        String::new(),
    ];
    for name in &names {
        let result = p.send(b"payload", TransferOptions::to_file(name));
        let (code, reason) = refused(&result);
        assert_eq!(code, Code::InvalidArgument, "{name:?}: {reason}");
    }
    assert!(dir_entries(outside.path()).is_empty());
    assert_eq!(dir_entries(p.recv_dir.path()), ["escape"]);
    p.still_serves();
}

#[test]
fn an_unwritable_destination_is_refused_with_the_reason() {
    let p = pair(1 << 20);
    // A directory that is a regular file stops root as well.
    std::fs::write(p.recv_dir.path().join("blocker"), b"").unwrap();
    let result = p.send(b"payload", TransferOptions::to_file("blocker/file.bin"));
    let (code, reason) = refused(&result);
    assert_eq!(code, Code::Internal);
    assert!(reason.contains("Not a directory"), "{reason}");
    // A missing directory is the request's fault: the path names nothing.
    let result = p.send(b"payload", TransferOptions::to_file("missing/file.bin"));
    let (code, reason) = refused(&result);
    assert_eq!(code, Code::InvalidArgument, "{reason}");
    assert!(reason.contains("No such file"), "{reason}");
    assert_eq!(dir_entries(p.recv_dir.path()), ["blocker"]);
    p.still_serves();
}

#[test]
fn a_destination_that_cannot_be_replaced_is_status_2_and_nothing_is_kept() {
    let mut p = pair(1 << 20);
    std::fs::create_dir(p.recv_dir.path().join("taken")).unwrap();
    for resume in [false, true] {
        let options = TransferOptions::to_file("taken").resume(resume);
        let result = p.send(&random_bytes(70_000), options);
        assert!(result.outcome.is_err(), "{result:?}");
        let Err(TransferError::Receiver(reason)) = &result.outcome else {
            panic!("expected status 2, got {:?}", result.outcome);
        };
        assert!(reason.contains("Is a directory"), "{reason}");
        assert!(matches!(p.next_failure(), TransferError::Receiver(_)));
        assert_eq!(dir_entries(p.recv_dir.path()), ["taken"], "resume {resume}");
    }
    p.still_serves();
}

#[test]
fn the_receivers_temporary_names_cannot_be_destinations() {
    let mut p = pair(1 << 20);
    // A resumable transfer to `foo` cut after its first bytes would leave
    // `.foo.octopii-partial`; nobody may write there, nor to a fresh
    // temporary name.
    std::fs::create_dir(p.recv_dir.path().join("sub")).unwrap();
    std::fs::write(p.recv_dir.path().join(".foo.octopii-partial"), b"kept").unwrap();
    for name in [
        ".foo.octopii-partial",
        "sub/.foo.octopii-partial",
        ".octopii-AbC123.tmp",
        "sub/.octopii-x",
    ] {
        let result = p.send(&random_bytes(1000), TransferOptions::to_file(name));
        let (code, reason) = refused(&result);
        assert_eq!(code, Code::InvalidArgument, "{name}: {reason}");
        assert!(reason.contains("reserved"), "{name}: {reason}");
    }
    assert_eq!(
        std::fs::read(p.recv_dir.path().join(".foo.octopii-partial")).unwrap(),
        b"kept"
    );
    assert_eq!(dir_entries(&p.recv_dir.path().join("sub")), [] as [&str; 0]);
    // The partial file is still resumed from by its own destination.
    let data = [&b"kept"[..], &random_bytes(1000)].concat();
    let result = p.send(&data, TransferOptions::to_file("foo").resume(true));
    assert!(
        result.outcome.is_ok() && result.resumed_from == 4,
        "{result:?}"
    );
    assert_eq!(std::fs::read(p.recv_dir.path().join("foo")).unwrap(), data);
    assert!(next_received(&p.rt, &mut p.inbox).outcome.is_ok());
    assert_eq!(dir_entries(p.recv_dir.path()), ["foo", "sub"]);
}

#[test]
fn files_over_the_size_limit_are_refused_before_any_data() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        max_file_bytes: 100_000,
        ..ChunkConfig::default()
    };
    let (receiver, mut inbox) = chunk_node(&ca, "receiver", &rt, chunk);
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let send = |data: Vec<u8>, name: &str| {
        let source = ChunkSource::Memory(data.into());
        let options = TransferOptions::to_file(name).resume(true);
        rt.block_on(sender.transfer_chunk_to_peers(source, &[receiver.local_addr()], options))
            .pop()
            .unwrap()
    };
    let result = send(random_bytes(100_001), "big.bin");
    let (code, reason) = refused(&result);
    assert_eq!(code, Code::ResourceExhausted);
    assert!(reason.contains("chunk.max_file_bytes"), "{reason}");
    // Refused before anything was created, not even a partial file.
    assert!(dir_entries(recv_dir.path()).is_empty());
    // Up to the limit is fine.
    let data = random_bytes(100_000);
    let result = send(data.clone(), "fits.bin");
    assert!(result.outcome.is_ok(), "{result:?}");
    assert_eq!(
        std::fs::read(recv_dir.path().join("fits.bin")).unwrap(),
        data
    );
    assert!(next_received(&rt, &mut inbox).outcome.is_ok());
}

#[test]
fn a_receivers_leftover_temporary_files_are_removed_when_it_serves_again() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    // What a receiver that crashed mid-transfer leaves behind.
    std::fs::write(recv_dir.path().join(".octopii-Ab12Cd.tmp"), b"half").unwrap();
    std::fs::write(recv_dir.path().join(".big.bin.octopii-partial"), b"half").unwrap();
    std::fs::write(recv_dir.path().join("earlier.bin"), b"whole").unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        ..ChunkConfig::default()
    };
    let (receiver, _inbox) = chunk_node(&ca, "receiver", &rt, chunk.clone());
    // The fresh temporary file is gone; the partial file stays to resume.
    assert_eq!(
        dir_entries(recv_dir.path()),
        [".big.bin.octopii-partial", "earlier.bin"]
    );
    // Another service on the same directory would remove this one's
    // temporary files: it is refused while this one serves.
    let refused = octopii::chunk::ChunkService::builder(&chunk)
        .build()
        .unwrap_err();
    assert!(refused.to_string().contains("in use"), "{refused}");
    drop(receiver);
}

#[test]
fn memory_over_the_cap_is_refused_before_reading() {
    let mut p = pair(100_000);
    let result = p.send(&random_bytes(100_001), TransferOptions::to_memory("big"));
    let (code, reason) = refused(&result);
    assert_eq!(code, Code::ResourceExhausted);
    assert!(reason.contains("memory cap"), "{reason}");
    // Up to the cap is fine.
    let result = p.send(&random_bytes(100_000), TransferOptions::to_memory("fits"));
    assert!(result.outcome.is_ok(), "{result:?}");
    let received = p.rt.block_on(p.inbox.recv()).unwrap();
    assert_eq!(received.name, "fits");
}

#[test]
fn files_are_refused_by_a_node_without_a_receive_directory() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let (receiver, _inbox) = chunk_node(&ca, "receiver", &rt, ChunkConfig::default());
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let result = rt.block_on(sender.transfer_chunk_to_peers(
        ChunkSource::Memory(bytes::Bytes::from_static(b"x")),
        &[receiver.local_addr()],
        TransferOptions::to_file("x"),
    ));
    let (code, _) = refused(&result[0]);
    assert_eq!(code, Code::Unavailable);
}

#[test]
fn a_missing_source_file_fails_every_peer_with_the_reason() {
    let p = pair(1 << 20);
    let results = p.rt.block_on(p.sender.transfer_chunk_to_peers(
        ChunkSource::File("no/such/file".into()),
        &[p.receiver.local_addr(), p.receiver.local_addr()],
        TransferOptions::to_file("x"),
    ));
    assert_eq!(results.len(), 2);
    for result in results {
        assert!(
            matches!(result.outcome, Err(TransferError::Source(_))),
            "{result:?}"
        );
    }
}

#[test]
fn an_unknown_peer_fails_alone() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let recv_dir = tempfile::tempdir().unwrap();
    let chunk = ChunkConfig {
        recv_dir: Some(recv_dir.path().to_owned()),
        ..ChunkConfig::default()
    };
    let (receiver, _inbox) = chunk_node(&ca, "receiver", &rt, chunk);
    let mut sender_config = config(ca.issue_node("sender", 1).unwrap());
    sender_config.transport.handshake_timeout_ms = 500;
    let sender = OctopiiNode::new(sender_config, &rt).unwrap();
    // A port nobody listens on.
    let nobody: SocketAddr = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let data = random_bytes(300_000);
    let results = rt.block_on(sender.transfer_chunk_to_peers(
        ChunkSource::Memory(data.clone().into()),
        &[nobody, receiver.local_addr()],
        TransferOptions::to_file("fanned.bin"),
    ));
    assert_eq!(results[0].peer, nobody);
    assert!(results[0].outcome.is_err());
    assert!(
        matches!(results[0].outcome, Err(TransferError::Connection(_))),
        "{:?}",
        results[0].outcome
    );
    assert!(results[1].outcome.is_ok(), "{:?}", results[1]);
    assert_eq!(
        std::fs::read(recv_dir.path().join("fanned.bin")).unwrap(),
        data
    );
}

#[test]
fn a_node_that_does_not_serve_chunks_refuses_as_unimplemented() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let plain = OctopiiNode::new(config(ca.issue_node("plain", 1).unwrap()), &rt).unwrap();
    let sender = OctopiiNode::new(config(ca.issue_node("sender", 1).unwrap()), &rt).unwrap();
    let result = rt.block_on(sender.transfer_chunk(
        ChunkSource::Memory(bytes::Bytes::from_static(b"x")),
        plain.local_addr(),
        TransferOptions::to_memory("x"),
    ));
    match result {
        Err(octopii::OctopiiError::Chunk(TransferError::Refused { code, .. })) => {
            assert_eq!(code, Code::Unimplemented);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

//! Raft under faults and bad input: a partitioned minority, undecodable
//! messages, oversized proposals, a corrupted WAL.

use std::time::Duration;

use bytes::Bytes;
use octopii::chunk::{ChunkSource, TransferError, TransferOptions};
use octopii::raft::service::RaftServiceClient;
use octopii::raft::{
    MAX_SNAPSHOT_MESSAGE, RaftError, RaftRole, SNAPSHOT_DESTINATION, SNAPSHOT_SERVICE,
};
use octopii::{OctopiiError, OctopiiNode};
use octopii_tests::captured_logs::capture_logs;
use octopii_tests::raft::{Cluster, get, put, test_raft_config};

/// Sends `bytes` from `from` to `to`'s snapshot receiver as a leader's
/// snapshot would travel; the receiver's reason if it refused them.
async fn send_as_snapshot(cluster: &Cluster, from: u64, to: u64, bytes: Vec<u8>) -> String {
    let options = TransferOptions::to_memory(SNAPSHOT_DESTINATION).service(SNAPSHOT_SERVICE);
    let source = ChunkSource::Memory(Bytes::from(bytes));
    let result = cluster
        .octopii(from)
        .transfer_chunk(source, cluster.addrs[&to], options)
        .await;
    match result {
        // The chunk protocol delivered the bytes intact; raft refused them.
        Err(OctopiiError::Chunk(TransferError::Receiver(reason))) => reason,
        other => panic!("the snapshot receiver took unusable data: {other:?}"),
    }
}

#[test]
fn a_cut_off_minority_cannot_commit_while_the_majority_can() {
    let cluster = Cluster::start_on_sim_net(3, test_raft_config());
    let old = cluster.leader();
    let majority: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|&id| id != old)
        .collect();
    for &id in &majority {
        cluster.partition(old, id);
    }
    cluster.runtime.block_on(async {
        // The isolated old leader cannot commit.
        let err = put(cluster.raft(old), "minority", "lost")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                OctopiiError::Raft(RaftError::Timeout { .. } | RaftError::NotLeader { .. })
            ),
            "{err}"
        );
    });
    // The majority elects a leader of its own and commits.
    let new = cluster.leader_among(&majority, Duration::from_secs(10));
    assert_ne!(new, old);
    cluster.runtime.block_on(async {
        put(cluster.raft(majority[0]), "majority", "kept")
            .await
            .unwrap();
        assert_eq!(get(cluster.raft(new), "minority").await.unwrap(), None);
    });
    // Healed, the old leader follows and its uncommitted write is gone.
    cluster.heal();
    cluster.runtime.block_on(async {
        let kept = get(cluster.raft(old), "majority").await.unwrap();
        assert_eq!(kept.as_deref(), Some("kept"));
        assert_eq!(get(cluster.raft(old), "minority").await.unwrap(), None);
    });
    // All three agree on one leader again.
    cluster.leader();
}

#[test]
fn undecodable_raft_messages_are_dropped_and_the_node_keeps_serving() {
    let logs = capture_logs();
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    cluster.runtime.block_on(async {
        // Any node's client can reach the service; use a follower's node.
        let follower = cluster.follower_of(leader);
        let node: &OctopiiNode = cluster.octopii(follower);
        let client = RaftServiceClient::new(node, cluster.addrs[&leader]);
        client
            .step(vec![vec![0xff; 64], b"not protobuf".to_vec(), Vec::new()])
            .await
            .expect("the call itself succeeds");
        let dropped = ["dropping a raft message that does not decode"];
        assert!(logs.logged(&dropped).await, "{}", logs.text());
        let refused = send_as_snapshot(&cluster, follower, leader, vec![0x0a, 0xff, 0xff]).await;
        assert!(refused.contains("unusable snapshot message"), "{refused}");
        // The leader is unharmed and still serves.
        put(cluster.raft(leader), "still", "serving").await.unwrap();
        let value = get(cluster.raft(follower), "still").await.unwrap();
        assert_eq!(value.as_deref(), Some("serving"));
    });
    assert_ne!(cluster.raft(leader).status().role, RaftRole::Stopped);
}

#[test]
fn an_oversized_proposal_is_refused_with_a_clear_error() {
    let config = octopii::raft::RaftConfig {
        max_proposal_size: 1024,
        ..test_raft_config()
    };
    let cluster = Cluster::start(3, config);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    cluster.runtime.block_on(async {
        for id in [leader, follower] {
            let err = cluster.raft(id).propose(vec![7; 1025]).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    OctopiiError::Raft(RaftError::ProposalTooLarge {
                        size: 1025,
                        max: 1024
                    })
                ),
                "{err}"
            );
        }
        // Sent straight to the leader's service, it is refused there too.
        let node = cluster.octopii(follower);
        let client = RaftServiceClient::new(node, cluster.addrs[&leader]);
        let proposal = octopii::raft::Proposal::Command(vec![7; 4096]);
        let refused = client.propose(proposal).await.unwrap();
        assert_eq!(
            refused,
            Err(RaftError::ProposalTooLarge {
                size: 4096,
                max: 1024
            })
        );
        // A proposal at the limit is fine.
        cluster.raft(follower).propose(vec![7; 1024]).await.unwrap();
    });
}

#[test]
fn a_corrupted_wal_stops_the_node_from_rejoining() {
    let mut cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    cluster.runtime.block_on(async {
        for i in 0..10 {
            put(cluster.raft(leader), &format!("k{i}"), "v")
                .await
                .unwrap();
        }
    });
    let applied = cluster.raft(leader).status().applied_index;
    cluster.wait_applied(follower, applied, Duration::from_secs(5));
    cluster.stop(follower);
    let wal_dir = cluster.data_dir(follower).join("raft").join("wal");
    let segment = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip a byte inside the first record (segment header: 40 bytes,
    // record header: 8), which has valid records after it.
    bytes[40 + 8 + 2] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();
    let err = cluster.restart(follower).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("refusing to start"), "{message}");
    assert!(message.contains("CRC mismatch"), "{message}");
}

/// A snapshot file as `docs/PROTOCOL.md` lays it out: magic, payload
/// length (u64 LE), `crc` (u32 LE), then the payload (no addresses, then
/// the state).
fn snapshot_file(state: &[u8], crc: u32) -> (Vec<u8>, u64) {
    let mut payload = vec![8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(state);
    let len = payload.len() as u64;
    let mut file = b"OCTORFSN".to_vec();
    file.extend_from_slice(&len.to_le_bytes());
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&payload);
    (file, len)
}

/// A `MsgSnapshot` from `from` to `to` at `index`, term 1, whose data is
/// the reference `(len, crc)` to its file.
fn snapshot_message(
    cluster: &Cluster,
    from: u64,
    to: u64,
    index: u64,
    len: u64,
    crc: u32,
) -> Vec<u8> {
    use protobuf::Message as _;
    use raft::eraftpb::{Message, MessageType};

    let mut message = Message {
        to,
        from,
        term: cluster.raft(from).status().term,
        ..Message::default()
    };
    message.set_msg_type(MessageType::MsgSnapshot);
    let mut reference = len.to_le_bytes().to_vec();
    reference.extend_from_slice(&crc.to_le_bytes());
    message.mut_snapshot().data = reference.into();
    message.mut_snapshot().mut_metadata().index = index;
    message.mut_snapshot().mut_metadata().term = 1;
    message
        .mut_snapshot()
        .mut_metadata()
        .mut_conf_state()
        .voters = vec![1, 2, 3];
    message.write_to_bytes().unwrap()
}

#[test]
fn a_damaged_or_missing_snapshot_file_is_refused() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    cluster.runtime.block_on(async {
        // No file has arrived for this snapshot.
        let message = snapshot_message(&cluster, leader, follower, 1_000, 16, 0);
        let refused = send_as_snapshot(&cluster, leader, follower, message).await;
        assert!(refused.contains("has arrived"), "{refused}");

        // A file whose CRC does not match its payload (a damaged disk at
        // the sender: the transfer's SHA-256 cannot see that).
        let (file, len) = snapshot_file(b"state", 0x1234_5678);
        assert_ne!(crc32c::crc32c(&file[20..]), 0x1234_5678);
        let options = TransferOptions::to_file("snapshot-00000000000003e8-0000000000000001")
            .service(SNAPSHOT_SERVICE);
        cluster
            .octopii(leader)
            .transfer_chunk(
                ChunkSource::Memory(Bytes::from(file)),
                cluster.addrs[&follower],
                options,
            )
            .await
            .expect("the file arrives intact");
        let message = snapshot_message(&cluster, leader, follower, 1_000, len, 0x1234_5678);
        let refused = send_as_snapshot(&cluster, leader, follower, message).await;
        assert!(refused.contains("CRC mismatch"), "{refused}");
        put(cluster.raft(leader), "after", "refusal").await.unwrap();
        let value = get(cluster.raft(follower), "after").await.unwrap();
        assert_eq!(value.as_deref(), Some("refusal"));
    });
    assert!(cluster.raft(follower).status().snapshot_index < 1_000);
}

#[test]
fn a_snapshot_message_above_the_memory_cap_is_refused_before_its_data() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    cluster.runtime.block_on(async {
        let options = TransferOptions::to_memory(SNAPSHOT_DESTINATION).service(SNAPSHOT_SERVICE);
        let too_big = MAX_SNAPSHOT_MESSAGE as usize + 1;
        let source = ChunkSource::Memory(Bytes::from(vec![0u8; too_big]));
        let result = cluster
            .octopii(leader)
            .transfer_chunk_to_peers(source, &[cluster.addrs[&follower]], options)
            .await
            .remove(0);
        assert!(
            matches!(
                result.outcome,
                Err(TransferError::Refused {
                    code: octopii::rpc::Code::ResourceExhausted,
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(result.bytes_transferred, 0, "refused before any data");
        // The follower keeps replicating.
        put(cluster.raft(leader), "after", "refusal").await.unwrap();
        let value = get(cluster.raft(follower), "after").await.unwrap();
        assert_eq!(value.as_deref(), Some("refusal"));
    });
}

/// Sends `messages` to `to`'s RaftService from `from`'s node.
async fn step_raw(cluster: &Cluster, from: u64, to: u64, messages: Vec<raft::eraftpb::Message>) {
    use protobuf::Message as _;
    let client = RaftServiceClient::new(cluster.octopii(from), cluster.addrs[&to]);
    let encoded = messages
        .iter()
        .map(|m| m.write_to_bytes().unwrap())
        .collect();
    client
        .step(encoded)
        .await
        .expect("the call itself succeeds");
}

/// Waits until node `id` has dropped at least `count` invalid messages.
fn wait_invalid(cluster: &Cluster, id: u64, count: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = cluster.raft(id).status();
        assert_ne!(status.role, RaftRole::Stopped, "node {id} stopped");
        if status.invalid_messages >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} dropped fewer than {count} messages: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_member_cannot_crash_a_node_with_messages_raft_would_panic_on() {
    use raft::eraftpb::{Message, MessageType};

    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    cluster.runtime.block_on(async {
        put(cluster.raft(leader), "before", "1").await.unwrap();
    });
    let applied = cluster.raft(leader).status().applied_index;
    cluster.wait_applied(follower, applied, Duration::from_secs(5));
    let status = cluster.raft(follower).status();
    let (term, last) = (status.term, status.last_index);
    let message = |kind: MessageType, from: u64, to: u64| {
        let mut m = Message {
            from,
            to,
            term,
            ..Message::default()
        };
        m.set_msg_type(kind);
        m
    };

    // To the follower, as if from the leader.
    let heartbeat = Message {
        commit: last + 1_000,
        ..message(MessageType::MsgHeartbeat, leader, follower)
    };
    let append_past_the_log = Message {
        index: last + 10,
        log_term: 0,
        commit: last + 10,
        ..message(MessageType::MsgAppend, leader, follower)
    };
    let mut unrestorable = message(MessageType::MsgSnapshot, leader, follower);
    let metadata = unrestorable.mut_snapshot().mut_metadata();
    metadata.index = last + 1_000;
    metadata.term = term;
    metadata.mut_conf_state().voters = vec![follower];
    metadata.mut_conf_state().learners = vec![follower];
    // Indexes where raft-rs's own `index + 1` would overflow.
    let append_at_the_end_of_indexes = Message {
        index: u64::MAX,
        log_term: term,
        entries: vec![Default::default()].into(),
        ..message(MessageType::MsgAppend, leader, follower)
    };
    let mut snapshot_at_the_end_of_indexes = message(MessageType::MsgSnapshot, leader, follower);
    let metadata = snapshot_at_the_end_of_indexes.mut_snapshot().mut_metadata();
    metadata.index = u64::MAX;
    metadata.term = term;
    metadata.mut_conf_state().voters = vec![leader, follower];
    // To the leader, as from the follower: messages raft-rs only makes
    // itself.
    let empty_proposal = Message {
        term: 0,
        ..message(MessageType::MsgPropose, follower, leader)
    };
    let read_without_context = Message {
        term: 0,
        ..message(MessageType::MsgReadIndex, follower, leader)
    };

    cluster.runtime.block_on(async {
        let to_follower = vec![
            heartbeat,
            append_past_the_log,
            unrestorable,
            append_at_the_end_of_indexes,
            snapshot_at_the_end_of_indexes,
        ];
        step_raw(&cluster, leader, follower, to_follower).await;
        let to_leader = vec![empty_proposal, read_without_context];
        step_raw(&cluster, follower, leader, to_leader).await;
    });
    wait_invalid(&cluster, follower, 5);
    wait_invalid(&cluster, leader, 2);
    // Both keep serving.
    cluster.runtime.block_on(async {
        put(cluster.raft(follower), "after", "2").await.unwrap();
        let value = get(cluster.raft(follower), "after").await.unwrap();
        assert_eq!(value.as_deref(), Some("2"));
    });
    for id in cluster.running() {
        assert_ne!(cluster.raft(id).status().role, RaftRole::Stopped);
    }
}

#[test]
fn a_panicking_state_machine_stops_the_node_with_the_panic_as_its_reason() {
    use octopii_tests::raft::KvCommand;

    let cluster = Cluster::start(1, test_raft_config());
    cluster.leader();
    let raft = cluster.raft(1);
    let command = octopii::codec::encode(&KvCommand::Crash("state machine bug 42".into()));
    let err = cluster
        .runtime
        .block_on(raft.propose(command.unwrap()))
        .unwrap_err();
    let OctopiiError::Raft(RaftError::Failed { reason }) = &err else {
        panic!("expected a failure naming the panic, got {err}");
    };
    assert!(reason.contains("state machine bug 42"), "{reason}");
    assert!(
        matches!(raft.stopped(), Some(RaftError::Failed { reason: r }) if r == *reason),
        "{:?}",
        raft.stopped()
    );
    assert_eq!(raft.status().role, RaftRole::Stopped);
    // Later calls say why, too.
    let later = cluster
        .runtime
        .block_on(put(raft, "after", "x"))
        .unwrap_err();
    assert!(
        later.to_string().contains("state machine bug 42"),
        "{later}"
    );
    let read = cluster.runtime.block_on(get(raft, "after")).unwrap_err();
    assert!(read.to_string().contains("state machine bug 42"), "{read}");
}

//! Raft's trust model as an attacker meets it: a certificate of the wrong
//! role speaking raft, a member speaking for another, a member moving
//! another member to its own address, and a certificate holder answering
//! at a member's address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::raft::service::{Proposal, RaftService, RaftServiceClient, RaftServiceServer};
use octopii::raft::{KnownMembers, RaftError, SNAPSHOT_DESTINATION, SNAPSHOT_SERVICE};
use octopii::rpc::{Client, Code, Context};
use octopii::transport::tls::{NodeCredentials, Role};
use octopii::{OctopiiNode, codec};
use octopii_tests::captured_logs::capture_logs;
use octopii_tests::config;
use octopii_tests::raft::{Cluster, KvCommand, test_raft_config};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

const WAIT: Duration = Duration::from_secs(10);

/// A node outside the cluster holding `creds` (signed by the cluster's CA).
fn holder(
    cluster: &Cluster,
    creds: Result<NodeCredentials, octopii::transport::TransportError>,
) -> OctopiiNode {
    OctopiiNode::new(config(creds.expect("certificate")), &cluster.runtime).expect("node")
}

#[test]
fn certificates_that_name_no_member_may_not_speak_raft() {
    let cluster = Cluster::start(1, test_raft_config());
    cluster.leader();
    let addr = cluster.addrs[&1];
    let ca = cluster.ca();
    let strangers = [
        ca.issue_client("mallory"),
        ca.issue_node("outsider", 9),
        ca.issue("legacy", Role::Unknown),
    ];
    for creds in strangers {
        let stranger = holder(&cluster, creds);
        let raft = RaftServiceClient::new(&stranger, addr);
        cluster.runtime.block_on(async {
            let stepped = raft.step(Vec::new()).await.unwrap_err();
            assert_eq!(stepped.code(), Code::PermissionDenied, "{stepped}");
            let proposal = Proposal::Command(b"x".to_vec());
            let proposed = raft.propose(proposal).await.unwrap_err();
            assert_eq!(proposed.code(), Code::PermissionDenied, "{proposed}");
            let snapshot =
                TransferOptions::to_memory(SNAPSHOT_DESTINATION).service(SNAPSHOT_SERVICE);
            let source = ChunkSource::Memory(Bytes::from_static(b"not a snapshot"));
            let sent = stranger.transfer_chunk(source, addr, snapshot).await;
            let refused = sent.unwrap_err().to_string();
            assert!(refused.contains("PermissionDenied"), "{refused}");
            stranger.shutdown().await;
        });
    }
    // An admin may propose, though it is no member; it still may not step.
    let admin = holder(&cluster, ca.issue_admin("ops"));
    let raft = RaftServiceClient::new(&admin, addr);
    cluster.runtime.block_on(async {
        let put = codec::encode(&KvCommand::Put("k".into(), "v".into())).unwrap();
        let output = raft.propose(Proposal::Command(put)).await.unwrap();
        assert!(output.is_ok(), "{output:?}");
        let stepped = raft.step(Vec::new()).await.unwrap_err();
        assert_eq!(stepped.code(), Code::PermissionDenied);
        admin.shutdown().await;
    });
}

/// A member that refuses a node certificate asks its members about it;
/// none knows an outsider, so the outsider stays refused however long it
/// keeps calling, and may not ask who the members are either.
#[test]
fn no_member_vouches_for_an_outsider() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let outsider = holder(&cluster, cluster.ca().issue_node("outsider", 9));
    let raft = RaftServiceClient::new(&outsider, cluster.addrs[&follower]);
    cluster.runtime.block_on(async {
        // Long enough for the member to ask its members twice over.
        for _ in 0..4 {
            let stepped = raft.step(Vec::new()).await.unwrap_err();
            assert_eq!(stepped.code(), Code::PermissionDenied, "{stepped}");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let asked = raft.members().await.unwrap_err();
        assert_eq!(asked.code(), Code::PermissionDenied, "{asked}");
        outsider.shutdown().await;
    });
    // Members answer each other.
    let members = cluster.runtime.block_on(async {
        let client = RaftServiceClient::new(cluster.octopii(leader), cluster.addrs[&follower]);
        client.members().await.unwrap()
    });
    let ids: Vec<u64> = members.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(
        members.members.iter().all(|m| m.voter && m.addr.is_some()),
        "{members:?}"
    );
    assert!(members.applied_index > 0, "{members:?}");
}

#[test]
fn a_member_speaking_for_another_is_dropped_logged_and_counted() {
    let logs = capture_logs();
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let third = (1..=3).find(|id| ![leader, follower].contains(id)).unwrap();
    let term = cluster.raft(follower).status().term;
    // Member `third`'s certificate, claiming to be the leader at a far term.
    let forger = holder(
        &cluster,
        cluster.ca().issue_node(&format!("node-{third}"), third),
    );
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = leader;
    heartbeat.to = follower;
    heartbeat.term = term + 100;
    let forged = heartbeat.write_to_bytes().unwrap();
    let raft = RaftServiceClient::new(&forger, cluster.addrs[&follower]);
    cluster.runtime.block_on(async {
        raft.step(vec![forged]).await.unwrap();
        let caller = format!("caller=node-{third}");
        let from = format!("from={leader}");
        let dropped = [
            "dropping a raft message whose sender is not its caller",
            &caller,
            &from,
        ];
        assert!(logs.logged(&dropped).await, "{}", logs.text());
    });
    assert_eq!(cluster.raft(follower).forged_messages(), 1);
    assert!(cluster.raft(follower).status().term < term + 100);

    // The same as a snapshot, through RaftSnapshot.
    let mut snapshot = heartbeat;
    snapshot.set_msg_type(MessageType::MsgSnapshot);
    let source = ChunkSource::Memory(Bytes::from(snapshot.write_to_bytes().unwrap()));
    let options = TransferOptions::to_memory(SNAPSHOT_DESTINATION).service(SNAPSHOT_SERVICE);
    let sent =
        cluster
            .runtime
            .block_on(forger.transfer_chunk(source, cluster.addrs[&follower], options));
    assert!(sent.is_err(), "{sent:?}");
    assert_eq!(cluster.raft(follower).forged_messages(), 2);
    cluster.runtime.block_on(forger.shutdown());
}

#[test]
fn a_removed_member_may_no_longer_speak_raft() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let removed = cluster.follower_of(leader);
    // The removed member's own certificate, from a node of its own.
    let former = holder(
        &cluster,
        cluster.ca().issue_node(&format!("node-{removed}"), removed),
    );
    let raft = RaftServiceClient::new(&former, cluster.addrs[&leader]);
    cluster.runtime.block_on(async {
        // While it is a member, its certificate is admitted.
        raft.step(Vec::new()).await.unwrap();
        cluster.raft(leader).remove_node(removed).await.unwrap();
        let stepped = raft.step(Vec::new()).await.unwrap_err();
        assert_eq!(stepped.code(), Code::PermissionDenied, "{stepped}");
        let proposal = Proposal::Command(b"x".to_vec());
        let proposed = raft.propose(proposal).await.unwrap_err();
        assert_eq!(proposed.code(), Code::PermissionDenied, "{proposed}");
        let snapshot = TransferOptions::to_memory(SNAPSHOT_DESTINATION).service(SNAPSHOT_SERVICE);
        let source = ChunkSource::Memory(Bytes::from_static(b"not a snapshot"));
        let sent = former
            .transfer_chunk(source, cluster.addrs[&leader], snapshot)
            .await;
        let refused = sent.unwrap_err().to_string();
        assert!(refused.contains("PermissionDenied"), "{refused}");
        former.shutdown().await;
    });
}

/// A member that has fallen behind (its disk holds its syncs) still
/// lists a member the leader has removed; the leader, refusing the
/// removed member, asks it, and must not take its word.
#[test]
fn a_member_behind_cannot_vouch_for_a_removed_member() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let removed = cluster.follower_of(leader);
    let behind = (1..=3).find(|id| ![leader, removed].contains(id)).unwrap();
    let former = holder(
        &cluster,
        cluster.ca().issue_node(&format!("node-{removed}"), removed),
    );
    let raft = RaftServiceClient::new(&former, cluster.addrs[&leader]);
    cluster.fsync_gate(behind).hold();
    cluster.runtime.block_on(async {
        cluster.raft(leader).remove_node(removed).await.unwrap();
        // Long enough for the leader to ask the member behind, twice over.
        for _ in 0..4 {
            let stepped = raft.step(Vec::new()).await.unwrap_err();
            assert_eq!(stepped.code(), Code::PermissionDenied, "{stepped}");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        former.shutdown().await;
    });
    cluster.fsync_gate(behind).open();
}

#[test]
fn a_member_may_not_move_another_member_to_its_own_address() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let victim = cluster.follower_of(leader);
    let proposer = (1..=3).find(|id| ![leader, victim].contains(id)).unwrap();
    let attacker = holder(
        &cluster,
        cluster
            .ca()
            .issue_node(&format!("node-{proposer}"), proposer),
    );
    let raft = RaftServiceClient::new(&attacker, cluster.addrs[&leader]);
    let hijack = Proposal::AddVoter {
        id: victim,
        addr: attacker.local_addr(),
    };
    let answer = cluster
        .runtime
        .block_on(async { raft.propose(hijack).await.unwrap() });
    assert!(matches!(answer, Err(RaftError::Refused(_))), "{answer:?}");
    // The victim is still reached where it listens: the group works on.
    cluster.runtime.block_on(async {
        octopii_tests::raft::put(cluster.raft(victim), "still", "here")
            .await
            .unwrap();
    });
    cluster.runtime.block_on(attacker.shutdown());
}

/// A `RaftService` that only counts the calls it gets.
struct Counting(Arc<AtomicUsize>);

impl RaftService for Counting {
    async fn step(&self, _: &Context, _: Vec<Vec<u8>>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    async fn propose(&self, _: &Context, _: Proposal) -> Result<Vec<u8>, RaftError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(RaftError::Stopped)
    }

    async fn members(&self, _: &Context) -> KnownMembers {
        self.0.fetch_add(1, Ordering::SeqCst);
        KnownMembers {
            applied_index: 0,
            members: Vec::new(),
        }
    }
}

#[test]
fn another_certificate_at_a_members_address_gets_no_raft_traffic() {
    let cluster = Cluster::start(1, test_raft_config());
    let leader = cluster.leader();
    // A valid node certificate of the cluster, but not node 2's.
    let impostor = holder(&cluster, cluster.ca().issue_node("node-7", 7));
    let calls = Arc::new(AtomicUsize::new(0));
    impostor
        .serve(RaftServiceServer::new(Counting(calls.clone())))
        .unwrap();
    let addr = impostor.local_addr();

    // A direct call expecting node 2 is refused before a byte is sent.
    let node = cluster.octopii(leader);
    let expecting = Client::new(node, addr).expect_peer(Role::Node { id: 2 });
    let refused = cluster.runtime.block_on(async {
        RaftServiceClient::from_client(expecting)
            .step(Vec::new())
            .await
            .unwrap_err()
    });
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
    assert!(refused.message().contains("node 7"), "{refused}");

    // Node 2 added at the impostor's address: the leader dials it, meets
    // the wrong certificate and sends it nothing, heartbeat after heartbeat.
    cluster.runtime.block_on(async {
        cluster.raft(leader).add_learner(2, addr).await.unwrap();
    });
    let deadline = Instant::now() + WAIT;
    while impostor.stats().connections_accepted == 0 {
        assert!(Instant::now() < deadline, "the leader never dialled node 2");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(cluster.config.election_timeout() * 3);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cluster.runtime.block_on(impostor.shutdown());
}

#[test]
fn raft_will_not_run_on_a_certificate_of_another_node() {
    let cluster = Cluster::start(1, test_raft_config());
    let ca = cluster.ca();
    for creds in [ca.issue_node("node-2", 5), ca.issue_client("node-2")] {
        let mut config = config(creds.unwrap());
        config.node_id = 2;
        config.data_dir = cluster.data_dir(2);
        let node = OctopiiNode::new(config, &cluster.runtime).unwrap();
        let machine = octopii_tests::raft::KvMachine::default();
        let refused = octopii::raft::RaftNode::start(&node, test_raft_config(), machine);
        let message = refused.unwrap_err().to_string();
        assert!(message.contains("not node 2"), "{message}");
        cluster.runtime.block_on(node.shutdown());
    }
}

//! A raft node across restarts: callers of a new run are answered by their
//! own entries only, and a node dropped without `shutdown` frees its data
//! directory at once.

use std::time::{Duration, Instant};

use octopii::OctopiiError;
use octopii::codec;
use octopii::raft::{RaftConfig, RaftError, RaftNode};
use octopii_tests::raft::{Cluster, KvCommand, KvOutput, get, put, test_raft_config};

/// Proposes `command`, retrying while there is no leader yet, as a client
/// right after a restart would.
async fn propose_when_led(raft: RaftNode, command: Vec<u8>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match raft.propose(command.clone()).await {
            Ok(output) => return output,
            Err(OctopiiError::Raft(RaftError::NotLeader { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("proposal failed: {e}"),
        }
    }
}

#[test]
fn entries_applied_again_after_a_restart_answer_no_new_caller() {
    // Elections slow enough that the leader keeps leading while its only
    // follower's disk is held below.
    let config = RaftConfig {
        election_ticks: 50,
        request_timeout_ms: 10_000,
        ..test_raft_config()
    };
    let mut cluster = Cluster::start_on_sim_net(3, config);
    let leader = cluster.leader();
    let behind = cluster.follower_of(leader);
    let other = 6 - leader - behind;
    // `behind` misses the puts: after the restart it cannot win an election.
    cluster.partition(leader, behind);
    cluster.partition(other, behind);
    cluster.runtime.block_on(async {
        for i in 0..300 {
            put(cluster.raft(leader), &format!("k{i}"), "old")
                .await
                .unwrap();
        }
    });
    for id in [leader, behind, other] {
        cluster.stop(id);
    }
    // A partition outlives the nodes: the restarted ones meet on a whole network.
    cluster.heal();
    cluster.restart(leader).unwrap();
    cluster.restart(behind).unwrap();
    // The old leader leads again, and cannot commit while `behind` cannot
    // make appends durable: the entries of its previous run (committed
    // long ago, applied again now) wait behind the new callers' entries.
    cluster.fsync_gate(behind).hold();
    let calls: Vec<_> = (0..32)
        .map(|j| {
            let command =
                codec::encode(&KvCommand::Cas(format!("cas{j}"), None, "new".into())).unwrap();
            let raft = cluster.raft(leader).clone();
            cluster.runtime.spawn(propose_when_led(raft, command))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = cluster.raft(leader).status();
        if status.last_index >= status.commit_index + 33 {
            break;
        }
        assert!(Instant::now() < deadline, "proposals not taken: {status:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.fsync_gate(behind).open();
    let outputs = cluster.runtime.block_on(futures::future::join_all(calls));
    for (j, output) in outputs.into_iter().enumerate() {
        let output: KvOutput = codec::decode(&output.unwrap()).unwrap();
        assert_eq!(output, KvOutput::Swapped(true), "caller {j}");
    }
    cluster.runtime.block_on(async {
        let raft = cluster.raft(leader);
        assert_eq!(get(raft, "k299").await.unwrap().as_deref(), Some("old"));
        assert_eq!(get(raft, "cas31").await.unwrap().as_deref(), Some("new"));
    });
}

#[test]
fn a_dropped_node_frees_its_data_directory_at_once() {
    let mut cluster = Cluster::start(1, test_raft_config());
    cluster.leader();
    cluster.runtime.block_on(async {
        put(cluster.raft(1), "kept", "yes").await.unwrap();
    });
    cluster.drop_without_shutdown(1);
    // The raft log opens again right away: the driver has stopped.
    cluster
        .restart(1)
        .expect("the data directory is free again");
    cluster.leader();
    cluster.runtime.block_on(async {
        let value = get(cluster.raft(1), "kept").await.unwrap();
        assert_eq!(value.as_deref(), Some("yes"));
    });
}

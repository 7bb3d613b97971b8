//! A three-node raft cluster on loopback: election, replication, leader
//! loss, follower restart from its WAL.

use std::time::Duration;

use octopii::codec;
use octopii::raft::RaftRole;
use octopii_tests::raft::{Cluster, KvOutput, get, put, test_raft_config};

#[test]
fn three_nodes_elect_one_leader_and_replicate() {
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let followers: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    assert_eq!(followers.len(), 2);
    for id in &followers {
        assert_eq!(cluster.raft(*id).status().role, RaftRole::Follower);
    }
    cluster.runtime.block_on(async {
        assert_eq!(put(cluster.raft(leader), "a", "1").await.unwrap(), None);
        // A follower forwards its proposal to the leader.
        assert_eq!(
            put(cluster.raft(followers[0]), "a", "2").await.unwrap(),
            Some("1".to_owned())
        );
        // An empty command is a command too: applied, and answered.
        let output = cluster
            .raft(followers[1])
            .propose(Vec::new())
            .await
            .unwrap();
        assert_eq!(
            codec::decode::<KvOutput>(&output).unwrap(),
            KvOutput::Invalid
        );
        // Linearizable reads on every node see the last write.
        for id in cluster.running() {
            assert_eq!(
                get(cluster.raft(id), "a").await.unwrap().as_deref(),
                Some("2")
            );
        }
    });
    let applied = cluster.raft(leader).status().applied_index;
    for id in cluster.running() {
        cluster.wait_applied(id, applied, Duration::from_secs(5));
    }
}

#[test]
fn a_new_leader_takes_over_and_no_acknowledged_write_is_lost() {
    let mut cluster = Cluster::start(3, test_raft_config());
    let old = cluster.leader();
    cluster.runtime.block_on(async {
        for i in 0..20 {
            put(cluster.raft(old), &format!("k{i}"), &i.to_string())
                .await
                .unwrap();
        }
    });
    cluster.stop(old);
    let new = cluster.leader();
    assert_ne!(new, old);
    cluster.runtime.block_on(async {
        for i in 0..20 {
            let value = get(cluster.raft(new), &format!("k{i}")).await.unwrap();
            assert_eq!(value, Some(i.to_string()), "k{i}");
        }
        put(cluster.raft(new), "after", "x").await.unwrap();
    });
    // The old leader comes back as a follower and learns what it missed.
    cluster.restart(old).unwrap();
    cluster.runtime.block_on(async {
        let value = get(cluster.raft(old), "after").await.unwrap();
        assert_eq!(value.as_deref(), Some("x"));
    });
    assert_ne!(cluster.raft(old).status().role, RaftRole::Leader);
}

#[test]
fn a_stopped_follower_restarts_from_its_wal_and_catches_up() {
    let mut cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    cluster.runtime.block_on(async {
        for i in 0..10 {
            put(cluster.raft(leader), &format!("before{i}"), "1")
                .await
                .unwrap();
        }
    });
    let before = cluster.raft(leader).status().applied_index;
    cluster.wait_applied(follower, before, Duration::from_secs(5));
    cluster.stop(follower);
    cluster.runtime.block_on(async {
        for i in 0..10 {
            put(cluster.raft(leader), &format!("during{i}"), "2")
                .await
                .unwrap();
        }
    });
    cluster.restart(follower).unwrap();
    // Recovered from its own WAL: its log already holds what it had.
    let status = cluster.raft(follower).status();
    assert!(status.last_index >= before, "{status:?}");
    assert!(status.term > 0, "{status:?}");
    let target = cluster.raft(leader).status().applied_index;
    cluster.wait_applied(follower, target, Duration::from_secs(10));
    cluster.runtime.block_on(async {
        for i in 0..10 {
            let during = get(cluster.raft(follower), &format!("during{i}"))
                .await
                .unwrap();
            assert_eq!(during.as_deref(), Some("2"));
        }
    });
}

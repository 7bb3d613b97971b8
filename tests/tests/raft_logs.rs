//! A raft node says what it is doing: role, leader and term changes, and
//! snapshots sent and installed, at info level.

use std::time::Duration;

use octopii::raft::RaftConfig;
use octopii_tests::captured_logs::capture_logs;
use octopii_tests::raft::{Cluster, put, test_raft_config};

#[test]
fn role_leader_term_and_snapshots_are_logged() {
    let logs = capture_logs();
    let config = RaftConfig {
        snapshot_interval: 20,
        ..test_raft_config()
    };
    let mut cluster = Cluster::start(3, config);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let text = logs.text();
    let node = format!("node={leader}");
    assert!(
        !logs
            .lines_with(&["raft role changed", &node, "to=Leader"])
            .is_empty(),
        "{text}"
    );
    let follower_node = format!("node={follower}");
    let leader_field = format!("leader=Some({leader})");
    assert!(
        !logs
            .lines_with(&["raft leader changed", &follower_node, &leader_field])
            .is_empty(),
        "{text}"
    );
    assert!(
        !logs.lines_with(&["raft term changed", &node]).is_empty(),
        "{text}"
    );

    // A follower that missed compacted entries gets a snapshot.
    cluster.stop(follower);
    cluster.runtime.block_on(async {
        for i in 0..60 {
            put(cluster.raft(leader), &format!("k{i}"), "v")
                .await
                .unwrap();
        }
    });
    let applied = cluster.raft(leader).status().applied_index;
    cluster.restart(follower).unwrap();
    cluster.wait_applied(follower, applied, Duration::from_secs(10));
    let text = logs.text();
    let peer = format!("peer={follower}");
    assert!(
        !logs
            .lines_with(&["sending a snapshot", &node, &peer])
            .is_empty(),
        "{text}"
    );
    assert!(
        !logs
            .lines_with(&["snapshot delivered", &node, &peer])
            .is_empty(),
        "{text}"
    );
    assert!(
        !logs
            .lines_with(&["installed a snapshot", &follower_node])
            .is_empty(),
        "{text}"
    );
}

//! Raft with fsync on: nothing a node acknowledges is acknowledged before
//! its disk made it durable.

use std::time::{Duration, Instant};

use octopii::raft::RaftConfig;
use octopii_tests::raft::{Cluster, get, put, test_raft_config};

#[test]
fn a_follower_acknowledges_an_append_only_once_it_is_fsynced() {
    // Elections slow enough that the leader keeps leading while its only
    // follower's disk is held below.
    let config = RaftConfig {
        election_ticks: 50,
        request_timeout_ms: 10_000,
        ..test_raft_config()
    };
    let mut cluster = Cluster::start(3, config);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let other = 6 - leader - follower;
    cluster.runtime.block_on(async {
        put(cluster.raft(leader), "before", "1").await.unwrap();
    });
    cluster.stop(other);
    // The leader now commits only once `follower` acknowledges, and the
    // follower's disk does not finish the append.
    cluster.fsync_gate(follower).hold();
    let raft = cluster.raft(leader).clone();
    let held = cluster
        .runtime
        .spawn(async move { put(&raft, "held", "2").await });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = cluster.raft(leader).status();
        if status.last_index > status.commit_index || held.is_finished() {
            break;
        }
        assert!(Instant::now() < deadline, "the put was not proposed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Long enough for an early acknowledgement to commit the entry many
    // times over.
    std::thread::sleep(Duration::from_millis(300));
    let status = cluster.raft(leader).status();
    assert!(
        status.commit_index < status.last_index,
        "committed while the follower's fsync was held: {status:?}"
    );
    assert!(
        !held.is_finished(),
        "the put was answered before it was durable"
    );
    cluster.fsync_gate(follower).open();
    let previous = cluster.runtime.block_on(held).unwrap().unwrap();
    assert_eq!(previous, None);
    cluster.runtime.block_on(async {
        let value = get(cluster.raft(follower), "held").await.unwrap();
        assert_eq!(value.as_deref(), Some("2"));
    });
}

//! A typed state machine: commands, outputs, queries and answers are the
//! user's own types; its state is its snapshot; bytes that are not its
//! command are refused alike on every node, without touching the state.

use std::time::Duration;

use octopii::raft::{RaftConfig, TypedRaftNode, TypedStateMachine};
use octopii::{LocalCluster, codec};
use octopii_tests::raft::{fast_temp_dir, test_raft_config};
use serde::{Deserialize, Serialize};

/// Named counters.
#[derive(Default, Serialize, Deserialize)]
struct Counters(std::collections::BTreeMap<String, i64>);

#[derive(Serialize, Deserialize)]
enum Op {
    Add(String, i64),
    Reset(String),
}

impl TypedStateMachine for Counters {
    type Command = Op;
    type Output = i64;
    type Query = String;
    type Answer = Option<i64>;

    fn apply(&mut self, op: Op) -> i64 {
        match op {
            Op::Add(name, n) => {
                let value = self.0.entry(name).or_default();
                *value += n;
                *value
            }
            Op::Reset(name) => self.0.remove(&name).unwrap_or(0),
        }
    }

    fn query(&self, name: &String) -> Option<i64> {
        self.0.get(name).copied()
    }
}

fn config() -> RaftConfig {
    RaftConfig {
        snapshot_interval: 4,
        ..test_raft_config()
    }
}

#[test]
fn typed_commands_replicate_snapshot_and_restore_as_the_users_types() {
    let dir = fast_temp_dir();
    let cluster = LocalCluster::new().unwrap();
    let node_config = cluster
        .config("solo")
        .unwrap()
        .data_dir(dir.path())
        .build()
        .unwrap();

    let node = cluster.start(node_config.clone()).unwrap();
    let counters = TypedRaftNode::start(&node, config(), Counters::default()).unwrap();
    cluster.block_on(async {
        counters
            .raft()
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        for i in 1..=10 {
            assert_eq!(counters.propose(&Op::Add("a".into(), 1)).await.unwrap(), i);
        }
        assert_eq!(
            counters.propose(&Op::Add("b".into(), -3)).await.unwrap(),
            -3
        );
        assert_eq!(counters.propose(&Op::Reset("b".into())).await.unwrap(), -3);
        assert_eq!(counters.read(&"a".into()).await.unwrap(), Some(10));
        assert_eq!(counters.read(&"b".into()).await.unwrap(), None);
        assert!(
            counters.raft().status().snapshot_index > 0,
            "a snapshot was taken, so a restart restores from it"
        );
        counters.raft().shutdown().await;
        node.shutdown().await;
    });

    let node = cluster.start(node_config).unwrap();
    let counters = TypedRaftNode::start(&node, config(), Counters::default()).unwrap();
    cluster.block_on(async {
        counters
            .raft()
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(counters.read(&"a".into()).await.unwrap(), Some(10));
        assert_eq!(counters.propose(&Op::Add("a".into(), 5)).await.unwrap(), 15);
        counters.raft().shutdown().await;
        node.shutdown().await;
    });
}

#[test]
fn bytes_that_are_not_a_command_are_refused_and_change_nothing() {
    let dir = fast_temp_dir();
    let cluster = LocalCluster::new().unwrap();
    let node_config = cluster
        .config("solo")
        .unwrap()
        .data_dir(dir.path())
        .build()
        .unwrap();
    let node = cluster.start(node_config).unwrap();
    let counters = TypedRaftNode::start(&node, config(), Counters::default()).unwrap();
    cluster.block_on(async {
        counters
            .raft()
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        counters.propose(&Op::Add("a".into(), 2)).await.unwrap();
        // An enum tag no `Op` has, proposed as raw bytes.
        let output = counters.raft().propose(vec![9, 0, 0, 0]).await.unwrap();
        let refused: Result<i64, String> = codec::decode(&output).unwrap();
        let reason = refused.unwrap_err();
        assert!(reason.contains("does not decode"), "{reason}");
        assert_eq!(counters.read(&"a".into()).await.unwrap(), Some(2));
        // A query of the wrong type is a typed error for the reader.
        let answer = counters.raft().read(vec![0xFF; 3]).await.unwrap();
        let refused: Result<Option<i64>, String> = codec::decode(&answer).unwrap();
        assert!(refused.is_err());
        counters.raft().shutdown().await;
        node.shutdown().await;
    });
}

//! A typed state machine: commands, outputs, queries and answers are the
//! user's own types; its state is its snapshot; bytes that are not its
//! command are refused alike on every node, without touching the state.

use std::path::Path;
use std::time::Duration;

use octopii::raft::{RaftConfig, TypedRaftNode, TypedStateMachine};
use octopii::{Config, LocalCluster, OctopiiNode, codec};
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

fn raft_config() -> RaftConfig {
    RaftConfig {
        snapshot_interval: 4,
        ..test_raft_config()
    }
}

/// The config of a one-node cluster's node, its data in `dir`.
fn solo(cluster: &LocalCluster, dir: &Path) -> Config {
    let config = cluster.config("solo").unwrap();
    config.data_dir(dir).build().unwrap()
}

/// Starts the counters on a node of `config`, and waits until they lead.
fn start(cluster: &LocalCluster, config: &Config) -> (OctopiiNode, TypedRaftNode<Counters>) {
    let node = cluster.start(config.clone()).unwrap();
    let counters = TypedRaftNode::start(&node, raft_config(), Counters::default()).unwrap();
    let leading = counters.raft().wait_for_leader(Duration::from_secs(10));
    cluster.block_on(leading).unwrap();
    (node, counters)
}

fn stop(cluster: &LocalCluster, node: OctopiiNode, counters: TypedRaftNode<Counters>) {
    cluster.block_on(async {
        counters.raft().shutdown().await;
        node.shutdown().await;
    });
}

#[test]
fn typed_commands_replicate_snapshot_and_restore_as_the_users_types() {
    let dir = fast_temp_dir();
    let cluster = LocalCluster::new().unwrap();
    let config = solo(&cluster, dir.path());

    let (node, counters) = start(&cluster, &config);
    cluster.block_on(async {
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
    });
    assert!(
        counters.raft().status().snapshot_index > 0,
        "a snapshot was taken, so a restart restores from it"
    );
    stop(&cluster, node, counters);

    let (node, counters) = start(&cluster, &config);
    cluster.block_on(async {
        assert_eq!(counters.read(&"a".into()).await.unwrap(), Some(10));
        assert_eq!(counters.propose(&Op::Add("a".into(), 5)).await.unwrap(), 15);
    });
    stop(&cluster, node, counters);
}

#[test]
fn bytes_that_are_not_a_command_are_refused_and_change_nothing() {
    let dir = fast_temp_dir();
    let cluster = LocalCluster::new().unwrap();
    let (node, counters) = start(&cluster, &solo(&cluster, dir.path()));
    cluster.block_on(async {
        counters.propose(&Op::Add("a".into(), 2)).await.unwrap();
        // An enum tag no `Op` has, proposed as raw bytes.
        let output = counters.raft().propose(vec![9, 0, 0, 0]).await.unwrap();
        let refused: Result<i64, String> = codec::decode(&output).unwrap();
        let reason = refused.unwrap_err();
        assert!(reason.contains("does not decode"), "{reason}");
        assert_eq!(counters.read(&"a".into()).await.unwrap(), Some(2));
        // A query of the wrong type is refused alike.
        let answer = counters.raft().read(vec![0xFF; 3]).await.unwrap();
        let refused: Result<Option<i64>, String> = codec::decode(&answer).unwrap();
        assert!(refused.is_err());
    });
    stop(&cluster, node, counters);
}

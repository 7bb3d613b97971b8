//! A raft node whose disk fails: the proposal that needed the write is not
//! acknowledged, the node stops taking proposals with an error, and a
//! restart on a working disk keeps every acknowledged entry.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use octopii::ClusterCa;
use octopii::raft::{RaftConfig, RaftError, RaftNode, RaftRole};
use octopii::{Config, OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::raft::{KvMachine, get, put, test_raft_config};
use octopii_tests::wal_fs::{FileHook, FileOp, HookedFs};

/// Fails every write once switched on.
#[derive(Default)]
struct FailingWrites(AtomicBool);

impl FileHook for FailingWrites {
    fn before(&self, op: FileOp) -> io::Result<()> {
        if self.0.load(Ordering::SeqCst) && op == FileOp::Write {
            return Err(io::Error::other("injected write failure"));
        }
        Ok(())
    }
}

fn single_node(
    runtime: &OctopiiRuntime,
    ca: &ClusterCa,
    dir: &std::path::Path,
) -> (OctopiiNode, RaftConfig) {
    let config = Config::builder()
        .node_id(1)
        .bind_addr("127.0.0.1:0".parse().expect("address"))
        .data_dir(dir)
        .worker_threads(2)
        .credentials(ca.issue_node("node-1", 1).expect("certificate"))
        .build()
        .expect("config");
    let node = OctopiiNode::new(config, runtime).expect("node");
    let raft_config = RaftConfig {
        bootstrap: true,
        ..test_raft_config()
    };
    (node, raft_config)
}

#[test]
fn raft_a_failing_wal_stops_the_node_without_acknowledging() {
    let runtime = OctopiiRuntime::new(2).expect("runtime");
    let ca = ClusterCa::generate().expect("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let raft_dir = dir.path().join("raft");
    let faults = Arc::new(FailingWrites::default());

    let (node, config) = single_node(&runtime, &ca, dir.path());
    let fs = Arc::new(HookedFs(Arc::clone(&faults)));
    let raft = RaftNode::start_in_with_fs(&node, &raft_dir, config, KvMachine::default(), fs)
        .expect("start");
    runtime.block_on(async {
        raft.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("a leader");
        put(&raft, "kept", "1")
            .await
            .expect("put before the failure");

        faults.0.store(true, Ordering::SeqCst);
        let err = put(&raft, "lost", "2")
            .await
            .expect_err("a proposal that cannot be written is not acknowledged");
        assert!(
            matches!(
                &err,
                OctopiiError::Raft(RaftError::Failed { reason }) if reason.contains("injected")
            ),
            "the error names the storage failure: {err}"
        );
        // The node takes nothing more, even with the disk back.
        faults.0.store(false, Ordering::SeqCst);
        let err = put(&raft, "later", "3").await.expect_err("stopped");
        assert!(
            matches!(
                &err,
                OctopiiError::Raft(RaftError::Failed { reason }) if reason.contains("injected")
            ),
            "the error names the storage failure: {err}"
        );
    });
    assert_eq!(raft.status().role, RaftRole::Stopped);
    runtime.block_on(raft.shutdown());
    drop(raft);
    drop(node);

    // Restarted on a working disk: what was acknowledged is there, the
    // failed proposal is not.
    let (node, config) = single_node(&runtime, &ca, dir.path());
    let raft = RaftNode::start_in(&node, &raft_dir, config, KvMachine::default()).expect("restart");
    runtime.block_on(async {
        raft.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("a leader");
        assert_eq!(get(&raft, "kept").await.expect("get").as_deref(), Some("1"));
        assert_eq!(get(&raft, "lost").await.expect("get"), None);
        assert_eq!(get(&raft, "later").await.expect("get"), None);
    });
    runtime.block_on(raft.shutdown());
}

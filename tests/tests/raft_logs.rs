//! A raft node says what it is doing: role, leader and term changes, and
//! snapshots sent and installed, at info level.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use octopii::raft::RaftConfig;
use octopii_tests::raft::{Cluster, put, test_raft_config};

/// Log lines written while this test binary runs (info and above).
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .try_init()
        .expect("the only subscriber of this test binary");
    buffer
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(logs: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&logs.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// The lines of `text` that contain every one of `parts`.
fn lines_with<'a>(text: &'a str, parts: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .collect()
}

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
    let text = logged(&logs);
    let node = format!("node={leader}");
    assert!(
        !lines_with(&text, &["raft role changed", &node, "to=Leader"]).is_empty(),
        "{text}"
    );
    let follower_node = format!("node={follower}");
    let leader_field = format!("leader=Some({leader})");
    assert!(
        !lines_with(
            &text,
            &["raft leader changed", &follower_node, &leader_field]
        )
        .is_empty(),
        "{text}"
    );
    assert!(
        !lines_with(&text, &["raft term changed", &node]).is_empty(),
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
    let text = logged(&logs);
    let peer = format!("peer={follower}");
    assert!(
        !lines_with(&text, &["sending a snapshot", &node, &peer]).is_empty(),
        "{text}"
    );
    assert!(
        !lines_with(&text, &["snapshot delivered", &node, &peer]).is_empty(),
        "{text}"
    );
    assert!(
        !lines_with(&text, &["installed a snapshot", &follower_node]).is_empty(),
        "{text}"
    );
}

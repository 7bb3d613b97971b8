//! A snapshot far larger than the memory a receiver grants it reaches a
//! new member from file to file, streamed through the state machine, and
//! the node's size limit for user transfers does not apply to it.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use octopii::ClusterCa;
use octopii::config::ChunkConfig;
use octopii::raft::{MAX_SNAPSHOT_MESSAGE, RaftConfig, RaftNode, StateMachine, StateMachineError};
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use octopii_tests::raft::test_raft_config;

/// Bytes of state per block; each block starts with its own number.
const BLOCK: usize = 64 * 1024;

/// A state of `blocks` blocks of pattern, made and checked block by block:
/// it is never held whole, and `snapshot`/`restore` (which would hold it)
/// only record that they were called.
struct Blob {
    version: u64,
    blocks: u64,
    restores: Arc<AtomicUsize>,
    whole_state_used: Arc<AtomicBool>,
}

fn block(version: u64, number: u64) -> Vec<u8> {
    let mut block: Vec<u8> = (0..BLOCK).map(|i| (i as u8) ^ (version as u8)).collect();
    block[..8].copy_from_slice(&number.to_le_bytes());
    block
}

fn invalid(why: String) -> StateMachineError {
    StateMachineError::new(why)
}

impl StateMachine for Blob {
    /// A command is the new number of blocks (u64 LE).
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        if let Ok(blocks) = command.try_into() {
            self.blocks = u64::from_le_bytes(blocks);
        }
        self.version += 1;
        Vec::new()
    }

    fn query(&self, _: &[u8]) -> Vec<u8> {
        [self.version.to_le_bytes(), self.blocks.to_le_bytes()].concat()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.whole_state_used.store(true, Ordering::SeqCst);
        Vec::new()
    }

    fn restore(&mut self, _: &[u8]) -> Result<(), StateMachineError> {
        self.whole_state_used.store(true, Ordering::SeqCst);
        Err(invalid("the whole state is never restored at once".into()))
    }

    fn snapshot_to(&self, out: &mut dyn Write) -> Result<(), StateMachineError> {
        out.write_all(&self.version.to_le_bytes())?;
        out.write_all(&self.blocks.to_le_bytes())?;
        let mut pattern = block(self.version, 0);
        for number in 0..self.blocks {
            pattern[..8].copy_from_slice(&number.to_le_bytes());
            out.write_all(&pattern)?;
        }
        Ok(())
    }

    fn restore_from(&mut self, input: &mut dyn Read, len: u64) -> Result<(), StateMachineError> {
        let mut header = [0u8; 16];
        input.read_exact(&mut header)?;
        let version = u64::from_le_bytes(header[..8].try_into().unwrap());
        let blocks = u64::from_le_bytes(header[8..].try_into().unwrap());
        if len != 16 + blocks * BLOCK as u64 {
            return Err(invalid(format!("{len} bytes for {blocks} blocks")));
        }
        let mut expected = block(version, 0);
        let mut got = vec![0u8; BLOCK];
        for number in 0..blocks {
            input.read_exact(&mut got)?;
            expected[..8].copy_from_slice(&number.to_le_bytes());
            if got != expected {
                return Err(invalid(format!("block {number} is wrong")));
            }
        }
        (self.version, self.blocks) = (version, blocks);
        self.restores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Member {
    node: OctopiiNode,
    raft: RaftNode,
    restores: Arc<AtomicUsize>,
    whole_state_used: Arc<AtomicBool>,
}

fn start(
    runtime: &OctopiiRuntime,
    ca: &ClusterCa,
    dir: &std::path::Path,
    id: u64,
    config: RaftConfig,
) -> Member {
    let config_node = Config::builder()
        .node_id(id)
        .bind_addr("127.0.0.1:0".parse().unwrap())
        .data_dir(dir.join(format!("node-{id}")))
        .worker_threads(2)
        .credentials(ca.issue_node(&format!("node-{id}"), id).unwrap())
        // User transfers are capped far below the snapshot: the cap is
        // not the snapshot's.
        .chunk(ChunkConfig {
            max_file_bytes: MAX_SNAPSHOT_MESSAGE,
            ..ChunkConfig::default()
        })
        .build()
        .unwrap();
    let node = OctopiiNode::new(config_node, runtime).unwrap();
    let (restores, whole_state_used) = (Arc::default(), Arc::<AtomicBool>::default());
    let machine = Blob {
        version: 0,
        blocks: 0,
        restores: Arc::clone(&restores),
        whole_state_used: Arc::clone(&whole_state_used),
    };
    let raft = RaftNode::start(&node, config, machine).unwrap();
    Member {
        node,
        raft,
        restores,
        whole_state_used,
    }
}

/// Waits up to 10 s for `done`.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The size of the snapshot file in `id`'s raft directory.
fn snapshot_file_size(dir: &std::path::Path, id: u64) -> u64 {
    std::fs::read_dir(dir.join(format!("node-{id}/raft")))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("snapshot-"))
        .map(|entry| entry.metadata().unwrap().len())
        .max()
        .expect("a snapshot file")
}

#[test]
fn a_snapshot_many_times_the_memory_cap_reaches_a_new_member() {
    // 8 MiB of state: 8 times what a receiver takes into memory (kept
    // at that: transfers are slow in an unoptimized build).
    const BLOCKS: u64 = 128;
    let runtime = OctopiiRuntime::new(4).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = RaftConfig {
        snapshot_interval: 2,
        ..test_raft_config()
    };
    let leader = start(&runtime, &ca, dir.path(), 1, config.clone());
    runtime.block_on(async {
        leader
            .raft
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        leader
            .raft
            .propose(BLOCKS.to_le_bytes().to_vec())
            .await
            .unwrap();
        leader.raft.propose(Vec::new()).await.unwrap();
    });
    wait_until("the leader takes a snapshot", || {
        leader.raft.status().snapshot_index > 1
    });
    let size = snapshot_file_size(dir.path(), 1);
    assert!(size > BLOCKS * BLOCK as u64, "{size} bytes");
    assert!(size > 8 * MAX_SNAPSHOT_MESSAGE);

    let joining = RaftConfig {
        bootstrap: false,
        peers: [(1, leader.node.local_addr())].into_iter().collect(),
        ..config
    };
    let member = start(&runtime, &ca, dir.path(), 2, joining);
    runtime.block_on(async {
        let addr = member.node.local_addr();
        leader.raft.add_voter(2, addr).await.unwrap();
        // Until it knows the leader, the new member cannot read.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let state = loop {
            match member.raft.read(Vec::new()).await {
                Ok(state) => break state,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the new member cannot read: {e}"),
            }
        };
        assert_eq!(
            state[8..],
            BLOCKS.to_le_bytes(),
            "the new member holds the state"
        );
    });
    assert!(
        member.restores.load(Ordering::SeqCst) >= 1,
        "it installed the snapshot"
    );
    // Its own file (it may have taken a snapshot of its own since).
    let kept = snapshot_file_size(dir.path(), 2);
    assert!(
        kept > BLOCKS * BLOCK as u64,
        "the new member keeps a file of {kept} bytes"
    );
    for machine in [&leader, &member] {
        assert!(
            !machine.whole_state_used.load(Ordering::SeqCst),
            "streamed, never whole"
        );
    }
    runtime.block_on(async {
        member.raft.shutdown().await;
        member.node.shutdown().await;
    });
    // Restarted, the member restores, streaming, from its own file.
    let rejoining = RaftConfig {
        bootstrap: false,
        peers: [(1, leader.node.local_addr())].into_iter().collect(),
        ..test_raft_config()
    };
    let restarted = start(&runtime, &ca, dir.path(), 2, rejoining);
    // `restore_from` checks every block, so this counts a whole state.
    assert_eq!(restarted.restores.load(Ordering::SeqCst), 1);
    assert!(!restarted.whole_state_used.load(Ordering::SeqCst));
    runtime.block_on(async {
        restarted.raft.shutdown().await;
        leader.raft.shutdown().await;
        restarted.node.shutdown().await;
        leader.node.shutdown().await;
    });
}

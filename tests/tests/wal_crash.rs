//! A real crash: a child process appends as fast as it can and prints each
//! acknowledged index; the test kills it with SIGKILL at a random moment,
//! reopens the log and checks that every acknowledged record is intact.
//!
//! The child is this test binary run again (`std::env::current_exe()`) with
//! only the ignored test [`wal_crash_child`], told where to write by
//! environment variables.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use octopii::wal::{Wal, WalOptions};
use rand::Rng;

const DIR_VAR: &str = "OCTOPII_WAL_CRASH_DIR";
const ROUND_VAR: &str = "OCTOPII_WAL_CRASH_ROUND";
const ROUNDS: u32 = 6;
const WRITERS: usize = 8;

fn options() -> WalOptions {
    // Small segments (a few large records each): the kill also lands
    // during roll-overs.
    WalOptions {
        segment_size: 1024 * 1024,
        ..WalOptions::default()
    }
}

/// What writer `task` appends as its `seq`-th record in `round`.
fn payload(round: u32, task: usize, seq: u64) -> Vec<u8> {
    let mut out = format!("round {round} task {task} seq {seq}|").into_bytes();
    // Writer 0 appends large records, so the kill sometimes lands inside a
    // long write and leaves a torn tail to recover from.
    let extra = if task == 0 {
        256 * 1024 + (seq as usize % 7) * 1000
    } else {
        (seq as usize * 31 + task * 7) % 300
    };
    out.extend((0..extra).map(|i| (i as u8).wrapping_mul(31) ^ task as u8));
    out
}

/// The appender run in the child process; does nothing unless told to.
#[test]
#[ignore = "run by wal_sigkill_during_appends_loses_no_acknowledged_record in a child process"]
fn wal_crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_VAR)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let wal = Wal::open(&dir, options()).expect("child opens the log");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..WRITERS {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0u64.. {
                    let index = wal
                        .append(&payload(round, task, seq))
                        .await
                        .expect("append");
                    // Printed only after the append resolved, that is, after
                    // the record is durable.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {index} {task} {seq}").expect("stdout");
                    out.flush().expect("flush");
                }
            }));
        }
        for task in tasks {
            task.await.expect("appender");
        }
    });
}

/// Runs one child until a random moment, kills it, and returns what it
/// acknowledged: index -> payload.
fn crash_round(dir: &Path, round: u32) -> BTreeMap<u64, Vec<u8>> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["wal_crash_child", "--exact", "--nocapture", "--ignored"])
        .args(["--test-threads", "1"])
        .env(DIR_VAR, dir)
        .env(ROUND_VAR, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") {
                if lines.is_empty() {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
        }
        lines
    });
    // Wait for the child to be appending, then kill it at a random moment.
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child acknowledged nothing");
    }
    let delay = rand::thread_rng().gen_range(0..250);
    std::thread::sleep(Duration::from_millis(delay));
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for the child");
    assert!(!status.success(), "the child was killed, not finished");
    let lines = reader.join().expect("reader thread");

    let mut acked = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, index, task, seq] = fields[..] else {
            panic!("malformed line {line:?}");
        };
        let index: u64 = index.parse().expect("index");
        let task: usize = task.parse().expect("task");
        let seq: u64 = seq.parse().expect("seq");
        assert!(
            acked.insert(index, payload(round, task, seq)).is_none(),
            "index {index} twice"
        );
    }
    acked
}

#[test]
fn wal_sigkill_during_appends_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut torn_tails = 0;
    for round in 0..ROUNDS {
        let acked = crash_round(dir.path(), round);
        assert!(!acked.is_empty(), "round {round} acknowledged nothing");
        acknowledged.extend(acked);

        let wal = Wal::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("reopen after the kill of round {round}: {e}"));
        torn_tails += usize::from(wal.recovery_report().torn_tail.is_some());
        let last_acked = *acknowledged.keys().next_back().expect("an ack");
        assert!(
            wal.last_index() >= last_acked,
            "round {round}: last index {} < acknowledged {last_acked}",
            wal.last_index()
        );
        for (index, want) in &acknowledged {
            let got = wal
                .get(*index)
                .unwrap_or_else(|e| panic!("round {round}: record {index}: {e}"));
            assert_eq!(&got, want, "round {round}: record {index}");
        }
        // Everything recovered reads back with valid checksums.
        assert_eq!(
            wal.read(..).expect("read all").len() as u64,
            wal.last_index()
        );
    }
    // Shown with --nocapture: how often a kill left a torn write behind.
    eprintln!(
        "{ROUNDS} kills, {} acknowledged records intact, {torn_tails} torn tails cut",
        acknowledged.len()
    );
}

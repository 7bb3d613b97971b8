//! Group commit: concurrent appenders get distinct contiguous indexes, and
//! appends that arrive during an fsync share the next one.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use octopii::wal::{Wal, WalOptions};
use octopii_tests::wal_fs::{FileHook, FileOp, HookedFs};

fn runtime() -> tokio::runtime::Runtime {
    octopii_tests::tokio_runtime(4)
}

fn payload(task: usize, seq: usize) -> Vec<u8> {
    format!("task {task} seq {seq};")
        .repeat(1 + (task + seq) % 5)
        .into_bytes()
}

#[test]
fn wal_many_concurrent_appenders_get_distinct_contiguous_indexes() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let options = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options.clone()).expect("open");
    let results: Vec<(u64, Vec<u8>)> = rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let wal = wal.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for seq in 0..PER_TASK {
                    let data = payload(task, seq);
                    if seq % 10 == 9 {
                        // Some batches in the mix, each contiguous.
                        let pair = [data.clone(), data.clone()];
                        let range = wal.append_batch(&pair).await.expect("append batch");
                        assert_eq!(range.end - range.start, 2);
                        mine.push((range.start, data.clone()));
                        mine.push((range.start + 1, data));
                    } else {
                        let index = wal.append(&data).await.expect("append");
                        mine.push((index, data));
                    }
                }
                // Each appender's own appends are ordered.
                assert!(mine.windows(2).all(|w| w[0].0 < w[1].0));
                mine
            }));
        }
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.await.expect("task"));
        }
        all
    });
    let mut indexes: Vec<u64> = results.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    let total = (TASKS * (PER_TASK + PER_TASK / 10)) as u64;
    assert_eq!(
        indexes,
        (1..=total).collect::<Vec<_>>(),
        "distinct and contiguous"
    );
    assert_eq!(wal.last_index(), total);
    assert_eq!(wal.stats().records_appended, total);

    drop(wal);
    let wal = Wal::open(dir.path(), options).expect("reopen");
    assert_eq!(wal.last_index(), total);
    for (index, data) in &results {
        assert_eq!(&wal.get(*index).expect("get"), data, "record {index}");
    }
}

/// Lets one `fdatasync` be held until the test releases it.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    syncs: AtomicUsize,
}

#[derive(Default)]
struct GateState {
    armed: bool,
    inside: bool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self) {
        self.lock().armed = true;
    }

    fn wait_until_inside(&self) {
        let mut state = self.lock();
        while !state.inside {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self) {
        let mut state = self.lock();
        state.armed = false;
        self.changed.notify_all();
    }

    /// Called by `sync_data`: counts it and holds it while armed.
    fn pass(&self) {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        if state.armed {
            state.inside = true;
            self.changed.notify_all();
            while state.armed {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.inside = false;
        }
    }
}

impl FileHook for Gate {
    fn before(&self, op: FileOp) -> io::Result<()> {
        if op == FileOp::SyncData {
            self.pass();
        }
        Ok(())
    }
}

#[test]
fn wal_appends_arriving_during_an_fsync_share_the_next_one() {
    const WAITING: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let gate = Arc::new(Gate::default());
    let wal = Wal::open_with_fs(
        dir.path(),
        WalOptions::default(),
        Arc::new(HookedFs(Arc::clone(&gate))),
    )
    .expect("open");
    let syncs_at_open = gate.syncs.load(Ordering::SeqCst);

    gate.arm();
    let first = wal.append(b"first");
    // The writer is now inside the first batch's fdatasync, held there.
    gate.wait_until_inside();
    let waiting: Vec<_> = (0..WAITING)
        .map(|i| wal.append(format!("queued {i}").as_bytes()))
        .collect();
    gate.release();

    rt.block_on(async {
        assert_eq!(first.await.expect("first append"), 1);
        let indexes: Vec<u64> = futures::future::join_all(waiting)
            .await
            .into_iter()
            .map(|r| r.expect("queued append"))
            .collect();
        assert_eq!(indexes, (2..=WAITING + 1).collect::<Vec<_>>());
    });
    // One fdatasync for the first append, one shared by all that queued.
    assert_eq!(gate.syncs.load(Ordering::SeqCst) - syncs_at_open, 2);
    let stats = wal.stats();
    assert_eq!(
        (stats.commits, stats.fsyncs, stats.records_appended),
        (2, 2, WAITING + 1)
    );
    assert_eq!(
        wal.get(WAITING + 1).expect("get"),
        format!("queued {}", WAITING - 1).as_bytes()
    );
}

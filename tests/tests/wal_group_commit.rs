//! Group commit: concurrent appenders get distinct contiguous indexes, and
//! appends that arrive during an fsync share the next one. A lone appender
//! writes and syncs on its own thread, without stalling its runtime.

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
    /// The name of each thread that ran an `fdatasync`, in order.
    syncers: Mutex<Vec<String>>,
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
        let me = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        self.syncers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(me);
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
    // A lone append is synced by its caller: make it on a thread of its own.
    let first = {
        let wal = wal.clone();
        std::thread::spawn(move || futures::executor::block_on(wal.append(b"first")))
    };
    // The first append is now inside its fdatasync, held there.
    gate.wait_until_inside();
    let waiting: Vec<_> = (0..WAITING)
        .map(|i| wal.append(format!("queued {i}").as_bytes()))
        .collect();
    gate.release();

    rt.block_on(async {
        assert_eq!(first.join().expect("thread").expect("first append"), 1);
        let indexes: Vec<u64> = futures::future::join_all(waiting)
            .await
            .into_iter()
            .map(|r| r.expect("queued append"))
            .collect();
        assert_eq!(indexes, (2..=WAITING + 1).collect::<Vec<_>>());
    });
    // One fdatasync for the first append, one shared by all that queued,
    // made by the writer thread.
    assert_eq!(gate.syncs.load(Ordering::SeqCst) - syncs_at_open, 2);
    let syncers = gate.syncers.lock().expect("syncers").clone();
    assert_eq!(syncers.last().map(String::as_str), Some("octopii-wal"));
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

fn gated_wal(dir: &std::path::Path) -> (Wal, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let wal = Wal::open_with_fs(
        dir,
        WalOptions::default(),
        Arc::new(HookedFs(Arc::clone(&gate))),
    )
    .expect("open");
    (wal, gate)
}

#[test]
fn wal_a_lone_append_is_written_and_synced_by_its_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, gate) = gated_wal(dir.path());
    gate.syncers.lock().expect("syncers").clear();
    let rt = runtime();
    rt.block_on(async {
        for i in 0..5u64 {
            let wal = wal.clone();
            // Each append alone, from a task on one of the runtime's workers.
            let index = tokio::spawn(async move { wal.append(&i.to_le_bytes()).await })
                .await
                .expect("task")
                .expect("append");
            assert_eq!(index, i + 1);
        }
    });
    let syncers = gate.syncers.lock().expect("syncers").clone();
    assert_eq!(syncers.len(), 5, "one fdatasync per lone append");
    assert!(
        syncers.iter().all(|s| s != "octopii-wal"),
        "no lone append was handed to the writer thread: {syncers:?}"
    );
    assert_eq!(wal.stats().fsyncs, 5);
    drop(wal);
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    assert_eq!(wal.get(5).expect("get"), 4u64.to_le_bytes());
}

#[test]
fn wal_a_lone_append_syncing_does_not_stall_its_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, gate) = gated_wal(dir.path());
    // One worker: if the append held it, nothing else could run.
    let rt = octopii_tests::tokio_runtime(1);
    gate.arm();
    let append = {
        let wal = wal.clone();
        rt.spawn(async move { wal.append(b"held").await })
    };
    gate.wait_until_inside();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        tokio::task::yield_now().await;
        let _ = tx.send(());
    });
    let other_ran = rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok();
    gate.release();
    assert!(other_ran, "another task ran while the append was syncing");
    let index = rt.block_on(append).expect("task").expect("append");
    assert_eq!(index, 1);
}

#[test]
fn wal_a_lone_append_on_a_current_thread_runtime_is_handed_to_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, gate) = gated_wal(dir.path());
    gate.syncers.lock().expect("syncers").clear();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let index = rt
        .block_on(async { wal.append(b"alone").await })
        .expect("append");
    assert_eq!(index, 1);
    let syncers = gate.syncers.lock().expect("syncers").clone();
    assert_eq!(
        syncers,
        ["octopii-wal"],
        "the runtime's one thread never blocks"
    );
}

//! A power loss at every step of a short workload, through a file layer
//! that drops (or tears) what was not fsynced: after recovery no
//! acknowledged record is lost, and nothing that was never appended, or
//! never acknowledged and then removed, is reported.
//!
//! The workload is run once to count its file operations; then once per
//! operation, with the power failing there, and recovered under each
//! [`Tear`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::executor::block_on;
use octopii::wal::{FlushPolicy, Wal, WalOptions};
use octopii_tests::crash_fs::{CrashFs, Op, Tear};

const DIR: &str = "/node/wal";

fn options() -> WalOptions {
    WalOptions {
        // Segments of a few records: roll-overs, compaction and truncation
        // across segments all happen.
        segment_size: 1024,
        flush_policy: FlushPolicy::default(),
        ..WalOptions::default()
    }
}

fn payload(n: u64) -> Vec<u8> {
    let mut out = format!("record {n}|").into_bytes();
    out.resize(150 + (n as usize * 37) % 200, n as u8);
    out
}

/// One step of the workload.
#[derive(Debug, Clone)]
enum Step {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Truncate(u64),
    Compact(u64),
}

fn workload() -> Vec<Step> {
    let mut steps: Vec<Step> = (1..=3).map(|n| Step::Append(payload(n))).collect();
    steps.push(Step::Batch((4..=8).map(payload).collect()));
    steps.push(Step::Truncate(6));
    steps.extend((9..=12).map(|n| Step::Append(payload(n))));
    steps.push(Step::Compact(7));
    steps.push(Step::Batch((13..=14).map(payload).collect()));
    steps
}

/// What the log must hold: the records acknowledged, and the step that was
/// under way when the power failed.
#[derive(Debug, Default)]
struct Model {
    acked: BTreeMap<u64, Vec<u8>>,
    /// The first index the log reported after the last acknowledged step.
    first: u64,
    in_flight: Option<Step>,
}

impl Model {
    fn last(&self) -> u64 {
        self.acked
            .last_key_value()
            .map_or(self.first - 1, |(i, _)| *i)
    }
}

/// Runs the workload until the first failure; records what was acknowledged.
fn run(fs: &CrashFs, model: &mut Model) {
    model.first = 1;
    let Ok(wal) = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone())) else {
        return;
    };
    for step in workload() {
        model.in_flight = Some(step.clone());
        let ok = match &step {
            Step::Append(p) => match block_on(wal.append(p)) {
                Ok(index) => {
                    assert_eq!(index, model.last() + 1);
                    model.acked.insert(index, p.clone());
                    true
                }
                Err(_) => false,
            },
            Step::Batch(ps) => match block_on(wal.append_batch(ps)) {
                Ok(range) => {
                    assert_eq!(range.start, model.last() + 1);
                    for (i, p) in range.zip(ps) {
                        model.acked.insert(i, p.clone());
                    }
                    true
                }
                Err(_) => false,
            },
            Step::Truncate(from) => match block_on(wal.truncate_suffix(*from)) {
                Ok(()) => {
                    model.acked.split_off(from);
                    true
                }
                Err(_) => false,
            },
            Step::Compact(upto) => match block_on(wal.compact_prefix(*upto)) {
                Ok(()) => {
                    model.first = wal.first_index();
                    true
                }
                Err(_) => false,
            },
        };
        if !ok {
            return;
        }
        model.in_flight = None;
    }
}

/// Checks the recovered log against the model.
fn check(wal: &Wal, model: &Model, at: &str) {
    let (first, last) = (wal.first_index(), wal.last_index());
    let mut may_be_first = model.first;
    let mut must_reach = model.last();
    let mut unacked: BTreeMap<u64, &[u8]> = BTreeMap::new();
    match &model.in_flight {
        Some(Step::Append(p)) => {
            unacked.insert(model.last() + 1, p);
        }
        Some(Step::Batch(ps)) => {
            for (k, p) in ps.iter().enumerate() {
                unacked.insert(model.last() + 1 + k as u64, p);
            }
        }
        Some(Step::Truncate(from)) => must_reach = must_reach.min(from - 1),
        Some(Step::Compact(upto)) => may_be_first = may_be_first.max(*upto),
        None => {}
    }
    assert!(
        first <= may_be_first,
        "{at}: first index {first}, records from {may_be_first} were acknowledged"
    );
    assert!(
        last >= must_reach,
        "{at}: acknowledged record {must_reach} lost (last index {last})"
    );
    let records = wal.read(..).unwrap_or_else(|e| panic!("{at}: read: {e}"));
    for (index, record) in (first..).zip(&records) {
        let expected = model
            .acked
            .get(&index)
            .map(Vec::as_slice)
            .or_else(|| unacked.get(&index).copied());
        assert_eq!(
            Some(record.as_slice()),
            expected,
            "{at}: record {index} is not what was appended there"
        );
    }
}

#[test]
fn wal_a_power_loss_at_every_step_loses_no_acknowledged_record() {
    let counting = CrashFs::new();
    let mut full = Model::default();
    run(&counting, &mut full);
    assert!(full.in_flight.is_none(), "the workload runs to the end");
    let steps = counting.ops_done();
    assert!(steps > 30, "the workload does {steps} file operations");

    for k in 0..steps {
        for tear in [Tear::DropAll, Tear::KeepAll, Tear::TearLast] {
            let at = format!("power loss after {k} of {steps} operations, {tear:?}");
            let fs = CrashFs::new();
            fs.power_fails_after(k);
            let mut model = Model::default();
            run(&fs, &mut model);
            assert!(fs.power_failed(), "{at}: the power failed");
            fs.crash(tear);
            let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone()))
                .unwrap_or_else(|e| panic!("{at}: recovery refused: {e}"));
            check(&wal, &model, &at);
            // The recovered log goes on.
            let next = wal.last_index() + 1;
            assert_eq!(block_on(wal.append(b"after")).expect("append"), next);
            drop(wal);
            fs.crash(Tear::DropAll);
            let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone())).expect("reopen");
            assert_eq!(wal.get(next).expect("get"), b"after", "{at}");
        }
    }
}

#[test]
fn wal_directories_it_creates_are_fsynced_into_their_parents() {
    let fs = CrashFs::new();
    let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone())).expect("open");
    assert_eq!(block_on(wal.append(b"kept")).expect("append"), 1);
    drop(wal);
    let log = fs.log();
    for (k, op) in log.iter().enumerate() {
        if let Op::CreateDir(dir) = op {
            let parent = dir.parent().expect("a parent").to_path_buf();
            assert!(
                log[k..].contains(&Op::SyncDir(parent.clone())),
                "{} created, {} never synced after: {log:?}",
                dir.display(),
                parent.display()
            );
        }
    }
    fs.crash(Tear::DropAll);
    assert!(fs.exists(Path::new(DIR)), "the WAL directory survives");
    let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs)).expect("reopen");
    assert_eq!(wal.read(..).expect("read"), vec![b"kept".to_vec()]);
}

/// A slow simulated disk: the WAL answers an append the disk's delay
/// after it wrote it, on the runtime's (here paused) clock; what it
/// answers is durable by then.
#[test]
fn a_slow_disk_answers_appends_after_its_delay() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let fs = CrashFs::never_blocking();
        let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone())).expect("open");
        fs.slow_down(std::time::Duration::from_millis(30));
        let started = tokio::time::Instant::now();
        assert_eq!(wal.append(b"slow").await.expect("append"), 1);
        assert_eq!(started.elapsed(), std::time::Duration::from_millis(30));
        fs.slow_down(std::time::Duration::ZERO);
        let started = tokio::time::Instant::now();
        assert_eq!(wal.append(b"fast").await.expect("append"), 2);
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
        drop(wal);
        fs.crash(Tear::DropAll);
        let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone())).expect("reopen");
        assert_eq!(
            wal.read(1..=2).unwrap(),
            vec![b"slow".to_vec(), b"fast".to_vec()]
        );
    });
}

#[test]
fn wal_on_a_file_system_that_never_blocks_writes_on_the_appending_thread() {
    use futures::FutureExt;
    let fs = CrashFs::never_blocking();
    let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone())).expect("open");
    // Written and synced before `append` returns: no writer thread to wait for.
    let appended = wal.append(b"inline").now_or_never();
    assert_eq!(appended.map(|r| r.expect("append")), Some(1));
    drop(wal);

    // And as durable as the writer thread's: a power loss anywhere in the
    // workload loses nothing acknowledged.
    let steps = {
        let counting = CrashFs::never_blocking();
        run(&counting, &mut Model::default());
        counting.ops_done()
    };
    for k in (0..steps).step_by(3) {
        let at = format!("inline, power loss after {k} of {steps} operations");
        let fs = CrashFs::never_blocking();
        fs.power_fails_after(k);
        let mut model = Model::default();
        run(&fs, &mut model);
        fs.crash(Tear::TearLast);
        let wal = Wal::open_with_fs(DIR, options(), Arc::new(fs.clone()))
            .unwrap_or_else(|e| panic!("{at}: recovery refused: {e}"));
        check(&wal, &model, &at);
    }
}

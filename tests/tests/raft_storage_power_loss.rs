//! A power loss at every step of a short raft storage workload (founding,
//! appends, a conflicting suffix, term and vote changes, compaction, a
//! membership change, an installed snapshot), through a file layer that
//! drops or tears what was not fsynced. Every time, the storage reopens,
//! and holds either the state before the interrupted step or the state
//! after it: no acknowledged entry, term or vote is lost, and nothing
//! appears that was never written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use octopii::raft::storage::{Bootstrap, RaftStorage};
use octopii::wal::{WalFs, WalOptions};
use octopii_tests::crash_fs::{CrashFs, Op, Tear};
use raft::Storage;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

const DIR: &str = "/node/raft";

fn options() -> WalOptions {
    WalOptions {
        segment_size: 1024,
        ..WalOptions::default()
    }
}

fn bootstrap() -> Bootstrap {
    Bootstrap {
        voters: vec![1],
        snapshot_data: b"founding state".to_vec(),
    }
}

fn data(index: u64, term: u64) -> Bytes {
    let mut out = format!("entry {index} term {term}|").into_bytes();
    out.resize(120, index as u8);
    Bytes::from(out)
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range
        .map(|index| Entry {
            index,
            term,
            data: data(index, term),
            ..Entry::default()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Append(Vec<Entry>),
    Hard {
        term: u64,
        vote: u64,
    },
    Compact(u64),
    Conf(Vec<u64>),
    Install {
        index: u64,
        term: u64,
        voters: Vec<u64>,
    },
}

fn workload() -> Vec<Step> {
    vec![
        Step::Append(entries(2..=5, 1)),
        Step::Hard { term: 2, vote: 1 },
        Step::Append(entries(6..=8, 2)),
        Step::Hard { term: 3, vote: 0 },
        // A new leader replaces 7 and 8.
        Step::Append(entries(7..=9, 3)),
        Step::Compact(6),
        Step::Conf(vec![1, 2]),
        Step::Install {
            index: 20,
            term: 4,
            voters: vec![1, 2, 3],
        },
        Step::Append(entries(21..=22, 4)),
    ]
}

/// The durable state the storage must report.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    term: u64,
    vote: u64,
    voters: Vec<u64>,
    snapshot: (u64, u64, Vec<u8>),
    /// index -> term of the entries after the snapshot.
    entries: BTreeMap<u64, u64>,
}

impl Model {
    fn founded() -> Self {
        Model {
            term: 1,
            vote: 0,
            voters: vec![1],
            snapshot: (1, 1, b"founding state".to_vec()),
            entries: BTreeMap::new(),
        }
    }

    fn last(&self) -> u64 {
        self.entries
            .last_key_value()
            .map_or(self.snapshot.0, |(i, _)| *i)
    }

    /// The state once `step` is done.
    fn after(&self, step: &Step) -> Model {
        let mut next = self.clone();
        match step {
            Step::Append(batch) => {
                next.entries.split_off(&batch[0].index);
                next.entries.extend(batch.iter().map(|e| (e.index, e.term)));
            }
            Step::Hard { term, vote } => (next.term, next.vote) = (*term, *vote),
            Step::Compact(index) => {
                let term = self.entries[index];
                next.entries = next.entries.split_off(&(index + 1));
                next.snapshot = (*index, term, compact_data(*index));
            }
            Step::Conf(voters) => next.voters = voters.clone(),
            Step::Install {
                index,
                term,
                voters,
            } => {
                next.entries.clear();
                next.snapshot = (*index, *term, install_data(*index));
                next.voters = voters.clone();
                if *term > next.term {
                    (next.term, next.vote) = (*term, 0);
                }
            }
        }
        next
    }
}

fn compact_data(index: u64) -> Vec<u8> {
    format!("state at {index}").into_bytes()
}

fn install_data(index: u64) -> Vec<u8> {
    format!("leader's state at {index}").into_bytes()
}

fn open(fs: &CrashFs) -> octopii::Result<RaftStorage> {
    let fs: Arc<dyn WalFs> = Arc::new(fs.clone());
    RaftStorage::open_with_fs(Path::new(DIR), options(), Some(&bootstrap()), fs)
}

/// Runs the workload until the first failure; returns the state
/// acknowledged last and the step under way when it stopped.
fn run(fs: &CrashFs) -> (Model, Option<Step>) {
    let model = Model::founded();
    let Ok(mut storage) = open(fs) else {
        // Founding itself was interrupted: reopening founds again.
        return (model, None);
    };
    let mut model = model;
    for step in workload() {
        let result = match &step {
            Step::Append(batch) => block_on(storage.append(batch)),
            Step::Hard { term, vote } => storage.set_hard_state(&HardState {
                term: *term,
                vote: *vote,
                commit: 0,
                ..HardState::default()
            }),
            Step::Compact(index) => {
                storage.set_commit(*index);
                let data = compact_data(*index);
                block_on(storage.compact(*index, |out| Ok(out.write_all(&data)?)))
            }
            Step::Conf(voters) => storage.set_conf_state(ConfState {
                voters: voters.clone(),
                ..ConfState::default()
            }),
            Step::Install {
                index,
                term,
                voters,
            } => {
                // The leader's file arrives (and is checked) before raft
                // installs the snapshot.
                let Ok(reference) = receive_snapshot(fs, *index, *term, &install_data(*index))
                else {
                    return (model, Some(step));
                };
                let mut snapshot = Snapshot {
                    data: reference,
                    ..Snapshot::default()
                };
                snapshot.mut_metadata().index = *index;
                snapshot.mut_metadata().term = *term;
                snapshot.mut_metadata().mut_conf_state().voters = voters.clone();
                block_on(storage.apply_snapshot(snapshot))
            }
        };
        if result.is_err() {
            return (model, Some(step));
        }
        model = model.after(&step);
    }
    (model, None)
}

/// Writes, durably, the file of a snapshot received from a leader (as
/// `docs/PROTOCOL.md`, "Snapshot data", lays it out) where the storage
/// installs it from; returns the reference raft carries for it.
fn receive_snapshot(fs: &CrashFs, index: u64, term: u64, payload: &[u8]) -> std::io::Result<Bytes> {
    let path = Path::new(DIR).join(format!("snapshot-{index:016x}-{term:016x}.received"));
    let mut reference = (payload.len() as u64).to_le_bytes().to_vec();
    reference.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let mut bytes = b"OCTORFSN".to_vec();
    bytes.extend_from_slice(&reference);
    bytes.extend_from_slice(payload);
    let file = fs.create(&path)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_all()?;
    fs.sync_dir(Path::new(DIR))?;
    Ok(Bytes::from(reference))
}

/// The payload of the storage's current snapshot file, read through `fs`.
fn snapshot_payload(fs: &CrashFs, storage: &RaftStorage) -> Vec<u8> {
    let path = storage.snapshot_path().expect("a snapshot");
    let file = fs.open(&path).expect("snapshot file");
    let mut bytes = vec![0; file.size().expect("size") as usize];
    let mut done = 0;
    while done < bytes.len() {
        match file.read_at(&mut bytes[done..], done as u64).expect("read") {
            0 => break,
            n => done += n,
        }
    }
    bytes.split_off(20)
}

/// What the reopened storage reports, in the model's terms; every entry's
/// data is checked against what was appended at that index and term.
fn observe(fs: &CrashFs, storage: &RaftStorage, at: &str) -> Model {
    let state = storage.initial_state().expect("initial state");
    let meta = storage.snapshot_metadata();
    let (first, last) = (
        storage.first_index().expect("first"),
        storage.last_index().expect("last"),
    );
    assert_eq!(first, meta.index + 1, "{at}");
    let mut entries = BTreeMap::new();
    if last >= first {
        let got = storage
            .entries(first, last + 1, None, raft::GetEntriesContext::empty(false))
            .expect("entries");
        for e in got {
            assert_eq!(e.data, data(e.index, e.term), "{at}: entry {}", e.index);
            entries.insert(e.index, e.term);
        }
    }
    Model {
        term: state.hard_state.term,
        vote: state.hard_state.vote,
        voters: state.conf_state.voters.clone(),
        snapshot: (meta.index, meta.term, snapshot_payload(fs, storage)),
        entries,
    }
}

/// Whether `got` is `before` with the in-flight `step` done in part: for
/// an append, the conflicting suffix may be partly cut and a prefix of the
/// new entries written; any other step is all or nothing.
fn acceptable(got: &Model, before: &Model, step: Option<&Step>) -> bool {
    if got == before {
        return true;
    }
    let Some(step) = step else {
        return false;
    };
    if *got == before.after(step) {
        return true;
    }
    let Step::Append(batch) = step else {
        return false;
    };
    let start = batch[0].index;
    let same_rest = Model {
        entries: BTreeMap::new(),
        ..got.clone()
    } == Model {
        entries: BTreeMap::new(),
        ..before.clone()
    };
    let new: BTreeMap<u64, u64> = batch.iter().map(|e| (e.index, e.term)).collect();
    same_rest
        && got.last() >= start - 1
        && got.entries.iter().all(|(i, t)| {
            if *i < start {
                before.entries.get(i) == Some(t)
            } else {
                new.get(i) == Some(t) || before.entries.get(i) == Some(t)
            }
        })
        // Once a new entry shows, everything after it is new.
        && {
            let first_new = got
                .entries
                .iter()
                .find(|(i, t)| **i >= start && new.get(i) == Some(t) && before.entries.get(i) != Some(t));
            first_new.is_none_or(|(i, _)| {
                got.entries.range(i..).all(|(j, t)| new.get(j) == Some(t))
            })
        }
}

#[test]
fn raft_storage_a_power_loss_at_every_step_keeps_what_was_acknowledged() {
    let counting = CrashFs::new();
    let (full, stopped) = run(&counting);
    assert!(stopped.is_none(), "the workload runs to the end");
    assert_eq!(full.snapshot.0, 20);
    let steps = counting.ops_done();
    assert!(steps > 40, "the workload does {steps} file operations");

    for k in 0..steps {
        for tear in [Tear::DropAll, Tear::KeepAll, Tear::TearLast] {
            let at = format!("power loss after {k} of {steps} operations, {tear:?}");
            let fs = CrashFs::new();
            fs.power_fails_after(k);
            let (before, step) = run(&fs);
            assert!(fs.power_failed(), "{at}");
            fs.crash(tear);
            let storage = open(&fs).unwrap_or_else(|e| panic!("{at}: reopen refused: {e}"));
            let got = observe(&fs, &storage, &at);
            assert!(
                acceptable(&got, &before, step.as_ref()),
                "{at}: recovered {got:?}\nbefore {before:?}\nstep {step:?}"
            );
        }
    }
}

#[test]
fn raft_storage_directories_survive_a_power_loss() {
    let fs = CrashFs::new();
    let mut storage = open(&fs).expect("open");
    storage
        .set_hard_state(&HardState {
            term: 5,
            vote: 1,
            ..HardState::default()
        })
        .expect("vote");
    drop(storage);
    let log = fs.log();
    for (k, op) in log.iter().enumerate() {
        if let Op::CreateDir(dir) = op {
            let parent = dir.parent().expect("a parent").to_path_buf();
            assert!(
                log[k..].contains(&Op::SyncDir(parent.clone())),
                "{} created, {} never synced after",
                dir.display(),
                parent.display()
            );
        }
    }
    fs.crash(Tear::DropAll);
    let storage = open(&fs).expect("reopen");
    let hard = storage.initial_state().expect("state").hard_state;
    assert_eq!((hard.term, hard.vote), (5, 1), "the vote survives");
}

#[test]
fn raft_storage_a_failing_wal_fails_the_append_and_acknowledges_nothing_more() {
    let fs = CrashFs::new();
    let mut storage = open(&fs).expect("open");
    block_on(storage.append(&entries(2..=3, 1))).expect("append");
    // The disk fails: this append and everything after it must fail.
    fs.power_fails_after(0);
    let err = block_on(storage.append(&entries(4..=4, 1))).expect_err("append fails");
    assert!(err.to_string().contains("simulated power failure"), "{err}");
    assert_eq!(
        storage.last_index().expect("last"),
        3,
        "nothing acknowledged"
    );
    fs.crash(Tear::KeepAll);
    // Even with the disk back, the log stays refused until reopened.
    let err = block_on(storage.append(&entries(4..=4, 1))).expect_err("still refused");
    assert!(err.to_string().contains("unusable"), "{err}");
    assert_eq!(storage.last_index().expect("last"), 3);
    drop(storage);
    let storage = open(&fs).expect("reopen");
    assert!(storage.last_index().expect("last") >= 3);
}

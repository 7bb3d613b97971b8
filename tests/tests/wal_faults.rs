//! Failure handling through an injected file layer: after a failed fsync,
//! write, segment creation, truncation, rename, deletion or directory
//! fsync the log is unusable, and every later call says why. Reopening
//! recovers what was durable.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use octopii::wal::{self, Wal, WalError, WalOptions};
use octopii_tests::wal_fs::{FileHook, FileOp, HookedFs};

fn runtime() -> tokio::runtime::Runtime {
    octopii_tests::tokio_runtime(2)
}

/// Which operations fail, switched on and off by the test.
#[derive(Default)]
struct Faults {
    sync_data: AtomicBool,
    write: AtomicBool,
    create: AtomicBool,
    set_len: AtomicBool,
    rename: AtomicBool,
    remove: AtomicBool,
    sync_dir: AtomicBool,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl FileHook for Faults {
    fn before(&self, op: FileOp) -> io::Result<()> {
        let (switch, what) = match op {
            FileOp::Write => (&self.write, "write"),
            FileOp::SyncData => (&self.sync_data, "fsync"),
            FileOp::Create => (&self.create, "create"),
            FileOp::SetLen => (&self.set_len, "set_len"),
            FileOp::Rename => (&self.rename, "rename"),
            FileOp::Remove => (&self.remove, "remove"),
            FileOp::SyncDir => (&self.sync_dir, "directory fsync"),
            FileOp::SyncAll | FileOp::CreateDir => return Ok(()),
        };
        if switch.load(Ordering::SeqCst) {
            return Err(injected(what));
        }
        Ok(())
    }
}

/// A log on the real file system whose operations fail when `faults` say.
fn open_faulty(dir: &Path, options: WalOptions, faults: &Arc<Faults>) -> Wal {
    Wal::open_with_fs(dir, options, Arc::new(HookedFs(Arc::clone(faults)))).expect("open")
}

/// Checks that every kind of call fails, and says `cause`.
fn assert_every_call_fails(rt: &tokio::runtime::Runtime, wal: &Wal, cause: &str) {
    let says_why = |what: &str, err: WalError| {
        assert!(matches!(err, WalError::Poisoned { .. }), "{what}: {err:?}");
        let message = err.to_string();
        assert!(message.contains("unusable"), "{what}: {message}");
        assert!(message.contains(cause), "{what} names the cause: {message}");
    };
    rt.block_on(async {
        says_why("append", wal.append(b"later").await.expect_err("append"));
        says_why("batch", wal.append_batch([b"x"]).await.expect_err("batch"));
        says_why("sync", wal.sync().await.expect_err("sync"));
        says_why(
            "truncate",
            wal.truncate_suffix(1).await.expect_err("truncate"),
        );
        says_why("compact", wal.compact_prefix(1).await.expect_err("compact"));
    });
    says_why("read", wal.read(..).expect_err("read"));
    says_why("get", wal.get(1).expect_err("get"));
    says_why(
        "iter",
        wal.iter_from(1).next().expect("an item").expect_err("iter"),
    );
    says_why("check", wal.check_usable().expect_err("check"));
}

/// Appends `n` records that succeed; returns them.
fn good_records(rt: &tokio::runtime::Runtime, wal: &Wal, n: u64) -> Vec<Vec<u8>> {
    let records: Vec<Vec<u8>> = (1..=n).map(|i| format!("good {i}").into_bytes()).collect();
    rt.block_on(async {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(wal.append(r).await.expect("append"), i as u64 + 1);
        }
    });
    records
}

fn reopen_keeps(dir: &Path, records: &[Vec<u8>]) {
    let wal = Wal::open(dir, WalOptions::default()).expect("reopen with the real file system");
    let n = records.len() as u64;
    // The failed record may or may not have reached the disk; every
    // acknowledged one did.
    assert!(wal.last_index() >= n, "last index {}", wal.last_index());
    assert_eq!(wal.read(1..=n).expect("read"), records);
}

#[test]
fn wal_a_failed_fsync_fails_the_append_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let wal = open_faulty(dir.path(), WalOptions::default(), &faults);
    let records = good_records(&rt, &wal, 3);

    faults.sync_data.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(wal.append(b"doomed"))
        .expect_err("the fsync fails");
    let WalError::Poisoned { cause, .. } = &err else {
        panic!("expected a poisoned log, got {err:?}");
    };
    assert!(
        matches!(
            **cause,
            WalError::Io {
                op: wal::FileOp::SyncData,
                ..
            }
        ),
        "{cause:?}"
    );
    let message = err.to_string();
    assert!(message.contains("fdatasync of"), "{message}");
    assert!(message.contains("injected fsync failure"), "{message}");
    assert_eq!(wal.last_index(), 3, "the failed record is not acknowledged");

    // Even once the disk "works" again, nothing is retried.
    faults.sync_data.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected fsync failure");
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

#[test]
fn wal_every_append_of_a_failed_batch_and_after_it_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let wal = open_faulty(dir.path(), WalOptions::default(), &faults);
    let records = good_records(&rt, &wal, 2);
    faults.sync_data.store(true, Ordering::SeqCst);
    let appends: Vec<_> = (0..20)
        .map(|i| wal.append(format!("x{i}").as_bytes()))
        .collect();
    let results = rt.block_on(futures::future::join_all(appends));
    for result in results {
        let message = result
            .expect_err("no append of the failed batch succeeds")
            .to_string();
        assert!(message.contains("injected fsync failure"), "{message}");
    }
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

#[test]
fn wal_a_failed_write_fails_the_append_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let wal = open_faulty(dir.path(), WalOptions::default(), &faults);
    let records = good_records(&rt, &wal, 3);
    faults.write.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(wal.append(b"doomed"))
        .expect_err("the write fails");
    assert!(err.to_string().contains("injected write failure"), "{err}");
    faults.write.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected write failure");
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

#[test]
fn wal_a_failed_segment_creation_fails_the_append_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let options = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    let wal = open_faulty(dir.path(), options, &faults);
    let records = good_records(&rt, &wal, 3);
    faults.create.store(true, Ordering::SeqCst);
    // Enough to need a new segment.
    let err = rt
        .block_on(wal.append(&[1u8; 4050]))
        .expect_err("roll-over fails");
    assert!(err.to_string().contains("injected create failure"), "{err}");
    faults.create.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected create failure");
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

/// A log of 4 KiB segments holding `n` acknowledged records of 1000 bytes
/// (several segments), opened through `faults`.
fn segmented(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    faults: &Arc<Faults>,
    n: u64,
) -> (Wal, Vec<Vec<u8>>) {
    let options = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    let wal = open_faulty(dir, options, faults);
    let records: Vec<Vec<u8>> = (1..=n).map(|i| vec![i as u8; 1000]).collect();
    rt.block_on(async {
        for r in &records {
            wal.append(r).await.expect("append");
        }
    });
    (wal, records)
}

fn reopen_segmented(dir: &Path) -> Wal {
    let options = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    Wal::open(dir, options).expect("reopen with the real file system")
}

#[test]
fn wal_a_failed_set_len_fails_the_truncation_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let (wal, records) = segmented(&rt, dir.path(), &faults, 3);
    faults.set_len.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(wal.truncate_suffix(3))
        .expect_err("the truncation fails");
    assert!(
        err.to_string().contains("injected set_len failure"),
        "{err}"
    );
    faults.set_len.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected set_len failure");
    drop(wal);
    // Either side of the truncation is a whole log; records 1 and 2 stay.
    let wal = reopen_segmented(dir.path());
    assert!(wal.last_index() >= 2);
    assert_eq!(wal.read(1..=2).expect("read"), records[..2]);
}

#[test]
fn wal_a_failed_rename_fails_the_roll_over_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let (wal, records) = segmented(&rt, dir.path(), &faults, 3);
    faults.rename.store(true, Ordering::SeqCst);
    // Records of 1000 bytes: a few more need a new segment.
    let err = rt
        .block_on(async {
            for _ in 0..8 {
                wal.append(&[9u8; 1000]).await?;
            }
            Ok::<_, WalError>(())
        })
        .expect_err("the roll-over fails");
    assert!(err.to_string().contains("injected rename failure"), "{err}");
    faults.rename.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected rename failure");
    drop(wal);
    let wal = reopen_segmented(dir.path());
    assert_eq!(wal.read(1..=3).expect("read"), records);
    assert_eq!(
        wal.recovery_report().removed_temp_files.len(),
        1,
        "the half-made segment is cleaned up"
    );
}

#[test]
fn wal_a_failed_remove_fails_the_compaction_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let (wal, records) = segmented(&rt, dir.path(), &faults, 12);
    assert!(wal.stats().records_appended == 12);
    faults.remove.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(wal.compact_prefix(10))
        .expect_err("the compaction fails");
    assert!(err.to_string().contains("injected remove failure"), "{err}");
    faults.remove.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected remove failure");
    drop(wal);
    let wal = reopen_segmented(dir.path());
    assert_eq!(wal.first_index(), 1, "no segment was deleted");
    assert_eq!(wal.read(..).expect("read"), records);
}

#[test]
fn wal_a_failed_directory_fsync_fails_the_roll_over_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let faults = Arc::new(Faults::default());
    let (wal, records) = segmented(&rt, dir.path(), &faults, 3);
    faults.sync_dir.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(async {
            for _ in 0..8 {
                wal.append(&[9u8; 1000]).await?;
            }
            Ok::<_, WalError>(())
        })
        .expect_err("the roll-over fails");
    assert!(
        err.to_string().contains("injected directory fsync failure"),
        "{err}"
    );
    faults.sync_dir.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected directory fsync failure");
    drop(wal);
    let wal = reopen_segmented(dir.path());
    assert_eq!(wal.read(1..=3).expect("read"), records);
}

#[test]
fn wal_a_failed_directory_fsync_at_open_refuses_the_open() {
    let root = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    faults.sync_dir.store(true, Ordering::SeqCst);
    let dir = root.path().join("new").join("wal");
    let err = Wal::open_with_fs(&dir, WalOptions::default(), Arc::new(HookedFs(faults)))
        .expect_err("the open fails");
    assert!(
        err.to_string().contains("injected directory fsync failure"),
        "{err}"
    );
}

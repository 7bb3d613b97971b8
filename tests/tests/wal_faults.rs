//! Failure handling through an injected file layer: after a failed fsync,
//! write or segment creation the log is unusable, and every later call
//! says why. Reopening recovers what was durable.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use octopii::wal::{Wal, WalOptions};
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
    let says_why = |what: &str, err: octopii::OctopiiError| {
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

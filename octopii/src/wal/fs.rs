//! The file layer the WAL does all of its I/O through.
//!
//! [`WalFs`] and [`WalFile`] are the only way the WAL touches the disk, so a
//! test can put a layer underneath that fails (or stalls) on demand and
//! check what the log does about it. [`StdFs`] is the real one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file the WAL reads and writes at explicit offsets.
///
/// Shared between the writer thread and readers, so every method takes
/// `&self`.
pub trait WalFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes written data and all metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current size in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// Guard of an exclusive lock on a WAL directory; dropping it unlocks.
pub type DirLock = Box<dyn Send + Sync>;

/// The directory and file operations the WAL needs.
pub trait WalFs: Send + Sync {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates the one directory `dir`; fails with
    /// [`io::ErrorKind::AlreadyExists`] if it exists and
    /// [`io::ErrorKind::NotFound`] if its parent does not.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `dir` so that a second open of the same log
    /// (from this or another process) fails instead of corrupting it.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
    /// Paths of the entries of `dir`.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn WalFile>>;
    /// Creates a file for reading and writing, emptying it if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WalFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (created, renamed, deleted files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Whether every operation returns at once (a file system in memory).
    /// The WAL then writes on the thread that appends instead of a writer
    /// thread of its own, so whoever schedules the tasks (a deterministic
    /// simulation) schedules the writes too; each request is written and
    /// synced by itself, with no group commit. `false` for a real disk.
    fn never_blocks(&self) -> bool {
        false
    }

    /// For a file system that [never blocks](Self::never_blocks), how long
    /// the disk it stands for takes to make a write durable: the WAL
    /// answers each request that much later, on the runtime's clock (a
    /// simulation's slow disk). Zero, the default, answers at once.
    fn sync_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// The real file system, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

/// A file of [`StdFs`].
#[derive(Debug)]
struct StdFile(File);

impl WalFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// Holds a directory's lock file open; the `flock` goes with the descriptor.
struct FlockGuard {
    _file: File,
}

impl WalFs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the log is already open (its directory is locked)",
                ));
            }
            return Err(err);
        }
        Ok(Box::new(FlockGuard { _file: file }))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(StdFile(file)))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, failing on a short file.
pub(crate) fn read_exact_at(
    file: &dyn WalFile,
    mut buf: &mut [u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ends before byte offset {}", offset + buf.len() as u64),
                ));
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `dir` and any missing parents so that they survive a power
/// loss: each directory created is followed by an `fsync` of its parent
/// (a new directory entry is durable only once its parent is synced).
///
/// The parent of `dir` is synced even when `dir` already exists, since a
/// run that crashed may have created it without syncing. Returns the
/// error of the first step that failed.
///
/// ```
/// use octopii::wal::{StdFs, create_dir_durable};
/// let root = tempfile::tempdir()?;
/// let dir = root.path().join("data").join("raft");
/// create_dir_durable(&StdFs, &dir)?;
/// assert!(dir.is_dir());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn create_dir_durable(fs: &dyn WalFs, dir: &Path) -> io::Result<()> {
    match fs.create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = parent_of(dir) else {
                return Err(e);
            };
            create_dir_durable(fs, parent)?;
            match fs.create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    match parent_of(dir) {
        Some(parent) => fs.sync_dir(parent),
        None => Ok(()),
    }
}

/// The directory holding `path` (`.` for a bare relative name); `None` for
/// a root.
pub(crate) fn parent_of(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

/// Reads the whole of `path`.
pub(crate) fn read_whole(fs: &dyn WalFs, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path)?;
    let size = usize::try_from(file.size()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; size];
    read_exact_at(file.as_ref(), &mut buf, 0)?;
    Ok(buf)
}

/// Writes `bytes` as the whole of `dir/name`, atomically and durably:
/// written to `name.tmp`, synced, renamed over `name`, directory synced.
pub(crate) fn write_atomic(fs: &dyn WalFs, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = fs.create(&tmp)?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()?;
    drop(file);
    fs.rename(&tmp, &dir.join(name))?;
    fs.sync_dir(dir)
}

//! A receive directory on a [`WalFs`] of the service's own, rather than
//! the real disk (see [`ChunkServiceBuilder::file_system`]): raft keeps its
//! incoming snapshots on the file system that holds the rest of its state,
//! and a simulation puts both on a simulated disk.
//!
//! The rules are the disk's: bytes go to a temporary file next to the
//! destination, synced, renamed into place only once verified, then the
//! directory is synced; temporary names are reserved from peers, fresh
//! ones are unique while the directory is locked, and those a previous
//! receiver left are removed when the directory is opened.
//!
//! [`ChunkServiceBuilder::file_system`]: super::ChunkServiceBuilder::file_system

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::names;
use super::protocol::BUFFER_SIZE;
use super::receiver::{CommitError, not_durable};
use crate::wal::{DirLock, WalFile, WalFs, create_dir_durable};

/// A receive directory on `fs`, locked for as long as this (or a clone)
/// lives.
#[derive(Clone)]
pub(crate) struct FsDir {
    fs: Arc<dyn WalFs>,
    path: PathBuf,
    /// Numbers fresh temporary files; unique because the directory is
    /// locked and cleared of leftovers when opened.
    next_temp: Arc<AtomicU64>,
    _lock: Arc<DirLock>,
}

impl std::fmt::Debug for FsDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsDir").field("path", &self.path).finish()
    }
}

impl FsDir {
    /// Creates `dir` on `fs` if missing (durably), takes its lock and
    /// removes the fresh temporary files a previous receiver left in it.
    pub(crate) fn open(fs: Arc<dyn WalFs>, dir: &Path) -> io::Result<FsDir> {
        create_dir_durable(fs.as_ref(), dir)?;
        let lock = fs.lock_dir(dir)?;
        for path in fs.read_dir(dir)? {
            if path.file_name().is_some_and(names::is_temp_file) {
                match fs.remove_file(&path) {
                    Ok(()) => tracing::info!("removed leftover {}", path.display()),
                    Err(e) => tracing::warn!("cannot remove leftover {}: {e}", path.display()),
                }
            }
        }
        Ok(FsDir {
            fs,
            path: dir.to_owned(),
            next_temp: Arc::new(AtomicU64::new(0)),
            _lock: Arc::new(lock),
        })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file system answers at once, so its work may run
    /// where it is asked for rather than on a blocking thread.
    pub(crate) fn never_blocks(&self) -> bool {
        self.fs.never_blocks()
    }

    /// Resolves `name`, sent by a peer, to a file directly in this
    /// directory: one plain component that is not a reserved name.
    pub(crate) fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        let relative = Path::new(name);
        let mut components = relative.components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(file)), None) if !name.contains('\0') => {
                if names::is_reserved(file) {
                    return Err(format!(
                        "file name {name:?} is reserved for the receiver's temporary files"
                    ));
                }
                Ok(self.path.join(file))
            }
            _ => Err(format!(
                "file name {name:?} must be one plain component in this receive directory"
            )),
        }
    }

    /// The temporary file for `dest`: a fresh one, or for a resumable
    /// transfer the partial file, with the count and hash of the bytes it
    /// already holds.
    pub(crate) fn create(
        &self,
        dest: &Path,
        size: u64,
        resumable: bool,
    ) -> io::Result<(FsTemp, u64, Sha256)> {
        let (path, file, held, hasher) = if resumable {
            let path = names::partial_path(dest);
            let (file, held, hasher) = self.open_partial(&path, size)?;
            (path, file, held, hasher)
        } else {
            let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}{n:06}{}", names::TEMP_PREFIX, names::TEMP_SUFFIX);
            let path = self.path.join(name);
            (path.clone(), self.fs.create(&path)?, 0, Sha256::new())
        };
        let temp = FsTemp {
            fs: self.fs.clone(),
            file,
            path,
            dest: dest.to_owned(),
            written: held,
            remove_on_drop: !resumable,
        };
        Ok((temp, held, hasher))
    }

    /// Opens (or creates) the partial file at `path` and hashes what it
    /// holds; one longer than `size` is stale and starts over.
    fn open_partial(&self, path: &Path, size: u64) -> io::Result<(Arc<dyn WalFile>, u64, Sha256)> {
        let file = match self.fs.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.fs.create(path)?,
            Err(e) => return Err(e),
        };
        let mut hasher = Sha256::new();
        let len = file.size()?;
        if len > size {
            file.set_len(0)?;
            return Ok((file, 0, hasher));
        }
        let mut buffer = vec![0u8; BUFFER_SIZE];
        let mut held = 0u64;
        while held < len {
            let n = file.read_at(&mut buffer, held)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            held += n as u64;
        }
        Ok((file, held, hasher))
    }
}

/// A temporary file on a [`FsDir`], on its way to `dest`. Dropped without
/// [`commit`](Self::commit), it is kept if it is a resumable partial file
/// and removed otherwise.
pub(crate) struct FsTemp {
    fs: Arc<dyn WalFs>,
    file: Arc<dyn WalFile>,
    path: PathBuf,
    dest: PathBuf,
    written: u64,
    remove_on_drop: bool,
}

impl std::fmt::Debug for FsTemp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsTemp")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

impl FsTemp {
    /// Whether its file system answers at once.
    pub(crate) fn never_blocks(&self) -> bool {
        self.fs.never_blocks()
    }

    /// Appends `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.file
            .write_all_at(bytes, self.written)
            .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Makes what was written durable.
    pub(crate) fn sync(&mut self) -> Result<(), String> {
        self.file
            .sync_all()
            .map_err(|e| format!("fsync of {}: {e}", self.path.display()))
    }

    /// Renames the file into place and syncs its directory.
    pub(crate) fn commit(mut self) -> Result<PathBuf, CommitError> {
        if let Err(e) = self.fs.rename(&self.path, &self.dest) {
            self.remove_on_drop = true;
            return Err(CommitError::NotPlaced(format!("renaming into place: {e}")));
        }
        self.remove_on_drop = false;
        let partial = names::partial_path(&self.dest);
        if partial != self.path {
            let _ = self.fs.remove_file(&partial);
        }
        let dir = self.dest.parent().unwrap_or(Path::new("."));
        self.fs
            .sync_dir(dir)
            .map_err(|e| not_durable(&self.dest, e))?;
        Ok(self.dest.clone())
    }

    /// Removes the file.
    pub(crate) fn discard(mut self) {
        self.remove_on_drop = true;
    }
}

impl Drop for FsTemp {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = self.fs.remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::StdFs;

    fn open(dir: &Path) -> io::Result<FsDir> {
        FsDir::open(Arc::new(StdFs), dir)
    }

    #[test]
    fn only_one_plain_unreserved_name_resolves() {
        let base = tempfile::tempdir().unwrap();
        let dir = open(base.path()).unwrap();
        assert_eq!(dir.resolve("snap").unwrap(), base.path().join("snap"));
        for refused in [
            "",
            "a/b",
            "../x",
            "/etc/passwd",
            ".",
            ".octopii-1.tmp",
            ".x.octopii-partial",
            "a\0b",
        ] {
            assert!(dir.resolve(refused).is_err(), "{refused:?} resolved");
        }
    }

    #[test]
    fn a_second_service_is_refused_and_leftovers_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let leftover = base.path().join(".octopii-000000.tmp");
        let partial = base.path().join(".snap.octopii-partial");
        std::fs::write(&leftover, b"old").unwrap();
        std::fs::write(&partial, b"keep").unwrap();
        let dir = open(base.path()).unwrap();
        assert!(!leftover.exists(), "a fresh temporary file is a leftover");
        assert!(partial.exists(), "a partial file is kept to resume");
        assert!(open(base.path()).is_err(), "the directory is locked");
        drop(dir);
        open(base.path()).unwrap();
    }

    #[test]
    fn verified_bytes_are_placed_and_unverified_ones_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let dir = open(base.path()).unwrap();
        let dest = dir.resolve("placed").unwrap();
        let (mut temp, held, _) = dir.create(&dest, 5, false).unwrap();
        assert_eq!(held, 0);
        temp.write(b"hello").unwrap();
        temp.sync().unwrap();
        assert!(!dest.exists(), "nothing at the destination before commit");
        temp.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        let (mut temp, _, _) = dir
            .create(&dir.resolve("dropped").unwrap(), 5, false)
            .unwrap();
        temp.write(b"half").unwrap();
        drop(temp);
        let temps = std::fs::read_dir(base.path())
            .unwrap()
            .flatten()
            .filter(|e| names::is_temp_file(&e.file_name()))
            .count();
        assert_eq!(temps, 0, "the dropped temporary file is gone");
    }

    #[test]
    fn a_resumable_transfer_goes_on_from_its_partial_file() {
        let base = tempfile::tempdir().unwrap();
        let dir = open(base.path()).unwrap();
        let dest = dir.resolve("big").unwrap();
        let (mut temp, _, _) = dir.create(&dest, 10, true).unwrap();
        temp.write(b"01234").unwrap();
        temp.sync().unwrap();
        drop(temp);
        let (mut temp, held, hasher) = dir.create(&dest, 10, true).unwrap();
        assert_eq!(held, 5);
        assert_eq!(hasher.finalize(), Sha256::digest(b"01234"));
        temp.write(b"56789").unwrap();
        temp.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"0123456789");
        assert!(!names::partial_path(&dest).exists());
        // A partial file longer than the transfer is stale.
        std::fs::write(names::partial_path(&dest), b"too long, stale").unwrap();
        let (_, held, _) = dir.create(&dest, 4, true).unwrap();
        assert_eq!(held, 0);
    }
}

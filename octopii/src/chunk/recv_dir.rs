//! The receive directory: created durably, held by one service at a time,
//! and cleared of a previous receiver's temporary files when served.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::names;

/// A receive directory opened for one `ChunkService`: canonical, and
/// locked (an advisory `flock` on the directory) for as long as this lives,
/// so no other service, in this process or another, writes into it or
/// removes its temporary files as leftovers.
#[derive(Debug)]
pub(crate) struct RecvDir {
    path: PathBuf,
    _lock: File,
}

impl RecvDir {
    /// Creates `dir` if missing (fsyncing the parent of every directory
    /// created), takes its lock and removes the fresh temporary files a
    /// receiver that stopped left below it. Partial files of resumable
    /// transfers are kept.
    pub(crate) fn open(dir: &Path) -> io::Result<RecvDir> {
        create_dir_durably(dir, &mut sync_dir)?;
        let path = dir.canonicalize()?;
        let lock = File::open(&path)?;
        lock_exclusively(&lock)?;
        remove_leftovers(&path);
        Ok(RecvDir { path, _lock: lock })
    }

    /// The canonical path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes an exclusive `flock` on `dir` without waiting; it is released
/// when the file is closed.
fn lock_exclusively(dir: &File) -> io::Result<()> {
    // SAFETY: `flock` on a descriptor that `dir` owns and keeps open.
    let locked = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "the receive directory is in use by another chunk service",
        ));
    }
    Err(error)
}

/// Fsyncs the directory `dir`, making the names in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors one by one; each directory
/// created is durable only once its parent is fsynced, so `sync` is called
/// on the parent of each.
pub(crate) fn create_dir_durably(
    dir: &Path,
    sync: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    for created in missing.into_iter().rev() {
        match std::fs::create_dir(created) {
            Ok(()) => {}
            // Created meanwhile by someone else, who fsyncs its parent.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && created.is_dir() => continue,
            Err(e) => return Err(e),
        }
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync(parent)?;
    }
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(())
}

/// Removes every fresh temporary file below `root` (symlinks not
/// followed). What cannot be read or removed is logged and left.
fn remove_leftovers(root: &Path) {
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("cannot look for leftovers in {}: {e}", dir.display());
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() && names::is_temp_file(&entry.file_name()) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!("removed leftover {}", path.display()),
                    Err(e) => tracing::warn!("cannot remove leftover {}: {e}", path.display()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_of_every_directory_created_is_fsynced() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/c");
        let mut synced = Vec::new();
        create_dir_durably(&dir, &mut |d| {
            synced.push(d.to_owned());
            sync_dir(d)
        })
        .unwrap();
        assert!(dir.is_dir());
        let expected = ["", "a", "a/b"].map(|p| base.path().join(p));
        assert_eq!(
            synced
                .iter()
                .map(|p| p.components().collect::<PathBuf>())
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|p| p.components().collect::<PathBuf>())
                .collect::<Vec<_>>()
        );
        // Already there: nothing created, nothing to fsync.
        synced.clear();
        create_dir_durably(&dir, &mut |d| {
            synced.push(d.to_owned());
            Ok(())
        })
        .unwrap();
        assert!(synced.is_empty());
    }

    #[test]
    fn a_failing_fsync_of_the_parent_fails_the_creation() {
        let base = tempfile::tempdir().unwrap();
        let failed = create_dir_durably(&base.path().join("new"), &mut |_| {
            Err(io::Error::other("injected fsync failure"))
        });
        assert!(failed.unwrap_err().to_string().contains("injected"));
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("file"), b"").unwrap();
        assert!(create_dir_durably(&base.path().join("file"), &mut sync_dir).is_err());
    }

    #[test]
    fn opening_removes_temporary_files_keeps_the_rest_and_locks() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        let leftovers = [".octopii-AbC123.tmp", "sub/.octopii-xyz789.tmp"];
        let kept = [
            "user.bin",
            ".foo.octopii-partial",
            "sub/.bar.octopii-partial",
            "sub/other.tmp",
        ];
        for name in leftovers.iter().chain(&kept) {
            std::fs::write(root.join(name), b"bytes").unwrap();
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".octopii-out123.tmp"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();

        let opened = RecvDir::open(root).unwrap();
        for name in leftovers {
            assert!(!root.join(name).exists(), "{name} removed");
        }
        for name in kept {
            assert!(root.join(name).exists(), "{name} kept");
        }
        assert!(outside.path().join(".octopii-out123.tmp").exists());

        // A second service on the same directory is refused while the
        // first holds it, and its start removes nothing.
        std::fs::write(root.join(".octopii-live12.tmp"), b"").unwrap();
        let busy = RecvDir::open(root).unwrap_err();
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy);
        assert!(root.join(".octopii-live12.tmp").exists());
        drop(opened);
        RecvDir::open(root).unwrap();
    }
}

//! Partial files kept for resuming an interrupted transfer.
//!
//! A resumable transfer to `dir/name` writes `dir/.name.octopii-partial`
//! instead of a uniquely named temporary file. If the connection breaks, the
//! receiver keeps it (fsynced); the next resumable transfer to the same
//! destination re-hashes those bytes, reports their count as the offset and
//! appends the rest, so the SHA-256 the sender sends still covers the whole
//! file. A partial file that does not verify in the end is removed like any
//! other temporary file. Its name is reserved (see `names`): no peer can
//! name it as a destination.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::protocol::BUFFER_SIZE;

/// Opens (or creates) the partial file at `path` for a transfer of `size`
/// bytes and hashes what it holds. Returns the file positioned at its end,
/// the byte count and the hash state. A partial file longer than `size` is
/// stale and starts over. Symlinks are not followed.
pub(crate) fn open_partial(path: &Path, size: u64) -> std::io::Result<(File, u64, Sha256)> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("partial file is not a regular file"));
    }
    let mut hasher = Sha256::new();
    let len = file.metadata()?.len();
    if len > size {
        file.set_len(0)?;
        return Ok((file, 0, hasher));
    }
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut held = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        held += n as u64;
    }
    file.seek(SeekFrom::Start(held))?;
    Ok((file, held, hasher))
}

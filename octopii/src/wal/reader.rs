//! Reading records back, beside the writer thread.
//!
//! A read copies what it needs out of the shared view (file handles and
//! record boundaries) under a short lock, then reads and checks the CRC of
//! every record without holding it, so reads never stall appends.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::{Corruption, FileOp, Result, WalError};
use super::format;
use super::fs::{WalFile, read_exact_at};
use super::state::Shared;

/// Records of one segment to read in one go.
struct Piece {
    file: Arc<dyn WalFile>,
    path: PathBuf,
    salt: u32,
    first_index: u64,
    bounds: Vec<u32>,
}

/// Reads records `start..end`, stopping early (after at least one record)
/// once `max_bytes` of frames are gathered.
pub(crate) fn read_range(
    shared: &Shared,
    start: u64,
    end: u64,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>> {
    let pieces = plan(shared, start, end, max_bytes)?;
    let mut out = Vec::new();
    for piece in pieces {
        read_piece(shared, &piece, &mut out)?;
    }
    Ok(out)
}

fn plan(shared: &Shared, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Piece>> {
    let view = shared.read_view();
    if let Some(cause) = &view.failure {
        return Err(shared.poisoned(cause));
    }
    let first = view.first_index();
    let next = view.durable_next;
    if start > end {
        return Err(WalError::InvalidRange { start, end });
    }
    if start < first {
        return Err(WalError::Compacted {
            index: start,
            first,
        });
    }
    if end > next {
        return Err(WalError::PastEnd {
            index: end - 1,
            last: next - 1,
        });
    }
    let mut pieces = Vec::new();
    let mut bytes = 0usize;
    let mut at = start;
    let mut position = view.segment_of(start);
    while at < end && position < view.segments.len() {
        let seg = &view.segments[position];
        let lo = (at - seg.first_index) as usize;
        let full = (end.min(seg.next_index()) - seg.first_index) as usize;
        let mut hi = lo;
        while hi < full {
            let frame = (seg.bounds[hi + 1] - seg.bounds[hi]) as usize;
            if bytes > 0 && bytes + frame > max_bytes {
                break;
            }
            bytes += frame;
            hi += 1;
        }
        if hi > lo {
            pieces.push(Piece {
                file: Arc::clone(&seg.file),
                path: seg.path.clone(),
                salt: seg.salt,
                first_index: at,
                bounds: seg.bounds[lo..=hi].to_vec(),
            });
        }
        at = seg.first_index + hi as u64;
        if hi < full {
            break;
        }
        position += 1;
    }
    Ok(pieces)
}

fn read_piece(shared: &Shared, piece: &Piece, out: &mut Vec<Vec<u8>>) -> Result<()> {
    let (Some(&begin), Some(&finish)) = (piece.bounds.first(), piece.bounds.last()) else {
        return Ok(());
    };
    let mut buf = vec![0u8; (finish - begin) as usize];
    let read = FileOp::Read {
        offset: u64::from(begin),
        len: buf.len() as u64,
    };
    read_exact_at(piece.file.as_ref(), &mut buf, u64::from(begin))
        .map_err(|e| WalError::io(read, &piece.path, e))?;
    for (k, pair) in piece.bounds.windows(2).enumerate() {
        let offset = (pair[0] - begin) as usize;
        let end = (pair[1] - begin) as usize;
        let index = piece.first_index + k as u64;
        let corrupt = |reason| WalError::corrupt(&piece.path, u64::from(pair[0]), reason);
        let payload = format::decode_record(
            &buf[..end],
            offset,
            piece.salt,
            index,
            shared.max_record_size,
        )
        .map_err(|fault| {
            corrupt(Corruption::Record {
                index,
                fault,
                not_torn: None,
            })
        })?;
        if payload.end != end {
            return Err(corrupt(Corruption::RecordLength {
                index,
                expected: (end - offset - format::FRAME_HEADER_LEN) as u64,
                actual: payload.len() as u64,
            }));
        }
        out.push(buf[payload].to_vec());
    }
    Ok(())
}

//! [`WalOptions`] and [`FlushPolicy`].

use std::time::Duration;

use super::error::WalError;

/// When appended records are made durable, and so when `append` resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// The default. Appends that arrive while an `fdatasync` runs queue up;
    /// when it returns, the writer takes everything queued, writes it in one
    /// go and shares the next `fdatasync` among all of it.
    GroupCommit {
        /// After taking what is queued, wait up to this long for more before
        /// syncing (more records per sync, more latency). `None`: no wait.
        linger: Option<Duration>,
        /// Stop gathering a batch once it holds about this many bytes.
        max_batch_bytes: usize,
    },
    /// Sync at most once per interval: the appends gathered during one
    /// interval are written together and all resolve after its one
    /// `fdatasync`. A lone append after a quiet spell syncs at once. Kept
    /// for setups that want a bounded sync rate; latency is up to the
    /// interval.
    Interval(Duration),
    /// Never `fdatasync` record data; an append resolves once written to
    /// the operating system. A crash of the machine loses records. For tests
    /// only, as the name says. [`Wal::sync`](super::Wal::sync) still syncs.
    NoSyncForTestsOnly,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy::GroupCommit {
            linger: None,
            max_batch_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How a [`Wal`](super::Wal) is run. `WalOptions::default()` suits a node.
///
/// ```
/// use octopii::wal::{FlushPolicy, WalOptions};
/// let options = WalOptions {
///     segment_size: 1024 * 1024,
///     flush_policy: FlushPolicy::Interval(std::time::Duration::from_millis(100)),
///     ..WalOptions::default()
/// };
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// When records become durable; group commit by default.
    pub flush_policy: FlushPolicy,
    /// A segment file is closed and a new one started once the next record
    /// would take it past this many bytes (64 MiB by default; at most 1 GiB).
    pub segment_size: u64,
    /// Largest record payload accepted, in bytes (16 MiB by default; at most
    /// 1 GiB). Recovery refuses a length above it, so a damaged length can
    /// never cause a huge allocation.
    pub max_record_size: u32,
}

/// Largest allowed [`WalOptions::segment_size`] and
/// [`WalOptions::max_record_size`]: keeps every offset in a segment within
/// 32 bits.
pub const MAX_SIZE_LIMIT: u64 = 1 << 30;

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            flush_policy: FlushPolicy::default(),
            segment_size: 64 * 1024 * 1024,
            max_record_size: 16 * 1024 * 1024,
        }
    }
}

impl WalOptions {
    /// Checks every value, naming the one refused.
    pub fn validate(&self) -> Result<(), WalError> {
        let bad = |field, reason| Err(WalError::InvalidOption { field, reason });
        if self.segment_size < 1024 || self.segment_size > MAX_SIZE_LIMIT {
            return bad("wal.segment_size", "must be from 1 KiB to 1 GiB");
        }
        if u64::from(self.max_record_size) > MAX_SIZE_LIMIT {
            return bad("wal.max_record_size", "must be at most 1 GiB");
        }
        match self.flush_policy {
            FlushPolicy::GroupCommit {
                max_batch_bytes: 0, ..
            } => bad("wal.flush_policy", "max_batch_bytes must be at least 1"),
            FlushPolicy::Interval(d) if d.is_zero() => {
                bad("wal.flush_policy", "the interval must be longer than zero")
            }
            _ => Ok(()),
        }
    }
}

//! [`WalOptions`] and [`FlushPolicy`].

use std::time::Duration;

use serde::Deserialize;

use super::error::WalError;

/// When appended records are made durable, and so when `append` resolves.
///
/// In TOML, a table with a `kind`: `{ kind = "group_commit", linger_ms = 2,
/// max_batch_bytes = 4194304 }`, `{ kind = "interval", interval_ms = 100 }`
/// or `{ kind = "no_sync_for_tests_only" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "FlushPolicyToml")]
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

/// [`FlushPolicy`] as a TOML file writes it: durations in milliseconds.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FlushPolicyToml {
    GroupCommit {
        #[serde(default)]
        linger_ms: u64,
        #[serde(default = "default_max_batch_bytes")]
        max_batch_bytes: usize,
    },
    Interval {
        interval_ms: u64,
    },
    NoSyncForTestsOnly,
}

fn default_max_batch_bytes() -> usize {
    4 * 1024 * 1024
}

impl From<FlushPolicyToml> for FlushPolicy {
    fn from(toml: FlushPolicyToml) -> Self {
        match toml {
            FlushPolicyToml::GroupCommit {
                linger_ms,
                max_batch_bytes,
            } => FlushPolicy::GroupCommit {
                linger: (linger_ms > 0).then(|| Duration::from_millis(linger_ms)),
                max_batch_bytes,
            },
            FlushPolicyToml::Interval { interval_ms } => {
                FlushPolicy::Interval(Duration::from_millis(interval_ms))
            }
            FlushPolicyToml::NoSyncForTestsOnly => FlushPolicy::NoSyncForTestsOnly,
        }
    }
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy::GroupCommit {
            linger: None,
            max_batch_bytes: default_max_batch_bytes(),
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

//! Progress reports of a transfer, on the sending and the receiving side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How far one transfer with one peer has come.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The node at the other end.
    pub peer: SocketAddr,
    /// The destination name or path.
    pub name: String,
    /// Bytes the receiver holds or has been sent so far, counting a
    /// resumed transfer's offset.
    pub done: u64,
    /// Bytes of the whole transfer.
    pub total: u64,
    /// Bytes the receiver already held when this attempt started (a
    /// resumed transfer); `0` otherwise.
    pub resumed_from: u64,
    /// Time since this attempt started.
    pub elapsed: Duration,
}

impl Progress {
    /// Bytes per second moved by this attempt (a resumed offset excluded).
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done.saturating_sub(self.resumed_from) as f64 / secs
        } else {
            0.0
        }
    }
}

/// A progress callback; called often (once per 64 KiB buffer), so it
/// should be quick (update a bar, store a number).
///
/// ```
/// use octopii::chunk::{Progress, ProgressFn};
/// use std::sync::Arc;
///
/// let print: ProgressFn = Arc::new(|p: &Progress| {
///     println!("{}: {}/{} bytes", p.name, p.done, p.total);
/// });
/// # let _ = print;
/// ```
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Reports one transfer's progress to an optional callback.
pub(crate) struct Reporter {
    callback: Option<ProgressFn>,
    progress: Progress,
    started: Instant,
}

impl Reporter {
    pub(crate) fn new(
        callback: Option<ProgressFn>,
        peer: SocketAddr,
        name: &str,
        total: u64,
    ) -> Self {
        Reporter {
            callback,
            progress: Progress {
                peer,
                name: name.to_owned(),
                done: 0,
                total,
                resumed_from: 0,
                elapsed: Duration::ZERO,
            },
            started: Instant::now(),
        }
    }

    /// Records the offset a resumed attempt starts from.
    pub(crate) fn resume_from(&mut self, offset: u64) {
        self.progress.resumed_from = offset;
        self.update(offset);
    }

    /// Data bytes this attempt has taken (a resumed offset excluded).
    pub(crate) fn this_attempt(&self) -> u64 {
        self.progress
            .done
            .saturating_sub(self.progress.resumed_from)
    }

    /// Records that `done` bytes are now through, and reports it.
    pub(crate) fn update(&mut self, done: u64) {
        self.progress.done = done;
        if let Some(callback) = &self.callback {
            self.progress.elapsed = self.started.elapsed();
            callback(&self.progress);
        }
    }
}

//! Rate limit for log lines a peer can provoke.
//!
//! A stranger can make a node fail handshakes as fast as it can send
//! packets; logging each one would let it fill the node's disk or drown the
//! lines that matter. [`LogLimit`] lets a few lines through per second and
//! counts the rest, so the next line that passes says how many were held
//! back.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one allowance of lines lasts.
const WINDOW: Duration = Duration::from_secs(1);

/// Lets at most a fixed number of events per second be logged.
#[derive(Debug)]
pub(crate) struct LogLimit {
    per_second: u32,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of `per_second` lines each second (0: none at all).
    pub(crate) fn new(per_second: u32) -> Self {
        LogLimit {
            per_second,
            state: Mutex::new(Window::default()),
        }
    }

    /// Whether an event at `now` may be logged; if so, with the number of
    /// events held back since the last one that was.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut window = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = window
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= WINDOW);
        if expired {
            window.started = Some(now);
            window.logged = 0;
        }
        if window.logged < self.per_second {
            window.logged += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_few_through_per_second_and_counts_the_rest() {
        let limit = LogLimit::new(3);
        let start = Instant::now();
        let first: Vec<_> = (0..10).map(|_| limit.allow(start)).collect();
        assert_eq!(first[..3], [Some(0), Some(0), Some(0)]);
        assert!(first[3..].iter().all(Option::is_none));
        // Still within the second: held back.
        assert_eq!(limit.allow(start + Duration::from_millis(999)), None);
        // The next second's first line reports the eight held back.
        let later = start + Duration::from_secs(1);
        assert_eq!(limit.allow(later), Some(8));
        assert_eq!(limit.allow(later), Some(0));
    }

    #[test]
    fn zero_logs_nothing() {
        let limit = LogLimit::new(0);
        assert_eq!(limit.allow(Instant::now()), None);
    }
}

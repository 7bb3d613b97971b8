//! Backoff between dials of a peer that could not be reached.
//!
//! A dial that fails (refused, timed out, a certificate rejected) starts a
//! pause for that peer; until it passes, the pool dials it no more and its
//! callers fail at once with [`TransportError::Backoff`], so a peer that is
//! down or refusing is not dialled again by every call. Each failure in a
//! row doubles the pause, from `transport.redial_backoff_initial_ms` up to
//! `transport.redial_backoff_max_ms`, each drawn from the upper half of its
//! range (equal jitter), so peers that lost one node do not dial it in
//! step. The first successful handshake forgets the failures. The cap is
//! short (1 s by default): a restarted peer is reached again within it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::TransportError;

/// Failed dials per peer, and until when the next is held back.
#[derive(Debug)]
pub(crate) struct Redial {
    initial: Duration,
    max: Duration,
    peers: Mutex<HashMap<SocketAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    in_a_row: u32,
    not_before: Instant,
}

impl Redial {
    /// Pauses from `initial` doubling to `max`; a zero `max` never pauses.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Redial {
            initial,
            max,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Failures>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `addr` may be dialled now; if not, the error callers get.
    pub fn check(&self, addr: SocketAddr) -> Result<(), TransportError> {
        let Some(failures) = self.peers().get(&addr).copied() else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= failures.not_before {
            return Ok(());
        }
        Err(TransportError::Backoff {
            addr,
            failures: failures.in_a_row,
            next_dial_in: failures.not_before - now,
        })
    }

    /// Records a failed dial of `addr`; `jitter` is a fraction in `[0, 1)`.
    pub fn failed(&self, addr: SocketAddr, jitter: f64) {
        if self.max.is_zero() {
            return;
        }
        let mut peers = self.peers();
        let in_a_row = peers.get(&addr).map_or(1, |f| f.in_a_row.saturating_add(1));
        let doubled = self
            .initial
            .saturating_mul(1 << (in_a_row - 1).min(20))
            .min(self.max);
        let pause = doubled / 2 + doubled.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        let not_before = Instant::now() + pause;
        peers.insert(
            addr,
            Failures {
                in_a_row,
                not_before,
            },
        );
    }

    /// Records a successful handshake with `addr`: its failures are over.
    pub fn succeeded(&self, addr: SocketAddr) {
        self.peers().remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    fn held_back(redial: &Redial) -> Option<Duration> {
        match redial.check(addr()) {
            Ok(()) => None,
            Err(TransportError::Backoff { next_dial_in, .. }) => Some(next_dial_in),
            Err(other) => panic!("{other}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_double_the_pause_up_to_the_cap_and_success_forgets_them() {
        let redial = Redial::new(Duration::from_millis(50), Duration::from_millis(400));
        assert_eq!(held_back(&redial), None);
        // Without jitter, each pause is the lower half of its range.
        for expected in [25, 50, 100, 200, 200] {
            redial.failed(addr(), 0.0);
            assert_eq!(held_back(&redial), Some(Duration::from_millis(expected)));
            tokio::time::advance(Duration::from_millis(expected)).await;
            assert_eq!(
                held_back(&redial),
                None,
                "dialled again after {expected} ms"
            );
        }
        // The most jitter puts it at the top of the range.
        redial.failed(addr(), 0.999_999);
        let pause = held_back(&redial).unwrap();
        assert!(pause > Duration::from_millis(399) && pause <= Duration::from_millis(400));
        let error = redial.check(addr()).unwrap_err().to_string();
        assert!(
            error.contains("6 dials of 127.0.0.1:9 failed in a row"),
            "{error}"
        );

        redial.succeeded(addr());
        assert_eq!(held_back(&redial), None);
        redial.failed(addr(), 0.0);
        assert_eq!(held_back(&redial), Some(Duration::from_millis(25)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_cap_never_holds_a_dial_back() {
        let redial = Redial::new(Duration::from_millis(50), Duration::ZERO);
        redial.failed(addr(), 0.5);
        assert_eq!(held_back(&redial), None);
    }
}

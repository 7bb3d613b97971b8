//! A server's bound on each wait of a stream for its peer, with one timer
//! for all of the stream's waits.
//!
//! A timer made for each read or write (a `tokio::time::timeout` around
//! it) enters the runtime's timer wheel whenever the wait blocks and leaves
//! it when the wait ends, taking the wheel's lock, shared by every task of
//! the runtime, both times. Here one sleep serves every wait of a stream:
//! set for the first, and moved to the end of the current wait only when
//! it fires early, about once per idle period.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::rpc::{Code, RpcError};

/// Fails a wait on the peer that lasts longer than `idle`.
#[derive(Debug)]
pub(super) struct IdleTimer {
    idle: Duration,
    /// Made at the first wait; its deadline is never later than the
    /// current wait's end.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub(super) fn new(idle: Duration) -> Self {
        IdleTimer { idle, sleep: None }
    }

    /// Runs `wait`, or fails with `DeadlineExceeded` once it has waited
    /// `idle`.
    pub(super) async fn bound<R>(
        &mut self,
        wait: impl Future<Output = Result<R, RpcError>>,
    ) -> Result<R, RpcError> {
        let due = Instant::now() + self.idle;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        let mut wait = std::pin::pin!(wait);
        loop {
            tokio::select! {
                biased;
                result = &mut wait => return result,
                () = sleep.as_mut() => {
                    if Instant::now() >= due {
                        return Err(RpcError::new(
                            Code::DeadlineExceeded,
                            format!("the peer made no progress for {:?}", self.idle),
                        ));
                    }
                    // Set for an earlier wait: move it to this one's end.
                    sleep.as_mut().reset(due);
                }
            }
        }
    }
}

/// Runs `wait`, a wait on the peer, bounded by `timer` if there is one: a
/// server does not wait forever on a caller that neither sends nor reads.
pub(super) async fn waiting_on_peer<R>(
    timer: &mut Option<IdleTimer>,
    wait: impl Future<Output = Result<R, RpcError>>,
) -> Result<R, RpcError> {
    match timer {
        Some(timer) => timer.bound(wait).await,
        None => wait.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    async fn progress_after(d: Duration) -> Result<Duration, RpcError> {
        tokio::time::sleep(d).await;
        Ok(d)
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_gets_the_whole_idle_period() {
        let mut timer = IdleTimer::new(IDLE);
        // Together far longer than the idle period, each one shorter.
        for _ in 0..5 {
            let waited = timer.bound(progress_after(IDLE * 6 / 10)).await;
            assert_eq!(waited.unwrap(), IDLE * 6 / 10);
        }
        // A gap between waits is not the peer's to answer for.
        tokio::time::sleep(IDLE * 3).await;
        assert!(timer.bound(progress_after(IDLE / 2)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_idle_period_fails_when_it_ends() {
        let mut timer = IdleTimer::new(IDLE);
        assert!(timer.bound(progress_after(IDLE / 2)).await.is_ok());
        let started = Instant::now();
        let err = timer.bound(progress_after(IDLE * 2)).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), IDLE);
    }
}

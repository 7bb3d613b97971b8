//! [`RetryPolicy`]: when a client tries a unary call again.
//!
//! A retry is safe in two cases only:
//!
//! * the call never ran: the request was never sent (no connection to the
//!   peer), or the server refused it before its handler (it answers
//!   [`Code::Unavailable`] only then, while it drains);
//! * the method is idempotent (`#[octopii(idempotent)]` on the trait
//!   method): running it twice does what running it once does, so a call
//!   that may have run is retried too, after [`Code::Unavailable`] (the
//!   connection broke) or [`Code::ResourceExhausted`] (no call permit was
//!   free).
//!
//! Every attempt fits in the call's deadline: the pauses and the attempts
//! after the first take what is left of it, and a call whose deadline
//! passes fails with [`Code::DeadlineExceeded`] as before.
//!
//! ```
//! use std::time::Duration;
//! use octopii::rpc::RetryPolicy;
//!
//! let policy = RetryPolicy {
//!     max_attempts: 4,
//!     ..RetryPolicy::default()
//! };
//! // Pauses double from `initial_backoff`, each drawn at random from the
//! // upper half of its backoff, so callers that failed together do not
//! // retry together.
//! let (first, second) = (policy.pause(2), policy.pause(3));
//! assert!(first >= policy.initial_backoff / 2 && first <= policy.initial_backoff);
//! assert!(second >= policy.initial_backoff && second <= 2 * policy.initial_backoff);
//! ```

use std::time::Duration;

use super::Code;

/// How often, and after what pauses, a client retries a call (see the
/// module docs for which calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 never retries.
    pub max_attempts: u32,
    /// The pause before the first retry; it doubles after each one.
    pub initial_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, pauses from 20 ms up to 1 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt` (2 for the first retry): the
    /// backoff of that attempt, `initial_backoff · 2^(attempt − 2)` capped
    /// at `max_backoff`, of which a random half ("equal jitter").
    pub fn pause(&self, attempt: u32) -> Duration {
        self.pause_with(attempt, rand::random::<f64>())
    }

    /// [`pause`](Self::pause) with the random fraction `jitter` in
    /// `[0, 1)` given (a client draws it from its transport, which a
    /// simulation seeds).
    pub(crate) fn pause_with(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(2).min(31);
        let backoff = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = backoff / 2;
        half + half.mul_f64(jitter)
    }
}

/// How far a failed attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reached {
    /// No request byte left: the call did not run.
    NotSent,
    /// The request may have reached the server; no answer came.
    Sent,
    /// The server answered with this failure.
    Answered,
}

/// Whether a call that failed with `code` after reaching `reached` did
/// not run: it was not sent, or the server refused it before its handler.
pub(crate) fn never_ran(code: Code, reached: Reached) -> bool {
    reached == Reached::NotSent || (reached == Reached::Answered && code == Code::Unavailable)
}

/// Whether an attempt that failed with `code` after reaching `reached`
/// may be tried again, for a method that is `idempotent` or not: only a
/// failure that may pass, of a call that never ran or may run twice.
pub(crate) fn may_retry(code: Code, reached: Reached, idempotent: bool) -> bool {
    let transient = matches!(code, Code::Unavailable | Code::ResourceExhausted);
    transient && (never_ran(code, reached) || idempotent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_that_never_ran_are_retried_unless_idempotent() {
        use Reached::*;
        // Never ran: retried, idempotent or not.
        assert!(may_retry(Code::Unavailable, NotSent, false));
        assert!(may_retry(Code::Unavailable, Answered, false));
        // May have run: only an idempotent method.
        assert!(!may_retry(Code::Unavailable, Sent, false));
        assert!(may_retry(Code::Unavailable, Sent, true));
        assert!(!may_retry(Code::ResourceExhausted, Answered, false));
        assert!(may_retry(Code::ResourceExhausted, Answered, true));
        // What a retry cannot change, sent or not.
        assert!(!may_retry(Code::Unauthenticated, NotSent, true));
        for code in [
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            assert!(!may_retry(code, Answered, true), "{code}");
        }
    }

    #[test]
    fn pauses_double_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        for (attempt, backoff) in [(2, 100), (3, 200), (4, 350), (9, 350), (u32::MAX, 350)] {
            let backoff = Duration::from_millis(backoff);
            for _ in 0..50 {
                let pause = policy.pause(attempt);
                assert!(
                    pause >= backoff / 2 && pause <= backoff,
                    "attempt {attempt}: {pause:?}"
                );
            }
        }
    }
}

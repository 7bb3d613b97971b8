//! How the rest of a raft node asks its driver task for something and
//! waits for the answer. Local callers ([`RaftNode`](super::RaftNode)) and
//! peers (`RaftService.propose`) take the same path, so both get the same
//! timeout and, once the driver has stopped, the reason it stopped.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::RaftError;
use super::driver::{Command, Reply};

/// A handle on the driver's command queue and on the outcome it reports
/// when it stops.
#[derive(Clone)]
pub(crate) struct DriverHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    outcome: watch::Receiver<Option<RaftError>>,
    timeout: Duration,
}

impl DriverHandle {
    /// `timeout` bounds each [`ask`](Self::ask).
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        outcome: watch::Receiver<Option<RaftError>>,
        timeout: Duration,
    ) -> Self {
        DriverHandle {
            commands,
            outcome,
            timeout,
        }
    }

    /// Why the driver stopped, once it has.
    pub(crate) fn stopped(&self) -> Option<RaftError> {
        self.outcome.borrow().clone()
    }

    /// Sends the command `command` makes and waits for its answer.
    pub(crate) async fn ask(
        &self,
        command: impl FnOnce(Reply) -> Command,
    ) -> Result<Vec<u8>, RaftError> {
        if let Some(reason) = self.stopped() {
            return Err(reason);
        }
        let (reply, answer) = oneshot::channel();
        if self.commands.send(command(reply)).await.is_err() {
            return Err(self.stop_reason().await);
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.stop_reason().await),
            Err(_) => Err(RaftError::Timeout {
                millis: self.timeout.as_millis() as u64,
            }),
        }
    }

    /// Why the driver stopped, waiting (bounded) for it to say: it drops
    /// its callers' replies just before it reports.
    pub(crate) async fn stop_reason(&self) -> RaftError {
        let mut outcome = self.outcome.clone();
        let reason = tokio::time::timeout(self.timeout, outcome.wait_for(Option::is_some)).await;
        match reason {
            Ok(Ok(reason)) => reason.clone().unwrap_or(RaftError::Stopped),
            _ => RaftError::Stopped,
        }
    }
}

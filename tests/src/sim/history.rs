//! What the clients of a simulation did: each operation with the
//! simulated times of its invocation and completion and its outcome, and
//! the digest that shows two runs of one seed were the same run.

use std::fmt::Write as _;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// An operation on one key of the register store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets the value; returns the previous one.
    Put(String),
    /// Reads the value.
    Get,
    /// Sets `new` if the value is `expected`; returns whether it did.
    Cas {
        expected: Option<String>,
        new: String,
    },
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The value before a put, or the value a get read.
    Value(Option<String>),
    /// Whether a compare-and-set set.
    Swapped(bool),
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with this reply.
    Ok(Reply),
    /// Failed after the request may have been sent: it may or may not
    /// have taken effect.
    Indeterminate(String),
    /// Failed, and the server says it never took effect.
    Failed(String),
}

/// One operation of one client.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client: u64,
    pub key: String,
    pub op: Op,
    /// Simulated time from the start of the run.
    pub invoked: Duration,
    pub completed: Duration,
    pub outcome: Outcome,
}

/// Every operation of a run, in the order they completed.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub entries: Vec<Entry>,
}

impl History {
    /// Records a completed operation.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Operations that completed with a reply.
    pub fn completed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Ok(_)))
            .count()
    }

    /// SHA-256 of the ordered history, times and outcomes included, in
    /// hex. A failure's reason is left out: it may name a temporary
    /// directory.
    pub fn digest(&self) -> String {
        let mut text = String::new();
        for e in &self.entries {
            let outcome = match &e.outcome {
                Outcome::Ok(reply) => format!("{reply:?}"),
                Outcome::Indeterminate(_) => "indeterminate".to_owned(),
                Outcome::Failed(_) => "failed".to_owned(),
            };
            let _ = writeln!(
                text,
                "{} {} {:?} {} {} {outcome}",
                e.client,
                e.key,
                e.op,
                e.invoked.as_micros(),
                e.completed.as_micros(),
            );
        }
        let hash = Sha256::digest(text.as_bytes());
        hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

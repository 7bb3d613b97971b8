//! The service the simulated clients call: registers by key, served from
//! memory by one node ([`Store`]) or replicated by raft ([`Replicated`]
//! over [`RegisterMachine`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use octopii::raft::{
    RaftError, StateMachine, StateMachineError, Typed, TypedRaftNode, TypedStateMachine,
};
use serde::{Deserialize, Serialize};

/// Registers by key.
#[octopii::service]
pub trait Registers {
    /// Sets `key` to `value`; the previous value.
    async fn put(&self, key: String, value: String) -> Result<Option<String>, Refused>;
    /// The value of `key`.
    async fn get(&self, key: String) -> Result<Option<String>, Refused>;
    /// Sets `key` to `new` if it holds `expected`; whether it did.
    async fn cas(
        &self,
        key: String,
        expected: Option<String>,
        new: String,
    ) -> Result<bool, Refused>;
}

/// Why the server gave no answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Refused {
    /// The operation never took effect (raft had no leader to propose to).
    NotApplied(String),
    /// It may or may not have taken effect (raft timed out, or stopped).
    MaybeApplied(String),
}

impl From<octopii::OctopiiError> for Refused {
    fn from(e: octopii::OctopiiError) -> Self {
        match e {
            octopii::OctopiiError::Raft(RaftError::NotLeader { .. }) => {
                Refused::NotApplied(e.to_string())
            }
            e => Refused::MaybeApplied(e.to_string()),
        }
    }
}

/// The registers, in memory, served by one node. They outlive the node's
/// crashes, as a store on a disk that never fails would.
#[derive(Default)]
pub struct Store(Mutex<BTreeMap<String, String>>);

impl Store {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registers for Store {
    async fn put(&self, key: String, value: String) -> Result<Option<String>, Refused> {
        Ok(self.map().insert(key, value))
    }

    async fn get(&self, key: String) -> Result<Option<String>, Refused> {
        Ok(self.map().get(&key).cloned())
    }

    async fn cas(
        &self,
        key: String,
        expected: Option<String>,
        new: String,
    ) -> Result<bool, Refused> {
        let mut map = self.map();
        if map.get(&key) != expected.as_ref() {
            return Ok(false);
        }
        map.insert(key, new);
        Ok(true)
    }
}

/// A command raft replicates.
#[derive(Debug, Serialize, Deserialize)]
pub enum Command {
    Put {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

/// What applying a [`Command`] returns.
#[derive(Debug, Serialize, Deserialize)]
pub enum Applied {
    /// A put's previous value.
    Previous(Option<String>),
    /// Whether a compare-and-set swapped.
    Swapped(bool),
}

/// Each member's registers as its state machine last left them, by raft
/// id: what the end of a run compares across members.
pub type Observed = Arc<Mutex<BTreeMap<u64, BTreeMap<String, String>>>>;

/// The registers as a raft state machine.
#[derive(Default, Serialize, Deserialize)]
pub struct RegisterMachine {
    map: BTreeMap<String, String>,
}

/// A member's [`RegisterMachine`] that publishes its registers to
/// [`Observed`] after each command and each snapshot it restores.
pub struct Observing {
    machine: Typed<RegisterMachine>,
    id: u64,
    observed: Observed,
}

impl Observing {
    /// Empty registers of member `id`, published to `observed`.
    pub fn new(id: u64, observed: Observed) -> Self {
        let machine = Observing {
            machine: Typed(RegisterMachine::default()),
            id,
            observed,
        };
        machine.publish();
        machine
    }

    fn publish(&self) {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.id, self.machine.0.map.clone());
    }
}

impl StateMachine for Observing {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let output = self.machine.apply(command);
        self.publish();
        output
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        self.machine.query(query)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.machine.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        self.machine.restore(snapshot)?;
        self.publish();
        Ok(())
    }
}

impl TypedStateMachine for RegisterMachine {
    type Command = Command;
    type Output = Applied;
    type Query = String;
    type Answer = Option<String>;

    fn apply(&mut self, command: Command) -> Applied {
        match command {
            Command::Put { key, value } => Applied::Previous(self.map.insert(key, value)),
            Command::Cas { key, expected, new } => {
                let swap = self.map.get(&key) == expected.as_ref();
                if swap {
                    self.map.insert(key, new);
                }
                Applied::Swapped(swap)
            }
        }
    }

    fn query(&self, key: &String) -> Option<String> {
        self.map.get(key).cloned()
    }
}

/// The registers served by a raft member: writes are proposed, reads are
/// linearizable raft reads.
pub struct Replicated(pub TypedRaftNode<RegisterMachine>);

impl Replicated {
    async fn propose(&self, command: Command) -> Result<Applied, Refused> {
        Ok(self.0.propose(&command).await?)
    }
}

fn mismatch(applied: Applied) -> Refused {
    Refused::MaybeApplied(format!("the machine answered {applied:?}"))
}

impl Registers for Replicated {
    async fn put(&self, key: String, value: String) -> Result<Option<String>, Refused> {
        match self.propose(Command::Put { key, value }).await? {
            Applied::Previous(previous) => Ok(previous),
            other => Err(mismatch(other)),
        }
    }

    async fn get(&self, key: String) -> Result<Option<String>, Refused> {
        Ok(self.0.read(&key).await?)
    }

    async fn cas(
        &self,
        key: String,
        expected: Option<String>,
        new: String,
    ) -> Result<bool, Refused> {
        match self.propose(Command::Cas { key, expected, new }).await? {
            Applied::Swapped(swapped) => Ok(swapped),
            other => Err(mismatch(other)),
        }
    }
}

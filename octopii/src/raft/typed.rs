//! A replicated state machine over the user's own serde types:
//! [`TypedStateMachine`], and [`TypedRaftNode`], which proposes commands
//! and reads answers as those types.
//!
//! Underneath it is the byte-level [`StateMachine`] and [`RaftNode`]: the
//! adapter encodes with [`codec`](crate::codec), the machine's whole state
//! is its snapshot, and a command that does not decode as the machine's
//! [`Command`](TypedStateMachine::Command) (proposed as raw bytes by
//! another program, say) is refused the same way on every node.

use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RaftConfig, RaftError, RaftNode, StateMachine, StateMachineError};
use crate::{OctopiiNode, Result, codec};

/// The state replicated by a [`TypedRaftNode`], with commands, outputs,
/// queries and answers of its own types. The state itself is serialized
/// whole for snapshots.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use octopii::raft::TypedStateMachine;
///
/// /// A bank: accounts and their balances.
/// #[derive(Default, Serialize, Deserialize)]
/// struct Bank(std::collections::BTreeMap<String, u64>);
///
/// #[derive(Serialize, Deserialize)]
/// enum Op {
///     Deposit { account: String, amount: u64 },
///     Withdraw { account: String, amount: u64 },
/// }
///
/// impl TypedStateMachine for Bank {
///     type Command = Op;
///     /// The new balance, or why not.
///     type Output = Result<u64, String>;
///     type Query = String;
///     type Answer = u64;
///
///     fn apply(&mut self, op: Op) -> Result<u64, String> {
///         match op {
///             Op::Deposit { account, amount } => {
///                 let balance = self.0.entry(account).or_default();
///                 *balance += amount;
///                 Ok(*balance)
///             }
///             Op::Withdraw { account, amount } => {
///                 let balance = self.0.entry(account).or_default();
///                 *balance = balance.checked_sub(amount).ok_or("insufficient funds")?;
///                 Ok(*balance)
///             }
///         }
///     }
///
///     fn query(&self, account: &String) -> u64 {
///         self.0.get(account).copied().unwrap_or(0)
///     }
/// }
/// ```
pub trait TypedStateMachine: Serialize + DeserializeOwned + Send + 'static {
    /// What [`TypedRaftNode::propose`] replicates.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What applying a command returns to its proposer.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// What [`TypedRaftNode::read`] asks.
    type Query: Serialize + DeserializeOwned + Send + 'static;
    /// What a query answers.
    type Answer: Serialize + DeserializeOwned + Send + 'static;

    /// Applies a committed command; deterministic, as for
    /// [`StateMachine::apply`].
    fn apply(&mut self, command: Self::Command) -> Self::Output;

    /// Answers a query against the current state.
    fn query(&self, query: &Self::Query) -> Self::Answer;
}

/// A [`TypedStateMachine`] run as a byte-level [`StateMachine`]: what
/// [`TypedRaftNode::start`] hands to raft. The output of every command and
/// query is encoded as `Result<T, String>`, the `Err` saying that the
/// bytes did not decode as the machine's type.
#[derive(Debug, Default)]
pub struct Typed<M>(pub M);

impl<M: TypedStateMachine> Typed<M> {
    /// `Ok(f(decoded))`, or `Err` if `bytes` are not a `T`, encoded.
    fn answer<T: DeserializeOwned, R: Serialize>(bytes: &[u8], f: impl FnOnce(T) -> R) -> Vec<u8> {
        let result = codec::decode::<T>(bytes)
            .map(f)
            .map_err(|e| format!("does not decode as {}: {e}", std::any::type_name::<T>()));
        // Only a type whose Serialize impl itself fails can fail here.
        codec::encode(&result).unwrap_or_default()
    }
}

impl<M: TypedStateMachine> StateMachine for Typed<M> {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        Self::answer(command, |command| self.0.apply(command))
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        Self::answer(query, |query: M::Query| self.0.query(&query))
    }

    // Raft calls `snapshot_to`, which reports an encoding error; this byte
    // form is only for callers of the trait by hand.
    fn snapshot(&self) -> Vec<u8> {
        codec::encode(&self.0).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> std::result::Result<(), StateMachineError> {
        self.0 = codec::decode(snapshot)?;
        Ok(())
    }

    fn snapshot_to(&self, out: &mut dyn Write) -> std::result::Result<(), StateMachineError> {
        out.write_all(&codec::encode(&self.0)?)?;
        Ok(())
    }
}

/// A [`RaftNode`] whose commands, outputs, queries and answers are the
/// types of its [`TypedStateMachine`].
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use octopii::raft::{RaftConfig, TypedRaftNode, TypedStateMachine};
/// # #[derive(Default, Serialize, Deserialize)]
/// # struct Counter(u64);
/// # impl TypedStateMachine for Counter {
/// #     type Command = u64;
/// #     type Output = u64;
/// #     type Query = ();
/// #     type Answer = u64;
/// #     fn apply(&mut self, n: u64) -> u64 { self.0 += n; self.0 }
/// #     fn query(&self, _: &()) -> u64 { self.0 }
/// # }
/// # async fn run(node: octopii::OctopiiNode) -> octopii::Result<()> {
/// let counter = TypedRaftNode::start(&node, RaftConfig::default(), Counter::default())?;
/// let total: u64 = counter.propose(&5).await?;
/// assert_eq!(counter.read(&()).await?, total);
/// # Ok(())
/// # }
/// ```
pub struct TypedRaftNode<M> {
    raft: RaftNode,
    machine: PhantomData<fn() -> M>,
}

impl<M> Clone for TypedRaftNode<M> {
    fn clone(&self) -> Self {
        TypedRaftNode {
            raft: self.raft.clone(),
            machine: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for TypedRaftNode<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedRaftNode")
            .field("machine", &std::any::type_name::<M>())
            .finish_non_exhaustive()
    }
}

impl<M: TypedStateMachine> TypedRaftNode<M> {
    /// Starts raft on `node` with `machine`, as [`RaftNode::start`] does.
    pub fn start(node: &OctopiiNode, config: RaftConfig, machine: M) -> Result<Self> {
        Ok(Self::from_raft(RaftNode::start(
            node,
            config,
            Typed(machine),
        )?))
    }

    /// As [`start`](Self::start), with the raft state in `dir`.
    pub fn start_in(
        node: &OctopiiNode,
        dir: impl Into<PathBuf>,
        config: RaftConfig,
        machine: M,
    ) -> Result<Self> {
        Ok(Self::from_raft(RaftNode::start_in(
            node,
            dir,
            config,
            Typed(machine),
        )?))
    }

    /// The typed view of a raft node that runs [`Typed<M>`].
    pub fn from_raft(raft: RaftNode) -> Self {
        TypedRaftNode {
            raft,
            machine: PhantomData,
        }
    }

    /// Replicates `command` and returns what applying it gave, as
    /// [`RaftNode::propose`] does.
    pub async fn propose(&self, command: &M::Command) -> Result<M::Output> {
        let output = self.raft.propose(codec::encode(command)?).await?;
        decoded(&output)
    }

    /// Answers `query` linearizably, as [`RaftNode::read`] does.
    pub async fn read(&self, query: &M::Query) -> Result<M::Answer> {
        let answer = self.raft.read(codec::encode(query)?).await?;
        decoded(&answer)
    }

    /// The byte-level node: membership, status, shutdown.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }
}

/// The value of an encoded `Result<T, String>` from [`Typed`].
fn decoded<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let result: std::result::Result<T, String> = codec::decode(bytes)?;
    result.map_err(|reason| RaftError::Undecodable { reason }.into())
}

//! [`StateMachine`]: the user's replicated state, [`StateMachineError`],
//! and [`RaftStatus`].

use std::error::Error;
use std::fmt;
use std::io::{Read, Write};

/// Why a [`StateMachine`] could not write or restore its state: the
/// state machine's own error, kept whole.
///
/// `?` turns any error type into one (an I/O error, a decode error, the
/// user's own); [`new`](Self::new) also takes a message. Raft reports it
/// as [`OctopiiError::StateMachine`](crate::OctopiiError::StateMachine),
/// whose source is the original error.
///
/// ```
/// use octopii::raft::StateMachineError;
///
/// fn parse(snapshot: &[u8]) -> Result<u64, StateMachineError> {
///     let text = std::str::from_utf8(snapshot)?; // a Utf8Error
///     if text.is_empty() {
///         return Err(StateMachineError::new("an empty snapshot"));
///     }
///     Ok(text.parse::<u64>()?) // a ParseIntError
/// }
///
/// let err = parse(b"seven").unwrap_err();
/// assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
/// assert_eq!(parse(b"").unwrap_err().to_string(), "an empty snapshot");
/// ```
pub struct StateMachineError(Box<dyn Error + Send + Sync + 'static>);

impl StateMachineError {
    /// An error from `error`: an error value, or a message (`&str`,
    /// `String`).
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        StateMachineError(error.into())
    }

    /// The state machine's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The state machine's error, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }

    /// The state machine's error, owned.
    pub fn into_inner(self) -> Box<dyn Error + Send + Sync + 'static> {
        self.0
    }
}

/// Any error type converts, so `?` works in the snapshot methods.
/// (`StateMachineError` is not itself a [`std::error::Error`], which is
/// what lets this hold for every error type; [`get_ref`](Self::get_ref)
/// gives the error inside.)
impl<E: Error + Send + Sync + 'static> From<E> for StateMachineError {
    fn from(error: E) -> Self {
        StateMachineError(Box::new(error))
    }
}

impl fmt::Debug for StateMachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StateMachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The state replicated by a [`RaftNode`](super::RaftNode).
///
/// Every node applies the same committed commands in the same order, so
/// `apply` must be deterministic: the same state and command always give
/// the same new state and output.
///
/// Snapshots go through [`snapshot_to`](Self::snapshot_to) and
/// [`restore_from`](Self::restore_from), which stream the state to and
/// from the snapshot file. Their defaults use the byte methods
/// [`snapshot`](Self::snapshot) and [`restore`](Self::restore), so a
/// small state needs nothing more; a state too large to hold twice in
/// memory overrides the streaming pair, and the byte pair is then never
/// called by raft.
///
/// ```
/// use octopii::raft::{StateMachine, StateMachineError};
///
/// /// A counter: each command adds its first byte.
/// #[derive(Default)]
/// struct Counter(u64);
///
/// impl StateMachine for Counter {
///     fn apply(&mut self, command: &[u8]) -> Vec<u8> {
///         self.0 += u64::from(command.first().copied().unwrap_or(0));
///         self.0.to_le_bytes().to_vec()
///     }
///     fn query(&self, _query: &[u8]) -> Vec<u8> {
///         self.0.to_le_bytes().to_vec()
///     }
///     fn snapshot(&self) -> Vec<u8> {
///         self.0.to_le_bytes().to_vec()
///     }
///     fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
///         let bytes: [u8; 8] = snapshot
///             .try_into()
///             .map_err(|_| StateMachineError::new("a counter snapshot is 8 bytes"))?;
///         self.0 = u64::from_le_bytes(bytes);
///         Ok(())
///     }
/// }
/// ```
pub trait StateMachine: Send + 'static {
    /// Applies a committed command; the output is what
    /// [`propose`](super::RaftNode::propose) returns to its caller.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;

    /// Answers a read-only query against the current state (used by
    /// [`read`](super::RaftNode::read) once the state is up to date).
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// The whole state as bytes, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot made by [`snapshot`](Self::snapshot).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError>;

    /// Writes the whole state into `out` (the snapshot file) without
    /// holding it in memory whole; what it writes is what
    /// [`restore_from`](Self::restore_from) reads back. The default writes
    /// [`snapshot`](Self::snapshot)'s bytes.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use octopii::raft::{StateMachine, StateMachineError};
    ///
    /// /// A log of commands, streamed in and out without a copy of it all.
    /// #[derive(Default)]
    /// struct Log(Vec<Vec<u8>>);
    ///
    /// impl StateMachine for Log {
    ///     fn apply(&mut self, command: &[u8]) -> Vec<u8> {
    ///         self.0.push(command.to_vec());
    ///         Vec::new()
    ///     }
    ///     fn query(&self, _query: &[u8]) -> Vec<u8> {
    ///         (self.0.len() as u64).to_le_bytes().to_vec()
    ///     }
    ///     fn snapshot(&self) -> Vec<u8> {
    ///         let mut bytes = Vec::new();
    ///         self.snapshot_to(&mut bytes).expect("writing to memory");
    ///         bytes
    ///     }
    ///     fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
    ///         self.restore_from(&mut &snapshot[..], snapshot.len() as u64)
    ///     }
    ///     fn snapshot_to(&self, out: &mut dyn Write) -> Result<(), StateMachineError> {
    ///         for command in &self.0 {
    ///             out.write_all(&(command.len() as u32).to_le_bytes())?;
    ///             out.write_all(command)?;
    ///         }
    ///         Ok(())
    ///     }
    ///     fn restore_from(
    ///         &mut self,
    ///         input: &mut dyn Read,
    ///         len: u64,
    ///     ) -> Result<(), StateMachineError> {
    ///         self.0.clear();
    ///         let mut left = len;
    ///         while left > 0 {
    ///             let mut size = [0u8; 4];
    ///             input.read_exact(&mut size)?;
    ///             let mut command = vec![0u8; u32::from_le_bytes(size) as usize];
    ///             input.read_exact(&mut command)?;
    ///             left = left.saturating_sub(4 + command.len() as u64);
    ///             self.0.push(command);
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut log = Log::default();
    /// log.apply(b"one");
    /// let mut copy = Log::default();
    /// copy.restore(&log.snapshot()).unwrap();
    /// assert_eq!(copy.0, vec![b"one".to_vec()]);
    /// ```
    fn snapshot_to(&self, out: &mut dyn Write) -> Result<(), StateMachineError> {
        out.write_all(&self.snapshot())?;
        Ok(())
    }

    /// Replaces the whole state with the `len` bytes `input` yields, as
    /// [`snapshot_to`](Self::snapshot_to) wrote them. The bytes have
    /// passed their checksum before this is called. The default reads them
    /// into memory and calls [`restore`](Self::restore).
    fn restore_from(&mut self, input: &mut dyn Read, len: u64) -> Result<(), StateMachineError> {
        let mut bytes = Vec::new();
        input.take(len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the snapshot state ended after {} of {len} bytes",
                    bytes.len()
                ),
            )
            .into());
        }
        self.restore(&bytes)
    }
}

/// A node's role in its raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRole {
    /// Following a leader (or waiting for one).
    Follower,
    /// Probing whether an election could be won (pre-vote).
    PreCandidate,
    /// Campaigning.
    Candidate,
    /// Leading.
    Leader,
    /// The driver has stopped (shut down, or a failure:
    /// [`RaftNode::stopped`](super::RaftNode::stopped) says which).
    Stopped,
}

/// A snapshot of a node's raft state, from [`RaftNode::status`](super::RaftNode::status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's raft id.
    pub id: u64,
    /// The leader this node knows of.
    pub leader_id: Option<u64>,
    /// The current term.
    pub term: u64,
    /// This node's role.
    pub role: RaftRole,
    /// The index of the last entry in this node's log.
    pub last_index: u64,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The highest index applied to the state machine.
    pub applied_index: u64,
    /// The index of the latest snapshot (0 if none).
    pub snapshot_index: u64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members.
    pub learners: Vec<u64>,
    /// Peer messages dropped since start because raft could not take them
    /// safely (a commit index past this node's log, entries rewriting
    /// committed ones, a configuration that cannot be restored, …).
    pub invalid_messages: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state whose snapshot is one decimal number.
    #[derive(Default)]
    struct Number(u64);

    impl StateMachine for Number {
        fn apply(&mut self, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn query(&self, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.to_string().into_bytes()
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
            self.0 = std::str::from_utf8(snapshot)?.parse()?;
            Ok(())
        }
    }

    #[test]
    fn the_users_error_is_kept_whole_up_to_the_facade() {
        let err = Number::default().restore(b"seven").unwrap_err();
        assert!(
            err.downcast_ref::<std::num::ParseIntError>().is_some(),
            "{err:?}"
        );
        let top = crate::OctopiiError::from(err);
        let crate::OctopiiError::StateMachine(inner) = &top else {
            panic!("a state machine error: {top:?}");
        };
        assert!(inner.is::<std::num::ParseIntError>());
        let source = std::error::Error::source(&top).expect("the user's error is the source");
        assert_eq!(source.to_string(), "invalid digit found in string");
    }

    #[test]
    fn a_short_snapshot_state_is_an_unexpected_end() {
        let mut input: &[u8] = b"12";
        let err = Number::default().restore_from(&mut input, 5).unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().expect("an I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("after 2 of 5 bytes"), "{err}");
    }
}

//! A Wing & Gong style linearizability checker for a history of register
//! operations on one key (keys are independent, so a key-value history is
//! checked key by key).
//!
//! The search linearizes, one at a time, an operation that no other
//! remaining operation precedes in real time (none returned before it was
//! invoked), checking its result against a sequential register; it
//! backtracks on a mismatch and memoizes (set of done operations, register
//! value) states already explored. Operations whose outcome is unknown
//! (the caller gave up) may take effect at any point after their
//! invocation, or never.

use std::collections::HashSet;

/// An operation on one register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// Write `value`; returned the previous value.
    Put(String),
    /// Read; returned the value.
    Get,
    /// Set to `new` if the value is `expected`; returned whether it did.
    Cas(Option<String>, String),
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterResult {
    /// The value before a put, or the value read.
    Value(Option<String>),
    /// Whether a compare-and-set swapped.
    Swapped(bool),
}

/// One operation of a history: invoked at `call`, answered at `ret` with
/// `result`, or never answered (`None`: it may or may not have happened).
#[derive(Debug, Clone)]
pub struct Event {
    /// The operation.
    pub op: RegisterOp,
    /// When it was invoked (any monotonic clock, shared by all clients).
    pub call: u64,
    /// When and with what it returned; `None` if its outcome is unknown.
    pub ret: Option<(u64, RegisterResult)>,
}

/// Applies `op` to `value`; `None` if `expected` (a known result) disagrees.
fn step(
    value: &Option<String>,
    op: &RegisterOp,
    expected: Option<&RegisterResult>,
) -> Option<Option<String>> {
    let (next, result) = match op {
        RegisterOp::Put(new) => (Some(new.clone()), RegisterResult::Value(value.clone())),
        RegisterOp::Get => (value.clone(), RegisterResult::Value(value.clone())),
        RegisterOp::Cas(old, new) => {
            let swapped = value == old;
            let next = if swapped {
                Some(new.clone())
            } else {
                value.clone()
            };
            (next, RegisterResult::Swapped(swapped))
        }
    };
    match expected {
        Some(expected) if *expected != result => None,
        _ => Some(next),
    }
}

/// Whether `history` (of one register, initially empty) is linearizable.
/// Supports up to 128 operations.
pub fn is_linearizable(history: &[Event]) -> bool {
    assert!(history.len() <= 128, "at most 128 operations per register");
    let all_known: u128 = history
        .iter()
        .enumerate()
        .filter(|(_, e)| e.ret.is_some())
        .fold(0, |mask, (i, _)| mask | (1 << i));
    let mut seen = HashSet::new();
    search(history, 0, &None, all_known, &mut seen)
}

fn search(
    history: &[Event],
    done: u128,
    value: &Option<String>,
    all_known: u128,
    seen: &mut HashSet<(u128, Option<String>)>,
) -> bool {
    if done & all_known == all_known {
        return true;
    }
    if !seen.insert((done, value.clone())) {
        return false;
    }
    // An operation can go next only if it was invoked before every
    // remaining operation returned.
    let earliest_return = history
        .iter()
        .enumerate()
        .filter(|(i, _)| done & (1 << i) == 0)
        .filter_map(|(_, e)| e.ret.as_ref().map(|(t, _)| *t))
        .min()
        .unwrap_or(u64::MAX);
    for (i, event) in history.iter().enumerate() {
        if done & (1 << i) != 0 || event.call > earliest_return {
            continue;
        }
        let result = event.ret.as_ref().map(|(_, r)| r);
        if let Some(next) = step(value, &event.op, result) {
            if search(history, done | (1 << i), &next, all_known, seen) {
                return true;
            }
        }
    }
    false
}

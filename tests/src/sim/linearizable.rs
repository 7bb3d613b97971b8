//! A linearizability checker in the style of Wing and Gong (with Lowe's
//! memoization): searches for an order of a key's operations that respects
//! real time and that a single register would produce. Keys are
//! independent (linearizability is compositional), so each is checked on
//! its own. An indeterminate operation may take effect at any point after
//! its invocation, or never.

use std::collections::{HashMap, HashSet};

use super::history::{Entry, History, Op, Outcome, Reply};

/// Most operations on one key the search handles (one bit each).
const MAX_OPS_PER_KEY: usize = 128;

/// Most states the search visits for one key before it gives up: a
/// history with many indeterminate writes has exponentially many orders.
/// A state is 20 bytes (the operations placed, and the value's number).
const MAX_STATES: usize = 10_000_000;

/// `Ok`, or the first key whose operations no register could produce.
pub fn check(history: &History) -> Result<(), String> {
    let mut keys: Vec<&str> = history.entries.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        // A read that never returned, or an operation that never took
        // effect, constrains nothing: leave it out.
        let unanswered_read = |e: &&Entry| e.op == Op::Get && !matches!(e.outcome, Outcome::Ok(_));
        let failed = |e: &&Entry| matches!(e.outcome, Outcome::Failed(_));
        let ops: Vec<&Entry> = history
            .entries
            .iter()
            .filter(|e| e.key == key)
            .filter(|e| !unanswered_read(e) && !failed(e))
            .collect();
        if ops.len() > MAX_OPS_PER_KEY {
            return Err(format!(
                "key {key}: {} operations, at most {MAX_OPS_PER_KEY}",
                ops.len()
            ));
        }
        let mut search = Search::new(&ops);
        if !search.run() {
            if search.seen.len() >= MAX_STATES {
                return Err(format!(
                    "key {key}: gave up after {MAX_STATES} states of {} operations",
                    ops.len()
                ));
            }
            return Err(format!(
                "key {key}: no linearization of {} operations: {ops:#?}",
                ops.len()
            ));
        }
    }
    Ok(())
}

/// A register's value, as a small number: the search keeps one per state.
type ValueId = u32;

/// An operation with its values interned.
struct Interned {
    invoked: std::time::Duration,
    completed: std::time::Duration,
    kind: Kind,
    /// What it returned, if it did.
    observed: Option<Observed>,
}

enum Kind {
    Put(ValueId),
    Get,
    Cas { expected: ValueId, new: ValueId },
}

#[derive(PartialEq)]
enum Observed {
    Value(ValueId),
    Swapped(bool),
}

/// Numbers the values of `ops`; `None` (no value) is 0.
fn intern(ops: &[&Entry]) -> Vec<Interned> {
    let mut ids: HashMap<Option<String>, ValueId> = HashMap::from([(None, 0)]);
    let mut id = |value: Option<&String>| {
        let next = ids.len() as ValueId;
        *ids.entry(value.cloned()).or_insert(next)
    };
    ops.iter()
        .map(|e| Interned {
            invoked: e.invoked,
            completed: e.completed,
            kind: match &e.op {
                Op::Put(value) => Kind::Put(id(Some(value))),
                Op::Get => Kind::Get,
                Op::Cas { expected, new } => Kind::Cas {
                    expected: id(expected.as_ref()),
                    new: id(Some(new)),
                },
            },
            observed: match &e.outcome {
                Outcome::Ok(Reply::Value(value)) => Some(Observed::Value(id(value.as_ref()))),
                Outcome::Ok(Reply::Swapped(swapped)) => Some(Observed::Swapped(*swapped)),
                Outcome::Indeterminate(_) | Outcome::Failed(_) => None,
            },
        })
        .collect()
}

struct Search {
    ops: Vec<Interned>,
    seen: HashSet<(u128, ValueId)>,
}

impl Search {
    fn new(ops: &[&Entry]) -> Self {
        Search {
            ops: intern(ops),
            seen: HashSet::new(),
        }
    }

    fn run(&mut self) -> bool {
        self.extend(0, 0)
    }

    fn is_done(&self, i: usize, done: u128) -> bool {
        done & (1 << i) != 0
    }

    /// Whether the operations not in `done` can follow, from `value`.
    fn extend(&mut self, done: u128, value: ValueId) -> bool {
        let pending_determinate = (0..self.ops.len())
            .filter(|&i| !self.is_done(i, done))
            .filter(|&i| self.ops[i].observed.is_some());
        // Every operation that returned is placed: the rest may never have
        // taken effect.
        let Some(earliest_return) = pending_determinate.map(|i| self.ops[i].completed).min() else {
            return true;
        };
        if self.seen.len() >= MAX_STATES || !self.seen.insert((done, value)) {
            return false;
        }
        for i in 0..self.ops.len() {
            let op = &self.ops[i];
            // Only an operation invoked before every pending one returned
            // can come next.
            if self.is_done(i, done) || op.invoked > earliest_return {
                continue;
            }
            let (reply, next) = apply(&op.kind, value);
            let fits = op
                .observed
                .as_ref()
                .is_none_or(|observed| *observed == reply);
            if fits && self.extend(done | (1 << i), next) {
                return true;
            }
        }
        false
    }
}

/// What `kind` returns on a register holding `value`, and what it holds after.
fn apply(kind: &Kind, value: ValueId) -> (Observed, ValueId) {
    match *kind {
        Kind::Put(new) => (Observed::Value(value), new),
        Kind::Get => (Observed::Value(value), value),
        Kind::Cas { expected, new } if expected == value => (Observed::Swapped(true), new),
        Kind::Cas { .. } => (Observed::Swapped(false), value),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(client: u64, op: Op, invoked: u64, completed: u64, outcome: Outcome) -> Entry {
        Entry {
            client,
            key: "k".into(),
            op,
            invoked: Duration::from_millis(invoked),
            completed: Duration::from_millis(completed),
            outcome,
        }
    }

    fn value(v: Option<&str>) -> Outcome {
        Outcome::Ok(Reply::Value(v.map(str::to_owned)))
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        let history = History {
            entries: vec![
                entry(1, Op::Put("a".into()), 0, 10, value(None)),
                entry(2, Op::Get, 1, 5, value(Some("a"))),
            ],
        };
        assert!(check(&history).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let history = History {
            entries: vec![
                entry(1, Op::Put("a".into()), 0, 1, value(None)),
                entry(2, Op::Get, 2, 3, value(None)),
            ],
        };
        assert!(check(&history).is_err());
    }

    #[test]
    fn unanswered_reads_are_left_out() {
        let lost = || Outcome::Indeterminate("deadline".into());
        let mut entries = vec![entry(1, Op::Put("a".into()), 0, 1, value(None))];
        // Forty unanswered reads, all overlapping: left in, each could go
        // anywhere; left out, they cost nothing.
        entries.extend((0..40).map(|i| entry(2 + i, Op::Get, 2, 3, lost())));
        entries.push(entry(99, Op::Get, 4, 5, value(Some("a"))));
        assert!(check(&History { entries }).is_ok());
    }

    #[test]
    fn an_indeterminate_write_may_or_may_not_have_happened() {
        let lost = || Outcome::Indeterminate("deadline".into());
        let seen = History {
            entries: vec![
                entry(1, Op::Put("a".into()), 0, 1, lost()),
                entry(2, Op::Get, 2, 3, value(Some("a"))),
            ],
        };
        assert!(check(&seen).is_ok());
        let unseen = History {
            entries: vec![
                entry(1, Op::Put("a".into()), 0, 1, lost()),
                entry(2, Op::Get, 2, 3, value(None)),
            ],
        };
        assert!(check(&unseen).is_ok());
        let invented = History {
            entries: vec![entry(2, Op::Get, 2, 3, value(Some("b")))],
        };
        assert!(check(&invented).is_err());
    }
}

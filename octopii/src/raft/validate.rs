//! Checks a peer's raft message against this node's log before raft-rs
//! steps it.
//!
//! raft-rs trusts its peers: a message that contradicts the receiver's log
//! (a commit index past its last entry, entries that rewrite committed
//! ones, a snapshot whose configuration cannot be restored) reaches one of
//! its `fatal!` calls, which panic. Each check here refuses exactly such a
//! message, mirroring the raft-rs code path it would take; a message from
//! an honest member never fails them.

use raft::eraftpb::{ConfState, Message, MessageType};
use raft::{INVALID_ID, Raft};

use super::snapshot::Fingerprint;
use super::storage::RaftStorage;

/// Largest index or term a peer's message may name. raft-rs adds to them
/// unchecked (`index + 1`), and storage refuses larger ones anyway.
const MAX_INDEX: u64 = i64::MAX as u64;

/// `Err(why)` if stepping `m` could hit a raft-rs panic, or `m` is a kind
/// of message only the node itself may step.
pub(crate) fn check(raft: &Raft<RaftStorage>, m: &Message) -> Result<(), String> {
    if m.from == INVALID_ID || m.from == raft.id {
        return Err(format!("sender id {} is not a peer", m.from));
    }
    let snapshot = m.get_snapshot().get_metadata();
    let named = [
        m.term,
        m.log_term,
        m.index,
        m.commit,
        snapshot.index,
        snapshot.term,
    ];
    let entries = m.entries.iter().flat_map(|e| [e.index, e.term]);
    if let Some(huge) = named.into_iter().chain(entries).find(|&v| v > MAX_INDEX) {
        return Err(format!("names index or term {huge}, above {MAX_INDEX}"));
    }
    match m.get_msg_type() {
        // Local messages: raft-rs makes them itself. MsgPropose from a
        // peer would also put entries in the log past every check of
        // `propose` (this driver never lets raft-rs forward proposals).
        MessageType::MsgHup
        | MessageType::MsgBeat
        | MessageType::MsgPropose
        | MessageType::MsgUnreachable
        | MessageType::MsgSnapStatus
        | MessageType::MsgCheckQuorum => Err(format!(
            "{:?} is a local message, not one a peer sends",
            m.get_msg_type()
        )),
        MessageType::MsgReadIndex | MessageType::MsgReadIndexResp if m.entries.len() != 1 => {
            Err(format!(
                "a read index message carries {} entries, not 1",
                m.entries.len()
            ))
        }
        // raft-rs steps a term-0 message as a local one; a peer sends
        // only a forwarded read request without its term.
        MessageType::MsgReadIndex => Ok(()),
        _ if m.term == 0 => Err(format!("{:?} carries no term", m.get_msg_type())),
        // raft-rs ignores (or only answers) a lower term's messages.
        _ if m.term < raft.term => Ok(()),
        MessageType::MsgHeartbeat => check_heartbeat(raft, m),
        MessageType::MsgAppend => check_append(raft, m),
        MessageType::MsgSnapshot => check_snapshot(raft.raft_log.store(), m),
        MessageType::MsgAppendResponse if !m.reject => {
            let last = raft.raft_log.last_index();
            if m.index > last {
                return Err(format!(
                    "acknowledges index {} past the last index {last}",
                    m.index
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `handle_heartbeat` commits to the message's index unchecked.
fn check_heartbeat(raft: &Raft<RaftStorage>, m: &Message) -> Result<(), String> {
    let last = raft.raft_log.last_index();
    if m.commit > last {
        return Err(format!(
            "heartbeat commits index {} past the last index {last}",
            m.commit
        ));
    }
    Ok(())
}

/// Mirrors `handle_append_entries` and `RaftLog::maybe_append`.
fn check_append(raft: &Raft<RaftStorage>, m: &Message) -> Result<(), String> {
    let log = &raft.raft_log;
    let mut previous_term = m.log_term;
    for (offset, entry) in m.entries.iter().enumerate() {
        let expected = m.index + 1 + offset as u64;
        if entry.index != expected {
            return Err(format!(
                "entry {offset} has index {}, not {expected}",
                entry.index
            ));
        }
        if entry.term < previous_term || entry.term > m.term {
            return Err(format!(
                "entry {} has term {}, outside {previous_term}..={}",
                entry.index, entry.term, m.term
            ));
        }
        previous_term = entry.term;
    }
    if m.index < log.committed {
        // Answered with the commit index, nothing appended.
        return Ok(());
    }
    let last = log.last_index();
    if log.match_term(m.index, m.log_term) {
        if m.index > last {
            return Err(format!(
                "appends after index {} past the last index {last}",
                m.index
            ));
        }
        for entry in &m.entries {
            if entry.index > log.committed {
                break;
            }
            if !log.match_term(entry.index, entry.term) {
                return Err(format!(
                    "entry {} (term {}) replaces a committed entry",
                    entry.index, entry.term
                ));
            }
        }
        Ok(())
    } else {
        // The rejection path looks up a term it must find.
        let hint = m.index.min(last);
        match log.find_conflict_by_term(hint, m.log_term) {
            (_, Some(_)) => Ok(()),
            (index, None) => Err(format!("no term at index {index} to answer with")),
        }
    }
}

/// `Raft::restore` panics on a configuration it cannot rebuild. Octopii
/// changes membership one node at a time, so a configuration is never
/// joint.
fn check_snapshot(store: &RaftStorage, m: &Message) -> Result<(), String> {
    let metadata = m.get_snapshot().get_metadata();
    if metadata.index == 0 || metadata.term == 0 || metadata.term > m.term {
        return Err(format!(
            "snapshot at index {} term {} (message term {})",
            metadata.index, metadata.term, m.term
        ));
    }
    check_conf_state(metadata.get_conf_state())?;
    // A snapshot may also arrive in a `step` batch, past the snapshot
    // receiver's checks; one whose checked file is not here would stop
    // the driver at install.
    Fingerprint::from_reference(&m.get_snapshot().data)
        .ok_or_else(|| "snapshot data is not a file reference".to_owned())?;
    if !store.has_received_snapshot(metadata.index, metadata.term) {
        return Err(format!(
            "no checked snapshot file for index {} term {} was received",
            metadata.index, metadata.term
        ));
    }
    Ok(())
}

fn check_conf_state(conf: &ConfState) -> Result<(), String> {
    if !conf.voters_outgoing.is_empty() || !conf.learners_next.is_empty() || conf.auto_leave {
        return Err("snapshot configuration is joint".into());
    }
    if conf.voters.is_empty() {
        return Err("snapshot configuration has no voters".into());
    }
    let mut ids: Vec<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
    ids.sort_unstable();
    let members = ids.len();
    ids.dedup();
    if ids.len() != members || ids.contains(&INVALID_ID) {
        return Err(format!(
            "snapshot configuration repeats a member or holds id 0: {conf:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_raft_cannot_restore_is_refused() {
        let conf = |voters: &[u64], learners: &[u64]| ConfState {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            ..ConfState::default()
        };
        assert!(check_conf_state(&conf(&[1, 2, 3], &[4])).is_ok());
        assert!(check_conf_state(&conf(&[], &[4])).is_err());
        assert!(check_conf_state(&conf(&[1, 1], &[])).is_err());
        assert!(check_conf_state(&conf(&[1, 2], &[2])).is_err());
        assert!(check_conf_state(&conf(&[0, 1], &[])).is_err());
        let joint = ConfState {
            voters_outgoing: vec![1],
            ..conf(&[1, 2], &[])
        };
        assert!(check_conf_state(&joint).is_err());
    }
}

//! Members a lagging node has not seen added, vouched for by the members
//! it knows.
//!
//! Raft traffic is served to current members only, as this node knows
//! them. A member that was down while the group changed (a node added,
//! then made leader) would refuse the very leader that could tell it of
//! the change, and never catch up. So when it refuses a node certificate
//! it asks the members it knows which members they know
//! ([`RaftService::members`](super::service::RaftService::members)); if one of them
//! that has applied at least as much of the log names the refused node,
//! that node is admitted, with the address that member gives, until this
//! node's own configuration changes (by then it has learnt the truth from
//! the log). A member behind this node cannot vouch: its configuration
//! may still hold a node this node has seen removed. Only members this
//! node already trusts can vouch, one question runs at a time and at most
//! one starts per [`ASK_INTERVAL`], so a stranger's calls cost a member
//! little.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::peers::AddressBook;
use super::service::RaftServiceClient;
use crate::OctopiiNode;

/// How often at most a refused node starts a question.
pub(crate) const ASK_INTERVAL: Duration = Duration::from_millis(500);

/// A configuration as its voters and learners.
pub(crate) type Configuration = (Vec<u64>, Vec<u64>);

/// The nodes vouched for, each with the configuration this node had
/// then; shared by the policy (which reads it) and the question (which
/// fills it).
#[derive(Clone, Default)]
pub(crate) struct Vouched(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    nodes: BTreeMap<u64, Configuration>,
    asking: bool,
    last_asked: Option<Instant>,
}

impl Vouched {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` was vouched for while this node's configuration was
    /// the one it has now.
    pub(crate) fn admits(&self, id: u64, now: &Configuration) -> bool {
        self.state().nodes.get(&id) == Some(now)
    }

    /// Whether a question may start now; if so it counts as started.
    pub(crate) fn may_ask(&self) -> bool {
        let mut state = self.state();
        let now = Instant::now();
        let due = state
            .last_asked
            .is_none_or(|last| now.duration_since(last) >= ASK_INTERVAL);
        if state.asking || !due {
            return false;
        }
        state.asking = true;
        state.last_asked = Some(now);
        true
    }

    fn answered(&self, vouched: Option<(u64, Configuration)>) {
        let mut state = self.state();
        state.asking = false;
        if let Some((id, configuration)) = vouched {
            // Only what was vouched for under the current configuration
            // is worth keeping.
            state.nodes.retain(|_, then| *then == configuration);
            state.nodes.insert(id, configuration);
        }
    }
}

/// The answer of
/// [`RaftService::members`](super::service::RaftService::members): the
/// members the answering node knows, and how much of the log it has
/// applied (how new its configuration is).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownMembers {
    /// The answering node's applied index.
    pub applied_index: u64,
    /// Its voters, then its learners.
    pub members: Vec<KnownMember>,
}

impl KnownMembers {
    /// Node `id` as this answer names it, if it may vouch for it to a
    /// node that has applied up to `applied`.
    fn vouches_for(&self, id: u64, applied: u64) -> Option<&KnownMember> {
        if self.applied_index < applied {
            return None;
        }
        self.members.iter().find(|m| m.id == id)
    }
}

/// A member as another member knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownMember {
    /// Its raft id.
    pub id: u64,
    /// Whether it votes (a learner does not).
    pub voter: bool,
    /// Where the answering node reaches it, if it knows.
    pub addr: Option<SocketAddr>,
}

/// Asks the members of `configuration` (other than `me`) in turn whether
/// they know node `id`; the first that does vouches for it and gives its
/// address. Ends the question either way.
pub(crate) async fn ask(
    node: OctopiiNode,
    addresses: AddressBook,
    me: u64,
    id: u64,
    (configuration, applied): (Configuration, u64),
    vouched: Vouched,
    deadline: Duration,
) {
    let known: Vec<(u64, SocketAddr)> = {
        let book = addresses.read().unwrap_or_else(PoisonError::into_inner);
        let (voters, learners) = &configuration;
        voters
            .iter()
            .chain(learners)
            .filter(|&&member| member != me && member != id)
            .filter_map(|member| book.get(member).map(|&addr| (*member, addr)))
            .collect()
    };
    for (member, addr) in known {
        let client = RaftServiceClient::new(&node, addr).with_deadline(deadline);
        let Ok(answer) = client.members().await else {
            continue;
        };
        let Some(found) = answer.vouches_for(id, applied) else {
            continue;
        };
        tracing::info!(
            node = me,
            vouched = id,
            by = member,
            "a member vouches for a node this node has not seen join"
        );
        if let Some(addr) = found.addr {
            addresses
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_insert(addr);
        }
        vouched.answered(Some((id, configuration)));
        return;
    }
    vouched.answered(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(applied_index: u64) -> KnownMembers {
        KnownMembers {
            applied_index,
            members: vec![KnownMember {
                id: 4,
                voter: true,
                addr: Some("127.0.0.1:7001".parse().unwrap()),
            }],
        }
    }

    #[test]
    fn only_a_member_at_least_as_far_along_vouches() {
        assert_eq!(answer(10).vouches_for(4, 10).map(|m| m.id), Some(4));
        assert_eq!(answer(12).vouches_for(4, 10).map(|m| m.id), Some(4));
        assert!(answer(12).vouches_for(5, 10).is_none(), "only who it names");
        // Behind this node, it may still list a node this node removed.
        assert!(answer(9).vouches_for(4, 10).is_none());
    }

    #[test]
    fn known_members_encode_as_documented() {
        let expected: Vec<u8> = [
            &[42, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0, 0, 0, 0, 0],
            &[4, 0, 0, 0, 0, 0, 0, 0],
            &[1],
            &[1, 0, 0, 0, 0, 0x7F, 0, 0, 1, 0x59, 0x1B],
        ]
        .concat();
        assert_eq!(crate::codec::encode(&answer(42)).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_vouch_holds_only_until_the_configuration_changes() {
        let vouched = Vouched::default();
        let old: Configuration = (vec![1, 2, 3], vec![]);
        assert!(!vouched.admits(4, &old));
        assert!(vouched.may_ask());
        vouched.answered(Some((4, old.clone())));
        assert!(vouched.admits(4, &old));
        assert!(!vouched.admits(5, &old), "only the node vouched for");
        let new: Configuration = (vec![1, 2, 3, 4], vec![]);
        assert!(!vouched.admits(4, &new), "the log decides once it is known");
    }

    #[tokio::test]
    async fn one_question_runs_at_a_time_and_one_starts_per_interval() {
        let vouched = Vouched::default();
        assert!(vouched.may_ask());
        assert!(!vouched.may_ask(), "one question at a time");
        vouched.answered(None);
        assert!(!vouched.may_ask(), "at most one per interval");
    }
}

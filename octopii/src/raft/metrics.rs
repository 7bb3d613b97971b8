//! Raft's series in the process's `metrics` recorder (see
//! `docs/ARCHITECTURE.md`, "Metrics"). The gauges follow the status the
//! driver publishes; handles are made once per driver.

use metrics::{Counter, Gauge, counter, gauge};

use super::machine::{RaftRole, RaftStatus};

/// Every role, in the order of [`RaftMetrics::roles`].
const ROLES: [(RaftRole, &str); 5] = [
    (RaftRole::Follower, "follower"),
    (RaftRole::PreCandidate, "pre_candidate"),
    (RaftRole::Candidate, "candidate"),
    (RaftRole::Leader, "leader"),
    (RaftRole::Stopped, "stopped"),
];

/// One raft member's series, labelled with its id.
pub(crate) struct RaftMetrics {
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    /// `octopii_raft_role{role=…}`: 1 for the current role, 0 for the others.
    roles: [Gauge; 5],
    proposals: Counter,
    elections: Counter,
    snapshots_taken: Counter,
    snapshots_installed: Counter,
}

impl RaftMetrics {
    pub(crate) fn new(node: u64) -> Self {
        let node = node.to_string();
        let snapshots = |kind: &'static str| counter!("octopii_raft_snapshots_total", "node" => node.clone(), "kind" => kind);
        RaftMetrics {
            term: gauge!("octopii_raft_term", "node" => node.clone()),
            commit_index: gauge!("octopii_raft_commit_index", "node" => node.clone()),
            applied_index: gauge!("octopii_raft_applied_index", "node" => node.clone()),
            roles: ROLES.map(
                |(_, role)| gauge!("octopii_raft_role", "node" => node.clone(), "role" => role),
            ),
            proposals: counter!("octopii_raft_proposals_total", "node" => node.clone()),
            elections: counter!("octopii_raft_elections_total", "node" => node.clone()),
            snapshots_taken: snapshots("taken"),
            snapshots_installed: snapshots("installed"),
        }
    }

    /// Follows a newly published status; `old` is the role it replaces
    /// (`Stopped` for a driver starting).
    pub(crate) fn publish(&self, old: RaftRole, new: &RaftStatus) {
        self.term.set(new.term as f64);
        self.commit_index.set(new.commit_index as f64);
        self.applied_index.set(new.applied_index as f64);
        if old != new.role {
            for ((role, _), gauge) in ROLES.iter().zip(&self.roles) {
                gauge.set(if *role == new.role { 1.0 } else { 0.0 });
            }
            if starts_campaign(old, new.role) {
                self.elections.increment(1);
            }
        }
    }

    /// A proposal raft took into the leader's log.
    pub(crate) fn proposed(&self) {
        self.proposals.increment(1);
    }

    pub(crate) fn snapshot_taken(&self) {
        self.snapshots_taken.increment(1);
    }

    pub(crate) fn snapshot_installed(&self) {
        self.snapshots_installed.increment(1);
    }
}

/// Whether moving from `old` to `new` means this node started a campaign.
/// Status is published once per driver turn, so a lone voter may go from
/// follower to leader in one step: that is a campaign too.
fn starts_campaign(old: RaftRole, new: RaftRole) -> bool {
    let campaigning = |role| matches!(role, RaftRole::PreCandidate | RaftRole::Candidate);
    !campaigning(old)
        && (campaigning(new) || (old == RaftRole::Follower && new == RaftRole::Leader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_is_counted_once_however_it_is_seen() {
        use RaftRole::*;
        assert!(starts_campaign(Follower, PreCandidate));
        assert!(starts_campaign(Follower, Candidate));
        assert!(starts_campaign(Follower, Leader));
        assert!(!starts_campaign(PreCandidate, Candidate));
        assert!(!starts_campaign(Candidate, Leader));
        assert!(!starts_campaign(Leader, Follower));
        assert!(!starts_campaign(Follower, Stopped));
    }
}

//! Membership changes by joint consensus (Raft thesis §4.3), and learners.
//!
//! A change from C_old to C_new goes through a joint configuration C_old,new in which every
//! decision (election and commit) needs a majority of C_old *and* a majority of C_new. Each
//! configuration takes effect on a node as soon as its entry is in that node's log; once the joint
//! entry is committed the leader appends C_new by itself. A change that only adds or removes
//! learners (non-voting members that receive the log) needs no joint phase. One change at a time,
//! and only once the leader has committed an entry of its own term. A leader that is not a voter in
//! C_new keeps leading until C_new is committed, then steps down.

use std::collections::{BTreeMap, BTreeSet};

use tracing::info;

use crate::core::RaftCore;
use crate::entry::{Entry, EntryPayload};
use crate::error::MembershipChangeError;
use crate::membership::Membership;
use crate::progress::Progress;
use crate::types::{Index, NodeId, Role};

impl RaftCore {
    /// The rule behind [`RaftCore::change_membership`].
    pub(crate) fn start_membership_change(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        new_addresses: BTreeMap<NodeId, String>,
    ) -> Result<Index, MembershipChangeError> {
        if self.role != Role::Leader {
            return Err(MembershipChangeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(MembershipChangeError::TransferInProgress);
        }
        if !self.term_committed() {
            return Err(MembershipChangeError::LeaderNotReady);
        }
        if self.change_pending() {
            return Err(MembershipChangeError::ChangeInProgress);
        }
        // Members keep their addresses unless new ones are given; leavers' addresses go.
        let mut addresses = self.membership.addresses.clone();
        addresses.extend(new_addresses);
        addresses.retain(|id, _| voters.contains(id) || learners.contains(id));
        let target = Membership {
            voters,
            outgoing: None,
            learners,
            addresses,
        };
        target.validate()?;
        let current = self.membership.clone();
        if target == current {
            return Err(MembershipChangeError::Unchanged);
        }
        self.check_new_voters_caught_up(&target.voters, &current.voters)?;
        let next = if target.voters == current.voters
            || self.planted(crate::planted::PlantedBug::SkipJointConsensus)
        {
            target
        } else {
            // During the joint phase the outgoing voters stay reachable.
            let mut addresses = target.addresses.clone();
            for id in &current.voters {
                if let Some(address) = current.addresses.get(id) {
                    addresses.entry(*id).or_insert_with(|| address.clone());
                }
            }
            Membership {
                outgoing: Some(current.voters.clone()),
                addresses,
                ..target
            }
        };
        info!(node = self.id(), term = self.term, ?next, "changing membership");
        Ok(self.append_configuration(next))
    }

    /// Refuses to make voters of nodes whose logs are far behind the commit index: a node the
    /// leader never replicated to counts as holding nothing.
    fn check_new_voters_caught_up(
        &self,
        voters: &BTreeSet<NodeId>,
        current: &BTreeSet<NodeId>,
    ) -> Result<(), MembershipChangeError> {
        let commit_index = self.log.committed;
        for &node in voters.difference(current) {
            let match_index = if node == self.id() {
                self.log.last_index()
            } else {
                self.progress.get(&node).map_or(0, |p| p.match_index)
            };
            if match_index.saturating_add(self.config.max_promotion_lag_entries) < commit_index {
                return Err(MembershipChangeError::NotCaughtUp {
                    node,
                    match_index,
                    commit_index,
                });
            }
        }
        Ok(())
    }

    /// Whether a change is still in progress: a configuration entry not yet committed, or a joint
    /// configuration not yet left.
    pub(crate) fn change_pending(&self) -> bool {
        self.configs
            .latest_index()
            .is_some_and(|i| i > self.log.committed)
            || self.membership.is_joint()
    }

    fn append_configuration(&mut self, membership: Membership) -> Index {
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            payload: EntryPayload::Membership(Box::new(membership)),
        };
        self.configs.record(std::slice::from_ref(&entry));
        self.log.push(entry);
        self.adopt_latest_configuration();
        index
    }

    /// Makes the latest configuration in the log the one in force, and fits the leader's
    /// per-follower state to it.
    pub(crate) fn adopt_latest_configuration(&mut self) {
        // Called on every AppendEntries a follower takes: compare before cloning anything.
        if *self.configs.latest() == self.membership {
            return;
        }
        self.membership = self.configs.latest().clone();
        if self.role == Role::Leader {
            let me = self.id();
            let next = self.log.last_index() + 1;
            let members: Vec<NodeId> = self.membership.members().filter(|id| *id != me).collect();
            self.progress.retain(|id, _| members.contains(id));
            for id in members {
                self.progress.entry(id).or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// Whether this node may start elections: it votes in its latest configuration, or in the last
    /// committed one. A node removed by a configuration that is not committed yet may still be
    /// needed to elect a leader that finishes the change (Raft thesis §4.2.2).
    pub(crate) fn may_campaign(&self) -> bool {
        let me = self.id();
        if self.membership.is_voter(me) {
            return true;
        }
        let committed = self.log.committed;
        let last_committed = self
            .configs
            .entries
            .iter()
            .rev()
            .find(|(index, _, _)| *index <= committed)
            .map_or(&self.configs.base, |(_, _, m)| m);
        last_committed.is_voter(me)
    }

    /// Drops configuration entries that are no longer in the log (after a truncation).
    pub(crate) fn forget_truncated_configurations(&mut self) {
        let log = &self.log;
        self.configs
            .entries
            .retain(|(index, term, _)| log.term(*index) == Some(*term));
    }

    /// Leader duties once changes commit: leave a committed joint configuration, and step down
    /// once a configuration without this node as a voter is committed.
    pub(crate) fn advance_membership_change(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let committed = self
            .configs
            .latest_index()
            .is_none_or(|i| i <= self.log.committed);
        if !committed {
            return;
        }
        if self.membership.is_joint() {
            let mut final_config = Membership {
                outgoing: None,
                ..self.membership.clone()
            };
            let leavers: Vec<NodeId> = final_config
                .addresses
                .keys()
                .copied()
                .filter(|id| !final_config.contains(*id))
                .collect();
            for id in leavers {
                final_config.addresses.remove(&id);
            }
            self.append_configuration(final_config);
        } else if !self.membership.is_voter(self.id()) {
            info!(
                node = self.id(),
                term = self.term,
                "removed from the voters; stepping down"
            );
            self.become_follower(self.term, None);
        }
    }
}

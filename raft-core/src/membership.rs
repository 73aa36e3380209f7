//! Who votes, and what a quorum is.
//!
//! A configuration is a set of voters plus learners that replicate without voting. During a
//! membership change (joint consensus) a decision needs a majority of the incoming voters *and* a
//! majority of the outgoing ones; [`Membership::outgoing`] holds the latter. Every quorum question
//! the protocol asks goes through this module, so that joint consensus changes one place.
//!
//! A configuration may also say where each member can be reached ([`Membership::addresses`]): the
//! core only carries these strings from one configuration to the next, so that a node added at
//! runtime becomes reachable by every member that learns the configuration.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::MembershipError;
use crate::types::{Index, NodeId};

/// The cluster's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct Membership {
    /// The voters of the configuration in force (C_new during a change).
    pub voters: BTreeSet<NodeId>,
    /// The voters of the configuration being left (C_old), while a joint change is under way.
    pub outgoing: Option<BTreeSet<NodeId>>,
    /// Members that receive the log but do not vote.
    pub learners: BTreeSet<NodeId>,
    /// Where members can be reached, as the application writes it (for example a peer and a
    /// client address). Opaque to the protocol; only members may have one.
    pub addresses: BTreeMap<NodeId, String>,
}

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// Enough refused that no quorum can grant.
    Lost,
    /// Still undecided.
    Pending,
}

impl Membership {
    /// A configuration of voters only.
    ///
    /// ```
    /// use raft_core::Membership;
    /// let m = Membership::voters([1, 2, 3])?;
    /// assert!(m.is_voter(2));
    /// # Ok::<(), raft_core::MembershipError>(())
    /// ```
    pub fn voters(ids: impl IntoIterator<Item = NodeId>) -> Result<Self, MembershipError> {
        let membership = Membership {
            voters: ids.into_iter().collect(),
            outgoing: None,
            learners: BTreeSet::new(),
            addresses: BTreeMap::new(),
        };
        membership.validate()?;
        Ok(membership)
    }

    /// The same configuration with these members' addresses.
    ///
    /// ```
    /// use raft_core::Membership;
    /// let m = Membership::voters([1, 2])?.with_addresses([(1, "10.0.0.1:7000".to_string())])?;
    /// assert_eq!(m.addresses[&1], "10.0.0.1:7000");
    /// assert!(Membership::voters([1])?.with_addresses([(9, "x".to_string())]).is_err());
    /// # Ok::<(), raft_core::MembershipError>(())
    /// ```
    pub fn with_addresses(
        mut self,
        addresses: impl IntoIterator<Item = (NodeId, String)>,
    ) -> Result<Self, MembershipError> {
        self.addresses.extend(addresses);
        self.validate()?;
        Ok(self)
    }

    /// Whether this is the empty configuration of a node that has not joined a cluster yet: it
    /// never campaigns and learns its configuration from the leader's log.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.outgoing.is_none() && self.learners.is_empty()
    }

    /// Whether a joint configuration (C_old,new) is in force.
    pub fn is_joint(&self) -> bool {
        self.outgoing.is_some()
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if self.members().any(|id| id == 0) {
            return Err(MembershipError::ZeroNodeId);
        }
        if let Some(id) = self.voters.intersection(&self.learners).next() {
            return Err(MembershipError::VoterAndLearner(*id));
        }
        if let Some(id) = self.addresses.keys().find(|id| !self.contains(**id)) {
            return Err(MembershipError::AddressOfNonMember(*id));
        }
        Ok(())
    }

    /// Whether `id` votes in this configuration (in either half of a joint one).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.as_ref().is_some_and(|o| o.contains(&id))
    }

    /// Whether `id` belongs to the configuration at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member, voters and learners, each once, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let outgoing = self.outgoing.iter().flatten();
        let all: BTreeSet<NodeId> = self
            .voters
            .iter()
            .chain(outgoing)
            .chain(self.learners.iter())
            .copied()
            .collect();
        all.into_iter()
    }

    /// Counts votes: `votes` maps a voter to whether it granted. Missing voters have not answered.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let incoming = majority_vote(&self.voters, votes);
        let outgoing = self
            .outgoing
            .as_ref()
            .map_or(VoteResult::Won, |o| majority_vote(o, votes));
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// The highest index stored on a quorum, given each voter's durable match index.
    /// Voters with no entry in `matched` count as having nothing.
    pub fn committed_index(&self, matched: impl Fn(NodeId) -> Index) -> Index {
        let incoming = majority_index(&self.voters, &matched);
        match &self.outgoing {
            Some(o) => incoming.min(majority_index(o, &matched)),
            None => incoming,
        }
    }

    /// Whether the nodes for which `active` is true form a quorum.
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        // Runs on every heartbeat answer (read rounds, check-quorum): count, don't allocate.
        let majority =
            |voters: &BTreeSet<NodeId>| voters.iter().filter(|id| active(**id)).count() > voters.len() / 2;
        majority(&self.voters) && self.outgoing.as_ref().is_none_or(majority)
    }
}

fn majority_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let needed = voters.len() / 2 + 1;
    let granted = voters.iter().filter(|id| votes.get(id) == Some(&true)).count();
    let refused = voters.iter().filter(|id| votes.get(id) == Some(&false)).count();
    if granted >= needed {
        VoteResult::Won
    } else if voters.len() - refused < needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// The highest index that a majority of `voters` has matched. The leader asks at every answer
/// it counts, so for a configuration of up to [`INLINE_VOTERS`] voters the match indexes are
/// gathered on the stack and the median is selected there, with no allocation.
fn majority_index(voters: &BTreeSet<NodeId>, matched: &impl Fn(NodeId) -> Index) -> Index {
    if voters.is_empty() {
        return Index::MAX;
    }
    let mut inline = [0; INLINE_VOTERS];
    let mut spilled = Vec::new();
    let indexes: &mut [Index] = if voters.len() <= INLINE_VOTERS {
        for (slot, id) in inline.iter_mut().zip(voters) {
            *slot = matched(*id);
        }
        &mut inline[..voters.len()]
    } else {
        spilled.extend(voters.iter().map(|id| matched(*id)));
        &mut spilled
    };
    // Highest first: the one at position `len / 2` has `len / 2 + 1` at or above it.
    let middle = indexes.len() / 2;
    *indexes.select_nth_unstable_by(middle, |a, b| b.cmp(a)).1
}

/// Voters whose match indexes [`majority_index`] gathers on the stack.
const INLINE_VOTERS: usize = 9;

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// On the stack (up to nine voters) or not, the majority's index is the one that a
        /// sort of every voter's match index puts at the majority's position.
        #[test]
        fn the_majority_index_is_what_a_sort_finds(matched in proptest::collection::vec(0u64..20, 1..14)) {
            let voters: BTreeSet<NodeId> = (1..=matched.len() as NodeId).collect();
            let lookup = |id: NodeId| matched[(id - 1) as usize];
            let mut sorted = matched.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            proptest::prop_assert_eq!(majority_index(&voters, &lookup), sorted[matched.len() / 2]);
        }
    }

    #[test]
    fn committed_index_is_the_median_of_match_indexes() {
        let m = Membership::voters([1, 2, 3, 4, 5]).unwrap();
        let matched = |id: NodeId| [0, 9, 7, 5, 3, 1][id as usize];
        assert_eq!(m.committed_index(matched), 5);
    }

    #[test]
    fn joint_configuration_needs_both_majorities() {
        let mut m = Membership::voters([1, 2, 3]).unwrap();
        m.outgoing = Some([3, 4, 5].into_iter().collect());
        let votes: BTreeMap<_, _> = [(1, true), (2, true), (3, false)].into_iter().collect();
        assert_eq!(m.vote_result(&votes), VoteResult::Pending);
        let votes: BTreeMap<_, _> = [(1, true), (2, true), (4, false), (5, false)]
            .into_iter()
            .collect();
        assert_eq!(m.vote_result(&votes), VoteResult::Lost);
        let matched = |id: NodeId| [0, 10, 10, 2, 8, 1][id as usize];
        assert_eq!(m.committed_index(matched), 2);
    }

    #[test]
    fn membership_rejects_empty_and_overlapping_sets() {
        assert_eq!(Membership::voters([]), Err(MembershipError::NoVoters));
        assert_eq!(Membership::voters([0, 1]), Err(MembershipError::ZeroNodeId));
        let mut m = Membership::voters([1]).unwrap();
        m.learners.insert(1);
        assert_eq!(m.validate(), Err(MembershipError::VoterAndLearner(1)));
    }
}

//! Rules of membership changes by joint consensus, and of learners (Raft thesis §4.3), each test
//! named after the rule it checks.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use raft_core::{Membership, MembershipChangeError, MembershipError, RaftCore, RestoredState, Role};
use support::{config, Net};

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[test]
fn changing_voters_goes_through_a_joint_configuration_that_the_leader_leaves_by_itself() {
    let mut net = Net::new(3);
    net.add_joiner(4);
    net.elect(1);
    net.node(1).change_membership(set(&[1, 2, 4]), set(&[])).unwrap();
    let joint = net.node(1).membership().clone();
    assert_eq!(joint.voters, set(&[1, 2, 4]));
    assert_eq!(
        joint.outgoing,
        Some(set(&[1, 2, 3])),
        "takes effect when appended"
    );
    net.settle();
    net.tick_all(3);
    for id in [1, 2, 4] {
        let m = net.node(id).membership().clone();
        assert_eq!((m.voters, m.outgoing), (set(&[1, 2, 4]), None), "node {id}");
    }
}

#[test]
fn joint_configuration_needs_both_majorities_to_commit() {
    let mut net = Net::new(3);
    net.add_joiner(4);
    net.add_joiner(5);
    net.elect(1);
    // C_old = {1,2,3}, C_new = {1,4,5}: with 4 and 5 unreachable, C_new has no majority.
    net.isolated.extend([4, 5]);
    let index = net.node(1).change_membership(set(&[1, 4, 5]), set(&[])).unwrap();
    net.settle();
    assert!(
        net.node(1).status().commit_index < index,
        "a C_old majority alone does not commit"
    );
    net.isolated.clear();
    net.tick_all(4);
    assert!(net.node(1).status().commit_index >= index);
}

#[test]
fn leader_refuses_a_second_change_while_one_is_pending() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.extend([2, 3]);
    net.node(1).change_membership(set(&[1, 2]), set(&[3])).unwrap();
    assert_eq!(
        net.node(1).change_membership(set(&[1]), set(&[])),
        Err(MembershipChangeError::ChangeInProgress)
    );
}

#[test]
fn leader_refuses_a_change_before_it_commits_an_entry_of_its_term() {
    let mut net = Net::new(3);
    for _ in 0..100 {
        net.node(1).tick();
        if net.node(1).role() != Role::Follower {
            break;
        }
    }
    net.process_all();
    while net.node(1).role() != Role::Leader {
        let m = net.queue.pop_front().unwrap();
        let to = m.to;
        net.node(to).step(m).unwrap();
        net.process(to);
    }
    assert_eq!(
        net.node(1).change_membership(set(&[1, 2]), set(&[])),
        Err(MembershipChangeError::LeaderNotReady)
    );
}

#[test]
fn change_that_leaves_no_voters_is_refused() {
    let mut net = Net::new(3);
    net.elect(1);
    assert_eq!(
        net.node(1).change_membership(set(&[]), set(&[1, 2, 3])),
        Err(MembershipChangeError::Invalid(MembershipError::NoVoters))
    );
    assert_eq!(
        net.node(2).change_membership(set(&[1]), set(&[])),
        Err(MembershipChangeError::NotLeader { leader_hint: Some(1) })
    );
}

#[test]
fn learner_receives_the_log_but_never_counts_toward_a_quorum_nor_campaigns() {
    let mut net = Net::new(1);
    net.add_joiner(2);
    net.elect(1);
    net.node(1).change_membership(set(&[1]), set(&[2])).unwrap();
    net.settle();
    let index = net.node(1).propose("x".into()).unwrap();
    net.settle();
    net.tick_all(2);
    assert_eq!(
        net.node(2).entry(index).map(|e| e.index),
        Some(index),
        "the learner replicates"
    );
    assert!(net.node(1).membership().learners.contains(&2));
    // Cut off the leader: the learner never campaigns.
    net.isolated.insert(1);
    net.tick(2, 100);
    net.settle();
    assert_eq!(net.node(2).role(), Role::Follower);
}

#[test]
fn learner_is_promoted_to_voter() {
    let mut net = Net::new(3);
    net.add_joiner(4);
    net.elect(1);
    net.node(1).change_membership(set(&[1, 2, 3]), set(&[4])).unwrap();
    net.settle();
    net.tick_all(2);
    net.node(1)
        .change_membership(set(&[1, 2, 3, 4]), set(&[]))
        .unwrap();
    net.settle();
    net.tick_all(3);
    let m = net.node(4).membership().clone();
    assert_eq!(
        (m.voters, m.outgoing, m.learners),
        (set(&[1, 2, 3, 4]), None, set(&[]))
    );
}

#[test]
fn removed_leader_steps_down_once_the_new_configuration_commits() {
    let mut net = Net::new(3);
    net.elect(1);
    net.node(1).change_membership(set(&[2, 3]), set(&[])).unwrap();
    net.settle();
    net.tick_all(3);
    assert_eq!(net.node(1).role(), Role::Follower);
    net.tick_all(60);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 1, "the removed node does not lead again");
}

#[test]
fn configuration_entry_is_rolled_back_when_its_entry_is_truncated() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.extend([2, 3]);
    // Only node 1 gets the joint entry; then node 2 leads a later term and overwrites it.
    net.node(1).change_membership(set(&[1, 2]), set(&[3])).unwrap();
    net.settle();
    net.isolated.clear();
    net.isolated.insert(1);
    net.tick_all(60);
    assert!(net.leaders().contains(&2) || net.leaders().contains(&3));
    net.isolated.clear();
    net.tick_all(10);
    let m = net.node(1).membership().clone();
    assert_eq!(
        (m.voters, m.outgoing),
        (set(&[1, 2, 3]), None),
        "the uncommitted change is gone"
    );
}

#[test]
fn restarted_node_takes_its_configuration_from_its_log() {
    let mut net = Net::new(3);
    net.add_joiner(4);
    net.elect(1);
    net.node(1).change_membership(set(&[1, 2, 3]), set(&[4])).unwrap();
    net.settle();
    net.tick_all(3);
    let (hard_state, entries) = net.stored[&4].clone();
    let restored = RestoredState {
        hard_state,
        snapshot: None,
        entries,
        applied: 0,
    };
    let node = RaftCore::restore(config(4), Membership::default(), restored).unwrap();
    assert_eq!(node.membership().learners, set(&[4]));
    assert_eq!(node.membership().voters, set(&[1, 2, 3]));
}

/// Nodes 1 to 3 with node 1 leading, and a joiner 4; a new voter may lag `lag` entries.
fn cluster_promoting_within(lag: u64) -> Net {
    let mut net = Net::with_config(3, |id| {
        let mut config = config(id);
        config.max_promotion_lag_entries = lag;
        config
    });
    net.add_joiner(4);
    net.elect(1);
    net
}

#[test]
fn leader_refuses_to_make_a_voter_of_a_node_far_behind_the_commit_index() {
    let mut net = cluster_promoting_within(5);
    for i in 0..10 {
        net.node(1).propose(format!("{i}").into()).unwrap();
    }
    net.settle();
    let commit_index = net.node(1).status().commit_index;
    assert_eq!(
        net.node(1).change_membership(set(&[1, 2, 3, 4]), set(&[])),
        Err(MembershipChangeError::NotCaughtUp {
            node: 4,
            match_index: 0,
            commit_index
        }),
        "a node the leader never replicated to holds nothing"
    );
    assert!(!net.node(1).membership().contains(4), "nothing was appended");
    // As a learner it catches up; then it may be promoted.
    net.node(1).change_membership(set(&[1, 2, 3]), set(&[4])).unwrap();
    net.settle();
    net.tick_all(3);
    net.node(1)
        .change_membership(set(&[1, 2, 3, 4]), set(&[]))
        .unwrap();
}

#[test]
fn leader_refuses_to_promote_a_learner_that_fell_behind() {
    let mut net = cluster_promoting_within(5);
    net.node(1).change_membership(set(&[1, 2, 3]), set(&[4])).unwrap();
    net.settle();
    net.tick_all(3);
    net.isolated.insert(4);
    for i in 0..10 {
        net.node(1).propose(format!("{i}").into()).unwrap();
        net.settle();
    }
    assert!(matches!(
        net.node(1).change_membership(set(&[1, 2, 3, 4]), set(&[])),
        Err(MembershipChangeError::NotCaughtUp { node: 4, .. })
    ));
    net.isolated.clear();
    net.tick_all(5);
    net.node(1)
        .change_membership(set(&[1, 2, 3, 4]), set(&[]))
        .unwrap();
}

#[test]
fn leader_ignores_messages_from_nodes_outside_its_configuration() {
    use raft_core::{HeartbeatResponse, Message, MessageBody, RequestVote};
    let mut net = Net::new(4);
    net.elect(1);
    net.node(1).change_membership(set(&[1, 2, 3]), set(&[])).unwrap();
    net.settle();
    net.tick_all(3);
    net.settle();
    assert_eq!(net.node(1).membership().voters, set(&[1, 2, 3]));
    assert!(net.node(1).membership().outgoing.is_none());
    let term = net.node(1).term();
    let last = net.node(1).status().last_log_index;
    // Node 4 was removed; a higher-term answer or a vote request from it (a removed node times out
    // and campaigns, and may transfer stale responses) must not depose the leader.
    let from_removed = [
        MessageBody::HeartbeatResponse(HeartbeatResponse { round: 1 }),
        MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            transfer: true,
            last_log_index: last + 10,
            last_log_term: term + 5,
        }),
    ];
    for body in from_removed {
        // Ignored, not refused as malformed: an honest removed node sends such messages.
        net.node(1)
            .step(Message {
                from: 4,
                to: 1,
                term: term + 5,
                body,
            })
            .unwrap();
        assert_eq!((net.node(1).role(), net.node(1).term()), (Role::Leader, term));
    }
    // A node that never was a member is ignored the same way.
    net.node(1)
        .step(Message {
            from: 99,
            to: 1,
            term: term + 1,
            body: MessageBody::HeartbeatResponse(HeartbeatResponse { round: 1 }),
        })
        .unwrap();
    assert_eq!((net.node(1).role(), net.node(1).term()), (Role::Leader, term));
}

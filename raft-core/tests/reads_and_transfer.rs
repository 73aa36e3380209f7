//! Rules of reads (ReadIndex, leases, follower reads) and leadership transfer (Raft thesis §6.4,
//! §3.10), each test named after the rule it checks.
#![allow(clippy::unwrap_used)]

mod support;

use raft_core::{ConfigError, MessageBody, ProposeError, ReadError, Role, TransferError};
use support::{config, Net};

fn lease_net(size: u64) -> Net {
    Net::with_config(size, |id| config(id).with_lease_reads(true))
}

fn heartbeats_in(ready: &raft_core::Ready) -> usize {
    ready
        .messages
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat(_)))
        .count()
}

/// Elects node 1, but keeps its blank entry from committing (nothing is delivered).
fn leader_without_commit(net: &mut Net) {
    for _ in 0..100 {
        net.node(1).tick();
        if net.node(1).role() != raft_core::Role::Follower {
            break;
        }
    }
    // Deliver only votes until node 1 leads, then drop everything else.
    net.process_all();
    while net.node(1).role() != Role::Leader {
        let m = net.queue.pop_front().expect("votes in flight");
        let to = m.to;
        net.node(to).step(m).unwrap();
        net.process(to);
    }
    net.process(1);
    net.queue.clear();
}

#[test]
fn read_index_waits_for_the_leaders_first_commit_in_its_term() {
    let mut net = Net::new(3);
    leader_without_commit(&mut net);
    net.node(1).read_index(7).unwrap();
    let ready = net.process(1);
    assert!(
        ready.read_states.is_empty(),
        "no read before the term's first commit"
    );
    net.settle();
    net.tick_all(3);
    let states: Vec<_> = net.read_states(1);
    assert_eq!(states.len(), 1);
    assert!(states[0].index >= 1, "the read index covers the blank entry");
}

#[test]
fn read_index_is_served_only_after_a_quorum_confirms_leadership() {
    let mut net = Net::new(3);
    net.elect(1);
    net.node(1).read_index(1).unwrap();
    let ready = net.process(1);
    assert!(ready.read_states.is_empty());
    assert_eq!(heartbeats_in(&ready), 2, "a confirmation round goes out at once");
    net.settle();
    let commit = net.node(1).status().commit_index;
    assert_eq!(
        net.read_states(1),
        vec![raft_core::ReadState { id: 1, index: commit }]
    );
}

#[test]
fn reads_arriving_together_share_one_confirmation_round() {
    let mut net = Net::new(3);
    net.elect(1);
    for id in 1..=3 {
        net.node(1).read_index(id).unwrap();
    }
    let ready = net.process(1);
    assert_eq!(heartbeats_in(&ready), 2, "one round for three reads");
    net.settle();
    assert_eq!(net.read_states(1).len(), 3);
}

#[test]
fn read_index_without_a_quorum_is_never_served_and_fails_when_leadership_is_lost() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.extend([2, 3]);
    net.node(1).read_index(9).unwrap();
    for _ in 0..30 {
        net.tick(1, 1);
        net.settle();
    }
    assert!(net.read_states(1).is_empty());
    assert_eq!(net.node(1).role(), Role::Follower, "check-quorum deposed it");
    assert_eq!(
        net.read_failures(1),
        vec![(9, ReadError::NotLeader { leader_hint: None })]
    );
}

#[test]
fn follower_read_is_forwarded_and_served_at_the_leaders_read_index() {
    let mut net = Net::new(3);
    net.elect(1);
    net.node(1).propose("x".into()).unwrap();
    net.settle();
    net.node(2).read_index(5).unwrap();
    net.settle();
    let commit = net.node(1).status().commit_index;
    assert_eq!(
        net.read_states(2),
        vec![raft_core::ReadState { id: 5, index: commit }]
    );
}

#[test]
fn follower_without_a_leader_refuses_a_read() {
    let mut net = Net::new(3);
    assert_eq!(
        net.node(2).read_index(1),
        Err(ReadError::NotLeader { leader_hint: None })
    );
}

#[test]
fn lease_read_is_served_without_a_round_trip_while_the_lease_holds() {
    let mut net = lease_net(3);
    net.tick_all(40);
    let leader = net.leaders()[0];
    net.tick_all(2);
    assert!(net.node(leader).holds_lease());
    net.node(leader).lease_read(4).unwrap();
    let ready = net.process(leader);
    assert!(ready.messages.is_empty(), "no round trip");
    assert_eq!(ready.read_states[0].id, 4);
}

#[test]
fn lease_read_is_refused_when_leases_are_off() {
    let mut net = Net::new(3);
    net.elect(1);
    net.tick_all(2);
    assert_eq!(net.node(1).lease_read(1), Err(ReadError::LeaseNotHeld));
}

#[test]
fn lease_expires_when_followers_stop_answering() {
    let mut net = lease_net(3);
    net.tick_all(40);
    let leader = net.leaders()[0];
    net.tick_all(2);
    assert!(net.node(leader).holds_lease());
    for id in 1..=3 {
        if id != leader {
            net.isolated.insert(id);
        }
    }
    net.tick(leader, 9);
    assert_eq!(net.node(leader).lease_read(1), Err(ReadError::LeaseNotHeld));
}

#[test]
fn lease_read_is_refused_after_a_transfer_starts_even_if_it_times_out() {
    let mut net = lease_net(3);
    net.tick_all(40);
    let leader = net.leaders()[0];
    let target = (1..=3).find(|id| *id != leader).unwrap();
    net.tick_all(2);
    assert!(net.node(leader).holds_lease());
    net.isolated.insert(target);
    net.node(leader).transfer_leadership(target).unwrap();
    assert_eq!(net.node(leader).lease_read(1), Err(ReadError::LeaseNotHeld));
    net.tick_all(12);
    assert_eq!(net.node(leader).transfer_target(), None, "the transfer timed out");
    assert_eq!(net.node(leader).role(), Role::Leader);
    assert_eq!(
        net.node(leader).lease_read(2),
        Err(ReadError::LeaseNotHeld),
        "not for the rest of the term"
    );
}

#[test]
fn config_rejects_lease_reads_without_check_quorum() {
    let bad = config(1).with_lease_reads(true).with_check_quorum(false);
    assert_eq!(bad.validate(), Err(ConfigError::LeaseNeedsCheckQuorum));
}

#[test]
fn transfer_sends_timeout_now_only_once_the_target_is_caught_up() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.insert(3);
    for i in 0..5 {
        net.node(1).propose(format!("x{i}").into()).unwrap();
    }
    net.settle();
    net.node(1).transfer_leadership(3).unwrap();
    let ready = net.process(1);
    assert!(
        !ready
            .messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::TimeoutNow)),
        "the lagging target gets entries first"
    );
    net.isolated.clear();
    net.tick_all(3);
    assert_eq!(
        net.node(3).role(),
        Role::Leader,
        "caught up, it was told to campaign and won"
    );
}

#[test]
fn leader_refuses_proposals_while_transferring() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.insert(2);
    net.node(1).transfer_leadership(2).unwrap();
    assert_eq!(
        net.node(1).propose("x".into()),
        Err(ProposeError::TransferInProgress { target: 2 })
    );
}

#[test]
fn transfer_target_wins_at_once_despite_the_followers_leases() {
    let mut net = Net::new(3);
    net.elect(1);
    net.tick_all(2);
    let term = net.node(1).term();
    net.node(1).transfer_leadership(2).unwrap();
    net.settle();
    assert_eq!(net.node(2).role(), Role::Leader);
    assert_eq!(net.node(2).term(), term + 1);
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.leaders(), vec![2]);
}

#[test]
fn transfer_gives_up_after_an_election_timeout() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.insert(3);
    net.node(1).transfer_leadership(3).unwrap();
    for _ in 0..12 {
        net.tick(1, 1);
        net.settle();
    }
    assert_eq!(net.node(1).transfer_target(), None);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert!(net.node(1).propose("again".into()).is_ok());
}

#[test]
fn transfer_to_itself_a_stranger_or_during_another_transfer_is_refused() {
    let mut net = Net::new(3);
    net.elect(1);
    assert_eq!(
        net.node(1).transfer_leadership(1),
        Err(TransferError::AlreadyLeader(1))
    );
    assert_eq!(
        net.node(1).transfer_leadership(9),
        Err(TransferError::NotAVoter(9))
    );
    net.isolated.insert(2);
    net.node(1).transfer_leadership(2).unwrap();
    assert_eq!(
        net.node(1).transfer_leadership(3),
        Err(TransferError::InProgress { target: 2 })
    );
    assert_eq!(
        net.node(2).transfer_leadership(3),
        Err(TransferError::NotLeader { leader_hint: Some(1) })
    );
}

#[test]
fn forwarded_read_whose_request_or_answer_is_lost_fails_after_two_election_timeouts() {
    let mut net = Net::new(3);
    net.elect(1);
    net.settle();
    net.node(2).read_index(5).unwrap();
    net.process(2);
    // The forwarded request is lost; heartbeats keep flowing, so the leader never changes.
    net.queue
        .retain(|m| !matches!(m.body, MessageBody::ReadIndexRequest(_)));
    for _ in 0..19 {
        net.tick_all(1);
        net.settle();
    }
    assert!(
        net.read_failures(2).is_empty(),
        "not before two election timeouts"
    );
    net.tick_all(1);
    net.settle();
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(net.read_failures(2), vec![(5, ReadError::Expired)]);
    assert!(net.read_states(2).is_empty());
}

#[test]
fn leader_read_without_a_quorum_fails_after_two_election_timeouts_even_without_check_quorum() {
    let mut net = Net::with_config(3, |id| config(id).with_check_quorum(false));
    net.elect(1);
    net.settle();
    net.isolated.extend([2, 3]);
    net.node(1).read_index(9).unwrap();
    for _ in 0..21 {
        net.tick(1, 1);
        net.settle();
    }
    assert_eq!(net.node(1).role(), Role::Leader, "nothing deposes it");
    assert!(net.read_states(1).is_empty());
    assert_eq!(net.read_failures(1), vec![(9, ReadError::Expired)]);
}

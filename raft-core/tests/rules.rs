//! One test per rule of the Raft paper (§5), pre-vote and check-quorum (Raft thesis §9.6, §6.2),
//! each named after the rule it checks.
#![allow(clippy::unwrap_used)]

mod support;

use raft_core::{
    AppendEntries, AppendEntriesResponse, Config, ConfigError, Entry, Heartbeat, HeartbeatResponse, Index,
    Membership, Message, MessageBody, NodeId, ProposeError, RaftCore, ReplicationState, RequestVote,
    RequestVoteResponse, RestoredState, Role, StepError,
};
use support::{config, entries, hard, Net};

fn message(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
    Message { from, to, term, body }
}

fn vote_request(from: NodeId, to: NodeId, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    let body = MessageBody::RequestVote(RequestVote {
        pre_vote: false,
        transfer: false,
        last_log_index,
        last_log_term,
    });
    message(from, to, term, body)
}

fn pre_vote_request(from: NodeId, to: NodeId, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    let body = MessageBody::RequestVote(RequestVote {
        pre_vote: true,
        transfer: false,
        last_log_index,
        last_log_term,
    });
    message(from, to, term, body)
}

fn append(
    from: NodeId,
    to: NodeId,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    let body = MessageBody::AppendEntries(AppendEntries {
        prev_log_index: prev.0,
        prev_log_term: prev.1,
        entries: entries.into(),
        leader_commit: commit,
    });
    message(from, to, term, body)
}

/// A node of a 3-node cluster restored with the given log and term.
fn restored(id: NodeId, log_terms: &[u64], term: u64) -> RaftCore {
    let state = RestoredState {
        hard_state: hard(term),
        snapshot: None,
        entries: entries(log_terms),
        applied: 0,
    };
    RaftCore::restore(config(id), Membership::voters([1, 2, 3]).unwrap(), state).unwrap()
}

fn vote_answers(ready: &raft_core::Ready) -> Vec<(NodeId, u64, bool)> {
    ready
        .messages_after_persist
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::RequestVoteResponse(r) => Some((m.to, m.term, r.granted)),
            _ => None,
        })
        .collect()
}

fn append_answers(ready: &raft_core::Ready) -> Vec<AppendEntriesResponse> {
    ready
        .messages_after_persist
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntriesResponse(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn appends_to(ready: &raft_core::Ready, to: NodeId) -> Vec<AppendEntries> {
    ready
        .messages
        .iter()
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// Node 1 of a fresh 3-voter cluster, with pre-vote off so that it campaigns for real.
fn node_without_pre_vote() -> RaftCore {
    RaftCore::new(
        config(1).with_pre_vote(false),
        Membership::voters([1, 2, 3]).unwrap(),
    )
    .unwrap()
}

/// Node `node` hears a heartbeat from `leader` in `term`.
fn hear_leader(node: &mut RaftCore, leader: NodeId, term: u64) {
    let heartbeat = MessageBody::Heartbeat(Heartbeat { commit: 0, round: 0 });
    node.step(message(leader, node.id(), term, heartbeat)).unwrap();
}

fn ticks_until_campaign(node: &mut RaftCore) -> u32 {
    for tick in 1..=1000 {
        node.tick();
        if node.role() != Role::Follower {
            return tick;
        }
    }
    panic!("never campaigned");
}

// ---- election (§5.2) ---------------------------------------------------------------------------

#[test]
fn election_timeout_is_randomized_between_t_and_2t() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let membership = Membership::voters([1, 2, 3]).unwrap();
        let mut node = RaftCore::new(config(1).with_seed(seed), membership).unwrap();
        let ticks = ticks_until_campaign(&mut node);
        assert!((10..20).contains(&ticks), "timeout {ticks} outside [T, 2T)");
        seen.insert(ticks);
    }
    assert!(seen.len() >= 5, "timeouts are not spread out: {seen:?}");
}

#[test]
fn candidate_increments_term_and_votes_for_itself() {
    let mut node = node_without_pre_vote();
    ticks_until_campaign(&mut node);
    assert_eq!(node.role(), Role::Candidate);
    assert_eq!(node.term(), 1);
    assert_eq!(node.hard_state().voted_for, Some(1));
}

#[test]
fn vote_requests_are_sent_only_after_term_and_vote_are_persisted() {
    let mut node = node_without_pre_vote();
    ticks_until_campaign(&mut node);
    let ready = node.ready();
    let hs = ready.hard_state.expect("the new term and vote must be saved");
    assert_eq!((hs.term, hs.voted_for), (1, Some(1)));
    assert!(
        ready.messages.is_empty(),
        "nothing may leave before the vote is durable"
    );
    assert_eq!(ready.messages_after_persist.len(), 2);
}

/// Node 1 as the only voter, with node 2 as a learner (a cluster shrunk to one voter).
fn single_voter_with_a_learner() -> RaftCore {
    let mut membership = Membership::voters([1]).unwrap();
    membership.learners.insert(2);
    RaftCore::new(config(1), membership).unwrap()
}

#[test]
fn single_voter_leads_only_once_its_term_and_vote_are_durable() {
    let mut node = single_voter_with_a_learner();
    ticks_until_campaign(&mut node);
    // Its own vote is a quorum, but neither the term nor the vote is on disk yet.
    assert_eq!(
        node.role(),
        Role::Candidate,
        "not a leader before the vote is durable"
    );
    assert!(matches!(
        node.propose("early".into()),
        Err(ProposeError::NotLeader { leader_hint: None })
    ));
    let ready = node.ready();
    let hs = ready.hard_state.expect("the new term and vote must be saved");
    assert_eq!((hs.term, hs.voted_for), (1, Some(1)));
    assert_eq!(
        ready
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        vec![(1, 1)],
        "the term's first entry is written with the term and the vote"
    );
    assert!(
        ready.messages.is_empty() && ready.messages_after_persist.is_empty(),
        "nothing of the term may leave before it is durable: {ready:?}"
    );
    node.tick();
    assert!(node.ready().messages.is_empty(), "heartbeats wait too");

    node.on_persisted(1, 1);
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(
        node.status().commit_index,
        1,
        "a single voter commits on its own write"
    );
    let ready = node.ready();
    assert_eq!(
        appends_to(&ready, 2).len(),
        1,
        "the learner now hears of the term"
    );
    assert_eq!(
        appends_to(&ready, 2)[0].entries.len(),
        1,
        "starting with the blank entry"
    );
}

#[test]
fn single_voter_waits_for_a_slow_disk_instead_of_campaigning_again() {
    let mut node = single_voter_with_a_learner();
    ticks_until_campaign(&mut node);
    let ready = node.ready();
    let (index, term) = ready.persisted_up_to().unwrap();
    // The write takes longer than several election timeouts.
    for _ in 0..100 {
        node.tick();
        assert!(
            node.ready().hard_state.is_none(),
            "no new term while the first write is pending"
        );
    }
    assert_eq!((node.role(), node.term()), (Role::Candidate, 1));
    node.on_persisted(index, term);
    assert_eq!((node.role(), node.term()), (Role::Leader, 1));
}

#[test]
fn single_voter_that_crashes_before_its_vote_is_durable_leaks_nothing_of_that_term() {
    // The story of simulator seed 104774: a single voter wins term 1 on its own vote and crashes
    // before the write; restarted from an empty disk it wins term 1 again and writes other
    // entries. Had the first incarnation sent anything of term 1, the learner would hold an entry
    // (index, term 1) that the new leader's log disagrees with.
    let mut first = single_voter_with_a_learner();
    ticks_until_campaign(&mut first);
    first.propose("lost".into()).unwrap_err();
    let ready = first.ready();
    let sent_in_term_1: Vec<&Message> = ready
        .messages
        .iter()
        .chain(&ready.messages_after_persist)
        .filter(|m| m.term == 1)
        .collect();
    assert!(sent_in_term_1.is_empty(), "{sent_in_term_1:?}");
    drop(first); // crash: the write is lost

    let mut second = single_voter_with_a_learner();
    ticks_until_campaign(&mut second);
    let ready = second.ready();
    let (index, term) = ready.persisted_up_to().unwrap();
    second.on_persisted(index, term);
    assert_eq!((second.role(), second.term()), (Role::Leader, 1));
}

#[test]
fn single_voter_that_steps_down_before_its_vote_is_durable_never_leads_that_term() {
    let mut node = single_voter_with_a_learner();
    ticks_until_campaign(&mut node);
    let ready = node.ready();
    // A message of a higher term arrives before the write completes.
    node.step(vote_request(3, 1, 5, 0, 0)).unwrap();
    assert_eq!((node.role(), node.term()), (Role::Follower, 5));
    let (index, term) = ready.persisted_up_to().unwrap();
    node.on_persisted(index, term);
    assert_eq!(
        node.role(),
        Role::Follower,
        "a late report does not make it leader of term 1"
    );
}

#[test]
fn follower_grants_at_most_one_vote_per_term() {
    let mut node = restored(1, &[], 0);
    node.step(vote_request(2, 1, 1, 0, 0)).unwrap();
    node.step(vote_request(3, 1, 1, 0, 0)).unwrap();
    let ready = node.ready();
    assert_eq!(vote_answers(&ready), vec![(2, 1, true), (3, 1, false)]);
}

#[test]
fn follower_grants_a_repeated_request_from_the_candidate_it_voted_for() {
    let mut node = restored(1, &[], 0);
    node.step(vote_request(2, 1, 1, 0, 0)).unwrap();
    node.step(vote_request(2, 1, 1, 0, 0)).unwrap();
    assert_eq!(vote_answers(&node.ready()), vec![(2, 1, true), (2, 1, true)]);
}

#[test]
fn vote_is_persisted_before_it_is_granted() {
    let mut node = restored(1, &[], 0);
    node.step(vote_request(2, 1, 4, 0, 0)).unwrap();
    let ready = node.ready();
    let hs = ready.hard_state.unwrap();
    assert_eq!((hs.term, hs.voted_for), (4, Some(2)));
    assert!(ready.messages.is_empty());
    assert_eq!(vote_answers(&ready), vec![(2, 4, true)]);
}

#[test]
fn candidate_with_stale_last_log_term_is_refused() {
    let mut node = restored(1, &[1, 2], 2);
    node.step(vote_request(2, 1, 3, 5, 1)).unwrap();
    assert_eq!(vote_answers(&node.ready()), vec![(2, 3, false)]);
}

#[test]
fn candidate_with_shorter_log_of_the_same_last_term_is_refused() {
    let mut node = restored(1, &[1, 2, 2], 2);
    node.step(vote_request(2, 1, 3, 2, 2)).unwrap();
    assert_eq!(vote_answers(&node.ready()), vec![(2, 3, false)]);
}

#[test]
fn refusing_a_stale_candidate_does_not_restart_the_election_timer() {
    let mut node = node_without_pre_vote();
    let timeout = {
        let mut probe = RaftCore::new(
            config(1).with_pre_vote(false),
            Membership::voters([1, 2, 3]).unwrap(),
        )
        .unwrap();
        ticks_until_campaign(&mut probe)
    };
    let restored_log = entries(&[1, 1]);
    let state = RestoredState {
        hard_state: hard(1),
        snapshot: None,
        entries: restored_log,
        applied: 0,
    };
    node = RaftCore::restore(node.config().clone(), node.membership().clone(), state).unwrap();
    // Stale candidates raise the term every few ticks; each is refused.
    for tick in 1..timeout {
        node.tick();
        if tick % 3 == 0 {
            node.step(vote_request(2, 1, node.term() + 1, 0, 0)).unwrap();
        }
    }
    assert_eq!(node.role(), Role::Follower);
    node.tick();
    assert_eq!(
        node.role(),
        Role::Candidate,
        "the up-to-date node still times out and campaigns"
    );
}

#[test]
fn candidate_with_at_least_as_up_to_date_log_is_granted() {
    let mut node = restored(1, &[1, 2, 2], 2);
    node.step(vote_request(2, 1, 3, 3, 2)).unwrap();
    node.step(vote_request(3, 1, 4, 1, 3)).unwrap();
    assert_eq!(vote_answers(&node.ready()), vec![(2, 3, true), (3, 4, true)]);
}

#[test]
fn candidate_with_votes_from_a_majority_becomes_leader() {
    let mut net = Net::new(5);
    net.isolated.extend([4, 5]);
    net.elect(1);
    assert_eq!(net.leaders(), vec![1]);
}

#[test]
fn candidate_without_a_majority_does_not_become_leader() {
    let mut net = Net::with_config(5, |id| config(id).with_pre_vote(false));
    net.isolated.extend([3, 4, 5]);
    net.tick(1, 25);
    net.settle();
    assert_eq!(net.node(1).role(), Role::Candidate);
    assert!(net.leaders().is_empty());
}

#[test]
fn candidate_steps_down_on_append_entries_from_a_leader_of_its_term() {
    let mut node = node_without_pre_vote();
    ticks_until_campaign(&mut node);
    assert_eq!(node.role(), Role::Candidate);
    node.step(append(2, 1, 1, (0, 0), vec![], 0)).unwrap();
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.leader(), Some(2));
    assert_eq!(node.term(), 1);
}

#[test]
fn split_vote_is_retried_in_a_higher_term() {
    let mut net = Net::with_config(3, |id| config(id).with_pre_vote(false));
    // Nodes 1 and 2 campaign in term 1 at once; node 3 is unreachable, so each gets one vote.
    net.isolated.insert(3);
    ticks_until_campaign(net.node(1));
    ticks_until_campaign(net.node(2));
    net.settle();
    assert_eq!(net.node(1).role(), Role::Candidate);
    assert_eq!(net.node(2).role(), Role::Candidate);
    assert!(net.leaders().is_empty());
    // The next timeout starts a new election in a higher term, which succeeds.
    net.isolated.clear();
    net.tick_all(40);
    assert_eq!(net.leaders().len(), 1);
    assert!(net.node(1).term() >= 2);
}

// ---- terms (§5.1) ------------------------------------------------------------------------------

#[test]
fn leader_steps_down_on_a_higher_term() {
    let mut net = Net::new(3);
    net.elect(1);
    let term = net.node(1).term();
    let higher = message(
        2,
        1,
        term + 1,
        MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 }),
    );
    net.node(1).step(higher).unwrap();
    assert_eq!(net.node(1).role(), Role::Follower);
    assert_eq!(net.node(1).term(), term + 1);
}

#[test]
fn message_with_a_stale_term_is_rejected_with_the_current_term() {
    let mut node = restored(1, &[1], 5);
    node.step(append(2, 1, 3, (1, 1), entries(&[1, 3])[1..].to_vec(), 0))
        .unwrap();
    let ready = node.ready();
    assert!(
        ready.entries.is_empty(),
        "a stale leader's entries must not be appended"
    );
    // The answer (a heartbeat answer in the current term) promises nothing durable.
    let answer = &ready.messages[0];
    assert_eq!((answer.to, answer.term), (2, 5));
}

#[test]
fn deposed_leader_steps_down_when_answered_in_a_higher_term() {
    // Without check-quorum, an isolated leader keeps believing it leads.
    let mut net = Net::with_config(3, |id| config(id).with_check_quorum(false));
    net.elect(1);
    net.isolated.insert(1);
    net.tick_all(60);
    assert_eq!(net.leaders().len(), 2, "the old leader does not know yet");
    let new_leader = *net.leaders().iter().find(|id| **id != 1).unwrap();
    net.isolated.clear();
    net.tick_all(3);
    assert_eq!(net.leaders(), vec![new_leader]);
}

// ---- pre-vote (thesis §9.6) --------------------------------------------------------------------

#[test]
fn pre_vote_does_not_raise_the_term_or_record_a_vote() {
    let mut candidate = restored(1, &[1], 1);
    ticks_until_campaign(&mut candidate);
    assert_eq!(candidate.role(), Role::PreCandidate);
    assert_eq!(candidate.term(), 1);
    let ready = candidate.ready();
    assert!(ready.hard_state.is_none(), "a pre-vote changes nothing durable");
    let request = &ready.messages_after_persist[0];
    assert_eq!(
        request.term, 2,
        "the pre-vote names the term it would campaign in"
    );

    let mut voter = restored(2, &[1], 1);
    voter.step(request.clone()).unwrap();
    assert_eq!(voter.term(), 1);
    assert_eq!(voter.hard_state().voted_for, None);
    assert_eq!(vote_answers(&voter.ready()), vec![(1, 2, true)]);
}

#[test]
fn pre_candidate_with_a_quorum_of_pre_votes_starts_a_real_election() {
    let mut node = restored(1, &[1], 1);
    ticks_until_campaign(&mut node);
    node.ready();
    let grant = MessageBody::RequestVoteResponse(RequestVoteResponse {
        pre_vote: true,
        granted: true,
    });
    node.step(message(2, 1, 2, grant)).unwrap();
    assert_eq!(node.role(), Role::Candidate);
    assert_eq!(node.term(), 2);
}

#[test]
fn pre_vote_is_refused_while_a_leader_is_heard() {
    let mut node = restored(1, &[1], 1);
    hear_leader(&mut node, 2, 1);
    node.ready();
    node.step(pre_vote_request(3, 1, 2, 1, 1)).unwrap();
    assert_eq!(vote_answers(&node.ready()), vec![(3, 1, false)]);
}

#[test]
fn pre_vote_is_refused_for_a_stale_log() {
    let mut node = restored(1, &[1, 2], 2);
    node.step(pre_vote_request(3, 1, 3, 1, 1)).unwrap();
    assert_eq!(vote_answers(&node.ready()), vec![(3, 2, false)]);
}

#[test]
fn partitioned_node_with_pre_vote_does_not_disrupt_the_leader_when_it_returns() {
    let mut net = Net::new(3);
    net.elect(1);
    let term = net.node(1).term();
    net.isolated.insert(3);
    net.tick_all(200);
    assert_eq!(
        net.node(3).term(),
        term,
        "pre-vote keeps the isolated node's term"
    );
    net.isolated.clear();
    net.tick_all(50);
    assert_eq!(net.leaders(), vec![1]);
    assert_eq!(net.node(1).term(), term);
}

#[test]
fn without_pre_vote_a_returning_node_forces_a_new_term() {
    let mut net = Net::with_config(3, |id| config(id).with_pre_vote(false).with_check_quorum(false));
    net.elect(1);
    let term = net.node(1).term();
    net.isolated.insert(3);
    net.tick_all(100);
    assert!(net.node(3).term() > term);
    net.isolated.clear();
    net.tick_all(50);
    assert!(net.node(1).term() > term, "the old term was disrupted");
}

// ---- check-quorum (thesis §6.2) ----------------------------------------------------------------

#[test]
fn leader_steps_down_without_contact_from_a_quorum() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.extend([2, 3]);
    net.tick(1, 25);
    assert_eq!(net.node(1).role(), Role::Follower);
}

#[test]
fn leader_in_contact_with_a_quorum_stays_leader() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.insert(3);
    for _ in 0..100 {
        net.tick(1, 1);
        net.settle();
    }
    assert_eq!(net.node(1).role(), Role::Leader);
}

#[test]
fn heartbeat_answer_leaves_before_the_commit_it_moved_is_durable() {
    let mut node = restored(2, &[1, 1], 1);
    node.tick();
    let heartbeat = MessageBody::Heartbeat(Heartbeat { commit: 2, round: 7 });
    node.step(message(1, 2, 1, heartbeat)).unwrap();
    let ready = node.ready();
    assert_eq!(
        ready.hard_state.map(|h| h.commit),
        Some(2),
        "the commit index moved and a tick has passed, so there is a write"
    );
    let answers: Vec<(NodeId, u64)> = ready
        .messages
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::HeartbeatResponse(r) => Some((m.to, r.round)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![(1, 7)],
        "the answer promises nothing durable: {ready:?}"
    );
    assert!(
        ready.messages_after_persist.is_empty(),
        "nothing waits for the write: {ready:?}"
    );
}

#[test]
fn commit_index_moving_alone_waits_for_a_tick_or_the_next_write() {
    let mut node = restored(2, &[1, 1, 1], 1);
    node.tick();
    let heartbeat = |commit, round| message(1, 2, 1, MessageBody::Heartbeat(Heartbeat { commit, round }));
    node.step(heartbeat(1, 1)).unwrap();
    assert_eq!(
        node.ready().hard_state.map(|h| h.commit),
        Some(1),
        "the first commit after a tick is written at once"
    );
    node.step(heartbeat(2, 2)).unwrap();
    let ready = node.ready();
    assert_eq!(
        ready.hard_state, None,
        "a second commit-only change within the tick waits: {ready:?}"
    );
    assert_eq!(
        ready
            .committed_entries
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        vec![2],
        "the entry is applied all the same: it is durable, only the hint is not"
    );
    node.step(append(1, 2, 1, (3, 1), entries(&[1, 1, 1, 1])[3..].to_vec(), 2))
        .unwrap();
    let ready = node.ready();
    assert_eq!(
        ready.hard_state.map(|h| h.commit),
        Some(2),
        "the held commit index rides on the entries' write"
    );
    node.step(heartbeat(3, 3)).unwrap();
    assert_eq!(node.ready().hard_state, None);
    node.tick();
    assert_eq!(
        node.ready().hard_state.map(|h| h.commit),
        Some(3),
        "an idle node writes the held commit index after a tick"
    );
    assert_eq!(node.ready().hard_state, None, "and only once");
}

#[test]
fn new_term_is_written_at_once_whatever_the_commit_index() {
    let mut node = restored(2, &[1, 1], 1);
    node.step(message(
        1,
        2,
        1,
        MessageBody::Heartbeat(Heartbeat { commit: 1, round: 1 }),
    ))
    .unwrap();
    assert_eq!(
        node.ready().hard_state,
        None,
        "no tick yet: the commit index waits"
    );
    node.step(message(
        3,
        2,
        2,
        MessageBody::Heartbeat(Heartbeat { commit: 2, round: 1 }),
    ))
    .unwrap();
    let hs = node.ready().hard_state.expect("a new term is written at once");
    assert_eq!((hs.term, hs.commit), (2, 2), "with the commit index held so far");
}

#[test]
fn restart_takes_what_was_applied_as_committed_when_the_commit_index_was_not_written() {
    // The commit index on disk lags (it was held back); the state machine applied further.
    let state = RestoredState {
        hard_state: hard(1),
        snapshot: None,
        entries: entries(&[1, 1, 1]),
        applied: 3,
    };
    let node = RaftCore::restore(config(2), Membership::voters([1, 2, 3]).unwrap(), state).unwrap();
    assert_eq!(node.status().commit_index, 3);
    assert_eq!(node.status().applied_index, 3);
}

#[test]
fn entries_acknowledgement_still_waits_for_the_write() {
    let mut node = restored(2, &[1], 1);
    node.step(append(1, 2, 1, (1, 1), entries(&[1, 1])[1..].to_vec(), 1))
        .unwrap();
    let ready = node.ready();
    assert!(
        ready
            .messages
            .iter()
            .all(|m| !matches!(m.body, MessageBody::AppendEntriesResponse(_))),
        "an acknowledgement of entries never leaves before they are durable: {ready:?}"
    );
    assert_eq!(
        append_answers(&ready),
        vec![AppendEntriesResponse::Success { match_index: 2 }]
    );
}

#[test]
fn leader_keeps_its_quorum_and_serves_reads_while_the_followers_disks_stall() {
    let mut net = Net::new(3);
    net.elect(1);
    net.node(1).propose("before".into()).unwrap();
    net.settle();
    let committed = net.node(1).status().commit_index;
    net.stalled.extend([2, 3]);
    net.node(1).propose("during the stall".into()).unwrap();
    net.settle();
    // Three election timeouts (T = 10) with both followers' writes stuck: check-quorum would
    // depose the leader if their heartbeat answers waited for the disk.
    for _ in 0..30 {
        net.tick(1, 1);
        net.settle();
    }
    assert_eq!(net.leaders(), vec![1], "the heartbeat answers kept the quorum");
    assert_eq!(
        net.node(1).status().commit_index,
        committed,
        "nothing commits while no follower has made the write durable"
    );
    net.node(1).read_index(1).unwrap();
    for _ in 0..2 {
        net.tick(1, 1);
        net.settle();
    }
    let reads = net.read_states(1);
    assert_eq!(reads.len(), 1, "a quorum confirmed the leader for the read");
    assert_eq!(reads[0].index, committed, "the read sees only what committed");
    net.unstall(2);
    net.unstall(3);
    net.settle();
    assert_eq!(net.node(1).status().commit_index, committed + 1);
}

#[test]
fn follower_ignores_vote_requests_while_its_leader_lease_holds() {
    let mut node = restored(1, &[1], 1);
    hear_leader(&mut node, 2, 1);
    node.ready();
    node.step(vote_request(3, 1, 2, 5, 1)).unwrap();
    assert_eq!(node.term(), 1, "the lease keeps the term");
    assert!(vote_answers(&node.ready()).is_empty());
}

// ---- replication (§5.3) ------------------------------------------------------------------------

#[test]
fn new_leader_appends_a_blank_entry_of_its_term() {
    let mut net = Net::new(3);
    net.elect(1);
    let term = net.node(1).term();
    let entry = net.node(1).entry(1).unwrap().clone();
    assert_eq!(entry, Entry::blank(term, 1));
}

#[test]
fn follower_rejects_append_when_prev_log_term_mismatches() {
    let mut node = restored(1, &[1, 1, 2], 3);
    node.step(append(2, 1, 3, (3, 3), entries(&[1, 1, 3, 3])[3..].to_vec(), 0))
        .unwrap();
    let ready = node.ready();
    assert!(ready.entries.is_empty());
    assert_eq!(
        append_answers(&ready),
        vec![AppendEntriesResponse::Conflict {
            rejected_index: 3,
            conflict_index: 3,
            conflict_term: Some(2)
        }]
    );
}

#[test]
fn follower_rejects_append_when_prev_log_index_is_beyond_its_log() {
    let mut node = restored(1, &[1], 2);
    node.step(append(2, 1, 2, (5, 2), vec![], 0)).unwrap();
    assert_eq!(
        append_answers(&node.ready()),
        vec![AppendEntriesResponse::Conflict {
            rejected_index: 5,
            conflict_index: 2,
            conflict_term: None
        }]
    );
}

#[test]
fn follower_truncates_a_conflicting_suffix() {
    let mut node = restored(1, &[1, 1, 2, 2], 3);
    let leader_log = entries(&[1, 1, 3]);
    node.step(append(2, 1, 3, (2, 1), leader_log[2..].to_vec(), 0))
        .unwrap();
    let ready = node.ready();
    assert_eq!(
        ready.entries,
        leader_log[2..].to_vec(),
        "storage replaces from index 3"
    );
    assert!(node.entry(4).is_none(), "the conflicting suffix is gone");
    assert_eq!(node.entry(3).unwrap().term, 3);
    assert_eq!(
        append_answers(&ready),
        vec![AppendEntriesResponse::Success { match_index: 3 }]
    );
}

#[test]
fn follower_keeps_its_log_when_an_append_is_stale_or_duplicated() {
    let mut node = restored(1, &[1, 1, 1, 1], 1);
    node.step(append(2, 1, 1, (1, 1), entries(&[1, 1])[1..].to_vec(), 0))
        .unwrap();
    let ready = node.ready();
    assert!(ready.entries.is_empty(), "nothing new to write");
    assert_eq!(
        node.entry(4).unwrap().term,
        1,
        "later entries survive a stale append"
    );
    assert_eq!(
        append_answers(&ready),
        vec![AppendEntriesResponse::Success { match_index: 2 }]
    );
}

#[test]
fn follower_acknowledges_entries_only_after_they_are_persisted() {
    let mut node = restored(1, &[1], 1);
    node.step(append(2, 1, 1, (1, 1), entries(&[1, 1])[1..].to_vec(), 0))
        .unwrap();
    let ready = node.ready();
    assert_eq!(ready.entries.len(), 1);
    assert!(
        ready.messages.is_empty(),
        "no acknowledgement may leave before the write"
    );
    assert_eq!(append_answers(&ready).len(), 1);
}

#[test]
fn leader_backs_up_a_whole_term_per_rejection() {
    // Figure 7 of the Raft paper, follower (f): the leader needs one round trip per term.
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let follower_log = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3];
    let mut net = Net::with_logs(&[
        (1, entries(&leader_log), hard(6)),
        (2, entries(&follower_log), hard(3)),
        (3, entries(&leader_log), hard(6)),
    ]);
    net.elect(1);
    net.tick_all(2);
    assert_eq!(net.log_terms(2)[..10], leader_log, "the follower is repaired");
    let rejections = count_rejections(&leader_log, &follower_log);
    assert!(
        rejections <= 3,
        "{rejections} rejections; expected at most one per conflicting term"
    );
}

/// Replays the repair of a follower step by step and counts the rejections it takes.
fn count_rejections(leader_log: &[u64], follower_log: &[u64]) -> usize {
    let mut net = Net::with_logs(&[
        (1, entries(leader_log), hard(6)),
        (2, entries(follower_log), hard(3)),
        (3, entries(leader_log), hard(6)),
    ]);
    net.elect(1);
    let mut rejections = 0;
    net.tick(1, 2);
    net.process_all();
    while let Some(m) = net.queue.pop_front() {
        if matches!(
            m.body,
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Conflict { .. })
        ) {
            rejections += 1;
        }
        let to = m.to;
        net.node(to).step(m).unwrap();
        net.process(to);
    }
    rejections
}

#[test]
fn leader_never_overwrites_or_deletes_its_own_entries() {
    let leader_log = [1, 1, 2, 2];
    let mut net = Net::with_logs(&[
        (1, entries(&leader_log), hard(2)),
        (2, entries(&[1, 1, 1, 1, 1, 1]), hard(1)),
        (3, entries(&[1]), hard(1)),
    ]);
    let before: Vec<Entry> = (1..=4).map(|i| net.node(1).entry(i).unwrap().clone()).collect();
    net.elect(1);
    net.tick_all(5);
    let after: Vec<Entry> = (1..=4).map(|i| net.node(1).entry(i).unwrap().clone()).collect();
    assert_eq!(before, after);
    assert_eq!(net.log_terms(2), net.log_terms(1));
}

/// Three nodes, node 1 leading, with room for three one-entry AppendEntries in flight.
fn pipelining_net() -> Net {
    let mut net = Net::with_config(3, |id| {
        let mut c = config(id);
        c.max_inflight_messages = 3;
        c.max_entries_per_message = 1;
        c
    });
    net.elect(1);
    net.tick_all(1);
    net
}

#[test]
fn leader_pipelines_up_to_max_inflight_messages() {
    let mut net = pipelining_net();
    assert_eq!(
        net.node(1).follower_progress(2).unwrap().state,
        ReplicationState::Replicate
    );
    for i in 0..10 {
        net.node(1).propose(format!("cmd{i}").into()).unwrap();
    }
    let ready = net.node(1).ready();
    assert_eq!(appends_to(&ready, 2).len(), 3, "the window allows three messages");
    assert_eq!(net.node(1).follower_progress(2).unwrap().inflight_messages, 3);
}

/// Three nodes, node 1 leading and replicating to both followers with the default window (32),
/// at most `max_entries` entries a message, Nagle's rule on or off.
fn nagle_net(hold_partial_appends: bool, max_entries: usize) -> Net {
    let mut net = Net::with_config(3, |id| {
        let mut c = config(id);
        c.max_entries_per_message = max_entries;
        c.hold_partial_appends = hold_partial_appends;
        c
    });
    net.elect(1);
    net.tick_all(1);
    net.settle();
    net
}

/// Steps every queued message addressed to `to` into it (the rest stay queued), without taking
/// its ready.
fn step_queued_into(net: &mut Net, to: NodeId) {
    let (mine, rest): (Vec<Message>, Vec<Message>) = net.queue.drain(..).partition(|m| m.to == to);
    net.queue.extend(rest);
    for message in mine {
        net.node(to).step(message).unwrap();
    }
}

fn appended_indexes(append: &AppendEntries) -> Vec<Index> {
    append.entries.iter().map(|e| e.index).collect()
}

#[test]
fn a_partial_append_waits_while_another_is_in_flight() {
    let mut net = nagle_net(true, 256);
    assert_eq!(
        net.node(1).follower_progress(2).unwrap().state,
        ReplicationState::Replicate
    );
    let first = net.node(1).propose("a".into()).unwrap();
    let ready = net.process(1);
    assert_eq!(
        appends_to(&ready, 2).len(),
        1,
        "nothing in flight: it goes at once"
    );
    let second = net.node(1).propose("b".into()).unwrap();
    let third = net.node(1).propose("c".into()).unwrap();
    let ready = net.process(1);
    assert!(
        appends_to(&ready, 2).is_empty() && appends_to(&ready, 3).is_empty(),
        "b and c reach the log's end and wait for the answer to a"
    );
    assert_eq!(net.node(1).follower_progress(2).unwrap().inflight_messages, 1);

    // The followers take a and answer; the answers free the window, and b and c leave together.
    for follower in [2, 3] {
        step_queued_into(&mut net, follower);
        net.process(follower);
    }
    step_queued_into(&mut net, 1);
    let ready = net.node(1).ready();
    for follower in [2, 3] {
        let appends = appends_to(&ready, follower);
        assert_eq!(appends.len(), 1, "one message to {follower}");
        assert_eq!(appended_indexes(&appends[0]), vec![second, third]);
        assert_eq!(appends[0].prev_log_index, first);
    }
}

#[test]
fn a_full_append_is_pipelined_while_another_is_in_flight() {
    let mut net = nagle_net(true, 2);
    let first = net.node(1).propose("a".into()).unwrap();
    net.process(1);
    let proposed: Vec<Index> = ["b", "c", "d", "e", "f"]
        .into_iter()
        .map(|command| net.node(1).propose(command.into()).unwrap())
        .collect();
    let ready = net.process(1);
    let appends = appends_to(&ready, 2);
    let sent: Vec<Vec<Index>> = appends.iter().map(appended_indexes).collect();
    assert_eq!(
        sent,
        vec![proposed[0..2].to_vec(), proposed[2..4].to_vec()],
        "two full messages go behind the one in flight; f, which would reach the log's end, waits"
    );
    assert_eq!(appends[0].prev_log_index, first);
    assert_eq!(net.node(1).follower_progress(2).unwrap().inflight_messages, 3);
    net.settle();
    let last = *proposed.last().unwrap();
    assert_eq!(net.node(1).follower_progress(2).unwrap().match_index, last);
    assert_eq!(
        net.node(1).status().commit_index,
        last,
        "f follows once the window drains"
    );
}

#[test]
fn without_hold_partial_appends_every_round_of_proposals_goes_at_once() {
    let mut net = nagle_net(false, 256);
    net.node(1).propose("a".into()).unwrap();
    net.process(1);
    let second = net.node(1).propose("b".into()).unwrap();
    let ready = net.process(1);
    let appends = appends_to(&ready, 2);
    assert_eq!(appends.len(), 1, "b is pipelined behind a");
    assert_eq!(appended_indexes(&appends[0]), vec![second]);
    assert_eq!(net.node(1).follower_progress(2).unwrap().inflight_messages, 2);
}

#[test]
fn a_held_append_is_sent_after_a_lost_one_is_found_missing() {
    // The message in flight is lost: the follower's answer to the next heartbeat shows it
    // behind, the leader probes the gap, and everything held goes out.
    let mut net = nagle_net(true, 256);
    net.node(1).propose("a".into()).unwrap();
    net.process(1);
    net.queue.retain(|m| m.to != 2);
    let held = net.node(1).propose("b".into()).unwrap();
    let ready = net.process(1);
    assert!(appends_to(&ready, 2).is_empty(), "b waits behind the lost a");
    for _ in 0..6 {
        net.tick(1, 1);
        net.settle();
    }
    let progress = net.node(1).follower_progress(2).unwrap();
    assert_eq!(progress.match_index, held, "node 2 has a and b");
    assert_eq!(net.node(1).status().commit_index, held);
}

#[test]
fn leader_counts_inflight_bytes_until_acknowledged() {
    let mut net = pipelining_net();
    let matched = net.node(1).follower_progress(2).unwrap().match_index;
    for i in 0..10 {
        net.node(1).propose(format!("cmd{i}").into()).unwrap();
    }
    // The harness takes the leader's output: it persists the entries and queues the messages.
    net.process(1);
    let sent: usize = (matched + 1..=matched + 3)
        .map(|i| net.node(1).entry(i).unwrap().size_bytes())
        .sum();
    let progress = net.node(1).follower_progress(2).unwrap();
    assert_eq!(progress.inflight_messages, 3);
    assert_eq!(
        progress.inflight_bytes, sent,
        "the bytes of the three messages in flight"
    );
    net.settle();
    let progress = net.node(1).follower_progress(2).unwrap();
    assert_eq!(progress.match_index, net.node(1).status().last_log_index);
    assert_eq!(progress.inflight_messages, 0);
    assert_eq!(progress.inflight_bytes, 0, "acknowledged bytes leave the window");
}

#[test]
fn probing_follower_receives_one_append_at_a_time() {
    let mut net = Net::new(3);
    ticks_until_campaign(net.node(1));
    net.isolated.insert(3);
    net.settle();
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(
        net.node(1).follower_progress(3).unwrap().state,
        ReplicationState::Probe
    );
    for i in 0..5 {
        net.node(1).propose(format!("cmd{i}").into()).unwrap();
        let ready = net.node(1).ready();
        assert!(
            appends_to(&ready, 3).is_empty(),
            "the unanswered probe holds further messages"
        );
    }
}

#[test]
fn proposals_are_batched_into_one_append_entries() {
    let mut net = Net::new(3);
    net.elect(1);
    net.tick_all(1);
    for i in 0..50 {
        net.node(1).propose(format!("cmd{i}").into()).unwrap();
    }
    let ready = net.node(1).ready();
    let appends = appends_to(&ready, 2);
    assert_eq!(appends.len(), 1);
    assert_eq!(appends[0].entries.len(), 50);
}

#[test]
fn append_entries_respects_max_bytes_per_message() {
    let mut net = Net::with_config(3, |id| {
        let mut c = config(id);
        c.max_bytes_per_message = 1000;
        // Every message in the one ready below, the last (short of full) too.
        c.hold_partial_appends = false;
        c
    });
    net.elect(1);
    net.tick_all(1);
    for _ in 0..10 {
        net.node(1).propose(vec![7u8; 300].into()).unwrap();
    }
    let ready = net.node(1).ready();
    let appends = appends_to(&ready, 2);
    assert!(appends.len() >= 4);
    for a in &appends {
        let bytes: usize = a.entries.iter().map(|e| e.size_bytes()).sum();
        assert!(bytes <= 1000, "message of {bytes} bytes");
    }
}

#[test]
fn lost_append_entries_in_a_pipeline_is_sent_again() {
    let mut net = Net::new(3);
    net.elect(1);
    net.tick_all(1);
    net.node(1).propose("lost".into()).unwrap();
    net.process(1);
    // Drop what was sent to node 2.
    net.queue.retain(|m| m.to != 2);
    net.settle();
    assert!(net.node(2).entry(2).is_none());
    net.tick_all(10);
    let sent = net.node(1).entry(2).unwrap().clone();
    assert_eq!(net.node(2).entry(2), Some(&sent));
}

// ---- commitment (§5.3, §5.4.2) -----------------------------------------------------------------

#[test]
fn entry_is_committed_once_stored_on_a_majority() {
    let mut net = Net::new(5);
    net.elect(1);
    net.isolated.extend([4, 5]);
    let index = net.node(1).propose("x".into()).unwrap();
    net.settle();
    assert_eq!(net.node(1).status().commit_index, index);

    net.isolated.insert(3);
    let index = net.node(1).propose("y".into()).unwrap();
    net.settle();
    assert!(
        net.node(1).status().commit_index < index,
        "two of five is no majority"
    );
}

#[test]
fn leader_only_commits_entries_of_its_own_term_by_counting_replicas() {
    // Figure 8: entry 2 (term 2) is on the leader only; node 2 and 3 hold entry 1.
    let mut net = Net::with_logs(&[
        (1, entries(&[1, 2]), hard(2)),
        (2, entries(&[1]), hard(2)),
        (3, entries(&[1]), hard(2)),
    ]);
    for id in 1..=3 {
        let mut c = config(id);
        c.max_entries_per_message = 1;
        let restored = RestoredState {
            hard_state: net.stored[&id].0,
            snapshot: None,
            entries: net.stored[&id].1.clone(),
            applied: 0,
        };
        let node = RaftCore::restore(c, Membership::voters([1, 2, 3]).unwrap(), restored).unwrap();
        net.nodes.insert(id, node);
    }
    ticks_until_campaign(net.node(1));
    net.isolated.insert(3);
    // Deliver one message at a time until node 2 stores entry 2 (of term 2).
    net.process_all();
    while net.node(1).follower_progress(2).map_or(0, |p| p.match_index) < 2 {
        let m = net
            .queue
            .pop_front()
            .expect("messages until entry 2 is replicated");
        if net.isolated.contains(&m.to) || net.isolated.contains(&m.from) {
            continue;
        }
        let to = m.to;
        net.node(to).step(m).unwrap();
        net.process(to);
    }
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(
        net.node(1).status().commit_index,
        0,
        "entry 2 of an earlier term is on a majority but must not be committed by counting"
    );
    net.settle();
    assert_eq!(
        net.node(1).status().commit_index,
        3,
        "the blank entry of the leader's term commits both"
    );
}

#[test]
fn leader_counts_its_own_entry_only_after_it_is_durable() {
    let mut net = Net::new(3);
    net.elect(1);
    net.isolated.insert(3);
    let index = net.node(1).propose("x".into()).unwrap();
    // Send the leader's messages, but do not persist its own write.
    let ready = net.node(1).ready();
    net.enqueue(&ready);
    while let Some(m) = net.queue.pop_front() {
        if m.to == 3 || m.from == 3 {
            continue;
        }
        let to = m.to;
        net.node(to).step(m).unwrap();
        if to == 1 {
            let r = net.node(1).ready();
            net.enqueue(&r);
        } else {
            net.process(to);
        }
    }
    assert_eq!(net.node(1).follower_progress(2).unwrap().match_index, index);
    assert!(
        net.node(1).status().commit_index < index,
        "the leader's own copy is not durable yet"
    );
    let term = net.node(1).term();
    net.node(1).on_persisted(index, term);
    assert_eq!(net.node(1).status().commit_index, index);
}

#[test]
fn follower_learns_the_commit_index_from_the_leader() {
    let mut net = Net::new(3);
    net.elect(1);
    let index = net.node(1).propose("x".into()).unwrap();
    net.settle();
    net.tick_all(3);
    for id in 1..=3 {
        assert_eq!(net.node(id).status().commit_index, index, "node {id}");
    }
}

#[test]
fn follower_commit_index_never_exceeds_its_last_matching_entry() {
    let mut node = restored(1, &[1], 1);
    node.step(append(2, 1, 1, (1, 1), entries(&[1, 1])[1..].to_vec(), 10))
        .unwrap();
    assert_eq!(node.status().commit_index, 2);
    node.step(message(
        2,
        1,
        1,
        MessageBody::Heartbeat(Heartbeat { commit: 50, round: 0 }),
    ))
    .unwrap();
    assert_eq!(node.status().commit_index, 2);
}

#[test]
fn follower_applies_committed_entries_only_once_they_are_durable() {
    let mut node = restored(1, &[1], 1);
    node.step(append(2, 1, 1, (1, 1), entries(&[1, 1])[1..].to_vec(), 2))
        .unwrap();
    let ready = node.ready();
    assert_eq!(ready.committed_entries.len(), 1, "only entry 1 was durable");
    node.on_persisted(2, 1);
    assert_eq!(node.ready().committed_entries.len(), 1);
}

#[test]
fn committed_entries_are_applied_in_order_exactly_once_on_every_node() {
    let mut net = Net::new(3);
    net.elect(1);
    for round in 0..20 {
        for i in 0..5 {
            net.node(1).propose(format!("{round}-{i}").into()).unwrap();
        }
        net.tick_all(1);
    }
    net.tick_all(3);
    let expected: Vec<u64> = (1..=101).collect();
    for id in 1..=3 {
        assert_eq!(net.applied_indexes(id), expected, "node {id}");
        assert_eq!(net.applied[&id], net.applied[&1]);
    }
}

// ---- client interaction and input checks ------------------------------------------------------

#[test]
fn follower_refuses_a_proposal_and_names_the_leader() {
    let mut net = Net::new(3);
    net.elect(1);
    assert_eq!(
        net.node(2).propose("x".into()),
        Err(ProposeError::NotLeader { leader_hint: Some(1) })
    );
}

#[test]
fn oversized_proposal_is_refused() {
    let mut net = Net::new(1);
    net.elect(1);
    let max = net.node(1).config().max_entry_bytes;
    let err = net.node(1).propose(vec![0u8; max + 1].into()).unwrap_err();
    assert_eq!(err, ProposeError::EntryTooLarge { size: max + 1, max });
    assert_eq!(net.node(1).status().last_log_index, 1);
}

#[test]
fn message_for_another_node_is_refused() {
    let mut node = restored(1, &[1], 1);
    let wrong_to = vote_request(2, 9, 2, 1, 1);
    assert_eq!(
        node.step(wrong_to),
        Err(StepError::WrongRecipient { to: 9, local: 1 })
    );
    assert_eq!(node.term(), 1);
}

#[test]
fn leader_outside_the_known_configuration_is_followed() {
    // A lagging node must accept a leader added by a configuration it has not seen yet (Raft
    // thesis §4.1); authenticating peers is the transport's job.
    let mut node = restored(1, &[1], 1);
    node.step(append(9, 1, 2, (1, 1), entries(&[1, 2])[1..].to_vec(), 0))
        .unwrap();
    assert_eq!(node.leader(), Some(9));
    assert_eq!(node.term(), 2);
    assert_eq!(
        append_answers(&node.ready()),
        vec![AppendEntriesResponse::Success { match_index: 2 }]
    );
}

#[test]
fn config_requires_heartbeat_below_election_timeout() {
    let err = Config::new(1)
        .with_election_timeout_ticks(5)
        .with_heartbeat_interval_ticks(5)
        .validated()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::HeartbeatNotBelowElectionTimeout {
            heartbeat: 5,
            election: 5
        }
    );
}

#[test]
fn config_rejects_zero_limits_and_node_id() {
    let mut c = Config::new(1);
    c.max_inflight_messages = 0;
    assert_eq!(
        c.validate(),
        Err(ConfigError::ZeroLimit {
            name: "max_inflight_messages"
        })
    );
    assert_eq!(Config::new(0).validate(), Err(ConfigError::ZeroNodeId));
    let membership = Membership::voters([1]).unwrap();
    assert!(RaftCore::new(Config::new(1).with_election_timeout_ticks(0), membership).is_err());
}

#[test]
fn restore_refuses_a_log_with_a_gap() {
    let mut log = entries(&[1, 1, 1]);
    log.remove(1);
    let state = RestoredState {
        hard_state: hard(1),
        snapshot: None,
        entries: log,
        applied: 0,
    };
    let err = RaftCore::restore(config(1), Membership::voters([1]).unwrap(), state).unwrap_err();
    assert!(matches!(
        err,
        raft_core::InitError::LogNotContiguous {
            expected: 2,
            found: 3
        }
    ));
}

#[test]
fn restored_node_keeps_its_term_vote_and_log() {
    let state = RestoredState {
        hard_state: raft_core::HardState {
            term: 7,
            voted_for: Some(3),
            commit: 2,
        },
        snapshot: None,
        entries: entries(&[1, 5, 7]),
        applied: 0,
    };
    let mut node = RaftCore::restore(config(1), Membership::voters([1, 2, 3]).unwrap(), state).unwrap();
    assert_eq!(node.term(), 7);
    assert_eq!(node.hard_state().voted_for, Some(3));
    assert_eq!(node.status().last_log_index, 3);
    // It will not vote for anyone else in term 7, and applies what was committed.
    node.step(vote_request(2, 1, 7, 3, 7)).unwrap();
    let ready = node.ready();
    assert_eq!(vote_answers(&ready), vec![(2, 7, false)]);
    assert_eq!(ready.committed_entries.len(), 2);
}

#[test]
fn same_inputs_give_same_outputs() {
    fn run() -> Vec<String> {
        let mut net = Net::new(5);
        let mut trace = Vec::new();
        for step in 0..300u64 {
            for id in 1..=5 {
                net.node(id).tick();
                if step % 7 == id && net.node(id).role() == Role::Leader {
                    net.node(id).propose(format!("s{step}").into()).unwrap();
                }
                let ready = net.process(id);
                trace.push(format!("{ready:?}"));
            }
            if step == 100 {
                net.isolated.insert(1);
            }
            if step == 200 {
                net.isolated.clear();
            }
            net.settle();
        }
        trace
    }
    assert_eq!(run(), run());
}

/// Three nodes, node 1 elected, each admitting at most 10,000 bytes of uncommitted entries.
fn leader_with_a_byte_budget_of_10_000() -> Net {
    let mut net = Net::with_config(3, |id| {
        let mut c = config(id);
        c.max_uncommitted_bytes = 10_000;
        c
    });
    net.elect(1);
    net.settle();
    net
}

/// A 2,000-byte command: four of them (with their overhead) fit in a 10,000-byte budget.
fn command_of_2_000_bytes(i: u32) -> bytes::Bytes {
    bytes::Bytes::from(vec![i as u8; 2_000])
}

#[test]
fn the_uncommitted_byte_budget_counts_each_proposal_once_across_commits() {
    let mut net = leader_with_a_byte_budget_of_10_000();
    let entry = command_of_2_000_bytes;
    // Two rounds that commit: their bytes leave the budget.
    for round in 0..2 {
        net.node(1).propose(entry(round)).expect("within the budget");
        net.node(1).propose(entry(round)).expect("within the budget");
        net.settle();
        let status = net.node(1).status();
        assert_eq!(status.commit_index, status.last_log_index);
    }
    // Then, cut off, exactly four more fit, whatever was proposed and committed before.
    net.isolated.extend([2, 3]);
    let mut accepted = 0;
    while net.node(1).propose(entry(accepted)).is_ok() {
        accepted += 1;
        assert!(accepted < 100, "the byte budget never refused");
    }
    assert_eq!(accepted, 4);
}

#[test]
fn leader_refuses_proposals_while_uncommitted_entries_hold_max_uncommitted_bytes() {
    let mut net = leader_with_a_byte_budget_of_10_000();
    net.isolated.extend([2, 3]);
    let entry = command_of_2_000_bytes;
    let mut accepted = 0;
    let refusal = loop {
        match net.node(1).propose(entry(accepted)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the byte budget never refused");
    };
    assert_eq!(
        accepted, 4,
        "four entries of 2,000 bytes (plus overhead) fit in 10,000"
    );
    assert!(
        matches!(refusal, ProposeError::TooManyUncommittedBytes { max: 10_000, .. }),
        "{refusal:?}"
    );
    // Once they commit, the budget is free again.
    net.isolated.clear();
    net.tick_all(2);
    net.settle();
    let leader = net.node(1);
    let status = leader.status();
    assert_eq!(status.commit_index, status.last_log_index);
    for i in 0..4 {
        leader
            .propose(entry(i))
            .expect("committed entries free the budget");
    }
    // One entry is always admitted, however large, so that a large command is not refused forever.
    net.settle();
    net.node(1)
        .propose(bytes::Bytes::from(vec![0u8; 50_000]))
        .expect("one large entry alone fits");
    assert!(net.node(1).propose(entry(0)).is_err());
}

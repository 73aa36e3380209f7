//! Messages no honest peer sends are refused at the edge with a typed error, and change nothing:
//! not the term, not the vote, not the log, and nothing is sent in answer (issue 14, findings 1
//! and 7).
#![allow(clippy::unwrap_used)]

mod support;

use raft_core::{
    AppendEntries, AppendEntriesResponse, Entry, HardState, InitError, InstallSnapshot, Membership, Message,
    MessageBody, RaftCore, RequestVote, RestoredState, SnapshotMeta, StepError, MAX_INDEX, MAX_TERM,
};
use support::{config, entries, hard, Net};

fn follower() -> RaftCore {
    let state = RestoredState {
        hard_state: hard(2),
        snapshot: None,
        entries: entries(&[1, 2]),
        applied: 0,
    };
    RaftCore::restore(config(1), Membership::voters([1, 2, 3]).unwrap(), state).unwrap()
}

fn append(term: u64, prev: (u64, u64), entries: Vec<Entry>) -> Message {
    Message {
        from: 2,
        to: 1,
        term,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries: entries.into(),
            leader_commit: 0,
        }),
    }
}

/// Steps `message` into a follower in term 2 with log [1/t1, 2/t2], expects `refusal`, and checks
/// that nothing changed and nothing is to be sent or written.
fn refused(message: Message, refusal: impl Fn(&StepError) -> bool) {
    let mut node = follower();
    let before = (node.hard_state(), node.status());
    let error = node.step(message).unwrap_err();
    assert!(refusal(&error), "unexpected refusal: {error}");
    assert_eq!(
        (node.hard_state(), node.status()),
        before,
        "{error} changed the node"
    );
    let ready = node.ready();
    assert!(ready.is_empty(), "{error} left work behind: {}", ready.describe());
}

fn malformed(error: &StepError) -> bool {
    matches!(error, StepError::Malformed { from: 2, .. })
}

#[test]
fn message_with_an_impossible_term_is_refused_and_not_adopted() {
    for term in [u64::MAX, MAX_TERM + 1] {
        refused(
            append(term, (2, 2), Vec::new()),
            |e| matches!(e, StepError::ImpossibleTerm { from: 2, term: t } if *t == term),
        );
        let vote = Message {
            from: 2,
            to: 1,
            term,
            body: MessageBody::RequestVote(RequestVote {
                pre_vote: false,
                transfer: false,
                last_log_index: 10,
                last_log_term: 2,
            }),
        };
        refused(vote, |e| matches!(e, StepError::ImpossibleTerm { .. }));
    }
}

#[test]
fn the_highest_possible_term_is_adopted_and_elections_after_it_do_not_overflow() {
    let state = RestoredState {
        hard_state: hard(2),
        snapshot: None,
        entries: entries(&[1, 2]),
        applied: 0,
    };
    let voters = Membership::voters([1, 2, 3]).unwrap();
    let mut node = RaftCore::restore(config(1).with_pre_vote(false), voters, state).unwrap();
    node.step(append(MAX_TERM, (2, 2), Vec::new())).unwrap();
    assert_eq!(node.term(), MAX_TERM);
    for _ in 0..100 {
        node.tick();
    }
    assert!(
        node.term() > MAX_TERM,
        "it campaigned past the highest term a peer may send"
    );
}

#[test]
fn append_whose_entries_do_not_follow_the_previous_index_is_refused() {
    // A gap after prev, an entry before it, an index that would wrap, a repeated index.
    let cases = [
        vec![Entry::command(2, 5, "gap")],
        vec![Entry::command(2, 2, "behind")],
        vec![Entry::command(2, 3, "a"), Entry::command(2, 3, "again")],
        vec![Entry::command(2, u64::MAX, "wraps")],
    ];
    for entries in cases {
        refused(append(2, (2, 2), entries), malformed);
    }
    refused(
        append(2, (u64::MAX, 2), vec![Entry::command(2, 0, "wrapped")]),
        malformed,
    );
}

#[test]
fn append_with_an_entry_of_a_later_term_than_the_leader_or_a_falling_term_is_refused() {
    refused(append(2, (2, 2), vec![Entry::command(3, 3, "future")]), malformed);
    refused(append(3, (2, 2), vec![Entry::command(1, 3, "past")]), malformed);
    refused(
        append(
            3,
            (2, 2),
            vec![Entry::command(3, 3, "a"), Entry::command(2, 4, "falls")],
        ),
        malformed,
    );
    refused(append(2, (2, 3), Vec::new()), malformed);
}

#[test]
fn vote_request_whose_log_is_from_a_later_term_than_the_candidate_is_refused() {
    let vote = Message {
        from: 2,
        to: 1,
        term: 3,
        body: MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            transfer: false,
            last_log_index: 9,
            last_log_term: 4,
        }),
    };
    refused(vote, malformed);
}

#[test]
fn snapshot_chunk_that_overflows_or_does_not_fit_is_refused() {
    let meta = |index, term, size| SnapshotMeta {
        index,
        term,
        membership: Membership::voters([1, 2, 3]).unwrap(),
        size,
        checksum: 0,
    };
    let chunk = |meta: SnapshotMeta, offset: u64, data: &'static [u8]| Message {
        from: 2,
        to: 1,
        term: 2,
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta,
            offset,
            data: bytes::Bytes::from_static(data),
            done: false,
        }),
    };
    refused(chunk(meta(10, 2, 100), u64::MAX, b"xy"), malformed);
    refused(chunk(meta(10, 2, 1), 0, b"too long"), malformed);
    refused(chunk(meta(10, 3, 100), 0, b"x"), malformed);
    refused(chunk(meta(0, 2, 100), 0, b"x"), malformed);
}

#[test]
fn leader_refuses_answers_naming_impossible_indexes() {
    let mut net = Net::new(3);
    net.elect(1);
    let before = net.node(1).follower_progress(2).unwrap();
    for response in [
        AppendEntriesResponse::Success {
            match_index: u64::MAX,
        },
        AppendEntriesResponse::Conflict {
            rejected_index: u64::MAX,
            conflict_index: 1,
            conflict_term: None,
        },
        AppendEntriesResponse::Conflict {
            rejected_index: 1,
            conflict_index: MAX_INDEX + 1,
            conflict_term: None,
        },
    ] {
        let term = net.node(1).term();
        let answer = Message {
            from: 2,
            to: 1,
            term,
            body: MessageBody::AppendEntriesResponse(response),
        };
        assert!(matches!(
            net.node(1).step(answer),
            Err(StepError::Malformed { .. })
        ));
        assert_eq!(net.node(1).follower_progress(2).unwrap(), before);
    }
}

#[test]
fn restart_refuses_an_impossible_stored_term_or_index() {
    let restore = |hard_state: HardState, entries: Vec<Entry>| {
        let state = RestoredState {
            hard_state,
            snapshot: None,
            entries,
            applied: 0,
        };
        RaftCore::restore(config(1), Membership::voters([1, 2, 3]).unwrap(), state)
    };
    assert!(matches!(
        restore(hard(u64::MAX), Vec::new()),
        Err(InitError::ImpossibleStoredState { term: u64::MAX, .. })
    ));
    let far = vec![Entry::command(1, MAX_INDEX + 1, "far")];
    assert!(matches!(
        restore(hard(1), far),
        Err(InitError::ImpossibleStoredState { .. }) | Err(InitError::LogNotContiguous { .. })
    ));
}

#[test]
fn leader_ignores_a_conflict_for_entries_it_never_sent() {
    // Found by the step fuzzer: a rejection of index 4 from a leader whose log ends at 2 moved the
    // follower's next index past the log, and the leader then looked for a snapshot it never took.
    let mut net = Net::new(3);
    net.elect(1);
    net.node(1).propose("x".into()).unwrap();
    net.settle();
    let before = net.node(1).follower_progress(2).unwrap();
    let last = net.node(1).status().last_log_index;
    let term = net.node(1).term();
    let bogus = Message {
        from: 2,
        to: 1,
        term,
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse::Conflict {
            rejected_index: last + 2,
            conflict_index: last + 2,
            conflict_term: None,
        }),
    };
    net.node(1).step(bogus).unwrap();
    assert_eq!(net.node(1).follower_progress(2).unwrap(), before);
    net.tick_all(3);
    assert_eq!(net.leaders(), vec![1]);
}

#[test]
fn message_claiming_to_come_from_the_recipient_itself_is_refused() {
    let mut from_self = append(2, (2, 2), Vec::new());
    from_self.from = 1;
    refused(from_self, |e| matches!(e, StepError::Malformed { from: 1, .. }));
    let mut from_zero = append(2, (2, 2), Vec::new());
    from_zero.from = 0;
    refused(from_zero, |e| matches!(e, StepError::Malformed { from: 0, .. }));
}

#[test]
fn leader_refuses_a_second_leader_of_its_own_term() {
    let mut net = Net::new(3);
    net.elect(1);
    let term = net.node(1).term();
    let before = net.node(1).status();
    let mut claim = append(term, (1, term), Vec::new());
    claim.to = 1;
    claim.from = 2;
    assert_eq!(
        net.node(1).step(claim),
        Err(StepError::AnotherLeader { from: 2, term })
    );
    assert_eq!(net.node(1).status(), before);
}

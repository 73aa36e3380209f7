//! Arbitrary messages, with values from ordinary to extreme, stepped into a follower and into a
//! leader: the core never panics, answers each with `Ok` or a typed refusal that changes nothing,
//! and keeps its own invariants (the term never falls, the commit index never passes the log, a
//! vote once given in a term is not changed within it). What a message may legitimately change is
//! the protocol's business and is checked by the simulator; this checks that no input from the
//! network can crash or corrupt a node.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{
    AppendEntries, AppendEntriesResponse, Entry, Heartbeat, HeartbeatResponse, InstallSnapshot,
    InstallSnapshotResponse, Membership, Message, MessageBody, RaftCore, ReadIndexRequest, ReadIndexResponse,
    RequestVote, RequestVoteResponse, SnapshotMeta,
};
use support::Net;

/// Numbers as a peer might send them: small and plausible most of the time, sometimes at the
/// edges of the type.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..12,
        1 => Just(u64::MAX),
        1 => Just(u64::MAX >> 1),
        1 => Just((u64::MAX >> 1) + 1),
        1 => any::<u64>(),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (number(), number(), proptest::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(term, index, data)| Entry::command(term, index, data))
}

fn body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<bool>(), any::<bool>(), number(), number()).prop_map(|(pre_vote, transfer, i, t)| {
            MessageBody::RequestVote(RequestVote {
                pre_vote,
                transfer,
                last_log_index: i,
                last_log_term: t,
            })
        }),
        (any::<bool>(), any::<bool>()).prop_map(|(pre_vote, granted)| MessageBody::RequestVoteResponse(
            RequestVoteResponse { pre_vote, granted }
        )),
        (
            number(),
            number(),
            proptest::collection::vec(entry(), 0..4),
            number()
        )
            .prop_map(|(i, t, entries, c)| {
                MessageBody::AppendEntries(AppendEntries {
                    prev_log_index: i,
                    prev_log_term: t,
                    entries: entries.into(),
                    leader_commit: c,
                })
            }),
        number().prop_map(
            |match_index| MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index })
        ),
        (number(), number(), proptest::option::of(number())).prop_map(|(r, c, t)| {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Conflict {
                rejected_index: r,
                conflict_index: c,
                conflict_term: t,
            })
        }),
        (number(), number()).prop_map(|(commit, round)| MessageBody::Heartbeat(Heartbeat { commit, round })),
        number().prop_map(|round| MessageBody::HeartbeatResponse(HeartbeatResponse { round })),
        Just(MessageBody::TimeoutNow),
        number().prop_map(|id| MessageBody::ReadIndexRequest(ReadIndexRequest { id })),
        (number(), proptest::option::of(number()))
            .prop_map(|(id, index)| MessageBody::ReadIndexResponse(ReadIndexResponse { id, index })),
        (
            number(),
            number(),
            number(),
            number(),
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<bool>()
        )
            .prop_map(|(index, term, size, offset, data, done)| {
                MessageBody::InstallSnapshot(InstallSnapshot {
                    meta: SnapshotMeta {
                        index,
                        term,
                        membership: Membership::voters([1, 2, 3]).unwrap(),
                        size,
                        checksum: 0,
                    },
                    offset,
                    data: Bytes::from(data),
                    done,
                })
            }),
        (number(), number(), any::<bool>()).prop_map(|(snapshot_index, next_offset, rejected)| {
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                snapshot_index,
                next_offset,
                rejected,
            })
        }),
    ]
}

fn message(to: u64) -> impl Strategy<Value = Message> {
    (1u64..6, number(), body()).prop_map(move |(from, term, body)| Message { from, to, term, body })
}

/// Steps `messages` into `node`, handling its work after each, and checks what must always hold.
fn survive(node: &mut RaftCore, messages: Vec<Message>) -> Result<(), TestCaseError> {
    for message in messages {
        let before = (node.hard_state(), node.status());
        match node.step(message) {
            Ok(()) => {}
            Err(error) => {
                let after = (node.hard_state(), node.status());
                prop_assert_eq!(before, after, "refused with {} but changed", error);
            }
        }
        let after = node.hard_state();
        prop_assert!(after.term >= before.0.term, "the term fell");
        if after.term == before.0.term && before.0.voted_for.is_some() {
            prop_assert_eq!(
                after.voted_for,
                before.0.voted_for,
                "the vote changed within a term"
            );
        }
        let ready = node.ready();
        if let Some((index, term)) = ready.persisted_up_to() {
            node.on_persisted(index, term);
        }
        if let Some(last) = ready.committed_entries.last() {
            node.on_applied(last.index);
        }
        node.tick();
        let status = node.status();
        prop_assert!(status.commit_index <= status.last_log_index.max(status.snapshot_index));
    }
    Ok(())
}

/// Cases per test: 1,000 in CI; `RAFT_FUZZ_CASES` runs more.
fn cases() -> u32 {
    std::env::var("RAFT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn a_follower_survives_any_sequence_of_messages(messages in proptest::collection::vec(message(2), 1..12)) {
        let mut net = Net::new(3);
        net.elect(1);
        let index = net.node(1).propose("x".into()).unwrap();
        net.settle();
        prop_assert!(net.node(2).status().last_log_index >= index);
        survive(net.node(2), messages)?;
    }

    #[test]
    fn a_leader_survives_any_sequence_of_messages(messages in proptest::collection::vec(message(1), 1..12)) {
        let mut net = Net::new(3);
        net.elect(1);
        net.node(1).propose("x".into()).unwrap();
        net.settle();
        survive(net.node(1), messages)?;
    }
}

//! Hostile messages, injected among the honest traffic of a simulation: what a confused,
//! corrupted or malicious certified peer could send. Each is built so that an honest node must
//! see through it, and says how:
//!
//! * **refused**: values no honest peer sends (a term above `MAX_TERM`, entries that skip an
//!   index or whose terms pass the message's, a snapshot chunk that overflows, a vote request
//!   whose log is newer than its term). The core must answer with a typed `StepError` and change
//!   nothing.
//! * **ignored by the leader**: a well-formed message with a higher term from a node outside the
//!   configuration. The leader must keep leading in its term.
//!
//! A byzantine member that lies within the protocol's rules is out of scope (Raft trusts its
//! members; the transport authenticates them): such messages are not generated. Every safety
//! invariant stays checked while these arrive. A leaf: it builds messages from the seed's random
//! numbers.

use bytes::Bytes;
use raft_core::{
    AppendEntries, AppendEntriesResponse, Entry, Heartbeat, HeartbeatResponse, InstallSnapshot, Membership,
    Message, MessageBody, NodeId, RequestVote, SeededRng, SnapshotMeta, Term, MAX_INDEX, MAX_TERM,
};

/// What an honest node must do with a hostile message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Refuse it with a `StepError`, changing nothing.
    Refused,
    /// (A leader) stay leader in its term.
    IgnoredByLeader,
}

/// The first id no simulated node has: hostile non-members use ids from here.
pub(crate) const OUTSIDER: NodeId = 1_000;

/// A hostile message to `to`, whose term is `term`; `from` is a real member.
pub(crate) fn refused_message(rng: &mut SeededRng, from: NodeId, to: NodeId, term: Term) -> Message {
    let term = term.max(1);
    let at = |body| Message { from, to, term, body };
    match rng.below(6) {
        0 => Message {
            from,
            to,
            term: MAX_TERM + 1 + rng.below(1 << 20),
            body: MessageBody::Heartbeat(Heartbeat { commit: 0, round: 0 }),
        },
        1 => {
            // Entries that skip an index.
            let prev = rng.below(50);
            at(MessageBody::AppendEntries(AppendEntries {
                prev_log_index: prev,
                prev_log_term: 0,
                entries: vec![
                    Entry::command(term, prev + 1, Bytes::from_static(b"hostile")),
                    Entry::command(term, prev + 3, Bytes::from_static(b"hostile")),
                ]
                .into(),
                leader_commit: prev + 3,
            }))
        }
        2 => {
            // An entry from a term after the message's.
            let prev = rng.below(50);
            at(MessageBody::AppendEntries(AppendEntries {
                prev_log_index: prev,
                prev_log_term: 0,
                entries: vec![Entry::command(term + 1 + rng.below(5), prev + 1, Bytes::new())].into(),
                leader_commit: 0,
            }))
        }
        3 => {
            // A chunk whose end overflows the snapshot.
            let meta = SnapshotMeta {
                index: 1 + rng.below(100),
                term,
                membership: Membership::default(),
                size: 10,
                checksum: 0,
            };
            at(MessageBody::InstallSnapshot(InstallSnapshot {
                meta,
                offset: u64::MAX - rng.below(4),
                data: Bytes::from_static(b"overflow"),
                done: true,
            }))
        }
        4 => at(MessageBody::RequestVote(RequestVote {
            pre_vote: rng.chance(0.5),
            transfer: false,
            last_log_index: rng.below(100),
            last_log_term: term + 1 + rng.below(5),
        })),
        _ => at(MessageBody::AppendEntriesResponse(
            AppendEntriesResponse::Success {
                match_index: MAX_INDEX + 1 + rng.below(1 << 20),
            },
        )),
    }
}

/// A well-formed message with a higher term from an outsider to the leader `to` in `term`.
pub(crate) fn outsider_message(rng: &mut SeededRng, to: NodeId, term: Term) -> Message {
    let body = match rng.below(3) {
        0 => MessageBody::HeartbeatResponse(HeartbeatResponse {
            round: rng.below(100),
        }),
        1 => MessageBody::RequestVote(RequestVote {
            pre_vote: rng.chance(0.5),
            transfer: rng.chance(0.5),
            last_log_index: 1 << 40,
            last_log_term: term + 1,
        }),
        _ => MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index: 1 }),
    };
    Message {
        from: OUTSIDER + rng.below(8),
        to,
        term: term + 1 + rng.below(1000),
        body,
    }
}

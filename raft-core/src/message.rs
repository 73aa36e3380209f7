//! The messages nodes exchange (Raft paper Figure 2, plus pre-vote and heartbeats).

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::entries::Entries;
use crate::snapshot_types::{SnapshotChunkRequest, SnapshotMeta};
use crate::types::{Index, NodeId, Term};

/// A message from one node to another. Every message carries the sender's term, which is how
/// terms spread through the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term the sender would campaign in.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum MessageBody {
    /// A candidate (or pre-candidate) asks for a vote.
    RequestVote(RequestVote),
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse(RequestVoteResponse),
    /// The leader replicates entries.
    AppendEntries(AppendEntries),
    /// The answer to [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendEntriesResponse),
    /// The leader asserts its leadership and spreads the commit index without touching the log.
    Heartbeat(Heartbeat),
    /// The answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse(HeartbeatResponse),
    /// The leader tells a caught-up follower to campaign at once (leadership transfer).
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of one of its clients.
    ReadIndexRequest(ReadIndexRequest),
    /// The leader's answer to [`MessageBody::ReadIndexRequest`].
    ReadIndexResponse(ReadIndexResponse),
    /// The leader sends a chunk of its snapshot to a follower whose next entries it has purged.
    InstallSnapshot(InstallSnapshot),
    /// The follower says which byte of the snapshot it expects next. (Once the snapshot is
    /// installed it answers with [`AppendEntriesResponse::Success`] at the snapshot's index.)
    InstallSnapshotResponse(InstallSnapshotResponse),
}

impl MessageBody {
    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::RequestVote(r) if r.pre_vote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(r) if r.pre_vote => "PreVoteResponse",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResponse",
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndexRequest(_) => "ReadIndexRequest",
            MessageBody::ReadIndexResponse(_) => "ReadIndexResponse",
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
        }
    }
}

/// A request for a vote (or, with `pre_vote`, a question whether a vote would be granted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct RequestVote {
    /// True for a pre-vote: the receiver changes no state and the sender's term stays as it is.
    pub pre_vote: bool,
    /// True when the leader asked for this election (leadership transfer): voters grant it even
    /// though they heard from that leader recently.
    pub transfer: bool,
    /// The index of the candidate's last log entry.
    pub last_log_index: Index,
    /// The term of the candidate's last log entry.
    pub last_log_term: Term,
}

/// The answer to a vote request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct RequestVoteResponse {
    /// True when this answers a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote is granted.
    pub granted: bool,
}

/// Entries for a follower to append after `prev_log_index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct AppendEntries {
    /// The index of the entry just before `entries`.
    pub prev_log_index: Index,
    /// The term of the entry at `prev_log_index`.
    pub prev_log_term: Term,
    /// The entries to append, consecutive from `prev_log_index + 1`; empty for a probe. A part
    /// of a run of the leader's log, shared rather than copied (build one from a `Vec<Entry>`
    /// with `.into()`).
    pub entries: Entries,
    /// The leader's commit index.
    pub leader_commit: Index,
}

/// The answer to [`AppendEntries`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum AppendEntriesResponse {
    /// The follower's log matches the leader's up to `match_index`, durably.
    Success {
        /// The highest index known to match the leader's log.
        match_index: Index,
    },
    /// The follower has no entry matching `prev_log_index`/`prev_log_term`.
    Conflict {
        /// The `prev_log_index` of the rejected request, so the leader can ignore stale answers.
        rejected_index: Index,
        /// Where the leader should look next (Raft paper §5.3, "back up by term"): the first index
        /// of `conflict_term` in the follower's log, or the follower's last index + 1 when its log
        /// is too short.
        conflict_index: Index,
        /// The term of the follower's entry at `rejected_index`, or `None` when it has none.
        conflict_term: Option<Term>,
    },
}

/// The leader is alive; `commit` is the highest index the follower may consider committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the follower is known to hold.
    pub commit: Index,
    /// The leader's latest confirmation round: an answer proves the leader still led when it
    /// started this round (ReadIndex and leases).
    pub round: u64,
}

/// The answer to a [`Heartbeat`]: the follower still follows the sender in this term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct HeartbeatResponse {
    /// The round of the heartbeat answered.
    pub round: u64,
}

/// A follower's request for a read index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ReadIndexRequest {
    /// The follower's id for the read.
    pub id: u64,
}

/// The leader's answer to a [`ReadIndexRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ReadIndexResponse {
    /// The follower's id for the read.
    pub id: u64,
    /// The confirmed read index, or `None` when the node asked is not (or no longer) the leader.
    pub index: Option<Index>,
}

/// One chunk of the leader's snapshot (Raft paper Figure 13).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct InstallSnapshot {
    /// The snapshot: last included index and term, configuration, size and checksum.
    pub meta: SnapshotMeta,
    /// Where `data` goes in the snapshot.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Bytes,
    /// True for the last chunk.
    pub done: bool,
}

/// The answer to an [`InstallSnapshot`] chunk that did not complete the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct InstallSnapshotResponse {
    /// The index of the snapshot being received.
    pub snapshot_index: Index,
    /// The offset the follower expects next: after the chunk it took, or where it wants the
    /// leader to resume after a lost chunk (0 to start over).
    pub next_offset: u64,
    /// The chunk was refused: it came after a gap, or the follower lost what it had received.
    /// (An answer to a duplicate chunk only says how far the follower is.)
    pub rejected: bool,
}

impl SnapshotChunkRequest {
    /// The message that carries the chunk, once its bytes are read.
    pub fn into_message(self, data: Bytes) -> Message {
        let done = self.offset + self.len >= self.meta.size;
        Message {
            from: self.from,
            to: self.to,
            term: self.term,
            body: MessageBody::InstallSnapshot(InstallSnapshot {
                meta: self.meta,
                offset: self.offset,
                data,
                done,
            }),
        }
    }
}

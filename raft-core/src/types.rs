//! The vocabulary shared by every crate: node ids, terms, log indexes, hard state and roles. A
//! leaf (log entries, which can carry a configuration, are in `entry.rs`).

use serde::{Deserialize, Serialize};

/// Identifies one member of a cluster. Ids are chosen by the operator and never reused.
pub type NodeId = u64;

/// Identifies one cluster. Storage records it and transports carry it, so that a node never takes
/// another cluster's data or messages for its own.
pub type ClusterId = u64;

/// A Raft term: a logical clock that rises with every election. Term 0 precedes all elections.
pub type Term = u64;

/// A position in the replicated log. The first entry has index 1; index 0 means "before the log".
pub type Index = u64;

/// The state every node must persist before it answers a message that depends on it
/// (Raft paper Figure 2, "Persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
    /// The highest index known to be committed. Persisting it is not required for safety; it
    /// lets a restarted node apply its committed log without waiting for a leader.
    pub commit: Index,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader and votes in elections.
    Follower,
    /// Asks for pre-votes without raising its term (Raft thesis §9.6).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Replicates the log and decides what is committed.
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}

/// The volatile part of a node's state that observers care about: who it is and whom it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct SoftState {
    /// The node's role.
    pub role: Role,
    /// The leader of the current term, if known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: Term,
}

/// A snapshot of a node's state for observers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: Index,
    /// Its applied index (acknowledged by the caller).
    pub applied_index: Index,
    /// The index of its last log entry, durable or not.
    pub last_log_index: Index,
    /// The index up to which its log is durable.
    pub persisted_index: Index,
    /// The index of its latest snapshot (0 when it has none).
    pub snapshot_index: Index,
    /// The index of the first entry its log still holds (the log before it is compacted).
    pub first_log_index: Index,
    /// Ticks since this node last heard from the leader of its term: 0 on the leader itself,
    /// `None` when it knows no leader.
    pub leader_contact_ticks: Option<u32>,
}

//! Every error type of the core, in one place: the refusals of the core's inputs (`step`,
//! `propose`, reads, membership changes, transfers, start-up), invalid settings and
//! configurations, and the failures of the backends (storage, state machine, transport).
//!
//! A leaf: it refers only to the plain types in `types`.

use thiserror::Error;

use crate::types::{Index, NodeId, Term};

/// A message the core refused to process. The core's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StepError {
    /// The message is addressed to another node: the transport routed it wrongly.
    #[error("message for node {to} was delivered to node {local}")]
    WrongRecipient {
        /// The recipient named in the message.
        to: NodeId,
        /// This node.
        local: NodeId,
    },
    /// The message carries a term no real cluster reaches (above [`MAX_TERM`](crate::MAX_TERM)):
    /// corruption or a hostile peer. Adopting it would leave no room for the next election.
    #[error("message from node {from} carries the impossible term {term}; refused")]
    ImpossibleTerm {
        /// The sender.
        from: NodeId,
        /// The term it carries.
        term: Term,
    },
    /// A leader's message (AppendEntries, heartbeat, snapshot chunk) in the term this node leads:
    /// there is one leader per term, so the sender is confused or hostile.
    #[error("node {from} claims to lead term {term}, which this node leads; refused")]
    AnotherLeader {
        /// The sender.
        from: NodeId,
        /// The term.
        term: Term,
    },
    /// The message contradicts itself (entries that do not follow one another, a log term above
    /// the message's term, an offset that overflows): no honest peer sends it.
    #[error("malformed {kind} from node {from}: {reason}; refused")]
    Malformed {
        /// The sender.
        from: NodeId,
        /// The message kind.
        kind: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A proposal the core did not accept. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `leader_hint` is the leader this node knows of.
    #[error("this node is not the leader (leader hint: {leader_hint:?}); send the proposal to the leader")]
    NotLeader {
        /// The leader of the current term, if known.
        leader_hint: Option<NodeId>,
    },
    /// A leadership transfer is under way; proposals resume when it ends.
    #[error("leadership is being transferred to node {target}; retry on the new leader")]
    TransferInProgress {
        /// The node taking over.
        target: NodeId,
    },
    /// Too many entries are waiting to commit (`Config::max_uncommitted_entries`); retry once the
    /// cluster catches up.
    #[error("{uncommitted} entries are not committed yet (limit {max}); retry later")]
    TooManyUncommitted {
        /// Entries appended but not committed.
        uncommitted: usize,
        /// The configured limit.
        max: usize,
    },
    /// The entries waiting to commit hold too many bytes (`Config::max_uncommitted_bytes`); retry
    /// once the cluster catches up.
    #[error("{bytes} bytes of entries are not committed yet (limit {max}); retry later")]
    TooManyUncommittedBytes {
        /// Bytes of the entries appended but not committed.
        bytes: usize,
        /// The configured limit.
        max: usize,
    },
    /// The command exceeds `Config::max_entry_bytes`.
    #[error("command of {size} bytes exceeds the limit of {max} bytes")]
    EntryTooLarge {
        /// The command's size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
}

/// The core could not be built from the given settings and stored state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InitError {
    /// The settings are invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The membership is invalid.
    #[error("invalid membership: {0}")]
    Membership(#[from] MembershipError),
    /// The stored log has a gap or does not start at index 1.
    #[error("stored log is not contiguous: expected index {expected}, found {found}")]
    LogNotContiguous {
        /// The index that should have come next.
        expected: Index,
        /// The index found.
        found: Index,
    },
    /// The state machine has not applied the stored snapshot: restore it from the snapshot first.
    #[error(
        "the state machine has applied up to {applied}, behind the stored snapshot at {snapshot_index}; \
         restore it from the snapshot first"
    )]
    StateMachineBehindSnapshot {
        /// What the state machine has applied.
        applied: Index,
        /// The stored snapshot's index.
        snapshot_index: Index,
    },
    /// The stored snapshot's term is above the stored term, or the stored log holds a different
    /// entry at the snapshot's index.
    #[error("stored snapshot at index {index} (term {term}) disagrees with the stored log and term")]
    SnapshotDisagreesWithLog {
        /// The snapshot's index.
        index: Index,
        /// The snapshot's term.
        term: Term,
    },
    /// The stored term, or the index of the last stored entry or snapshot, is above what any
    /// cluster reaches ([`MAX_TERM`](crate::MAX_TERM), [`MAX_INDEX`](crate::MAX_INDEX)): the
    /// storage is corrupt.
    #[error("stored state is impossible (term {term}, last index {index}): the storage is corrupt")]
    ImpossibleStoredState {
        /// The stored term.
        term: Term,
        /// The highest stored index.
        index: Index,
    },
    /// The stored log's terms decrease, or exceed the stored term.
    #[error("stored log entry {index} has term {term}, which is out of order (stored term {hard_term})")]
    LogTermOutOfOrder {
        /// The offending entry's index.
        index: Index,
        /// Its term.
        term: Term,
        /// The stored current term.
        hard_term: Term,
    },
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Node id 0 is reserved for "nobody".
    #[error("node id must not be 0")]
    ZeroNodeId,
    /// The election timeout is zero.
    #[error("election_timeout_ticks must be at least 1")]
    ZeroElectionTimeout,
    /// The heartbeat interval is zero.
    #[error("heartbeat_interval_ticks must be at least 1")]
    ZeroHeartbeatInterval,
    /// Heartbeats would not arrive before followers time out.
    #[error(
        "heartbeat_interval_ticks ({heartbeat}) must be below election_timeout_ticks ({election}) \
         so that followers hear from the leader before they time out"
    )]
    HeartbeatNotBelowElectionTimeout {
        /// The configured heartbeat interval.
        heartbeat: u32,
        /// The configured election timeout.
        election: u32,
    },
    /// Lease reads rely on followers ignoring votes while they hear a leader.
    #[error("lease_reads needs check_quorum: without it a lease does not stop other elections")]
    LeaseNeedsCheckQuorum,
    /// The drift bound leaves no lease at all.
    #[error("lease_clock_drift_ticks ({drift}) must be below election_timeout_ticks ({election})")]
    LeaseDriftTooLarge {
        /// The configured drift bound.
        drift: u32,
        /// The configured election timeout.
        election: u32,
    },
    /// A size limit is zero, which would stop replication.
    #[error("{name} must be greater than 0")]
    ZeroLimit {
        /// The setting's name.
        name: &'static str,
    },
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// A cluster needs at least one voter.
    #[error("a configuration needs at least one voter")]
    NoVoters,
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved and cannot be a member")]
    ZeroNodeId,
    /// A node is listed both as voter and as learner.
    #[error("node {0} cannot be both a voter and a learner")]
    VoterAndLearner(NodeId),
    /// An address is given for a node that is not a member.
    #[error("node {0} has an address but is not a member")]
    AddressOfNonMember(NodeId),
}

/// Why a read cannot be served (yet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
pub enum ReadError {
    /// This node is not the leader and knows of none, or the leader changed while the read waited.
    #[error("no leader to confirm the read (leader hint: {leader_hint:?}); retry")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// Lease reads are off, or the lease is not held right now; use ReadIndex.
    #[error("the leader does not hold a read lease; use a ReadIndex read")]
    LeaseNotHeld,
    /// No confirmation came within two election timeouts (a request or an answer was lost, or
    /// the leader cannot reach a quorum); retry.
    #[error("the read was not confirmed within two election timeouts; retry")]
    Expired,
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MembershipChangeError {
    /// Only the leader changes the configuration.
    #[error("this node is not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// The leader has not committed an entry of its term yet; retry shortly.
    #[error("the leader has not committed an entry of its own term yet; retry shortly")]
    LeaderNotReady,
    /// Another change is still in progress (not committed, or the joint phase not left yet).
    #[error("a membership change is already in progress; wait until it completes")]
    ChangeInProgress,
    /// A leadership transfer is under way.
    #[error("a leadership transfer is under way")]
    TransferInProgress,
    /// The requested configuration is invalid (no voters, node 0, a node both voter and learner).
    #[error("invalid configuration: {0}")]
    Invalid(#[from] MembershipError),
    /// The requested configuration is the one in force.
    #[error("the requested configuration is already in force")]
    Unchanged,
    /// A node that would become a voter is too far behind: add it as a learner, wait until it
    /// has caught up, then promote it (see `Config::max_promotion_lag_entries`).
    #[error(
        "node {node} is not caught up to become a voter (it has {match_index} of {commit_index} \
         committed entries); add it as a learner and promote it once it has caught up"
    )]
    NotCaughtUp {
        /// The node.
        node: NodeId,
        /// The last entry the leader knows it holds.
        match_index: Index,
        /// The leader's commit index.
        commit_index: Index,
    },
}

/// A storage failure. A node whose write fails stops: it must not acknowledge anything.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The backend failed (I/O error, closed database, ...).
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// What is stored is not valid.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// No complete snapshot is stored at this index (never finished, or deleted as superseded).
    #[error("no snapshot at index {0}")]
    SnapshotNotFound(Index),
    /// The write would leave a gap in the log.
    #[error("append at index {first} would leave a gap after the last stored index {last}")]
    LogGap {
        /// The first index of the write.
        first: Index,
        /// The last stored index.
        last: Index,
    },
}

/// A failure of the user's state machine. The node stops applying: a replicated state machine
/// that skipped an entry would diverge from its peers.
#[derive(Debug, Error)]
#[error("state machine failed at index {index}: {source}")]
pub struct StateMachineError {
    /// The index of the entry being applied.
    pub index: Index,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StateMachineError {
    /// The snapshot store failed while the state machine, at `index`, wrote or read a snapshot.
    ///
    /// ```
    /// use raft_core::{StateMachineError, StorageError};
    /// let error = StateMachineError::storage(7, StorageError::SnapshotNotFound(7));
    /// assert_eq!(error.to_string(), "state machine failed at index 7: no snapshot at index 7");
    /// ```
    pub fn storage(index: Index, error: StorageError) -> Self {
        StateMachineError {
            index,
            source: Box::new(error),
        }
    }
}

/// A failure to hand a message to the transport. Raft tolerates lost messages, so the node logs it
/// and carries on; the error says why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// No route to this node is known.
    #[error("no route to node {0}")]
    UnknownPeer(NodeId),
    /// The outgoing queue for this peer is full; the message was dropped.
    #[error("outgoing queue to node {0} is full; message dropped")]
    QueueFull(NodeId),
    /// The transport was shut down.
    #[error("transport is shut down")]
    Closed,
}

/// Why a transfer cannot start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// Only the leader can hand over leadership.
    #[error("this node is not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// A transfer is already under way.
    #[error("a transfer to node {target} is already under way")]
    InProgress {
        /// Its target.
        target: NodeId,
    },
    /// The target does not vote in the current configuration.
    #[error("node {0} is not a voter and cannot lead")]
    NotAVoter(NodeId),
    /// The target is this node.
    #[error("node {0} already leads")]
    AlreadyLeader(NodeId),
}

//! Errors of the core's inputs.

use thiserror::Error;

use crate::config::ConfigError;
use crate::membership::MembershipError;
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

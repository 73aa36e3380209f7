//! Errors of the node API.

use raft_core::{InitError, NodeId, StateMachineError, StorageError};
use thiserror::Error;

/// Why a proposal has no result.
///
/// The variants say whether the command may still take effect: only [`ProposeError::Timeout`],
/// [`ProposeError::Superseded`] and [`ProposeError::Stopped`] leave that open (client sessions make
/// retrying them safe; see [`SessionClient`](crate::SessionClient)).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// This node is not the leader; nothing was proposed. Retry on `leader_hint` if known.
    #[error("node is not the leader (leader hint: {leader_hint:?}); nothing was proposed")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// The command is larger than the configured limit; nothing was proposed.
    #[error("command of {size} bytes exceeds the limit of {max} bytes; nothing was proposed")]
    TooLarge {
        /// The command's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The leader has too many uncommitted entries; nothing was proposed. Retry after a pause.
    #[error("the leader has {uncommitted} uncommitted entries (limit {max}); nothing was proposed")]
    Busy {
        /// Entries waiting to commit.
        uncommitted: usize,
        /// The limit.
        max: usize,
    },
    /// A leadership transfer is under way; nothing was proposed. Retry on the new leader.
    #[error("leadership is moving to node {target}; nothing was proposed")]
    Transferring {
        /// The node taking over.
        target: NodeId,
    },
    /// Leadership changed and another entry took this command's place in the log: the command
    /// was certainly not applied.
    #[error("leadership changed before the command committed; it was not applied")]
    Dropped,
    /// This node installed a snapshot from the leader that covers the command's index, so it
    /// cannot tell which command was applied there: the command may or may not have been applied.
    #[error("a snapshot from the leader covers the command's index; its outcome is unknown here")]
    Superseded,
    /// No result within the timeout: the command may or may not be applied later.
    #[error("no result within the timeout; the command may or may not be applied")]
    Timeout,
    /// The node stopped (shut down or failed): the command may or may not be applied.
    #[error("the node stopped before the command's outcome was known")]
    Stopped,
}

impl From<raft_core::ProposeError> for ProposeError {
    fn from(error: raft_core::ProposeError) -> Self {
        match error {
            raft_core::ProposeError::NotLeader { leader_hint } => ProposeError::NotLeader { leader_hint },
            raft_core::ProposeError::EntryTooLarge { size, max } => ProposeError::TooLarge { size, max },
            raft_core::ProposeError::TransferInProgress { target } => ProposeError::Transferring { target },
            raft_core::ProposeError::TooManyUncommitted { uncommitted, max } => {
                ProposeError::Busy { uncommitted, max }
            }
        }
    }
}

/// Why a read has no answer. A read changes nothing, so it can always be retried.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// No leader could confirm the read: this node is not the leader and knows of none, or
    /// leadership changed while the read waited. Retry, on `leader_hint` if known.
    #[error("no leader confirmed the read (leader hint: {leader_hint:?}); retry")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// No answer within the timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

impl From<raft_core::ReadError> for ReadError {
    fn from(error: raft_core::ReadError) -> Self {
        match error {
            raft_core::ReadError::NotLeader { leader_hint } => ReadError::NotLeader { leader_hint },
            // The node falls back to ReadIndex when no lease is held, so this does not surface.
            raft_core::ReadError::LeaseNotHeld => ReadError::NotLeader { leader_hint: None },
        }
    }
}

/// Why a leadership transfer did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// The transfer could not start.
    #[error("transfer refused: {0}")]
    Refused(#[from] raft_core::TransferError),
    /// The target did not take over within two election timeouts.
    #[error("node {target} did not take over in time")]
    TimedOut {
        /// The target.
        target: NodeId,
    },
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// Why a membership change did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MembershipChangeFailed {
    /// The change could not start (not the leader, another change pending, invalid, ...);
    /// nothing was appended.
    #[error("membership change refused: {0}")]
    Refused(#[from] raft_core::MembershipChangeError),
    /// Leadership changed and the change was overwritten: it did not happen. Retry on the leader.
    #[error("leadership changed before the change committed; it did not happen")]
    Dropped,
    /// Not in force within the timeout: it may still complete.
    #[error("the change was not in force within the timeout; it may still complete")]
    Timeout,
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The settings, the membership or the stored state are invalid.
    #[error("cannot start the node: {0}")]
    Init(#[from] InitError),
    /// The stored state could not be read.
    #[error("cannot read the node's storage: {0}")]
    Storage(#[from] StorageError),
    /// The state machine could not be restored from the stored snapshot.
    #[error("cannot restore the state machine from the stored snapshot: {0}")]
    Restore(#[from] StateMachineError),
}

/// Why a snapshot was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Nothing has been applied yet, so there is no state to snapshot.
    #[error("nothing has been applied yet")]
    NothingApplied,
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

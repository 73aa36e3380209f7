//! Errors of the node API.

use raft_core::{InitError, NodeId, StorageError};
use thiserror::Error;

/// Why a proposal has no result.
///
/// The variants say whether the command may still take effect: only [`ProposeError::Timeout`] and
/// [`ProposeError::Stopped`] leave that open.
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
    /// Leadership changed and another entry took this command's place in the log: the command
    /// was certainly not applied.
    #[error("leadership changed before the command committed; it was not applied")]
    Dropped,
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
            raft_core::ProposeError::TooManyUncommitted { uncommitted, max } => {
                ProposeError::Busy { uncommitted, max }
            }
        }
    }
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
}

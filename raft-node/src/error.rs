//! Errors of the node API.

use raft_core::{InitError, NodeId, StateMachineError, StorageError};
use thiserror::Error;

/// Why a proposal has no result.
///
/// The variants say whether the command may still take effect: [`Refused`](Self::Refused) and
/// [`Dropped`](Self::Dropped) mean it certainly did not; only [`Timeout`](Self::Timeout),
/// [`Superseded`](Self::Superseded) and [`Stopped`](Self::Stopped) leave that open (client
/// sessions make retrying them safe; see [`SessionClient`](crate::SessionClient)).
///
/// ```
/// use raft_node::ProposeError;
/// let refused = ProposeError::from(raft_core::ProposeError::NotLeader { leader_hint: Some(2) });
/// assert_eq!(refused.leader_hint(), Some(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// The protocol core did not accept the command (this node is not the leader, the command is
    /// too large, too many entries are uncommitted, a leadership transfer is under way): nothing
    /// was proposed. Retry on [`leader_hint`](Self::leader_hint) if known, or after a pause.
    #[error("proposal refused: {0}")]
    Refused(#[from] raft_core::ProposeError),
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

impl ProposeError {
    /// Where to send the command instead, when this node knows: the leader it follows, or the
    /// node a leadership transfer under way hands over to.
    pub fn leader_hint(&self) -> Option<NodeId> {
        match self {
            ProposeError::Refused(raft_core::ProposeError::NotLeader { leader_hint }) => *leader_hint,
            ProposeError::Refused(raft_core::ProposeError::TransferInProgress { target }) => Some(*target),
            _ => None,
        }
    }
}

/// Why a read has no answer. A read changes nothing, so it can always be retried.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// The protocol core refused the read, or gave it up because leadership changed while it
    /// waited for confirmation. Retry, on [`leader_hint`](Self::leader_hint) if known.
    #[error("read refused: {0}")]
    Refused(#[from] raft_core::ReadError),
    /// No answer within the timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

impl ReadError {
    /// The leader to ask instead, when this node knows of one.
    pub fn leader_hint(&self) -> Option<NodeId> {
        match self {
            ReadError::Refused(raft_core::ReadError::NotLeader { leader_hint }) => *leader_hint,
            _ => None,
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
pub enum ChangeMembershipError {
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
    /// The settings let the node build messages larger than the transport carries: such a
    /// message would be dropped every time it is sent, and the follower waiting for it would
    /// never catch up.
    #[error(
        "the largest message these settings allow ({needed} bytes: max_entry_bytes, \
         max_bytes_per_message or snapshot_chunk_bytes) exceeds the transport's limit of \
         {limit} bytes; raise the transport's frame limit or lower those settings"
    )]
    MessageTooLargeForTransport {
        /// The bound on the node's messages ([`raft_core::Config::max_message_bytes`]).
        needed: usize,
        /// What the transport carries ([`raft_core::Transport::max_message_bytes`]).
        limit: usize,
    },
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

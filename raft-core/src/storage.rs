//! The traits backends implement: log storage, the user's state machine, and the transport.

use std::ops::RangeInclusive;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

use crate::message::Message;
use crate::types::{Entry, HardState, Index, NodeId};

/// What a node persisted, as read back when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredLog {
    /// The saved hard state (default when nothing was saved).
    pub hard_state: HardState,
    /// The saved entries, consecutive from index 1.
    pub entries: Vec<Entry>,
}

/// One durable write: entries to append and the hard state, written atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogWrite {
    /// Entries to append. They replace every stored entry from `entries[0].index` on.
    pub entries: Vec<Entry>,
    /// The hard state to save, when it changed.
    pub hard_state: Option<HardState>,
}

impl LogWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.hard_state.is_none()
    }
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
    /// The write would leave a gap in the log.
    #[error("append at index {first} would leave a gap after the last stored index {last}")]
    LogGap {
        /// The first index of the write.
        first: Index,
        /// The last stored index.
        last: Index,
    },
}

/// Durable storage of one node's log and hard state.
///
/// The contract the node relies on: when [`persist`](Self::persist) returns `Ok`, the write is
/// durable (it survives a crash of the process and of the machine) and complete (entries and hard
/// state together, or neither). Writes are issued one at a time, in order.
#[async_trait]
pub trait LogStorage: Send + 'static {
    /// Reads everything persisted, to restart from.
    async fn load(&mut self) -> Result<StoredLog, StorageError>;

    /// Writes entries and hard state durably and atomically.
    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError>;

    /// Reads the stored entries in `range`; indexes past the end are left out.
    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError>;

    /// The index of the last stored entry, 0 for an empty log.
    async fn last_index(&self) -> Result<Index, StorageError>;
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

/// The user's deterministic state machine. Every node applies the same commands in the same order
/// and must reach the same state and produce the same responses.
#[async_trait]
pub trait StateMachine: Send + 'static {
    /// Applies the committed command at `index` and returns the response for its proposer.
    async fn apply(&mut self, index: Index, command: Bytes) -> Result<Bytes, StateMachineError>;

    /// Answers a read-only query against the current state. It must not change the state: the
    /// node calls it once the read is safe (see the read consistency levels of the node API).
    async fn query(&mut self, query: Bytes) -> Result<Bytes, StateMachineError>;

    /// The index of the last entry this state machine has applied (0 when it keeps no state across
    /// restarts). A restarted node applies the committed log from the entry after it.
    fn applied_index(&self) -> Index;
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

/// Sends messages to peers. `send` must not block: it queues the message and returns, because
/// the node's event loop calls it. Delivery is best effort; Raft retries what matters.
pub trait Transport: Send + Sync + 'static {
    /// Queues a message for delivery to `message.to`.
    fn send(&self, message: Message) -> Result<(), TransportError>;
}

/// Receives the messages addressed to one node.
#[async_trait]
pub trait Inbox: Send + 'static {
    /// The next message, or `None` once the transport is shut down.
    async fn recv(&mut self) -> Option<Message>;

    /// A message that has already arrived, without waiting. The node uses it to process every
    /// message at hand before it collects the resulting work, which batches writes and sends. The
    /// default never has one ready.
    fn try_recv(&mut self) -> Option<Message> {
        None
    }
}

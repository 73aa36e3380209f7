//! What the handle and the node's parts pass each other: requests from the handle, jobs for the
//! persist queue and the apply task and their results, and the public status and
//! read-consistency types. A leaf: it refers to none of the parts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use raft_core::{
    EntryRuns, Index, LogWrite, Membership, MembershipChangeError, Message, MessageSummary, NodeId, RaftCore,
    ReceivedChunk, SnapshotMeta, Status, Term, Transport,
};
use tokio::sync::oneshot;
use tracing::{debug, trace};

use crate::error::{ProposeError, ReadError, SnapshotError};
use crate::metrics::{Direction, MessageMeter};

/// Whether the node is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Processing inputs.
    Running,
    /// Shut down on request.
    Stopped,
    /// Stopped because storage or the state machine failed; the text says how. Nothing the
    /// failed write held was acknowledged.
    ///
    /// After a storage failure, restart the **process**, not just a new `RaftNode` on the same
    /// open store: after a failed fsync the kernel may have dropped the dirty pages and cleared
    /// the error, so what the page cache shows is not what the disk holds. A new process reads
    /// the store back from the disk.
    Failed(String),
}

/// What a node reports about itself: the protocol's view and whether the runtime runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Role, term, leader and the log's indexes, as the protocol core sees them.
    pub raft: Status,
    /// The configuration in force on this node (the latest in its log).
    pub membership: Membership,
    /// The latest committed configuration this node knows of.
    pub committed_membership: Membership,
    /// Whether the node runs.
    pub state: RunState,
}

impl NodeStatus {
    pub(super) fn of(core: &RaftCore, state: RunState) -> Self {
        NodeStatus {
            raft: core.status(),
            membership: core.membership().clone(),
            committed_membership: core.committed_membership().clone(),
            state,
        }
    }
}

/// The configurations a node knows, as [`RaftNode::watch_membership`](super::RaftNode::watch_membership)
/// publishes them: only when one of them changes, not on every commit as the status does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMembership {
    /// The configuration in force on this node (the latest in its log).
    pub membership: Membership,
    /// The latest committed configuration this node knows of.
    pub committed_membership: Membership,
}

impl NodeMembership {
    pub(super) fn of(core: &RaftCore) -> Self {
        NodeMembership {
            membership: core.membership().clone(),
            committed_membership: core.committed_membership().clone(),
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write completed before the read began (ReadIndex: one heartbeat round to a
    /// quorum, shared by reads that arrive together). Works on any node: a follower asks the
    /// leader for the read index and answers from its own state machine.
    Linearizable,
    /// Linearizable without a round trip while the leader holds its lease (`Config::lease_reads`);
    /// relies on bounded clock drift. Falls back to ReadIndex when no lease is held.
    Lease,
    /// This node's current state, at once: may be stale, and never blocks.
    Serializable,
}

pub(super) type ReplyTo<T, E> = oneshot::Sender<Result<T, E>>;

/// A read-only query and where its answer goes.
pub(super) type PendingQuery = (Bytes, ReplyTo<Bytes, ReadError>);

pub(super) enum Request {
    Propose {
        command: Bytes,
        reply: ReplyTo<Bytes, ProposeError>,
        /// The caller's `raft.propose` span, which learns the index the command got.
        span: tracing::Span,
    },
    Read {
        query: Bytes,
        consistency: ReadConsistency,
        reply: ReplyTo<Bytes, ReadError>,
    },
    Transfer {
        target: NodeId,
        reply: ReplyTo<(), raft_core::TransferError>,
    },
    ChangeMembership {
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        addresses: BTreeMap<NodeId, String>,
        started: ReplyTo<(), MembershipChangeError>,
        applied: ReplyTo<Bytes, ProposeError>,
    },
    Snapshot {
        reply: ReplyTo<SnapshotMeta, SnapshotError>,
    },
    /// Hand leadership to the best-placed voter, if this node leads: the reply names it.
    HandOff {
        reply: ReplyTo<Option<NodeId>, raft_core::TransferError>,
    },
    Shutdown,
}

impl Request {
    /// Whether the core must have seen the time that passed before it takes this request in:
    /// all but a proposal, which is safe on any clock.
    pub(super) fn needs_clock(&self) -> bool {
        !matches!(self, Request::Propose { .. })
    }
}

/// A write for the persist queue, and what to do once it is durable.
pub(super) struct PersistJob {
    pub(super) write: LogWrite,
    /// (index, term) of the last entry written, reported back to the core.
    pub(super) persisted: Option<(Index, Term)>,
    /// Messages that may leave only once the write is durable.
    pub(super) messages: Vec<Message>,
    /// Snapshot chunks from the leader, written to the snapshot store before `write`.
    pub(super) chunks: Vec<ReceivedChunk>,
    /// The received snapshot `write` records, to finish before the write and to restore the
    /// state machine from after it.
    pub(super) restore: Option<SnapshotMeta>,
}

/// What a write made durable.
#[derive(Debug, Default)]
pub(super) struct Persisted {
    /// (index, term) of the last entry of each write, to report to the core.
    pub(super) acknowledged: Vec<(Index, Term)>,
    /// Received snapshots now durable: the state machine is to be restored from them.
    pub(super) restore: Vec<SnapshotMeta>,
}

impl Persisted {
    /// Adds what a later write made durable.
    pub(super) fn extend(&mut self, later: Persisted) {
        self.acknowledged.extend(later.acknowledged);
        self.restore.extend(later.restore);
    }
}

/// What the apply task did.
pub(super) enum Applied {
    /// Entries up to this index are applied (or a snapshot up to it restored).
    UpTo(Index),
    /// A snapshot of the state after `index` was written to the snapshot store.
    SnapshotBuilt { index: Index, size: u64, checksum: u32 },
}

/// How far the apply task has applied the log, shared with the event loop and the handle.
///
/// The loop reads it at the start of each round instead of being woken for each batch applied:
/// under load it turns anyway, and when it is idle its next tick picks the index up. Waking it
/// after every batch cost a whole round per write on every node (a third of the rounds at one
/// client). The loop asks to be woken only while someone watches the status (see
/// [`Self::set_watched`]), so a watcher still sees each index applied at once.
#[derive(Debug)]
pub(super) struct AppliedIndex {
    index: AtomicU64,
    watched: AtomicBool,
}

impl AppliedIndex {
    pub(super) fn new(index: Index) -> Self {
        AppliedIndex {
            index: AtomicU64::new(index),
            watched: AtomicBool::new(false),
        }
    }

    /// The entries up to `index` are applied. Only the apply task writes, and its index only
    /// grows; it writes before it answers an entry's proposer, so a request sent after an answer
    /// finds the loop's round already seeing that entry applied.
    pub(super) fn advance(&self, index: Index) {
        self.index.store(index, Ordering::Release);
    }

    /// The index applied so far.
    pub(super) fn get(&self) -> Index {
        self.index.load(Ordering::Acquire)
    }

    /// Whether someone watches the status, so the apply task should wake the loop when it has
    /// applied a batch (the loop updates this once a round). Written only when it changes: the
    /// apply task writes the index beside it, and a write each round would pull the line back
    /// and forth between their threads.
    pub(super) fn set_watched(&self, watched: bool) {
        if self.watched.load(Ordering::Relaxed) != watched {
            self.watched.store(watched, Ordering::Relaxed);
        }
    }

    pub(super) fn is_watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed)
    }
}

/// A proposal accepted at `index` in `term`, waiting for its result.
pub(super) struct Waiter {
    pub(super) index: Index,
    pub(super) term: Term,
    pub(super) reply: ReplyTo<Bytes, ProposeError>,
    /// When the event loop accepted the proposal (the time its round began): its timeout and
    /// its commit latency count from here.
    pub(super) accepted_at: tokio::time::Instant,
}

pub(super) enum ApplyJob {
    /// Proposals accepted in one turn of the event loop, in the order of their indexes: one job
    /// for all of them, not one each.
    Await(Vec<Waiter>),
    /// Answer the proposals that have waited longer than the propose timeout (sent on every
    /// tick, so a proposal needs no timer of its own).
    ExpireWaiters,
    /// Committed entries to apply, in order (the log's own runs, shared).
    Apply(EntryRuns),
    /// A read to serve once `index` is applied.
    Read {
        index: Index,
        query: Bytes,
        reply: ReplyTo<Bytes, ReadError>,
    },
    /// Replace the state machine's state with this durable snapshot from the leader.
    Restore(SnapshotMeta),
    /// Write a snapshot of the state machine into the snapshot store.
    BuildSnapshot,
}

/// Hands `message` to the transport and counts it; a failure is logged (Raft tolerates lost
/// messages).
pub(super) fn send<T: Transport>(transport: &T, meter: &mut MessageMeter, message: Message) {
    meter.count(Direction::Sent, &message);
    let summary = MessageSummary::of(&message);
    trace!(message = %summary, "sending");
    if let Err(error) = transport.send(message) {
        debug!(message = %summary, %error, "message not sent");
    }
}

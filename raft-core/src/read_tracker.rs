//! What a node keeps about the reads in progress: reads waiting for the leader's first commit
//! of its term, heartbeat rounds that confirm leadership, the lease, and reads forwarded to the
//! leader. A leaf: the rules in `read.rs` drive it.

use std::collections::{BTreeMap, VecDeque};

use crate::error::ReadError;
use crate::types::{Index, NodeId};

/// The caller's id for a read; echoed in [`ReadState`].
pub type ReadId = u64;

/// A read that may be served once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadState {
    /// The caller's id for the read.
    pub id: ReadId,
    /// Serve the read once this index is applied.
    pub index: Index,
}

#[derive(Clone, Copy, Debug, Hash)]
pub(crate) struct PendingRead {
    pub(crate) id: ReadId,
    /// The node whose client asked: this node, or a follower that forwarded the read.
    pub(crate) from: NodeId,
    /// The tick it arrived at.
    pub(crate) arrived: u64,
}

#[derive(Clone, Debug, Hash)]
pub(crate) struct Round {
    pub(crate) id: u64,
    pub(crate) sent_tick: u64,
    pub(crate) index: Index,
    pub(crate) reads: Vec<PendingRead>,
}

/// Reads in progress on this node.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct ReadTracker {
    pub(crate) last_round: u64,
    /// Reads that arrived before the leader committed an entry of its term.
    pub(crate) waiting_for_term_commit: Vec<PendingRead>,
    /// Reads to put in the next round.
    pub(crate) unsent: Vec<PendingRead>,
    pub(crate) rounds: VecDeque<Round>,
    /// The latest round each follower answered.
    pub(crate) acked: BTreeMap<NodeId, u64>,
    /// The leader may serve lease reads while `ticks < lease_until`.
    pub(crate) lease_until: u64,
    /// A transfer was started in this term: a TimeoutNow may make another node leader at any
    /// time without waiting out the followers' leases, so no lease holds until the term ends.
    pub(crate) lease_forfeited: bool,
    /// Reads this follower forwarded to the leader, with the tick each was sent at.
    pub(crate) forwarded: Vec<(ReadId, u64)>,
    pub(crate) ready: Vec<ReadState>,
    pub(crate) failed: Vec<(ReadId, ReadError)>,
}

//! What the leader knows about each follower's log, and how much it may send it.
//!
//! A follower is either being *probed* (its position is unknown: one AppendEntries at a time until
//! one succeeds) or *replicated to* (its position is known: AppendEntries are pipelined, bounded by
//! a window of messages and bytes in flight, freed as acknowledgements arrive).

use std::collections::VecDeque;

use crate::snapshot_transfer::SnapshotTransfer;
use crate::snapshot_types::SnapshotMeta;
use crate::types::Index;

/// How the leader sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicationState {
    /// The follower's match point is being searched for; one message at a time.
    Probe,
    /// The follower is known to match up to `match_index`; messages are pipelined.
    Replicate,
    /// The follower needs entries the leader has compacted away; it is being sent a snapshot.
    Snapshot,
}

/// The leader's bookkeeping for one follower.
#[derive(Clone, Debug, Hash)]
pub(crate) struct Progress {
    /// The highest index known to be durable on the follower and to match the leader's log.
    pub(crate) match_index: Index,
    /// The next index to send.
    pub(crate) next_index: Index,
    pub(crate) state: ReplicationState,
    /// In probe state: a probe is out and unanswered; wait for its answer or the next heartbeat.
    pub(crate) probe_sent: bool,
    /// The follower answered since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// Leader ticks since the follower last acknowledged progress while entries were in flight;
    /// a pipeline that stays silent this long has lost a message.
    pub(crate) ticks_without_ack: u32,
    /// In snapshot state: the transfer under way.
    pub(crate) snapshot: Option<SnapshotTransfer>,
    inflight: Inflight,
}

/// The AppendEntries in flight to one follower: the last index and the byte size of each.
#[derive(Clone, Debug, Default, Hash)]
struct Inflight {
    messages: VecDeque<(Index, usize)>,
    bytes: usize,
}

impl Progress {
    pub(crate) fn new(next_index: Index) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ReplicationState::Probe,
            probe_sent: false,
            recent_active: false,
            ticks_without_ack: 0,
            snapshot: None,
            inflight: Inflight::default(),
        }
    }

    /// Whether another AppendEntries may be sent now.
    pub(crate) fn can_send(&self, max_messages: usize, max_bytes: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.probe_sent,
            ReplicationState::Replicate => {
                self.inflight.messages.len() < max_messages && self.inflight.bytes < max_bytes
            }
            ReplicationState::Snapshot => false,
        }
    }

    /// Records an AppendEntries that carries entries up to `last_index` (`bytes` in all).
    pub(crate) fn on_sent(&mut self, last_index: Index, entry_count: usize, bytes: usize) {
        match self.state {
            ReplicationState::Probe | ReplicationState::Snapshot => self.probe_sent = true,
            ReplicationState::Replicate => {
                if entry_count > 0 {
                    self.next_index = last_index + 1;
                    self.inflight.messages.push_back((last_index, bytes));
                    self.inflight.bytes += bytes;
                }
            }
        }
    }

    /// The follower matches up to `index`. Returns whether the match index advanced.
    pub(crate) fn on_match(&mut self, index: Index) -> bool {
        if index < self.match_index {
            return false;
        }
        let advanced = index > self.match_index;
        self.match_index = index;
        self.ticks_without_ack = 0;
        while let Some(&(last, bytes)) = self.inflight.messages.front() {
            if last > index {
                break;
            }
            self.inflight.messages.pop_front();
            self.inflight.bytes -= bytes;
        }
        match self.state {
            ReplicationState::Probe => self.become_replicate(),
            ReplicationState::Replicate => self.next_index = self.next_index.max(index + 1),
            ReplicationState::Snapshot => {
                // Installed (or the follower turned out to hold it all along).
                if self.snapshot.as_ref().is_none_or(|s| index >= s.meta.index) {
                    self.become_replicate();
                }
            }
        }
        advanced
    }

    /// The follower rejected; start probing again from `next_index`.
    pub(crate) fn become_probe(&mut self, next_index: Index) {
        self.state = ReplicationState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.ticks_without_ack = 0;
        self.snapshot = None;
        self.inflight = Inflight::default();
    }

    /// The follower needs entries that were compacted away: send it the snapshot `meta`.
    pub(crate) fn become_snapshot(&mut self, meta: SnapshotMeta) {
        self.state = ReplicationState::Snapshot;
        self.probe_sent = false;
        self.ticks_without_ack = 0;
        self.snapshot = Some(SnapshotTransfer::new(meta));
        self.inflight = Inflight::default();
    }

    fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.snapshot = None;
        self.probe_sent = false;
        self.next_index = self.match_index + 1;
        self.inflight = Inflight::default();
    }

    pub(crate) fn inflight_messages(&self) -> usize {
        self.inflight.messages.len()
    }

    pub(crate) fn inflight_bytes(&self) -> usize {
        self.inflight.bytes
    }
}

//! The batch of work the core hands to its caller.

use crate::error::ReadError;
use crate::message::Message;
use crate::read_tracker::{ReadId, ReadState};
use crate::runs::EntryRuns;
use crate::snapshot_types::{ReceivedChunk, SnapshotChunkRequest, SnapshotMeta, SnapshotUpdate};
use crate::storage::LogWrite;
use crate::types::{HardState, Index, SoftState, Term};

/// Everything the core asks its caller to do since the last call to
/// [`RaftCore::ready`](crate::RaftCore::ready).
///
/// The caller must, in this order of dependency:
///
/// 1. send `messages` at once (they are the leader's AppendEntries and heartbeats, which may go
///    before the leader's own write is durable, Raft thesis §10.2.1, and heartbeats' answers,
///    which promise nothing durable), and read and send the `snapshot_sends` chunks;
/// 2. write `received_chunks` to the snapshot store; then durably and atomically write
///    `snapshot` (finishing the received snapshot first when it is one), `entries` (which replace
///    any stored entries from `entries[0].index` on) and `hard_state`, and report
///    [`RaftCore::on_persisted`](crate::RaftCore::on_persisted) with [`Ready::persisted_up_to`];
/// 3. only after that write is durable, send `messages_after_persist` (votes and acknowledgements
///    that promise the write happened). Batches must be persisted in the order they were handed
///    out, and their after-persist messages sent in that order too;
/// 4. apply `committed_entries` to the state machine in order, then report
///    [`RaftCore::on_applied`](crate::RaftCore::on_applied). When `snapshot` has `restore` set,
///    restore the state machine from it once it is durable and report `on_applied` at its index.
///    Only one restore is outstanding at a time: the core completes no newer snapshot from the
///    leader until that report, so the snapshot being restored is still the latest recorded one
///    (and the store keeps it) while the restore reads it;
/// 5. when `build_snapshot` is set, have the state machine write a snapshot of its applied state
///    and report [`RaftCore::on_snapshot_built`](crate::RaftCore::on_snapshot_built).
///
/// Applying may run alongside persisting: committed entries are always already durable here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The role, leader or term changed to this.
    pub soft_state: Option<SoftState>,
    /// Messages that may be sent now.
    pub messages: Vec<Message>,
    /// Entries to append durably; they replace stored entries from their first index on. They
    /// are the runs the log holds them in, sharing its buffers (cloning them copies no entry).
    pub entries: EntryRuns,
    /// Hard state to save durably, when it changed. A new term or vote comes at once; a commit
    /// index that moved alone comes with the next batch that writes anything else, or after a
    /// tick (the stored commit index is only a hint for a restart).
    pub hard_state: Option<HardState>,
    /// Messages to send once `entries` and `hard_state` (and those of earlier batches) are durable.
    pub messages_after_persist: Vec<Message>,
    /// Committed entries to apply, in order, as the runs the log holds them in (sharing its
    /// buffers: a commit that covers several rounds of appends copies no entry).
    pub committed_entries: EntryRuns,
    /// Reads that may be served once their index is applied.
    pub read_states: Vec<ReadState>,
    /// Reads that failed (leadership changed); the caller should retry them.
    pub read_failures: Vec<(ReadId, ReadError)>,
    /// Build a snapshot of the state machine's applied state (compaction is due).
    pub build_snapshot: bool,
    /// A snapshot that becomes the latest, and the log it replaces; written with `entries`.
    pub snapshot: Option<SnapshotUpdate>,
    /// Snapshot chunks received from the leader, to write to the snapshot store in order.
    pub received_chunks: Vec<ReceivedChunk>,
    /// Snapshot chunks to read from the snapshot store and send (leader).
    pub snapshot_sends: Vec<SnapshotChunkRequest>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.messages.is_empty()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.messages_after_persist.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.read_failures.is_empty()
            && !self.build_snapshot
            && self.snapshot.is_none()
            && self.received_chunks.is_empty()
            && self.snapshot_sends.is_empty()
    }

    /// Whether this batch has anything to write durably.
    pub fn needs_persist(&self) -> bool {
        !self.entries.is_empty()
            || self.hard_state.is_some()
            || self.snapshot.is_some()
            || !self.received_chunks.is_empty()
    }

    /// Takes the durable write this batch asks for (entries, hard state, and the snapshot's
    /// record, purge and discard), with the snapshot to restore the state machine from once that
    /// write is durable (one received from the leader).
    pub fn take_log_write(&mut self) -> (LogWrite, Option<SnapshotMeta>) {
        let mut write = LogWrite {
            entries: std::mem::take(&mut self.entries),
            hard_state: self.hard_state.take(),
            ..LogWrite::default()
        };
        let mut restore = None;
        if let Some(update) = self.snapshot.take() {
            write.discard_log = update.discard_log;
            write.purge_to = update.purge_to;
            if update.restore {
                restore = Some(update.meta.clone());
            }
            write.snapshot = Some(update.meta);
        }
        (write, restore)
    }

    /// The (index, term) of the last entry to persist, to report back once written.
    pub fn persisted_up_to(&self) -> Option<(Index, Term)> {
        self.entries.last().map(|e| (e.index, e.term))
    }
}

//! The traits backends implement: log storage with its snapshot store, the user's state machine,
//! and the transport.

use std::future::Future;
use std::ops::RangeInclusive;

use async_trait::async_trait;
use bytes::Bytes;

use crate::entry::Entry;
use crate::error::{StateMachineError, StorageError, TransportError};
use crate::message::Message;
use crate::runs::EntryRuns;
use crate::snapshot_types::SnapshotMeta;
use crate::types::{HardState, Index};

/// What a node persisted, as read back when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StoredLog {
    /// The saved hard state (default when nothing was saved).
    pub hard_state: HardState,
    /// The latest snapshot recorded by a [`LogWrite`], if any; its bytes are in the snapshot store.
    pub snapshot: Option<SnapshotMeta>,
    /// The saved entries, consecutive: from index 1 without a purge, otherwise from the entry after
    /// the last purge.
    pub entries: Vec<Entry>,
}

/// One durable write, made atomically. Storage applies its parts in this order: `discard_log`,
/// `purge_to`, `entries`, `snapshot`, `hard_state`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogWrite {
    /// Drop every stored entry (a snapshot from the leader replaced a log that disagreed with it).
    pub discard_log: bool,
    /// Drop the stored entries up to this index (0: none). The log then continues after it even
    /// when no entry is left: the next append may start at `purge_to + 1`.
    pub purge_to: Index,
    /// Entries to append, consecutive. They replace every stored entry from the first one's
    /// index on. They are the runs the core's log holds them in, sharing its buffers: a store
    /// that keeps them in memory keeps the runs, copying no entry (build them from a
    /// `Vec<Entry>` with `.into()`).
    pub entries: EntryRuns,
    /// A snapshot, already complete in the snapshot store, that becomes the latest. Older ones may
    /// be deleted once this write is durable.
    pub snapshot: Option<SnapshotMeta>,
    /// The hard state to save, when it changed.
    pub hard_state: Option<HardState>,
}

impl LogWrite {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.discard_log
            && self.purge_to == 0
            && self.entries.is_empty()
            && self.snapshot.is_none()
            && self.hard_state.is_none()
    }

    /// Whether this write only moves the commit index of `durable` (the hard state stored now):
    /// the one write [`LogStorage`] lets a store make durable lazily, with the next one.
    ///
    /// ```
    /// use raft_core::{HardState, LogWrite};
    /// let durable = HardState { term: 2, voted_for: Some(1), commit: 5 };
    /// let commit = LogWrite { hard_state: Some(HardState { commit: 9, ..durable }), ..LogWrite::default() };
    /// assert!(commit.only_moves_commit(&durable));
    /// let vote = LogWrite { hard_state: Some(HardState { term: 3, voted_for: Some(2), commit: 5 }), ..LogWrite::default() };
    /// assert!(!vote.only_moves_commit(&durable));
    /// ```
    pub fn only_moves_commit(&self, durable: &HardState) -> bool {
        let Some(hard_state) = self.hard_state else {
            return false;
        };
        !self.discard_log
            && self.purge_to == 0
            && self.entries.is_empty()
            && self.snapshot.is_none()
            && hard_state.term == durable.term
            && hard_state.voted_for == durable.voted_for
    }

    /// Folds a later write into this one, so that writing the result equals writing both in turn
    /// (group commit). The entries of both stay the runs they were: nothing is copied.
    ///
    /// Refused, changing nothing, when the later write's entries would start after the entry
    /// following this one's last (a gap that storage would refuse of the later write).
    pub fn merge(&mut self, later: LogWrite) -> Result<(), StorageError> {
        // The entries this write keeps once the later one's discard and purge are done end at
        // `last`: the later entries must start no further than just after it.
        if let (Some(first), false) = (later.entries.first(), later.discard_log) {
            let kept_last = self
                .entries
                .last()
                .map(|e| e.index)
                .filter(|&last| last > later.purge_to);
            if let Some(last) = kept_last.filter(|&last| first.index > last.saturating_add(1)) {
                return Err(StorageError::LogGap {
                    first: first.index,
                    last,
                });
            }
        }
        if later.discard_log {
            self.discard_log = true;
            self.entries.clear();
        }
        if later.purge_to > self.purge_to {
            // This write's entries replace every stored entry from their first on. A purge that
            // takes all of them must still drop what was stored after them (a conflicting suffix
            // they replaced): in one write, that is discarding the stored log before the purge.
            if self
                .entries
                .last()
                .is_some_and(|last| last.index <= later.purge_to)
            {
                self.discard_log = true;
            }
            self.purge_to = later.purge_to;
            self.entries.purge_to(later.purge_to);
        }
        // Cannot leave a gap (checked above).
        self.entries.append_runs(later.entries)?;
        if later.snapshot.is_some() {
            self.snapshot = later.snapshot;
        }
        if later.hard_state.is_some() {
            self.hard_state = later.hard_state;
        }
        Ok(())
    }
}

/// A node's stored log held in memory: the hard state, the latest recorded snapshot, and the
/// entries after the last purge. [`apply`](Self::apply) is the reference of the [`LogWrite`]
/// contract, shared by the in-memory storage and the simulator's disks.
///
/// ```
/// use raft_core::{Entry, LogImage, LogWrite};
/// let mut image = LogImage::default();
/// let entries = vec![Entry::command(1, 1, "a"), Entry::command(1, 2, "b")].into();
/// image.apply(&LogWrite { entries, ..LogWrite::default() })?;
/// image.apply(&LogWrite { entries: vec![Entry::command(2, 2, "c")].into(), ..LogWrite::default() })?;
/// assert_eq!((image.last_index(), image.entries.get(2).map(|e| e.term)), (2, Some(2)));
/// image.apply(&LogWrite { purge_to: 2, ..LogWrite::default() })?;
/// assert!(image.entries.is_empty());
/// assert_eq!(image.last_index(), 2, "the log continues after the purge");
/// # Ok::<(), raft_core::StorageError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogImage {
    /// The saved hard state.
    pub hard_state: HardState,
    /// The entries up to here were purged; `entries` starts right after.
    pub purged_to: Index,
    /// The stored entries, consecutive from `purged_to + 1`, as the runs they were written in:
    /// a write's entries are kept as its buffer, not copied, and a purge drops from the front
    /// without moving what is left.
    pub entries: EntryRuns,
    /// The latest recorded snapshot.
    pub snapshot: Option<SnapshotMeta>,
}

impl LogImage {
    /// The index of the last stored entry (the purge point when none is left).
    pub fn last_index(&self) -> Index {
        self.purged_to + self.entries.len() as Index
    }

    /// Applies `write` whole, in the order the contract gives (`discard_log`, `purge_to`,
    /// `entries`, `snapshot`, `hard_state`), or, when its entries would leave a gap, not at all.
    pub fn apply(&mut self, write: &LogWrite) -> Result<(), StorageError> {
        self.check(write)?;
        self.apply_checked(write, write.entries.clone());
        Ok(())
    }

    /// [`apply`](Self::apply), taking `write` (its entries' buffer is kept either way; this
    /// saves counting one more reference to it).
    pub fn apply_owned(&mut self, mut write: LogWrite) -> Result<(), StorageError> {
        self.check(&write)?;
        let entries = std::mem::take(&mut write.entries);
        self.apply_checked(&write, entries);
        Ok(())
    }

    /// Refuses a write whose entries would leave a gap once its discard and purge are done (what
    /// [`apply`](Self::apply) checks first): a store that must write somewhere else before it
    /// applies a write to its image checks it here first.
    pub fn check(&self, write: &LogWrite) -> Result<(), StorageError> {
        if let Some(first) = write.entries.first() {
            // Where the log ends once the discard and the purge are done.
            let mut purged_to = self.purged_to;
            let mut last = if write.discard_log {
                purged_to
            } else {
                self.last_index()
            };
            if write.purge_to > purged_to {
                purged_to = write.purge_to;
                last = last.max(purged_to);
            }
            if first.index > last + 1 || first.index <= purged_to {
                return Err(StorageError::LogGap {
                    first: first.index,
                    last,
                });
            }
        }
        Ok(())
    }

    /// Applies a checked write whose entries are `entries` (`write.entries` itself may have been
    /// moved out).
    fn apply_checked(&mut self, write: &LogWrite, entries: EntryRuns) {
        if write.discard_log {
            self.entries.clear();
        }
        if write.purge_to > self.purged_to {
            self.entries.purge_to(write.purge_to);
            self.purged_to = write.purge_to;
        }
        let appended = self.entries.append_runs(entries);
        debug_assert!(appended.is_ok(), "checked: no gap");
        if let Some(snapshot) = &write.snapshot {
            self.snapshot = Some(snapshot.clone());
        }
        if let Some(hard_state) = write.hard_state {
            self.hard_state = hard_state;
        }
    }

    /// The stored entries in `range`, copied out; indexes purged or past the end are left out
    /// (what [`LogStorage::entries`] returns for a store that holds this image).
    pub fn entries_in(&self, range: RangeInclusive<Index>) -> Vec<Entry> {
        let first = (*range.start()).max(self.purged_to + 1);
        let last = (*range.end()).min(self.last_index());
        if first > last {
            return Vec::new();
        }
        self.entries
            .iter_from(first)
            .take_while(|entry| entry.index <= last)
            .cloned()
            .collect()
    }

    /// What a node restarting from this image reads back.
    pub fn stored_log(&self) -> StoredLog {
        StoredLog {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.iter().cloned().collect(),
        }
    }
}

/// Durable storage of one node's log, hard state and snapshots.
///
/// The contract the node relies on: when [`persist`](Self::persist) returns `Ok`, the write is
/// durable (it survives a crash of the process and of the machine) and complete (every part of
/// the write, or none). Writes are issued one at a time, in order.
///
/// One relaxation: a write whose only change is the hard state's `commit` (same term, same vote,
/// nothing else) may be made durable lazily, with the next durable write. The commit index is
/// recoverable (the leader tells it again, and a restarted node takes what its state machine
/// applied as committed), so losing the latest one to a power cut is safe; a write that changes
/// the term or the vote, or stores entries or a snapshot, never is.
///
/// A node polls [`persist`](Self::persist)'s future from its event loop, beside its other inputs,
/// so the future must not block its thread: do blocking I/O (a `write` and an `fsync`) on a
/// blocking thread, as `tokio::task::spawn_blocking` runs it, and await that. A store that keeps
/// its log in memory completes the write on the first poll, within the loop's turn.
///
/// Implement the methods as `async fn`: each future is the store's own type, not a boxed one
/// (the node polls one `persist` per group of writes, so a box per call is an allocation on
/// every round of the hot path).
pub trait LogStorage: Send + Sync + 'static {
    /// Where snapshots' bytes are kept.
    type Snapshots: SnapshotStore;

    /// A handle on the snapshot store, shared with the tasks that build, send and restore
    /// snapshots.
    fn snapshot_store(&self) -> Self::Snapshots;

    /// Reads everything persisted, to restart from.
    fn load(&mut self) -> impl Future<Output = Result<StoredLog, StorageError>> + Send;

    /// Writes entries and hard state durably and atomically.
    fn persist(&mut self, write: LogWrite) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Reads the stored entries in `range`; indexes past the end are left out.
    fn entries(
        &self,
        range: RangeInclusive<Index>,
    ) -> impl Future<Output = Result<Vec<Entry>, StorageError>> + Send;

    /// The index of the last stored entry; for an empty log, the index it was purged to (0 when
    /// never purged).
    fn last_index(&self) -> impl Future<Output = Result<Index, StorageError>> + Send;
}

/// Stores snapshots' bytes, each known by the index of the last entry it covers. A snapshot being
/// written is invisible until [`SnapshotSink::finish`] makes it durable and complete; a
/// half-written snapshot is never taken for a complete one.
#[async_trait]
pub trait SnapshotStore: Clone + Send + Sync + 'static {
    /// Starts writing the snapshot at `index`, replacing any unfinished one.
    async fn create(&self, index: Index) -> Result<Box<dyn SnapshotSink>, StorageError>;

    /// Opens the complete snapshot at `index` for reading from its start.
    async fn open(&self, index: Index) -> Result<Box<dyn SnapshotRead>, StorageError>;

    /// Reads `len` bytes at `offset` of the complete snapshot at `index` (fewer at its end).
    ///
    /// A leader sends a snapshot to a follower with these reads, chunk by chunk. A store that
    /// deletes a snapshot once a newer one is recorded must keep one still being read this way
    /// (for a while after its last chunk was read): otherwise, under sustained writes that keep
    /// recording newer snapshots, a large transfer would restart forever.
    async fn read_chunk(&self, index: Index, offset: u64, len: u64) -> Result<Bytes, StorageError>;
}

/// Where the state machine writes a snapshot, piece by piece (the whole state never needs to be
/// in one buffer).
#[async_trait]
pub trait SnapshotWrite: Send {
    /// Appends `data` to the snapshot.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;
}

/// Where the state machine reads a snapshot from, piece by piece.
#[async_trait]
pub trait SnapshotRead: Send {
    /// The next bytes of the snapshot, or `None` at its end.
    async fn read(&mut self) -> Result<Option<Bytes>, StorageError>;
}

/// A snapshot being written to a [`SnapshotStore`].
#[async_trait]
pub trait SnapshotSink: SnapshotWrite {
    /// Makes the snapshot durable and complete. Dropping the sink instead abandons it.
    async fn finish(self: Box<Self>) -> Result<(), StorageError>;
}

/// The user's deterministic state machine. Every node applies the same commands in the same order
/// and must reach the same state and produce the same responses.
///
/// The methods return futures that must be `Send` (the node runs them on a multi-threaded
/// runtime); implement them with plain `async fn`s. The trait does not box those futures: the
/// node calls [`apply`](Self::apply) once per committed entry on every node, and a boxed future
/// per call was an allocation per entry.
///
/// ```
/// use bytes::Bytes;
/// use raft_core::{Index, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError};
///
/// /// Counts the commands it applied; a query reads the count.
/// #[derive(Default)]
/// struct Counter {
///     count: u64,
///     applied: Index,
/// }
///
/// impl StateMachine for Counter {
///     async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
///         self.count += 1;
///         self.applied = index;
///         Ok(Bytes::copy_from_slice(&self.count.to_be_bytes()))
///     }
///
///     async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
///         Ok(Bytes::copy_from_slice(&self.count.to_be_bytes()))
///     }
///
///     async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
///         let bytes = Bytes::copy_from_slice(&self.count.to_be_bytes());
///         out.write(bytes).await.map_err(|e| StateMachineError::storage(self.applied, e))
///     }
///
///     async fn restore(
///         &mut self,
///         index: Index,
///         input: &mut dyn SnapshotRead,
///     ) -> Result<(), StateMachineError> {
///         let mut state = Vec::new();
///         while let Some(piece) = input.read().await.map_err(|e| StateMachineError::storage(index, e))? {
///             state.extend_from_slice(&piece);
///         }
///         let count = <[u8; 8]>::try_from(state.as_slice()).map_err(|_| StateMachineError {
///             index,
///             source: "a counter snapshot is 8 bytes".into(),
///         })?;
///         self.count = u64::from_be_bytes(count);
///         self.applied = index;
///         Ok(())
///     }
///
///     fn applied_index(&self) -> Index {
///         self.applied
///     }
/// }
/// ```
pub trait StateMachine: Send + 'static {
    /// Applies the committed command at `index` and returns the response for its proposer.
    ///
    /// The command is lent, not given: it stays in the log's shared run, which every node's
    /// storage and peers share too. A state machine that keeps it (or a part of it, with
    /// [`Bytes::slice`]) clones it, which counts a reference and copies nothing; one that only
    /// reads it costs no reference count per entry.
    fn apply(
        &mut self,
        index: Index,
        command: &Bytes,
    ) -> impl Future<Output = Result<Bytes, StateMachineError>> + Send;

    /// Answers a read-only query against the current state. It must not change the state: the
    /// node calls it once the read is safe (see the read consistency levels of the node API).
    fn query(&mut self, query: Bytes) -> impl Future<Output = Result<Bytes, StateMachineError>> + Send;

    /// Writes the current state (after every entry applied so far) into `snapshot`, in pieces of
    /// any size. The node builds snapshots on the task that applies entries, so the state does not
    /// change meanwhile.
    fn snapshot(
        &mut self,
        snapshot: &mut dyn SnapshotWrite,
    ) -> impl Future<Output = Result<(), StateMachineError>> + Send;

    /// Replaces the whole state with the one in `snapshot`: the state after every entry up to
    /// `index`. The next entry applied will be `index + 1`.
    fn restore(
        &mut self,
        index: Index,
        snapshot: &mut dyn SnapshotRead,
    ) -> impl Future<Output = Result<(), StateMachineError>> + Send;

    /// The index of the last entry this state machine has applied (0 when it keeps no state across
    /// restarts). A restarted node restores the latest snapshot if this is behind it, then applies
    /// the committed log from the entry after it.
    fn applied_index(&self) -> Index;
}

/// Sends messages to peers. `send` must not block: it queues the message and returns, because
/// the node's event loop calls it. Delivery is best effort; Raft retries what matters.
pub trait Transport: Send + Sync + 'static {
    /// Queues a message for delivery to `message.to`.
    fn send(&self, message: Message) -> Result<(), TransportError>;

    /// The largest message, encoded, that the transport carries, if it has a limit. The node
    /// refuses to start when its settings let it build a larger one
    /// ([`Config::max_message_bytes`](crate::Config::max_message_bytes)): such a message would
    /// never arrive, and the follower waiting for it would never catch up. The default has no
    /// limit.
    fn max_message_bytes(&self) -> Option<usize> {
        None
    }
}

/// Receives the messages addressed to one node.
///
/// Implement `recv` with a plain `async fn`; its future must be `Send`. The node's event loop
/// waits on it at every turn, so the trait does not box it.
pub trait Inbox: Send + 'static {
    /// The next message, or `None` once the transport is shut down.
    fn recv(&mut self) -> impl Future<Output = Option<Message>> + Send;

    /// A message that has already arrived, without waiting. The node uses it to process every
    /// message at hand before it collects the resulting work, which batches writes and sends. The
    /// default never has one ready.
    fn try_recv(&mut self) -> Option<Message> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// A write a core could hand out after `image`'s writes: sometimes a discard or a purge, and
    /// entries of one to three runs that start anywhere from the first kept index to just after
    /// the last.
    fn next_write(rng: &mut SeededRng, purged_to: Index, last: Index, term: u64) -> LogWrite {
        let mut write = LogWrite::default();
        if rng.chance(0.1) {
            write.discard_log = true;
        } else if rng.chance(0.2) {
            write.purge_to = purged_to + rng.below(last - purged_to + 3);
        }
        let (floor, end) = if write.discard_log {
            (purged_to + 1, purged_to + 1)
        } else {
            let floor = write.purge_to.max(purged_to) + 1;
            (floor, (last + 1).max(floor))
        };
        if rng.chance(0.8) {
            let mut next = floor + rng.below(end - floor + 1);
            for _ in 0..=rng.below(3) {
                let run: Vec<Entry> = (0..1 + rng.below(3))
                    .map(|i| Entry::command(term, next + i, "x"))
                    .collect();
                next += run.len() as Index;
                write.entries.append(run.into()).expect("consecutive");
            }
        }
        write
    }

    #[test]
    fn merged_writes_store_what_the_writes_store_in_turn() {
        for seed in 0..300 {
            let mut rng = SeededRng::new(seed);
            let mut in_turn = LogImage::default();
            let mut merged = LogWrite::default();
            for term in 1..=1 + rng.below(6) {
                let last = in_turn.last_index();
                let write = next_write(&mut rng, in_turn.purged_to, last, term);
                in_turn.apply(&write).expect("a write the core could make");
                merged.merge(write).expect("no gap");
            }
            let mut at_once = LogImage::default();
            at_once.apply(&merged).expect("the merged write");
            assert_eq!(at_once.entries, in_turn.entries, "seed {seed}");
            assert_eq!(
                (at_once.purged_to, at_once.last_index()),
                (in_turn.purged_to, in_turn.last_index()),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn merged_writes_over_a_stored_log_store_what_the_writes_store_in_turn() {
        // As above, but onto a log already stored: a merged write must also remove what the
        // writes in turn would have removed from it.
        for seed in 0..1000 {
            let mut rng = SeededRng::new(seed);
            let mut stored = LogImage::default();
            for term in 1..=1 + rng.below(3) {
                let write = next_write(&mut rng, stored.purged_to, stored.last_index(), term);
                stored.apply(&write).expect("a write the core could make");
            }
            let mut in_turn = stored.clone();
            let mut merged = LogWrite::default();
            for term in 4..=4 + rng.below(4) {
                let write = next_write(&mut rng, in_turn.purged_to, in_turn.last_index(), term);
                in_turn.apply(&write).expect("a write the core could make");
                merged.merge(write).expect("no gap");
            }
            let mut at_once = stored.clone();
            at_once.apply(&merged).expect("the merged write");
            assert_eq!(at_once.entries, in_turn.entries, "seed {seed}");
            assert_eq!(
                (at_once.purged_to, at_once.last_index()),
                (in_turn.purged_to, in_turn.last_index()),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_purge_that_takes_a_writes_entries_still_drops_the_suffix_they_replaced() {
        // Stored 1..=5 of term 1; a write replaces 3.. with 3..=4 of term 2; a later one purges
        // to 4 (a snapshot). In turn, 5 is gone; merged, it must be too.
        let mut stored = LogImage::default();
        let old: Vec<Entry> = (1..=5).map(|i| Entry::blank(1, i)).collect();
        stored
            .apply(&LogWrite {
                entries: old.into(),
                ..LogWrite::default()
            })
            .unwrap();
        let mut merged = LogWrite {
            entries: vec![Entry::blank(2, 3), Entry::blank(2, 4)].into(),
            ..LogWrite::default()
        };
        merged
            .merge(LogWrite {
                purge_to: 4,
                ..LogWrite::default()
            })
            .unwrap();
        stored.apply(&merged).unwrap();
        assert_eq!((stored.purged_to, stored.last_index()), (4, 4));
        assert!(stored.entries.is_empty());
    }

    #[test]
    fn a_merge_that_would_leave_a_gap_changes_nothing() {
        let mut write = LogWrite {
            entries: vec![Entry::blank(1, 1), Entry::blank(1, 2)].into(),
            ..LogWrite::default()
        };
        let before = write.clone();
        let gap = LogWrite {
            entries: vec![Entry::blank(1, 4)].into(),
            ..LogWrite::default()
        };
        assert!(matches!(
            write.merge(gap),
            Err(StorageError::LogGap { first: 4, last: 2 })
        ));
        assert_eq!(write, before);
        // After a purge past its entries, a write may continue anywhere after the purge.
        let purged = LogWrite {
            purge_to: 5,
            entries: vec![Entry::blank(1, 6)].into(),
            ..LogWrite::default()
        };
        write.merge(purged).expect("continues after the purge");
        assert_eq!(write.entries.first().map(|e| e.index), Some(6));
    }
}

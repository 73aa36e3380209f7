//! In-memory [`LogStorage`] for `raft-core`: for tests, demos and benchmarks.
//!
//! A [`MemStorage`] is a cheap handle: clones share one store, so a test can keep a handle while
//! a node owns another, and hand the store to the node again after a restart.
//!
//! To test what a crash does to unsynced data, writes can be *held*: with
//! [`MemStorage::hold_writes`], a write is accepted into a volatile layer but
//! [`persist`](LogStorage::persist) does not return until [`MemStorage::release_writes`]. A
//! [`MemStorage::crash`] then discards every write that was never reported durable, as a power
//! loss discards what was not fsynced.
//!
//! [`FaultyStorage`] wraps any [`LogStorage`] and fails its writes (I/O error, full disk, a sync
//! that fails after the write) and its reads on command.
//!
//! ```
//! use raft_core::{Entry, LogStorage, LogWrite};
//! use raft_storage_mem::MemStorage;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut storage = MemStorage::new();
//! let write = LogWrite { entries: vec![Entry::command(1, 1, "x")].into(), ..LogWrite::default() };
//! storage.persist(write).await?;
//! assert_eq!(storage.last_index().await?, 1);
//! # Ok::<(), raft_core::StorageError>(())
//! # }).unwrap();
//! ```

mod faulty;

pub use crate::faulty::{FaultyStorage, StorageFaults, WriteFault};

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use raft_core::{
    Entry, HardState, Index, LogImage, LogStorage, LogWrite, SnapshotMeta, SnapshotRead, SnapshotSink,
    SnapshotStore, SnapshotWrite, StorageError, StoredLog,
};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct Store {
    /// What survives a crash.
    durable: LogImage,
    /// While writes are held: what a reader sees, `durable` plus the writes accepted but not yet
    /// reported durable. `None` when nothing is held, and readers see `durable` (one copy of the
    /// log, not two, on the path every write takes).
    pending: Option<LogImage>,
    /// Writes accepted while held, in order, not yet durable.
    held: Vec<LogWrite>,
    writes: u64,
    /// Complete snapshots by index (finishing one makes it durable).
    snapshots: BTreeMap<Index, Bytes>,
    /// When each snapshot was last read in chunks (sent to a follower).
    chunk_reads: BTreeMap<Index, std::time::Instant>,
}

/// A superseded snapshot read in chunks this recently is kept: a transfer is still reading it.
const IN_TRANSFER_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl Store {
    /// What a reader sees: the durable log plus any held writes.
    fn visible(&self) -> &LogImage {
        self.pending.as_ref().unwrap_or(&self.durable)
    }

    /// Makes `write` durable; snapshots older than a newly recorded one are deleted, unless a
    /// transfer is still reading them.
    fn make_durable(&mut self, write: LogWrite) -> Result<(), StorageError> {
        self.durable.apply_owned(write)?;
        if let Some(latest) = &self.durable.snapshot {
            let latest = latest.index;
            let now = std::time::Instant::now();
            let reads = &mut self.chunk_reads;
            reads.retain(|_, at| now.duration_since(*at) < IN_TRANSFER_GRACE);
            self.snapshots
                .retain(|index, _| *index >= latest || reads.contains_key(index));
        }
        Ok(())
    }
}

/// An in-memory log store; clones share the same store.
#[derive(Clone, Debug)]
pub struct MemStorage {
    store: Arc<Mutex<Store>>,
    /// `true` while writes are held back from becoming durable.
    hold: Arc<watch::Sender<bool>>,
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemStorage {
            store: Arc::default(),
            hold: Arc::new(watch::Sender::new(false)),
        }
    }

    /// A store that already holds `entries` and `hard_state` durably (to set up a test).
    pub fn with_state(hard_state: HardState, entries: Vec<Entry>) -> Self {
        let storage = Self::new();
        {
            let mut store = storage.lock();
            let image = LogImage {
                hard_state,
                entries: entries.into(),
                ..LogImage::default()
            };
            store.durable = image;
            store.pending = None;
        }
        storage
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A poisoned lock means a test thread panicked mid-update; the data is still consistent
        // because every update is a single assignment.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, writes are accepted but not made durable: `persist` waits until
    /// [`release_writes`](Self::release_writes).
    pub fn hold_writes(&self) {
        self.hold.send_replace(true);
    }

    /// Makes held writes durable, in order, and lets waiting `persist` calls return.
    pub fn release_writes(&self) {
        {
            let mut store = self.lock();
            let held = std::mem::take(&mut store.held);
            for write in held {
                // Held writes were validated when accepted.
                let _ = store.make_durable(write);
            }
            // Everything accepted is durable now: readers see the durable log again.
            store.pending = None;
        }
        self.hold.send_replace(false);
    }

    /// Simulates a power loss: every write not yet reported durable is lost. Returns a handle to
    /// the surviving store, to restart a node from; this handle sees the same surviving state.
    pub fn crash(&self) -> MemStorage {
        let mut store = self.lock();
        store.held.clear();
        store.pending = None;
        drop(store);
        self.hold.send_replace(false);
        self.clone()
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.lock().durable.hard_state
    }

    /// A copy of the durable log.
    pub fn durable_entries(&self) -> Vec<Entry> {
        self.lock().durable.entries.iter().cloned().collect()
    }

    /// The latest durably recorded snapshot.
    pub fn durable_snapshot(&self) -> Option<SnapshotMeta> {
        self.lock().durable.snapshot.clone()
    }

    /// The indexes of the complete snapshots held.
    pub fn snapshot_indexes(&self) -> Vec<Index> {
        self.lock().snapshots.keys().copied().collect()
    }

    /// Damages the stored snapshot at `index` by flipping the bits of its middle byte, as a
    /// failing disk would (fault injection); whether one was there to damage.
    pub fn damage_snapshot(&self, index: Index) -> bool {
        let mut store = self.lock();
        let Some(data) = store.snapshots.get(&index) else {
            return false;
        };
        let mut damaged = data.to_vec();
        if damaged.is_empty() {
            damaged.push(0);
        } else {
            let middle = damaged.len() / 2;
            damaged[middle] ^= 0xff;
        }
        store.snapshots.insert(index, Bytes::from(damaged));
        true
    }

    /// How many writes were made durable so far.
    pub fn write_count(&self) -> u64 {
        self.lock().writes
    }
}

impl LogStorage for MemStorage {
    type Snapshots = MemSnapshots;

    fn snapshot_store(&self) -> MemSnapshots {
        MemSnapshots {
            store: self.store.clone(),
        }
    }

    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        Ok(self.lock().durable.stored_log())
    }

    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        let held = {
            let mut store = self.lock();
            let store = &mut *store;
            if *self.hold.borrow() {
                let pending = store.pending.get_or_insert_with(|| store.durable.clone());
                pending.apply(&write)?;
                store.writes += 1;
                store.held.push(write);
                true
            } else {
                // `apply` checks the write before it changes anything, so a refused write
                // leaves both images as they were.
                if let Some(pending) = &mut store.pending {
                    pending.apply(&write)?;
                }
                store.make_durable(write)?;
                store.writes += 1;
                false
            }
        };
        if held {
            let mut hold = self.hold.subscribe();
            // Wait until released (or crashed); a dropped sender cannot happen while `self` lives.
            let _ = hold.wait_for(|held| !held).await;
        }
        Ok(())
    }

    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().visible().entries_in(range))
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        Ok(self.lock().visible().last_index())
    }
}

/// The snapshot store of a [`MemStorage`]: complete snapshots live in memory beside the log.
#[derive(Clone, Debug)]
pub struct MemSnapshots {
    store: Arc<Mutex<Store>>,
}

impl MemSnapshots {
    fn snapshot(&self, index: Index) -> Result<Bytes, StorageError> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store
            .snapshots
            .get(&index)
            .cloned()
            .ok_or(StorageError::SnapshotNotFound(index))
    }
}

/// The size of the pieces a snapshot is read back in.
const READ_PIECE_BYTES: usize = 64 << 10;

#[async_trait]
impl SnapshotStore for MemSnapshots {
    async fn create(&self, index: Index) -> Result<Box<dyn SnapshotSink>, StorageError> {
        Ok(Box::new(MemSnapshotSink {
            store: self.store.clone(),
            index,
            data: BytesMut::new(),
        }))
    }

    async fn open(&self, index: Index) -> Result<Box<dyn SnapshotRead>, StorageError> {
        Ok(Box::new(MemSnapshotReader {
            rest: self.snapshot(index)?,
        }))
    }

    async fn read_chunk(&self, index: Index, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        let data = self.snapshot(index)?;
        self.store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .chunk_reads
            .insert(index, std::time::Instant::now());
        let start = (offset as usize).min(data.len());
        let end = (offset.saturating_add(len) as usize).min(data.len());
        Ok(data.slice(start..end))
    }
}

struct MemSnapshotSink {
    store: Arc<Mutex<Store>>,
    index: Index,
    data: BytesMut,
}

#[async_trait]
impl SnapshotWrite for MemSnapshotSink {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.data.extend_from_slice(&data);
        Ok(())
    }
}

#[async_trait]
impl SnapshotSink for MemSnapshotSink {
    async fn finish(self: Box<Self>) -> Result<(), StorageError> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.snapshots.insert(self.index, self.data.freeze());
        Ok(())
    }
}

struct MemSnapshotReader {
    rest: Bytes,
}

#[async_trait]
impl SnapshotRead for MemSnapshotReader {
    async fn read(&mut self) -> Result<Option<Bytes>, StorageError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let take = self.rest.len().min(READ_PIECE_BYTES);
        Ok(Some(self.rest.split_to(take)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| Entry::command(term, i, format!("e{i}"))).collect()
    }

    #[tokio::test]
    async fn append_replaces_the_suffix_from_the_first_new_index() {
        let mut s = MemStorage::new();
        s.persist(LogWrite {
            entries: entries(1..=5, 1).into(),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        s.persist(LogWrite {
            entries: entries(3..=3, 2).into(),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        assert_eq!(s.last_index().await.unwrap(), 3);
        assert_eq!(s.entries(2..=10).await.unwrap().len(), 2);
        assert_eq!(s.entries(3..=3).await.unwrap()[0].term, 2);
    }

    #[tokio::test]
    async fn append_with_a_gap_is_refused() {
        let mut s = MemStorage::new();
        let err = s
            .persist(LogWrite {
                entries: entries(3..=3, 1).into(),
                ..LogWrite::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LogGap { first: 3, last: 0 }));
    }

    #[tokio::test]
    async fn crash_loses_only_writes_not_reported_durable() {
        let mut s = MemStorage::new();
        s.persist(LogWrite {
            entries: entries(1..=2, 1).into(),
            hard_state: Some(HardState {
                term: 1,
                voted_for: Some(1),
                commit: 0,
            }),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        s.hold_writes();
        let mut writer = s.clone();
        let pending = tokio::spawn(async move {
            writer
                .persist(LogWrite {
                    entries: entries(3..=4, 1).into(),
                    hard_state: Some(HardState {
                        term: 2,
                        voted_for: None,
                        commit: 0,
                    }),
                    ..LogWrite::default()
                })
                .await
        });
        tokio::task::yield_now().await;
        assert_eq!(s.last_index().await.unwrap(), 4, "the write is visible");
        let mut after = s.crash();
        pending.await.unwrap().unwrap();
        let stored = after.load().await.unwrap();
        assert_eq!(stored.entries.len(), 2);
        assert_eq!(stored.hard_state.term, 1);
    }

    #[tokio::test]
    async fn released_writes_become_durable() {
        let s = MemStorage::new();
        s.hold_writes();
        let mut writer = s.clone();
        let pending = tokio::spawn(async move {
            writer
                .persist(LogWrite {
                    entries: entries(1..=1, 1).into(),
                    ..LogWrite::default()
                })
                .await
        });
        tokio::task::yield_now().await;
        s.release_writes();
        pending.await.unwrap().unwrap();
        assert_eq!(s.crash().durable_entries().len(), 1);
    }

    async fn write_snapshot(s: &MemStorage, index: Index, data: &'static [u8]) {
        let mut sink = s.snapshot_store().create(index).await.unwrap();
        sink.write(Bytes::from_static(data)).await.unwrap();
        sink.finish().await.unwrap();
    }

    fn meta(index: Index, size: u64) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term: 1,
            membership: raft_core::Membership::default(),
            size,
            checksum: 0,
        }
    }

    #[tokio::test]
    async fn purge_keeps_the_log_after_it_and_the_snapshot_survives_a_reload() {
        let mut s = MemStorage::new();
        s.persist(LogWrite {
            entries: entries(1..=6, 1).into(),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        write_snapshot(&s, 4, b"state").await;
        s.persist(LogWrite {
            purge_to: 3,
            snapshot: Some(meta(4, 5)),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        assert_eq!(s.entries(1..=10).await.unwrap().first().map(|e| e.index), Some(4));
        assert!(s.entries(1..=3).await.unwrap().is_empty());
        let stored = s.crash().load().await.unwrap();
        assert_eq!(stored.snapshot.map(|m| m.index), Some(4));
        assert_eq!(stored.entries.first().map(|e| e.index), Some(4));
        let chunk = s.snapshot_store().read_chunk(4, 1, 3).await.unwrap();
        assert_eq!(&chunk[..], b"tat");
    }

    #[tokio::test]
    async fn discarded_log_continues_after_the_snapshot() {
        let mut s = MemStorage::new();
        s.persist(LogWrite {
            entries: entries(1..=3, 1).into(),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        write_snapshot(&s, 10, b"").await;
        s.persist(LogWrite {
            discard_log: true,
            purge_to: 10,
            snapshot: Some(meta(10, 0)),
            entries: entries(11..=11, 2).into(),
            ..LogWrite::default()
        })
        .await
        .unwrap();
        assert_eq!(s.last_index().await.unwrap(), 11);
        let stored = s.load().await.unwrap();
        assert_eq!(stored.entries.len(), 1);
        assert_eq!(stored.entries[0].index, 11);
    }

    #[tokio::test]
    async fn unfinished_snapshot_is_never_visible_and_older_ones_go_once_superseded() {
        let mut s = MemStorage::new();
        write_snapshot(&s, 2, b"old").await;
        let mut sink = s.snapshot_store().create(5).await.unwrap();
        sink.write(Bytes::from_static(b"half")).await.unwrap();
        drop(sink);
        assert!(matches!(
            s.snapshot_store().open(5).await.err(),
            Some(StorageError::SnapshotNotFound(5))
        ));
        write_snapshot(&s, 5, b"new").await;
        s.persist(LogWrite {
            snapshot: Some(meta(5, 3)),
            purge_to: 5,
            ..LogWrite::default()
        })
        .await
        .unwrap();
        assert_eq!(s.snapshot_indexes(), vec![5]);
        let mut reader = s.snapshot_store().open(5).await.unwrap();
        assert_eq!(reader.read().await.unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(reader.read().await.unwrap(), None);
    }
}

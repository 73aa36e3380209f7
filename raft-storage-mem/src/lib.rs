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
//! ```
//! use raft_core::{Entry, LogStorage, LogWrite};
//! use raft_storage_mem::MemStorage;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut storage = MemStorage::new();
//! let write = LogWrite { entries: vec![Entry::command(1, 1, "x")], hard_state: None };
//! storage.persist(write).await?;
//! assert_eq!(storage.last_index().await?, 1);
//! # Ok::<(), raft_core::StorageError>(())
//! # }).unwrap();
//! ```

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use raft_core::{Entry, HardState, Index, LogStorage, LogWrite, StorageError, StoredLog};
use tokio::sync::watch;

/// The durable image of a node's storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Image {
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl Image {
    fn apply(&mut self, write: &LogWrite) -> Result<(), StorageError> {
        if let Some(first) = write.entries.first() {
            let last = self.entries.last().map_or(0, |e| e.index);
            if first.index > last + 1 {
                return Err(StorageError::LogGap {
                    first: first.index,
                    last,
                });
            }
            self.entries.truncate((first.index - 1) as usize);
            self.entries.extend(write.entries.iter().cloned());
        }
        if let Some(hard_state) = write.hard_state {
            self.hard_state = hard_state;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Store {
    /// What survives a crash.
    durable: Image,
    /// What a reader sees: `durable` plus writes accepted but not yet reported durable.
    visible: Image,
    /// Writes accepted while held, in order, not yet durable.
    held: Vec<LogWrite>,
    writes: u64,
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
            let image = Image { hard_state, entries };
            store.durable = image.clone();
            store.visible = image;
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
            for write in &held {
                // Held writes were validated when accepted.
                let _ = store.durable.apply(write);
            }
        }
        self.hold.send_replace(false);
    }

    /// Simulates a power loss: every write not yet reported durable is lost. Returns a handle to
    /// the surviving store, to restart a node from; this handle sees the same surviving state.
    pub fn crash(&self) -> MemStorage {
        let mut store = self.lock();
        store.held.clear();
        store.visible = store.durable.clone();
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
        self.lock().durable.entries.clone()
    }

    /// How many writes were made durable so far.
    pub fn write_count(&self) -> u64 {
        self.lock().writes
    }
}

#[async_trait]
impl LogStorage for MemStorage {
    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        let store = self.lock();
        Ok(StoredLog {
            hard_state: store.durable.hard_state,
            entries: store.durable.entries.clone(),
        })
    }

    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        let held = {
            let mut store = self.lock();
            store.visible.apply(&write)?;
            store.writes += 1;
            if *self.hold.borrow() {
                store.held.push(write);
                true
            } else {
                store.durable.apply(&write)?;
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
        let store = self.lock();
        let entries = &store.visible.entries;
        let start = (*range.start()).max(1) as usize - 1;
        let end = (*range.end() as usize).min(entries.len());
        Ok(entries.get(start..end).map(<[Entry]>::to_vec).unwrap_or_default())
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        Ok(self.lock().visible.entries.last().map_or(0, |e| e.index))
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
            entries: entries(1..=5, 1),
            hard_state: None,
        })
        .await
        .unwrap();
        s.persist(LogWrite {
            entries: entries(3..=3, 2),
            hard_state: None,
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
                entries: entries(3..=3, 1),
                hard_state: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LogGap { first: 3, last: 0 }));
    }

    #[tokio::test]
    async fn crash_loses_only_writes_not_reported_durable() {
        let mut s = MemStorage::new();
        s.persist(LogWrite {
            entries: entries(1..=2, 1),
            hard_state: Some(HardState {
                term: 1,
                voted_for: Some(1),
                commit: 0,
            }),
        })
        .await
        .unwrap();
        s.hold_writes();
        let mut writer = s.clone();
        let pending = tokio::spawn(async move {
            writer
                .persist(LogWrite {
                    entries: entries(3..=4, 1),
                    hard_state: Some(HardState {
                        term: 2,
                        voted_for: None,
                        commit: 0,
                    }),
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
                    entries: entries(1..=1, 1),
                    hard_state: None,
                })
                .await
        });
        tokio::task::yield_now().await;
        s.release_writes();
        pending.await.unwrap().unwrap();
        assert_eq!(s.crash().durable_entries().len(), 1);
    }
}

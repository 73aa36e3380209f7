//! Storage fault injection: [`FaultyStorage`] wraps any [`LogStorage`] and fails its writes and
//! reads on command, the way a failing disk does, so that tests can show what a node does then:
//! it stops or refuses, never acknowledges what it did not write, and says why. It can also stall
//! its writes, as a disk whose fsync hangs does, until told to resume.
//!
//! ```
//! use raft_core::{Entry, LogStorage, LogWrite};
//! use raft_storage_mem::{FaultyStorage, MemStorage, WriteFault};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (mut storage, faults) = FaultyStorage::new(MemStorage::new());
//! faults.fail_writes(WriteFault::DiskFull);
//! let write = LogWrite { entries: vec![Entry::command(1, 1, "x")].into(), ..LogWrite::default() };
//! assert!(storage.persist(write).await.is_err());
//! assert_eq!(faults.writes_failed(), 1);
//! # });
//! ```

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use raft_core::{Entry, Index, LogStorage, LogWrite, StorageError, StoredLog};
use tokio::sync::watch;

/// How writes fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// An I/O error before anything is written (`EIO`).
    Io,
    /// The disk is full (`ENOSPC`): nothing is written.
    DiskFull,
    /// The write reaches the store but its sync reports an error: what is on the disk is not
    /// known to the caller, which must not acknowledge it (and must not go on trusting the page
    /// cache: Linux may drop the dirty pages and clear the error).
    SyncFailsAfterWrite,
}

#[derive(Debug, Default)]
struct Plan {
    write: Option<WriteFault>,
    /// Writes to let through before `write` applies.
    writes_before_failing: u64,
    reads: bool,
}

/// The switchboard of a [`FaultyStorage`]: clones share it.
#[derive(Clone, Debug)]
pub struct StorageFaults {
    plan: Arc<Mutex<Plan>>,
    writes_failed: Arc<AtomicU64>,
    reads_failed: Arc<AtomicU64>,
    /// `true` while writes stall.
    stalled: Arc<watch::Sender<bool>>,
}

impl Default for StorageFaults {
    fn default() -> Self {
        StorageFaults {
            plan: Arc::default(),
            writes_failed: Arc::default(),
            reads_failed: Arc::default(),
            stalled: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl StorageFaults {
    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every write from now on fails with `fault`.
    pub fn fail_writes(&self, fault: WriteFault) {
        self.fail_writes_after(0, fault);
    }

    /// The next `writes` writes succeed; every one after them fails with `fault`.
    pub fn fail_writes_after(&self, writes: u64, fault: WriteFault) {
        let mut plan = self.plan();
        plan.write = Some(fault);
        plan.writes_before_failing = writes;
    }

    /// Every read (`load`, `entries`, `last_index`) from now on fails with an I/O error.
    pub fn fail_reads(&self) {
        self.plan().reads = true;
    }

    /// Writes from now on wait (in order: the store takes one at a time) until
    /// [`resume_writes`](Self::resume_writes), as behind a hung fsync; reads go on.
    pub fn stall_writes(&self) {
        self.stalled.send_replace(true);
    }

    /// Stalled writes go through, and new ones no longer wait.
    pub fn resume_writes(&self) {
        self.stalled.send_replace(false);
    }

    /// The disk works again: no faults, and no stall.
    pub fn heal(&self) {
        *self.plan() = Plan::default();
        self.resume_writes();
    }

    /// Writes failed so far.
    pub fn writes_failed(&self) -> u64 {
        self.writes_failed.load(Ordering::Relaxed)
    }

    /// Reads failed so far.
    pub fn reads_failed(&self) -> u64 {
        self.reads_failed.load(Ordering::Relaxed)
    }

    /// The fault the next write meets, if any.
    fn next_write(&self) -> Option<WriteFault> {
        let mut plan = self.plan();
        let fault = plan.write?;
        if plan.writes_before_failing > 0 {
            plan.writes_before_failing -= 1;
            return None;
        }
        self.writes_failed.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }

    fn read(&self) -> Result<(), StorageError> {
        if self.plan().reads {
            self.reads_failed.fetch_add(1, Ordering::Relaxed);
            return Err(io_error(std::io::ErrorKind::Other, "injected read error (EIO)"));
        }
        Ok(())
    }
}

fn io_error(kind: std::io::ErrorKind, what: &str) -> StorageError {
    StorageError::Backend(Box::new(std::io::Error::new(kind, what.to_string())))
}

/// A [`LogStorage`] whose writes and reads fail when its [`StorageFaults`] say so.
#[derive(Clone, Debug)]
pub struct FaultyStorage<S> {
    inner: S,
    faults: StorageFaults,
    stalled: watch::Receiver<bool>,
}

impl<S: LogStorage> FaultyStorage<S> {
    /// Wraps `inner`; the handle returned switches the faults on and off.
    pub fn new(inner: S) -> (Self, StorageFaults) {
        let faults = StorageFaults::default();
        (
            FaultyStorage {
                inner,
                stalled: faults.stalled.subscribe(),
                faults: faults.clone(),
            },
            faults,
        )
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: LogStorage> LogStorage for FaultyStorage<S> {
    type Snapshots = S::Snapshots;

    fn snapshot_store(&self) -> Self::Snapshots {
        self.inner.snapshot_store()
    }

    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        self.faults.read()?;
        self.inner.load().await
    }

    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        // The sender lives in `self.faults`, so the channel never closes under us.
        let _ = self.stalled.wait_for(|stalled| !*stalled).await;
        match self.faults.next_write() {
            None => self.inner.persist(write).await,
            Some(WriteFault::Io) => Err(io_error(std::io::ErrorKind::Other, "injected write error (EIO)")),
            Some(WriteFault::DiskFull) => Err(io_error(
                std::io::ErrorKind::StorageFull,
                "injected full disk (ENOSPC)",
            )),
            Some(WriteFault::SyncFailsAfterWrite) => {
                self.inner.persist(write).await?;
                Err(io_error(std::io::ErrorKind::Other, "injected fsync error (EIO)"))
            }
        }
    }

    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError> {
        self.faults.read()?;
        self.inner.entries(range).await
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        self.faults.read()?;
        self.inner.last_index().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stalled_write_waits_until_the_writes_resume_and_reads_go_on() {
        let (mut storage, faults) = FaultyStorage::new(MemStorage::new());
        faults.stall_writes();
        let reader = storage.clone();
        let write = LogWrite {
            entries: vec![Entry::command(1, 1, "x")].into(),
            ..LogWrite::default()
        };
        let writing = tokio::spawn(async move { storage.persist(write).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writing.is_finished(), "the write waits while the disk stalls");
        assert_eq!(
            reader.last_index().await.ok(),
            Some(0),
            "reads go on, and see nothing yet"
        );
        faults.resume_writes();
        let written = tokio::time::timeout(Duration::from_secs(5), writing).await;
        assert!(matches!(written, Ok(Ok(Ok(())))), "{written:?}");
        assert_eq!(reader.last_index().await.ok(), Some(1));
    }
}

//! A skeleton of a storage backend of your own, and the conformance suite that says whether it
//! keeps the contract `raft-node` relies on.
//!
//! This one wraps the in-memory store and counts writes; replace the delegation with your
//! database. `cargo test -p raft-node --example custom_storage` runs the whole storage suite
//! against it (each case is a test); `cargo run` shows it driving a node.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{
    Entry, Index, LogStorage, LogWrite, Membership, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError, StorageError, StoredLog,
};
use raft_node::mem::{MemNetwork, MemStorage};
use raft_node::{NodeConfig, RaftNode};

/// Your backend: here, the in-memory store plus a count of durable writes.
#[derive(Clone)]
pub struct CountingStorage {
    inner: MemStorage,
    writes: Arc<AtomicU64>,
}

impl CountingStorage {
    fn new(inner: MemStorage) -> Self {
        CountingStorage {
            inner,
            writes: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl LogStorage for CountingStorage {
    type Snapshots = <MemStorage as LogStorage>::Snapshots;

    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        self.inner.load().await
    }

    /// Must be durable when it returns: the node acknowledges votes and entries after it. The
    /// node polls this future from its event loop, so a database's blocking write and fsync
    /// belong on `tokio::task::spawn_blocking`, awaited here.
    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        self.inner.persist(write).await?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError> {
        self.inner.entries(range).await
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        self.inner.last_index().await
    }

    fn snapshot_store(&self) -> Self::Snapshots {
        self.inner.snapshot_store()
    }
}

/// The conformance suite's way to open (and, after a simulated crash, reopen) the backend.
#[cfg(test)]
mod conformance {
    use super::*;
    use raft_conformance::storage::StorageHarness;

    struct Harness {
        store: Option<MemStorage>,
    }

    #[async_trait::async_trait]
    impl StorageHarness for Harness {
        type Storage = CountingStorage;

        async fn open(&mut self) -> CountingStorage {
            let store = match &self.store {
                Some(store) => store.crash(),
                None => MemStorage::new(),
            };
            self.store = Some(store.clone());
            CountingStorage::new(store)
        }
    }

    raft_conformance::storage_suite!(Harness { store: None });
}

/// A state machine that answers every command with its index.
#[derive(Default)]
struct Echo {
    applied: Index,
}

impl StateMachine for Echo {
    async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
        self.applied = index;
        Ok(Bytes::from(index.to_string()))
    }
    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(Bytes::new())
            .await
            .map_err(|e| StateMachineError::storage(self.applied, e))
    }
    async fn restore(
        &mut self,
        index: Index,
        _input: &mut dyn SnapshotRead,
    ) -> Result<(), StateMachineError> {
        self.applied = index;
        Ok(())
    }
    fn applied_index(&self) -> Index {
        self.applied
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let network = MemNetwork::new(1);
    let (transport, inbox) = network.register(1);
    let storage = CountingStorage::new(MemStorage::new());
    let writes = storage.writes.clone();
    let node = RaftNode::start(
        NodeConfig::new(1),
        Membership::voters([1])?,
        storage,
        transport,
        inbox,
        Echo::default(),
    )
    .await?;
    node.wait_for_leader(Duration::from_secs(5))
        .await
        .ok_or("no leader")?;
    for _ in 0..10 {
        node.propose(&b"x"[..]).await?;
    }
    println!(
        "10 proposals took {} durable writes",
        writes.load(Ordering::Relaxed)
    );
    node.shutdown().await;
    Ok(())
}

//! `MemStorage` passes the storage conformance suite. Reopening is a crash: what survives is
//! what was reported durable.

use async_trait::async_trait;
use raft_conformance::storage::StorageHarness;
use raft_storage_mem::MemStorage;

struct Harness {
    store: Option<MemStorage>,
}

#[async_trait]
impl StorageHarness for Harness {
    type Storage = MemStorage;

    async fn open(&mut self) -> MemStorage {
        let store = match &self.store {
            Some(store) => store.crash(),
            None => MemStorage::new(),
        };
        self.store = Some(store.clone());
        store
    }
}

raft_conformance::storage_suite!(Harness { store: None });

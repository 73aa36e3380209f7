//! `RocksStorage` passes the storage conformance suite. Reopening drops the database and opens
//! the same directory again.

use async_trait::async_trait;
use raft_conformance::storage::StorageHarness;
use raft_storage_rocks::{RocksStorage, StoreIdentity};

struct Harness {
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        Harness {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
}

#[async_trait]
impl StorageHarness for Harness {
    type Storage = RocksStorage;

    async fn open(&mut self) -> RocksStorage {
        let identity = StoreIdentity {
            cluster_id: 1,
            node_id: 1,
        };
        match RocksStorage::open(self.dir.path(), identity).await {
            Ok(storage) => storage,
            Err(e) => panic!("open: {e}"),
        }
    }
}

raft_conformance::storage_suite!(Harness::new());

//! `RocksStorage` under the crash test (`raft_conformance::crash`): a child writes until it is
//! killed with SIGKILL; every acknowledged write is there when the store is reopened.
//! `RAFT_CRASH_ITERATIONS` and `RAFT_CRASH_SEED` set the kills and their timing.

use std::path::Path;

use raft_conformance::crash::CrashHarness;
use raft_storage_rocks::{RocksStorage, StoreIdentity};

struct Harness;

#[async_trait::async_trait]
impl CrashHarness for Harness {
    type Storage = RocksStorage;

    async fn open(dir: &Path) -> RocksStorage {
        let identity = StoreIdentity {
            cluster_id: 3,
            node_id: 1,
        };
        RocksStorage::open(dir, identity).await.expect("open the store")
    }
}

fn main() {
    raft_conformance::crash::main::<Harness>("rocks");
}

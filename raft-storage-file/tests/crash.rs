//! `JournalStorage` under the crash test (`raft_conformance::crash`): a child writes until it is
//! killed with SIGKILL; every acknowledged write is there when the store is reopened. Segments
//! of 64 KiB roll over every few dozen writes, so kills also land while a new segment and its
//! checkpoint are being written. `RAFT_CRASH_ITERATIONS` and `RAFT_CRASH_SEED` set the kills and
//! their timing.

use std::path::Path;

use raft_conformance::crash::CrashHarness;
use raft_storage_file::{JournalStorage, StoreIdentity};

struct Harness;

#[async_trait::async_trait]
impl CrashHarness for Harness {
    type Storage = JournalStorage;

    async fn open(dir: &Path) -> JournalStorage {
        let identity = StoreIdentity {
            cluster_id: 3,
            node_id: 1,
        };
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || JournalStorage::open_blocking(dir, identity, 64 << 10))
            .await
            .expect("the open task")
            .expect("open the store")
    }
}

fn main() {
    raft_conformance::crash::main::<Harness>("journal");
}

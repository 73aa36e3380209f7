//! `JournalStorage` passes the storage conformance suite, with segments of the default size and
//! with segments so small that nearly every write starts a new one (so that the checkpoint that
//! starts a segment is what most reopens read back). Reopening drops the store and opens the same
//! directory again.

use async_trait::async_trait;
use raft_conformance::storage::StorageHarness;
use raft_storage_file::{JournalStorage, StoreIdentity, DEFAULT_SEGMENT_BYTES};

struct Harness {
    dir: tempfile::TempDir,
    segment_bytes: u64,
}

impl Harness {
    fn new(segment_bytes: u64) -> Self {
        Harness {
            dir: tempfile::tempdir().expect("a temporary directory"),
            segment_bytes,
        }
    }
}

#[async_trait]
impl StorageHarness for Harness {
    type Storage = JournalStorage;

    async fn open(&mut self) -> JournalStorage {
        let identity = StoreIdentity {
            cluster_id: 1,
            node_id: 1,
        };
        let dir = self.dir.path().to_path_buf();
        let segment_bytes = self.segment_bytes;
        let opened =
            tokio::task::spawn_blocking(move || JournalStorage::open_blocking(dir, identity, segment_bytes))
                .await
                .expect("the open task");
        match opened {
            Ok(storage) => storage,
            Err(e) => panic!("open: {e}"),
        }
    }
}

mod default_segments {
    use super::*;
    raft_conformance::storage_suite!(Harness::new(DEFAULT_SEGMENT_BYTES));
}

mod one_page_segments {
    use super::*;
    raft_conformance::storage_suite!(Harness::new(4096));
}

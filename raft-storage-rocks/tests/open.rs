//! Opening validates what it finds: format version, cluster id, node id and records, with typed
//! errors and no panic.

use raft_core::{Entry, LogStorage, LogWrite, StorageError};
use raft_storage_rocks::format::{log_key, FORMAT_VERSION, FORMAT_VERSION_KEY, LOG_CF, META_CF};
use raft_storage_rocks::{OpenError, RocksStorage, StoreIdentity};

const NODE_1: StoreIdentity = StoreIdentity {
    cluster_id: 10,
    node_id: 1,
};

async fn create_with_entries(dir: &std::path::Path, n: u64) {
    let mut storage = RocksStorage::open(dir, NODE_1).await.expect("new store opens");
    let entries = (1..=n).map(|i| Entry::command(1, i, format!("e{i}"))).collect();
    storage
        .persist(LogWrite {
            entries,
            ..LogWrite::default()
        })
        .await
        .expect("persist");
}

/// Edits the raw database, as damage or another version would have left it.
fn tamper(dir: &std::path::Path, edit: impl FnOnce(&rocksdb::DB)) {
    let options = rocksdb::Options::default();
    let db = rocksdb::DB::open_cf(&options, dir.join("db"), [LOG_CF, META_CF]).expect("raw open");
    edit(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_another_clusters_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 3).await;
    let other_cluster = StoreIdentity {
        cluster_id: 11,
        node_id: 1,
    };
    let refused = RocksStorage::open(dir.path(), other_cluster).await;
    assert!(
        matches!(
            refused,
            Err(OpenError::ClusterMismatch {
                found: 10,
                expected: 11
            })
        ),
        "{refused:?}"
    );
    // Nothing was changed: the rightful owner still opens it.
    let mut storage = RocksStorage::open(dir.path(), NODE_1).await.expect("owner opens");
    assert_eq!(storage.load().await.expect("load").entries.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_another_nodes_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 1).await;
    let node_2 = StoreIdentity {
        cluster_id: 10,
        node_id: 2,
    };
    let refused = RocksStorage::open(dir.path(), node_2).await;
    assert!(
        matches!(
            refused,
            Err(OpenError::NodeMismatch {
                found: 1,
                expected: 2
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 1).await;
    tamper(dir.path(), |db| {
        let meta = db.cf_handle(META_CF).expect("meta");
        db.put_cf(meta, FORMAT_VERSION_KEY, (FORMAT_VERSION + 1).to_be_bytes())
            .expect("put");
    });
    let refused = RocksStorage::open(dir.path(), NODE_1).await;
    assert!(
        matches!(refused, Err(OpenError::UnsupportedFormat { found, supported }) if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_version_record_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 1).await;
    tamper(dir.path(), |db| {
        let meta = db.cf_handle(META_CF).expect("meta");
        db.put_cf(meta, FORMAT_VERSION_KEY, b"x").expect("put");
    });
    let refused = RocksStorage::open(dir.path(), NODE_1).await;
    assert!(matches!(refused, Err(OpenError::Corrupt(_))), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_entry_is_reported_as_corrupt_when_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 5).await;
    tamper(dir.path(), |db| {
        let log = db.cf_handle(LOG_CF).expect("log");
        db.put_cf(log, log_key(3), [0xff, 0xff, 0xff]).expect("put");
    });
    let mut storage = RocksStorage::open(dir.path(), NODE_1).await.expect("opens");
    let loaded = storage.load().await;
    assert!(matches!(loaded, Err(StorageError::Corrupt(_))), "{loaded:?}");
    let read = storage.entries(3..=3).await;
    assert!(matches!(read, Err(StorageError::Corrupt(_))), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_in_the_log_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 5).await;
    tamper(dir.path(), |db| {
        let log = db.cf_handle(LOG_CF).expect("log");
        db.delete_cf(log, log_key(2)).expect("delete");
    });
    let mut storage = RocksStorage::open(dir.path(), NODE_1).await.expect("opens");
    let loaded = storage.load().await;
    assert!(matches!(loaded, Err(StorageError::Corrupt(_))), "{loaded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_by_another_process_is_refused_not_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = RocksStorage::open(dir.path(), NODE_1).await.expect("opens");
    let second = RocksStorage::open(dir.path(), NODE_1).await;
    assert!(matches!(second, Err(OpenError::Database { .. })), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_snapshot_left_by_a_crash_is_removed_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_entries(dir.path(), 1).await;
    let partial = dir
        .path()
        .join("snapshots")
        .join("partial-snapshot-00000000000000000009-0");
    std::fs::write(&partial, b"half").expect("write");
    let unrecorded = dir.path().join("snapshots").join("snapshot-00000000000000000009");
    std::fs::write(&unrecorded, b"finished, never recorded").expect("write");
    let storage = RocksStorage::open(dir.path(), NODE_1).await.expect("opens");
    assert!(!partial.exists(), "a temporary snapshot file must be removed");
    assert!(
        !unrecorded.exists(),
        "a snapshot no write recorded is of no use after a restart"
    );
    assert_eq!(
        storage.snapshot_store().indexes().expect("list"),
        Vec::<u64>::new()
    );
}

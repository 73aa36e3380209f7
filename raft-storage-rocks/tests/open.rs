//! Opening validates what it finds: format version, cluster id, node id and records, with typed
//! errors and no panic.

use raft_core::{Entry, LogStorage, LogWrite, StorageError};
use raft_storage_rocks::format::{log_key, FORMAT_VERSION, FORMAT_VERSION_KEY, LOG_CF, META_CF};
use raft_storage_rocks::{IdentityMismatch, OpenError, RocksStorage, StoreIdentity};

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
            Err(OpenError::Identity(IdentityMismatch::Cluster {
                found: 10,
                expected: 11
            }))
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
            Err(OpenError::Identity(IdentityMismatch::Node {
                found: 1,
                expected: 2
            }))
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

/// The files in the database directory whose names end in `suffix`, largest first.
fn database_files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("db"))
        .expect("read db dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    files
}

/// Flips every bit of the byte at `fraction` of the file's length.
fn flip_byte(path: &std::path::Path, fraction: f64) {
    let mut bytes = std::fs::read(path).expect("read file");
    assert!(bytes.len() > 100, "{} has {} bytes", path.display(), bytes.len());
    let at = (bytes.len() as f64 * fraction) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).expect("write file");
}

/// Twenty durable writes, each its own WAL record: votes in terms 1 to 20 and an entry each.
async fn create_with_votes(dir: &std::path::Path) {
    let mut storage = RocksStorage::open(dir, NODE_1).await.expect("new store opens");
    for term in 1..=20u64 {
        storage
            .persist(LogWrite {
                entries: vec![Entry::command(term, term, vec![term as u8; 200])].into(),
                hard_state: Some(raft_core::HardState {
                    term,
                    voted_for: Some(1),
                    commit: term - 1,
                }),
                ..LogWrite::default()
            })
            .await
            .expect("persist");
    }
}

/// A record corrupted in the middle of the write-ahead log must not be replayed up to the damage
/// and opened as if the rest never happened: the node would come back with an older term and vote,
/// and could vote twice in one term. The open is refused and the error says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_in_the_middle_of_the_wal_refuses_the_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_votes(dir.path()).await;
    let wal = database_files(dir.path(), ".log");
    assert!(!wal.is_empty(), "the writes are still in the write-ahead log");
    flip_byte(&wal[0], 0.4);
    let refused = RocksStorage::open(dir.path(), NODE_1).await;
    let error = refused.expect_err("a store with a corrupt WAL record must not open");
    assert!(matches!(error, OpenError::DatabaseCorrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("add it back as a new node"), "{message}");
}

/// A flipped byte in a table file is found by RocksDB's block checksums when the log is read at
/// start, and reported as corruption (not as a passing backend failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_table_file_is_reported_as_corrupt_when_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_votes(dir.path()).await;
    tamper(dir.path(), |db| {
        for name in [LOG_CF, META_CF] {
            db.flush_cf(db.cf_handle(name).expect("family")).expect("flush");
        }
    });
    let tables = database_files(dir.path(), ".sst");
    assert!(!tables.is_empty(), "the flush wrote table files");
    // The data blocks come first in a table file.
    flip_byte(&tables[0], 0.3);
    let opened = RocksStorage::open(dir.path(), NODE_1).await;
    match opened {
        Err(error) => assert!(matches!(error, OpenError::DatabaseCorrupt { .. }), "{error:?}"),
        Ok(mut storage) => {
            let loaded = storage.load().await;
            assert!(matches!(loaded, Err(StorageError::Corrupt(_))), "{loaded:?}");
        }
    }
}

/// A record cut short at the very end of the write-ahead log is what a power cut in the middle of
/// a write leaves: that write was never acknowledged, so it is dropped and the store opens with
/// every write before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_cut_short_at_the_end_of_the_wal_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_with_votes(dir.path()).await;
    let wal = database_files(dir.path(), ".log");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&wal[0])
        .expect("open WAL");
    let length = file.metadata().expect("metadata").len();
    file.set_len(length - 40).expect("cut the last record short");
    drop(file);
    let mut storage = RocksStorage::open(dir.path(), NODE_1)
        .await
        .expect("a torn tail is an unacknowledged write, not corruption");
    let loaded = storage.load().await.expect("load");
    assert_eq!(
        loaded.hard_state.term, 19,
        "the last write is gone, the one before is not"
    );
    assert_eq!(loaded.entries.len(), 19);
}

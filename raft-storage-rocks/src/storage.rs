//! The log and hard state in RocksDB.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use raft_core::{Entry, HardState, Index, LogStorage, LogWrite, SnapshotMeta, StorageError, StoredLog};
use rocksdb::{
    ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use tracing::{debug, info};

use crate::error::OpenError;
use crate::format::{
    decode_entry, decode_hard_state, decode_snapshot_meta, decode_u64, encode, encode_u64, log_key,
    CLUSTER_ID_KEY, FORMAT_VERSION, FORMAT_VERSION_KEY, HARD_STATE_KEY, LOG_CF, META_CF, NODE_ID_KEY,
    PURGED_TO_KEY, SNAPSHOT_KEY,
};
use raft_storage_file::{sync_dir, FileSnapshots, StoreIdentity};

/// Where the log starts and ends, kept in memory so that `last_index` needs no disk read.
#[derive(Clone, Copy, Debug, Default)]
struct LogBounds {
    purged_to: Index,
    last_index: Index,
    /// The latest recorded snapshot (its file is the one kept).
    snapshot_index: Option<Index>,
    /// The hard state last written.
    hard_state: HardState,
}

/// A node's durable log, hard state and snapshots: a RocksDB database in `<dir>/db` and snapshot
/// files in `<dir>/snapshots`. See the [crate docs](crate) for the guarantees.
pub struct RocksStorage {
    db: Arc<DB>,
    bounds: Arc<Mutex<LogBounds>>,
    snapshots: FileSnapshots,
    dir: PathBuf,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// RocksDB's corruption (a checksum that does not match) is the store's corruption; anything else
/// is a backend failure.
fn backend(e: rocksdb::Error) -> StorageError {
    match e.kind() {
        rocksdb::ErrorKind::Corruption => StorageError::Corrupt(format!("RocksDB: {e}")),
        _ => StorageError::Backend(Box::new(e)),
    }
}

/// Runs blocking RocksDB work off the tokio workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Backend(format!("storage task failed: {e}").into()))?
}

fn corrupt(e: StorageError) -> OpenError {
    OpenError::Corrupt(e.to_string())
}

impl RocksStorage {
    /// Opens the store in `dir` (created if missing) for `identity`. A new store records the
    /// identity and the format version; an existing one must match them. Runs on the blocking
    /// pool.
    pub async fn open(dir: impl AsRef<Path>, identity: StoreIdentity) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, identity))
            .await
            .map_err(|e| OpenError::Corrupt(format!("open task failed: {e}")))?
    }

    /// [`open`](Self::open) for callers outside a tokio runtime (it blocks the calling thread).
    pub fn open_blocking(dir: PathBuf, identity: StoreIdentity) -> Result<Self, OpenError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let db_path = dir.join("db");
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A record cut short at the very end of the write-ahead log is a write that a crash
        // interrupted before it was acknowledged: dropping it is right. A damaged record anywhere
        // before the end is not: replaying up to it (RocksDB's default, point-in-time recovery)
        // would bring the node back with an older term and vote, so it could vote twice in a
        // term. That refuses the open instead.
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        options.set_paranoid_checks(true);
        let families = [LOG_CF, META_CF].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db =
            DB::open_cf_descriptors(&options, &db_path, families).map_err(|source| match source.kind() {
                rocksdb::ErrorKind::Corruption => OpenError::DatabaseCorrupt {
                    path: db_path.clone(),
                    source,
                },
                _ => OpenError::Database {
                    path: db_path.clone(),
                    source,
                },
            })?;
        let db = Arc::new(db);
        let bounds = check_identity_and_read_bounds(&db, identity)?;
        let snapshot_dir = dir.join("snapshots");
        let snapshots = FileSnapshots::open(snapshot_dir.clone()).map_err(io(&snapshot_dir))?;
        // Only the recorded snapshot is of use after a restart: one finished but never recorded
        // (a crash came between) or superseded is deleted.
        snapshots
            .delete_where(|index| Some(index) != bounds.snapshot_index)
            .map_err(io(&snapshot_dir))?;
        info!(
            dir = %dir.display(),
            purged_to = bounds.purged_to,
            last_index = bounds.last_index,
            "opened RocksDB storage"
        );
        Ok(RocksStorage {
            db,
            bounds: Arc::new(Mutex::new(bounds)),
            snapshots,
            dir,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn bounds(&self) -> MutexGuard<'_, LogBounds> {
        // Updates under the lock are single assignments; the state stays valid after a panic.
        self.bounds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn meta_get(db: &DB, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    let Some(meta) = db.cf_handle(META_CF) else {
        return Err(StorageError::Corrupt("column family `meta` is missing".into()));
    };
    db.get_cf(meta, key).map_err(backend)
}

fn log_cf(db: &DB) -> Result<&rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(LOG_CF)
        .ok_or_else(|| StorageError::Corrupt("column family `log` is missing".into()))
}

fn meta_cf(db: &DB) -> Result<&rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(META_CF)
        .ok_or_else(|| StorageError::Corrupt("column family `meta` is missing".into()))
}

/// Checks (or, for a new store, records) the format version and identity; reads the log bounds.
fn check_identity_and_read_bounds(db: &DB, identity: StoreIdentity) -> Result<LogBounds, OpenError> {
    let version = meta_get(db, FORMAT_VERSION_KEY).map_err(corrupt)?;
    let Some(version) = version else {
        // A new store, unless it already holds something (then the version record was lost).
        let log = log_cf(db).map_err(corrupt)?;
        if db.iterator_cf(log, IteratorMode::Start).next().is_some() {
            return Err(OpenError::Corrupt(
                "log entries without a format version record".into(),
            ));
        }
        let meta = meta_cf(db).map_err(corrupt)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, FORMAT_VERSION_KEY, FORMAT_VERSION.to_be_bytes());
        batch.put_cf(meta, CLUSTER_ID_KEY, encode_u64(identity.cluster_id));
        batch.put_cf(meta, NODE_ID_KEY, encode_u64(identity.node_id));
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync).map_err(|e| corrupt(backend(e)))?;
        info!(
            cluster_id = identity.cluster_id,
            node_id = identity.node_id,
            "created a new store"
        );
        return Ok(LogBounds::default());
    };
    let version: [u8; 4] = version
        .as_slice()
        .try_into()
        .map_err(|_| OpenError::Corrupt(format!("format version record of {} bytes", version.len())))?;
    let found = u32::from_be_bytes(version);
    if found != FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat {
            found,
            supported: FORMAT_VERSION,
        });
    }
    let read_id = |key: &[u8], what: &str| -> Result<u64, OpenError> {
        let bytes = meta_get(db, key)
            .map_err(corrupt)?
            .ok_or_else(|| OpenError::Corrupt(format!("{what} record is missing")))?;
        decode_u64(what, &bytes).map_err(corrupt)
    };
    let cluster_id = read_id(CLUSTER_ID_KEY, "cluster id")?;
    let node_id = read_id(NODE_ID_KEY, "node id")?;
    identity.check(StoreIdentity { cluster_id, node_id })?;
    read_bounds(db).map_err(corrupt)
}

fn read_bounds(db: &DB) -> Result<LogBounds, StorageError> {
    let purged_to = match meta_get(db, PURGED_TO_KEY)? {
        Some(bytes) => decode_u64("purge point", &bytes)?,
        None => 0,
    };
    let snapshot_index = match meta_get(db, SNAPSHOT_KEY)? {
        Some(bytes) => Some(decode_snapshot_meta(&bytes)?.index),
        None => None,
    };
    let log = log_cf(db)?;
    let last_index = match db.iterator_cf(log, IteratorMode::End).next() {
        Some(item) => {
            let (key, value) = item.map_err(backend)?;
            decode_entry(&key, &value)?.index
        }
        None => purged_to,
    };
    if last_index < purged_to {
        return Err(StorageError::Corrupt(format!(
            "last entry {last_index} is before the purge point {purged_to}"
        )));
    }
    let hard_state = match meta_get(db, HARD_STATE_KEY)? {
        Some(bytes) => decode_hard_state(&bytes)?,
        None => HardState::default(),
    };
    Ok(LogBounds {
        purged_to,
        last_index,
        snapshot_index,
        hard_state,
    })
}

/// Reads the entries in `first..=last` (within the log), checking they are consecutive.
fn read_entries(db: &DB, first: Index, last: Index) -> Result<Vec<Entry>, StorageError> {
    let log = log_cf(db)?;
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(log_key(last.saturating_add(1)).to_vec());
    let start = log_key(first);
    let mut entries = Vec::with_capacity((last - first + 1).min(4096) as usize);
    for item in db.iterator_cf_opt(log, options, IteratorMode::From(&start, Direction::Forward)) {
        let (key, value) = item.map_err(backend)?;
        let entry = decode_entry(&key, &value)?;
        let expected = first + entries.len() as Index;
        if entry.index != expected {
            return Err(StorageError::Corrupt(format!(
                "log has a hole: found entry {} where {expected} should be",
                entry.index
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Builds the one batch that makes `write` durable, and the bounds it leaves.
fn build_batch(
    db: &DB,
    bounds: LogBounds,
    write: &LogWrite,
) -> Result<(WriteBatch, LogBounds), StorageError> {
    let log = log_cf(db)?;
    let meta = meta_cf(db)?;
    let mut batch = WriteBatch::default();
    let mut next = bounds;
    // Range deletions end before u64::MAX's key; no entry ever has that index.
    let end_of_log = log_key(u64::MAX);
    if write.discard_log {
        batch.delete_range_cf(log, log_key(0), end_of_log);
        next.last_index = next.purged_to;
    }
    if write.purge_to > next.purged_to {
        batch.delete_range_cf(log, log_key(0), log_key(write.purge_to + 1));
        batch.put_cf(meta, PURGED_TO_KEY, encode_u64(write.purge_to));
        next.purged_to = write.purge_to;
        next.last_index = next.last_index.max(write.purge_to);
    }
    if let Some(first) = write.entries.first() {
        if first.index > next.last_index + 1 || first.index <= next.purged_to {
            return Err(StorageError::LogGap {
                first: first.index,
                last: next.last_index,
            });
        }
        if first.index <= next.last_index {
            // A conflicting suffix: replaced in this same batch.
            batch.delete_range_cf(log, log_key(first.index), end_of_log);
        }
        for entry in &write.entries {
            batch.put_cf(log, log_key(entry.index), encode("log entry", entry)?);
        }
        next.last_index = first.index + write.entries.len() as Index - 1;
    }
    if let Some(snapshot) = &write.snapshot {
        batch.put_cf(meta, SNAPSHOT_KEY, encode("snapshot metadata", snapshot)?);
        next.snapshot_index = Some(snapshot.index);
    }
    if let Some(hard_state) = &write.hard_state {
        batch.put_cf(meta, HARD_STATE_KEY, encode("hard state", hard_state)?);
        next.hard_state = *hard_state;
    }
    Ok((batch, next))
}

/// Whether `write` only moves the commit index: then it need not be synced (see the
/// `LogStorage` contract), which spares every node one fsync per commit.
impl LogStorage for RocksStorage {
    type Snapshots = FileSnapshots;

    fn snapshot_store(&self) -> FileSnapshots {
        self.snapshots.clone()
    }

    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        let db = self.db.clone();
        let bounds = *self.bounds();
        blocking(move || {
            let hard_state = bounds.hard_state;
            let snapshot: Option<SnapshotMeta> = match meta_get(&db, SNAPSHOT_KEY)? {
                Some(bytes) => Some(decode_snapshot_meta(&bytes)?),
                None => None,
            };
            let entries = if bounds.last_index > bounds.purged_to {
                read_entries(&db, bounds.purged_to + 1, bounds.last_index)?
            } else {
                Vec::new()
            };
            let expected = bounds.last_index - bounds.purged_to;
            if entries.len() as Index != expected {
                return Err(StorageError::Corrupt(format!(
                    "log should hold entries {}..={} but holds {}",
                    bounds.purged_to + 1,
                    bounds.last_index,
                    entries.len()
                )));
            }
            Ok(StoredLog {
                hard_state,
                snapshot,
                entries,
            })
        })
        .await
    }

    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        if write.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let bounds = *self.bounds();
        let snapshots = self.snapshots.clone();
        let next = blocking(move || {
            let (batch, next) = build_batch(&db, bounds, &write)?;
            let mut options = WriteOptions::default();
            options.set_sync(!write.only_moves_commit(&bounds.hard_state));
            db.write_opt(batch, &options).map_err(backend)?;
            if let (Some(latest), true) = (next.snapshot_index, next.snapshot_index != bounds.snapshot_index)
            {
                // The newer snapshot is recorded durably: older files are of no further use. (A
                // newer file may be a snapshot finished but not recorded yet: it stays.)
                snapshots
                    .delete_where(|index| index < latest)
                    .and_then(|()| sync_dir(snapshots.dir()))
                    .map_err(|e| StorageError::Backend(Box::new(e)))?;
            }
            Ok(next)
        })
        .await?;
        debug!(
            last_index = next.last_index,
            purged_to = next.purged_to,
            "persisted"
        );
        *self.bounds() = next;
        Ok(())
    }

    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError> {
        let bounds = *self.bounds();
        let first = (*range.start()).max(bounds.purged_to + 1);
        let last = (*range.end()).min(bounds.last_index);
        if first > last {
            return Ok(Vec::new());
        }
        let db = self.db.clone();
        blocking(move || read_entries(&db, first, last)).await
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        Ok(self.bounds().last_index)
    }
}

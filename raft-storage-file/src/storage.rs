//! The log and hard state in a journal of writes ([`crate::journal`]), held in memory.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use raft_core::{
    ClusterId, Entry, EntryRuns, HardState, Index, LogImage, LogStorage, LogWrite, NodeId, SnapshotMeta,
    StorageError, StoredLog,
};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use tracing::{debug, info};

use crate::error::OpenError;
use crate::identity::StoreIdentity;
use crate::journal::{Journal, JournalError, Recovered};
use crate::snapshot_files::{sync_dir, FileSnapshots};

/// Runs blocking file work off the tokio workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Backend(format!("storage task failed: {e}").into()))?
}

/// The version of the journal's records this build writes and reads.
pub const JOURNAL_FORMAT_VERSION: u32 = 1;
/// The size a journal segment is given unless its checkpoint needs more: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Entries serialized as the sequence a `Vec<Entry>` decodes from, without collecting them.
struct EntriesRef<'a>(&'a EntryRuns);

impl Serialize for EntriesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for entry in self.0.iter() {
            seq.serialize_element(entry)?;
        }
        seq.end()
    }
}

/// A record as written: borrows what it writes. Encodes exactly as [`Record`] decodes.
#[derive(Serialize)]
enum RecordRef<'a> {
    Checkpoint {
        format: u32,
        cluster_id: ClusterId,
        node_id: NodeId,
        hard_state: &'a HardState,
        purged_to: Index,
        snapshot: &'a Option<SnapshotMeta>,
        entries: EntriesRef<'a>,
    },
    Write {
        discard_log: bool,
        purge_to: Index,
        entries: EntriesRef<'a>,
        snapshot: &'a Option<SnapshotMeta>,
        hard_state: &'a Option<HardState>,
    },
}

/// A record as read back.
#[derive(Deserialize)]
enum Record {
    /// Everything the store held when its segment was started.
    Checkpoint {
        format: u32,
        cluster_id: ClusterId,
        node_id: NodeId,
        hard_state: HardState,
        purged_to: Index,
        snapshot: Option<SnapshotMeta>,
        entries: Vec<Entry>,
    },
    /// One [`LogWrite`].
    Write {
        discard_log: bool,
        purge_to: Index,
        entries: Vec<Entry>,
        snapshot: Option<SnapshotMeta>,
        hard_state: Option<HardState>,
    },
}

fn encode(record: &RecordRef<'_>) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(record)
        .map_err(|e| StorageError::Backend(format!("encode a journal record: {e}").into()))
}

fn encode_checkpoint(identity: StoreIdentity, image: &LogImage) -> Result<Vec<u8>, StorageError> {
    encode(&RecordRef::Checkpoint {
        format: JOURNAL_FORMAT_VERSION,
        cluster_id: identity.cluster_id,
        node_id: identity.node_id,
        hard_state: &image.hard_state,
        purged_to: image.purged_to,
        snapshot: &image.snapshot,
        entries: EntriesRef(&image.entries),
    })
}

fn encode_write(write: &LogWrite) -> Result<Vec<u8>, StorageError> {
    encode(&RecordRef::Write {
        discard_log: write.discard_log,
        purge_to: write.purge_to,
        entries: EntriesRef(&write.entries),
        snapshot: &write.snapshot,
        hard_state: &write.hard_state,
    })
}

fn storage_error(error: JournalError) -> StorageError {
    match error {
        JournalError::Corrupt { .. } => StorageError::Corrupt(error.to_string()),
        _ => StorageError::Backend(Box::new(error)),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Updates under these locks are whole assignments or one write: the state stays valid after a
    // panic.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rebuilds the stored image from what the journal read back, checking the identity.
fn replay(journal_dir: &Path, identity: StoreIdentity, recovered: Recovered) -> Result<LogImage, OpenError> {
    let corrupt = |what: String| OpenError::JournalCorrupt {
        path: journal_dir.to_path_buf(),
        reason: what,
    };
    let checkpoint: Record = postcard::from_bytes(&recovered.checkpoint)
        .map_err(|e| corrupt(format!("the checkpoint does not decode: {e}")))?;
    let Record::Checkpoint {
        format,
        cluster_id,
        node_id,
        hard_state,
        purged_to,
        snapshot,
        entries,
    } = checkpoint
    else {
        return Err(corrupt("the first record is not a checkpoint".into()));
    };
    if format != JOURNAL_FORMAT_VERSION {
        return Err(OpenError::UnsupportedFormat {
            found: format,
            supported: JOURNAL_FORMAT_VERSION,
        });
    }
    identity.check(StoreIdentity { cluster_id, node_id })?;
    if entries.first().is_some_and(|e| e.index != purged_to + 1)
        || entries.windows(2).any(|pair| pair[1].index != pair[0].index + 1)
    {
        return Err(corrupt(
            "the checkpoint's entries are not consecutive after its purge point".into(),
        ));
    }
    let mut image = LogImage {
        hard_state,
        purged_to,
        entries: entries.into(),
        snapshot,
    };
    for (n, payload) in recovered.records.iter().enumerate() {
        let record: Record =
            postcard::from_bytes(payload).map_err(|e| corrupt(format!("record {n} does not decode: {e}")))?;
        let Record::Write {
            discard_log,
            purge_to,
            entries,
            snapshot,
            hard_state,
        } = record
        else {
            return Err(corrupt(format!("record {n} is a checkpoint after the first")));
        };
        if entries.windows(2).any(|pair| pair[1].index != pair[0].index + 1) {
            return Err(corrupt(format!("record {n}'s entries are not consecutive")));
        }
        let write = LogWrite {
            discard_log,
            purge_to,
            entries: entries.into(),
            snapshot,
            hard_state,
        };
        image
            .apply_owned(write)
            .map_err(|e| corrupt(format!("record {n} does not follow the ones before it: {e}")))?;
    }
    Ok(image)
}

/// Durable [`LogStorage`] on a journal of writes: each [`persist`](LogStorage::persist) is one
/// record appended to a preallocated file and synced, and the log is held in memory (bounded by
/// the node's compaction, as with `raft-storage-mem`'s `MemStorage`). Snapshots are files
/// ([`FileSnapshots`]), as with `raft-storage-rocks`'s `RocksStorage`.
///
/// Against RocksDB's write-ahead log, a sync writes no file metadata (the journal's file does not
/// grow), and a write is one `pwrite` and one `fdatasync` with no memtable behind it. The cost is
/// memory: the whole log after the last purge is held, as it is in the checkpoint that starts
/// each new segment.
///
/// ```
/// use raft_core::{Entry, LogStorage, LogWrite};
/// use raft_storage_file::{JournalStorage, StoreIdentity};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let identity = StoreIdentity { cluster_id: 7, node_id: 1 };
/// let mut storage = JournalStorage::open(dir.path(), identity).await?;
/// let write = LogWrite { entries: vec![Entry::command(1, 1, "x")].into(), ..LogWrite::default() };
/// storage.persist(write).await?;
/// drop(storage);
///
/// let mut storage = JournalStorage::open(dir.path(), identity).await?;
/// assert_eq!(storage.load().await?.entries.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct JournalStorage {
    /// What is durable, as a reader sees it.
    image: Arc<Mutex<LogImage>>,
    journal: Arc<Mutex<Journal>>,
    snapshots: FileSnapshots,
    identity: StoreIdentity,
    dir: PathBuf,
}

impl std::fmt::Debug for JournalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalStorage")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl JournalStorage {
    /// Opens the store in `dir` (created if missing) for `identity`, with segments of
    /// [`DEFAULT_SEGMENT_BYTES`]. A new store records the identity and the format version; an
    /// existing one must match them. Runs on the blocking pool.
    pub async fn open(dir: impl AsRef<Path>, identity: StoreIdentity) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, identity, DEFAULT_SEGMENT_BYTES))
            .await
            .map_err(|e| OpenError::Task(e.to_string()))?
    }

    /// [`open`](Self::open) with segments of at least `segment_bytes`, for callers outside a
    /// tokio runtime (it blocks the calling thread).
    pub fn open_blocking(
        dir: PathBuf,
        identity: StoreIdentity,
        segment_bytes: u64,
    ) -> Result<Self, OpenError> {
        let journal_dir = dir.join("journal");
        let journal_error = |error: JournalError| match error {
            JournalError::Io { path, source, .. } => OpenError::Io { path, source },
            JournalError::Corrupt { path, reason } => OpenError::JournalCorrupt { path, reason },
            JournalError::TooLarge(_) | JournalError::Failed(_) => OpenError::JournalCorrupt {
                path: journal_dir.clone(),
                reason: error.to_string(),
            },
        };
        let (journal, image) = match Journal::open(&journal_dir, segment_bytes).map_err(journal_error)? {
            Some((journal, recovered)) => (journal, replay(&journal_dir, identity, recovered)?),
            None => {
                let image = LogImage::default();
                let checkpoint =
                    encode_checkpoint(identity, &image).map_err(|e| OpenError::JournalCorrupt {
                        path: journal_dir.clone(),
                        reason: e.to_string(),
                    })?;
                let journal =
                    Journal::create(&journal_dir, segment_bytes, &checkpoint).map_err(journal_error)?;
                info!(
                    cluster_id = identity.cluster_id,
                    node_id = identity.node_id,
                    "created a new journal store"
                );
                (journal, image)
            }
        };
        let snapshot_dir = dir.join("snapshots");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        let snapshots = FileSnapshots::open(snapshot_dir.clone()).map_err(io(&snapshot_dir))?;
        // Only the recorded snapshot is of use after a restart (as for RocksStorage).
        let recorded = image.snapshot.as_ref().map(|s| s.index);
        snapshots
            .delete_where(|index| Some(index) != recorded)
            .map_err(io(&snapshot_dir))?;
        info!(
            dir = %dir.display(),
            purged_to = image.purged_to,
            last_index = image.last_index(),
            "opened journal storage"
        );
        Ok(JournalStorage {
            image: Arc::new(Mutex::new(image)),
            journal: Arc::new(Mutex::new(journal)),
            snapshots,
            identity,
            dir,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl LogStorage for JournalStorage {
    type Snapshots = FileSnapshots;

    fn snapshot_store(&self) -> FileSnapshots {
        self.snapshots.clone()
    }

    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        Ok(lock(&self.image).stored_log())
    }

    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        if write.is_empty() {
            return Ok(());
        }
        let sync = {
            let image = lock(&self.image);
            image.check(&write)?;
            !write.only_moves_commit(&image.hard_state)
        };
        let payload = encode_write(&write)?;
        let journal = self.journal.clone();
        let image = self.image.clone();
        let snapshots = self.snapshots.clone();
        let identity = self.identity;
        let write = blocking(move || {
            let mut journal = lock(&journal);
            if journal.fits(payload.len()) {
                journal.append(&payload, sync).map_err(storage_error)?;
            } else {
                // A new segment, starting with everything stored once this write is done.
                let mut next = lock(&image).clone();
                next.apply(&write)?;
                let checkpoint = encode_checkpoint(identity, &next)?;
                journal.roll_over(&checkpoint).map_err(storage_error)?;
            }
            if let Some(latest) = &write.snapshot {
                // The newer snapshot is recorded durably: older files are of no further use.
                snapshots
                    .delete_where(|index| index < latest.index)
                    .and_then(|()| sync_dir(snapshots.dir()))
                    .map_err(|e| StorageError::Backend(Box::new(e)))?;
            }
            Ok(write)
        })
        .await?;
        let mut image = lock(&self.image);
        image.apply_owned(write)?;
        debug!(
            last_index = image.last_index(),
            purged_to = image.purged_to,
            "persisted"
        );
        Ok(())
    }

    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError> {
        Ok(lock(&self.image).entries_in(range))
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        Ok(lock(&self.image).last_index())
    }
}

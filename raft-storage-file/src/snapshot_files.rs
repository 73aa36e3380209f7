//! Snapshots as files: written under a temporary name, synced, renamed into place, and the
//! directory synced, so that a file with a snapshot's name is always a complete snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use raft_core::{Index, SnapshotRead, SnapshotSink, SnapshotStore, SnapshotWrite, StorageError};
use tracing::{debug, warn};

/// The file name of the complete snapshot at `index`.
pub fn snapshot_file_name(index: Index) -> String {
    format!("snapshot-{index:020}")
}

/// The index a complete snapshot's file name names, if it is one.
pub fn snapshot_index_of_file(name: &str) -> Option<Index> {
    let digits = name.strip_prefix("snapshot-")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The prefix of temporary files of snapshots being written.
pub const SNAPSHOT_TEMP_PREFIX: &str = "partial-";

/// The size of the pieces a snapshot is read back in.
const READ_PIECE_BYTES: usize = 256 << 10;
/// Bytes a sink gathers before it hands them to the file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// A superseded snapshot read in chunks this recently is kept: a transfer is still reading it.
const IN_TRANSFER_GRACE: Duration = Duration::from_secs(30);

/// A snapshot store of one file per complete snapshot in a directory (the store of
/// [`JournalStorage`](crate::JournalStorage), and of `raft-storage-rocks`'s `RocksStorage`).
/// Clones share the directory.
#[derive(Clone, Debug)]
pub struct FileSnapshots {
    dir: Arc<PathBuf>,
    /// Distinguishes temporary files of sinks started in this process.
    next_temp: Arc<AtomicU64>,
    /// When each snapshot was last read in chunks (sent to a follower).
    chunk_reads: Arc<Mutex<BTreeMap<Index, Instant>>>,
}

fn backend(context: &str, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("{context}: {e}").into())
}

/// Runs blocking file work off the tokio workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Backend(format!("snapshot file task failed: {e}").into()))?
}

impl FileSnapshots {
    /// The store in `dir`, created if missing. Temporary files left by a crash are removed.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(SNAPSHOT_TEMP_PREFIX)
            {
                debug!(file = %entry.path().display(), "removing a snapshot left half-written by a crash");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(FileSnapshots {
            dir: Arc::new(dir),
            next_temp: Arc::new(AtomicU64::new(0)),
            chunk_reads: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// The directory holding the snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, index: Index) -> PathBuf {
        self.dir.join(snapshot_file_name(index))
    }

    /// The indexes of the complete snapshots held, in order.
    pub fn indexes(&self) -> std::io::Result<Vec<Index>> {
        let mut indexes = Vec::new();
        for entry in std::fs::read_dir(self.dir.as_path())? {
            if let Some(index) = snapshot_index_of_file(&entry?.file_name().to_string_lossy()) {
                indexes.push(index);
            }
        }
        indexes.sort_unstable();
        Ok(indexes)
    }

    fn chunk_reads(&self) -> MutexGuard<'_, BTreeMap<Index, Instant>> {
        self.chunk_reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the complete snapshots that `delete` says to (blocking), except those a transfer
    /// is still reading (read in chunks within the last 30 s): a later call
    /// deletes them once the transfer is over.
    pub fn delete_where(&self, delete: impl Fn(Index) -> bool) -> std::io::Result<()> {
        let in_transfer: BTreeSet<Index> = {
            let mut reads = self.chunk_reads();
            let now = Instant::now();
            reads.retain(|_, at| now.duration_since(*at) < IN_TRANSFER_GRACE);
            reads.keys().copied().collect()
        };
        for index in self.indexes()? {
            if in_transfer.contains(&index) {
                debug!(index, "keeping a superseded snapshot while a transfer reads it");
                continue;
            }
            if delete(index) {
                debug!(index, "deleting a superseded snapshot");
                match std::fs::remove_file(self.path(index)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn open_file(&self, index: Index) -> Result<std::fs::File, StorageError> {
        std::fs::File::open(self.path(index)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::SnapshotNotFound(index),
            _ => backend(&format!("open snapshot {index}"), e),
        })
    }
}

/// Syncs a directory, so that a rename or removal in it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl SnapshotStore for FileSnapshots {
    async fn create(&self, index: Index) -> Result<Box<dyn SnapshotSink>, StorageError> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{SNAPSHOT_TEMP_PREFIX}{}-{n}", snapshot_file_name(index)));
        let final_path = self.path(index);
        let file = {
            let temp = temp.clone();
            blocking(move || std::fs::File::create(&temp).map_err(|e| backend("create snapshot file", e)))
                .await?
        };
        Ok(Box::new(FileSnapshotSink {
            file: Some(file),
            temp,
            final_path,
            dir: self.dir.clone(),
            buffer: BytesMut::new(),
        }))
    }

    async fn open(&self, index: Index) -> Result<Box<dyn SnapshotRead>, StorageError> {
        let this = self.clone();
        let file = blocking(move || this.open_file(index)).await?;
        Ok(Box::new(FileSnapshotReader { file: Some(file) }))
    }

    async fn read_chunk(&self, index: Index, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        self.chunk_reads().insert(index, Instant::now());
        let this = self.clone();
        blocking(move || {
            let file = this.open_file(index)?;
            let size = file.metadata().map_err(|e| backend("snapshot size", e))?.len();
            let start = offset.min(size);
            let end = offset.saturating_add(len).min(size);
            let mut data = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut data, start)
                .map_err(|e| backend(&format!("read snapshot {index}"), e))?;
            Ok(Bytes::from(data))
        })
        .await
    }
}

/// A snapshot being written to its temporary file.
struct FileSnapshotSink {
    /// `None` once handed to the blocking pool (or finished).
    file: Option<std::fs::File>,
    temp: PathBuf,
    final_path: PathBuf,
    dir: Arc<PathBuf>,
    buffer: BytesMut,
}

impl FileSnapshotSink {
    async fn write_buffer(&mut self) -> Result<(), StorageError> {
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::Backend(
                "snapshot file was lost by an earlier failure".into(),
            ));
        };
        let data = self.buffer.split().freeze();
        let file = blocking(move || {
            file.write_all(&data)
                .map_err(|e| backend("write snapshot file", e))?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }
}

#[async_trait]
impl SnapshotWrite for FileSnapshotSink {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(&data);
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotSink for FileSnapshotSink {
    async fn finish(mut self: Box<Self>) -> Result<(), StorageError> {
        self.write_buffer().await?;
        let Some(file) = self.file.take() else {
            return Err(StorageError::Backend(
                "snapshot file was lost by an earlier failure".into(),
            ));
        };
        let (temp, final_path, dir) = (self.temp.clone(), self.final_path.clone(), self.dir.clone());
        blocking(move || {
            file.sync_all().map_err(|e| backend("sync snapshot file", e))?;
            drop(file);
            std::fs::rename(&temp, &final_path).map_err(|e| backend("rename snapshot file", e))?;
            sync_dir(&dir).map_err(|e| backend("sync snapshot directory", e))
        })
        .await?;
        // The file now has its final name: nothing left for `Drop` to clean up.
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for FileSnapshotSink {
    fn drop(&mut self) {
        if self.temp.as_os_str().is_empty() {
            return;
        }
        // Abandoned: remove the temporary file (a crash leaves it for the next open to remove).
        if let Err(e) = std::fs::remove_file(&self.temp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(file = %self.temp.display(), error = %e, "cannot remove an abandoned snapshot file");
            }
        }
    }
}

/// Reads a complete snapshot from its file.
struct FileSnapshotReader {
    file: Option<std::fs::File>,
}

#[async_trait]
impl SnapshotRead for FileSnapshotReader {
    async fn read(&mut self) -> Result<Option<Bytes>, StorageError> {
        let Some(mut file) = self.file.take() else {
            return Ok(None);
        };
        let (file, piece) = blocking(move || {
            let mut piece = Vec::with_capacity(READ_PIECE_BYTES);
            (&mut file)
                .take(READ_PIECE_BYTES as u64)
                .read_to_end(&mut piece)
                .map_err(|e| backend("read snapshot file", e))?;
            Ok((file, piece))
        })
        .await?;
        if piece.is_empty() {
            return Ok(None);
        }
        self.file = Some(file);
        Ok(Some(Bytes::from(piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_file_names_round_trip_and_reject_others() {
        assert_eq!(snapshot_index_of_file(&snapshot_file_name(42)), Some(42));
        assert_eq!(
            snapshot_index_of_file(&snapshot_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(snapshot_index_of_file("snapshot-42"), None);
        assert_eq!(snapshot_index_of_file("partial-00000000000000000042"), None);
        assert_eq!(snapshot_index_of_file("snapshot-0000000000000000004x"), None);
    }
}

//! Durable [`LogStorage`](raft_core::LogStorage) for `raft-core` in plain files, with nothing to
//! build but Rust.
//!
//! * **The log** (see [`JournalStorage`]): each [`persist`](raft_core::LogStorage::persist) is one
//!   checksummed record appended to a journal file that was allocated to its full size when it
//!   was created, then synced. The sync writes the record's pages and no file metadata (the file
//!   does not grow), so several stores syncing on one disk do not queue behind each other's
//!   file-system journal commits, as appends to a growing file (RocksDB's write-ahead log) do.
//!   The log is held in memory up to the node's last compaction; a new segment starts with a
//!   checkpoint of all of it, and the old one is deleted.
//! * **Recovery refuses corruption**: only a damaged *last* record with nothing but zeros after
//!   it (a write a crash cut short, never acknowledged) is dropped; anything else fails the open
//!   with [`OpenError::JournalCorrupt`] rather than bring the node back without a write it
//!   acknowledged.
//! * **Snapshots** (see [`FileSnapshots`]): written to a temporary file, synced, renamed, and the
//!   directory synced; a half-written snapshot is never taken for a complete one.
//! * **Validation**: opening checks the format version, the cluster id and the node id
//!   ([`StoreIdentity`]), and every record is decoded with typed errors: nothing on disk can make
//!   it panic.
//! * **No blocking on tokio workers**: file calls run on the blocking pool.
//!
//! ```
//! use raft_core::{Entry, LogStorage, LogWrite};
//! use raft_storage_file::{JournalStorage, StoreIdentity};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let identity = StoreIdentity { cluster_id: 7, node_id: 1 };
//! let mut storage = JournalStorage::open(dir.path(), identity).await?;
//! let write = LogWrite { entries: vec![Entry::command(1, 1, "x")].into(), ..LogWrite::default() };
//! storage.persist(write).await?;
//! drop(storage);
//!
//! let mut storage = JournalStorage::open(dir.path(), identity).await?;
//! assert_eq!(storage.load().await?.entries.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod identity;
mod journal;
mod snapshot_files;
mod storage;

pub use crate::error::OpenError;
pub use crate::identity::{IdentityMismatch, StoreIdentity};
pub use crate::snapshot_files::{
    snapshot_file_name, snapshot_index_of_file, sync_dir, FileSnapshots, SNAPSHOT_TEMP_PREFIX,
};
pub use crate::storage::{JournalStorage, DEFAULT_SEGMENT_BYTES, JOURNAL_FORMAT_VERSION};

//! Durable [`LogStorage`](raft_core::LogStorage) for `raft-core` on RocksDB, with snapshots as
//! files beside the database.
//!
//! * **Layout** (see [`mod@format`]): the log in column family `log`, keyed by the big-endian index so
//!   that RocksDB's order is the log's order; the format version, cluster id, node id, hard state,
//!   purge point and latest snapshot's metadata in column family `meta`.
//! * **Durability**: every [`persist`](raft_core::LogStorage::persist) is one `WriteBatch` written
//!   with `sync = true`, so it is acknowledged only once it is on disk, and all of it or none of
//!   it survives a crash. The node merges the writes that queue up while one is in flight into the
//!   next (group commit), so throughput is bounded by fsyncs per second, not entries. Truncating a
//!   conflicting suffix and purging a prefix are range deletions in the same batch as what
//!   replaces them.
//! * **Snapshots** (see [`FileSnapshots`], from `raft-storage-file`): written to a temporary file,
//!   synced, renamed, and the directory synced; a half-written snapshot is never taken for a
//!   complete one.
//! * **Validation**: opening checks the format version, the cluster id and the node id, and
//!   every record read is decoded with typed errors: nothing on disk can make it panic.
//! * **Corruption refuses, it is never replayed around**: the write-ahead log is recovered with
//!   `TolerateCorruptedTailRecords`, so only a record cut short at the very end (a write a crash
//!   interrupted before it was acknowledged) is dropped; a damaged record before the end fails the
//!   open with [`OpenError::DatabaseCorrupt`] rather than bring the node back with an older term
//!   and vote. A block checksum that fails when the log is read is [`StorageError::Corrupt`](raft_core::StorageError::Corrupt).
//! * **No blocking on tokio workers**: RocksDB and file calls run on the blocking pool.
//!
//! ```
//! use raft_core::{Entry, LogStorage, LogWrite};
//! use raft_storage_rocks::{RocksStorage, StoreIdentity};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let identity = StoreIdentity { cluster_id: 7, node_id: 1 };
//! let mut storage = RocksStorage::open(dir.path(), identity).await?;
//! let write = LogWrite { entries: vec![Entry::command(1, 1, "x")].into(), ..LogWrite::default() };
//! storage.persist(write).await?;
//! drop(storage);
//!
//! let mut storage = RocksStorage::open(dir.path(), identity).await?;
//! assert_eq!(storage.load().await?.entries.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
pub mod format;
mod storage;

pub use crate::error::OpenError;
pub use crate::storage::RocksStorage;
// Shared with `raft-storage-file`: the snapshot files and the store's identity.
pub use raft_storage_file::{FileSnapshots, IdentityMismatch, StoreIdentity};

//! Why a store could not be opened.

use std::path::PathBuf;

use raft_storage_file::IdentityMismatch;
use thiserror::Error;

/// A store that cannot be opened. Nothing was changed on disk.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The directory could not be created or read.
    #[error("cannot use storage directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB refused to open the database (another process holds it, permissions, damage).
    #[error("cannot open RocksDB at {path}: {source}")]
    Database {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// RocksDB found a record or a file that does not check out (a checksum mismatch, a
    /// corrupt record in the middle of the write-ahead log). The node's durable state (its term,
    /// its vote, its log) cannot be trusted, and a node that forgot a vote could vote twice.
    #[error(
        "RocksDB at {path} is corrupt: {source}; this node's durable state cannot be trusted: \
         remove the node from the cluster, move its data directory aside (keep it for diagnosis) \
         and add it back as a new node"
    )]
    DatabaseCorrupt {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// The store was written in a format this version does not read.
    #[error("storage format version {found} is not supported (this build reads version {supported}); use a matching release")]
    UnsupportedFormat {
        /// The version on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The store belongs to another cluster or another node.
    #[error(transparent)]
    Identity(#[from] IdentityMismatch),
    /// A record is missing or cannot be decoded.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

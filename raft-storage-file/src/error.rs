//! Why a store could not be opened.

use std::path::PathBuf;

use thiserror::Error;

use crate::identity::IdentityMismatch;

/// A [`JournalStorage`](crate::JournalStorage) that cannot be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// A file or directory could not be created, read or written.
    #[error("cannot use storage at {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The journal does not check out: a damaged record before its last, bytes after the end of
    /// its records, a damaged or undecodable checkpoint. The node's durable state (its term, its
    /// vote, its log) cannot be trusted, and a node that forgot a vote could vote twice.
    #[error(
        "journal at {path} is corrupt: {reason}; this node's durable state cannot be trusted: \
         remove the node from the cluster, move its data directory aside (keep it for diagnosis) \
         and add it back as a new node"
    )]
    JournalCorrupt {
        /// The journal's directory or segment.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// The store was written in a format this version does not read.
    #[error("journal format version {found} is not supported (this build reads version {supported}); use a matching release")]
    UnsupportedFormat {
        /// The version on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The store belongs to another cluster or another node.
    #[error(transparent)]
    Identity(#[from] IdentityMismatch),
    /// The blocking task that opens the store failed.
    #[error("the task opening the store failed: {0}")]
    Task(String),
}

//! The values that describe a snapshot and move its bytes: what a snapshot holds
//! ([`SnapshotMeta`]), the checksum both ends compute ([`SnapshotChecksum`]), the chunks the
//! caller stores ([`ReceivedChunk`]) or reads and sends ([`SnapshotChunkRequest`]), and the update
//! that records a snapshot ([`SnapshotUpdate`]). A leaf: messages, storage and the ready batch use
//! these without depending on the snapshot rules.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::types::{Index, NodeId, Term};

/// What a snapshot contains: the state after applying every entry up to `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct SnapshotMeta {
    /// The last entry the snapshot includes.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// The configuration in force at `index`.
    pub membership: Membership,
    /// The snapshot's size in bytes.
    pub size: u64,
    /// The CRC-32 of the snapshot's bytes (see [`SnapshotChecksum`]).
    pub checksum: u32,
}

/// The running checksum and size of a snapshot's bytes, as the core checks them. Whoever writes a
/// snapshot computes them with this type, so both ends agree.
///
/// ```
/// use raft_core::SnapshotChecksum;
/// let mut whole = SnapshotChecksum::new();
/// whole.update(b"hello world");
/// let mut chunked = SnapshotChecksum::new();
/// chunked.update(b"hello ");
/// chunked.update(b"world");
/// assert_eq!(whole.value(), chunked.value());
/// assert_eq!(chunked.size(), 11);
/// ```
#[derive(Clone, Default)]
pub struct SnapshotChecksum {
    hasher: crc32fast::Hasher,
    size: u64,
}

impl SnapshotChecksum {
    /// The checksum of no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.size += data.len() as u64;
    }

    /// How many bytes were added.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The checksum of the bytes added so far.
    pub fn value(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

/// Hashes what the checksum stands for (the bytes' count and CRC so far), so a core that is
/// receiving a snapshot can be fingerprinted.
impl std::hash::Hash for SnapshotChecksum {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.size.hash(state);
        self.value().hash(state);
    }
}

impl fmt::Debug for SnapshotChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotChecksum")
            .field("size", &self.size)
            .field("value", &self.value())
            .finish()
    }
}

/// A chunk of a snapshot received from the leader, for the caller to write to its snapshot store.
/// A chunk at offset 0 starts the snapshot at `snapshot_index` afresh. Chunks of different
/// snapshots may follow one another in one batch (an older one completed, a newer one begun):
/// keep them apart by `snapshot_index`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReceivedChunk {
    /// The index of the snapshot the chunk belongs to.
    pub snapshot_index: Index,
    /// Where the chunk goes in the snapshot.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Bytes,
}

/// A chunk of this leader's snapshot to read from the snapshot store and send to a follower.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotChunkRequest {
    /// This node.
    pub from: NodeId,
    /// The follower.
    pub to: NodeId,
    /// The leader's term when it asked for the chunk.
    pub term: Term,
    /// The snapshot to read from.
    pub meta: SnapshotMeta,
    /// Where the chunk starts.
    pub offset: u64,
    /// How many bytes to read.
    pub len: u64,
}

/// A snapshot that becomes this node's latest, with what it does to the stored log. The caller
/// writes it with the rest of the batch, atomically (see `LogWrite`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotUpdate {
    /// The snapshot, whose bytes are complete in the snapshot store.
    pub meta: SnapshotMeta,
    /// True when the snapshot came from the leader: once the write is durable, restore the state
    /// machine from it and report [`RaftCore::on_applied`](crate::RaftCore::on_applied) at `meta.index`.
    pub restore: bool,
    /// Drop every stored entry (the log disagreed with the snapshot).
    pub discard_log: bool,
    /// Drop the stored entries up to this index.
    pub purge_to: Index,
}

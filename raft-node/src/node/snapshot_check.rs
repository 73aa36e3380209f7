//! Checking a stored snapshot's bytes against its metadata (size and checksum) before they are
//! trusted: before the state machine is restored from them, at start or from the leader, and
//! before they are sent to a follower. A leaf.

use raft_core::{SnapshotChecksum, SnapshotMeta, SnapshotStore, StorageError};

/// Reads the whole snapshot `meta` describes and checks its size and checksum.
pub(super) async fn verify_snapshot<St: SnapshotStore>(
    snapshots: &St,
    meta: &SnapshotMeta,
) -> Result<(), StorageError> {
    let mut reader = snapshots.open(meta.index).await?;
    let mut sum = SnapshotChecksum::new();
    while let Some(piece) = reader.read().await? {
        sum.update(&piece);
        if sum.size() > meta.size {
            break;
        }
    }
    if sum.size() != meta.size || sum.value() != meta.checksum {
        return Err(StorageError::Corrupt(format!(
            "snapshot {} does not match its metadata: it holds {}{} bytes with checksum {:08x}, its \
             metadata says {} bytes with checksum {:08x}; the snapshot store is damaged (a failing \
             disk, or a file changed by hand): this node's state cannot be trusted, remove it from \
             the cluster and add it back with an empty data directory",
            meta.index,
            if sum.size() > meta.size { "more than " } else { "" },
            sum.size(),
            sum.value(),
            meta.size,
            meta.checksum
        )));
    }
    Ok(())
}

//! The on-disk format, version [`FORMAT_VERSION`].
//!
//! | column family | key                 | value                                         |
//! |---------------|---------------------|-----------------------------------------------|
//! | `meta`        | `format_version`    | u32, big-endian                               |
//! | `meta`        | `cluster_id`        | u64, big-endian                               |
//! | `meta`        | `node_id`           | u64, big-endian                               |
//! | `meta`        | `hard_state`        | postcard [`HardState`]                        |
//! | `meta`        | `purged_to`         | u64, big-endian (0 or absent: never purged)   |
//! | `meta`        | `snapshot`          | postcard [`SnapshotMeta`] of the latest one   |
//! | `log`         | index, u64 big-endian | postcard [`Entry`]                          |
//!
//! Snapshot bytes live in files named `snapshot-<index, 20 digits>` in the `snapshots`
//! directory beside the database (see [`FileSnapshots`](crate::FileSnapshots)).
//!
//! A change to any of this bumps [`FORMAT_VERSION`]; opening a store of another version fails
//! with [`OpenError::UnsupportedFormat`](crate::OpenError::UnsupportedFormat).

use raft_core::{Entry, HardState, Index, SnapshotMeta, StorageError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The column family holding the log.
pub const LOG_CF: &str = "log";
/// The column family holding everything else.
pub const META_CF: &str = "meta";

/// Meta key: the format version.
pub const FORMAT_VERSION_KEY: &[u8] = b"format_version";
/// Meta key: the cluster id.
pub const CLUSTER_ID_KEY: &[u8] = b"cluster_id";
/// Meta key: the node id.
pub const NODE_ID_KEY: &[u8] = b"node_id";
/// Meta key: the hard state.
pub const HARD_STATE_KEY: &[u8] = b"hard_state";
/// Meta key: the index the log was purged to.
pub const PURGED_TO_KEY: &[u8] = b"purged_to";
/// Meta key: the latest snapshot's metadata.
pub const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// The key of the entry at `index`: big-endian, so keys sort as indexes do.
pub fn log_key(index: Index) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index a log key names.
pub fn index_of_key(key: &[u8]) -> Result<Index, StorageError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("log key of {} bytes, expected 8", key.len())))?;
    Ok(Index::from_be_bytes(bytes))
}

/// Encodes a u64 meta value.
pub fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// Decodes a u64 meta value named `what`.
pub fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what}: {} bytes, expected 8", bytes.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Encodes a record with postcard.
pub fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(value).map_err(|e| StorageError::Corrupt(format!("cannot encode {what}: {e}")))
}

/// Decodes a record named `what`; anything that does not decode is corruption.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt(format!("cannot decode {what}: {e}")))
}

/// Decodes the entry stored under `key`, checking that it is the entry the key names.
pub fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, StorageError> {
    let index = index_of_key(key)?;
    let entry: Entry = decode("log entry", value)?;
    if entry.index != index {
        return Err(StorageError::Corrupt(format!(
            "entry stored under index {index} says it is index {}",
            entry.index
        )));
    }
    Ok(entry)
}

/// Decodes the hard state.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, StorageError> {
    decode("hard state", bytes)
}

/// Decodes snapshot metadata.
pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, StorageError> {
    decode("snapshot metadata", bytes)
}

// The snapshot files' names (the same for both durable stores).
pub use raft_storage_file::{snapshot_file_name, snapshot_index_of_file, SNAPSHOT_TEMP_PREFIX};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_as_indexes_do() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 1 << 40, 255, 256]
            .iter()
            .map(|i| log_key(*i))
            .collect();
        keys.sort();
        let indexes: Vec<u64> = keys.iter().map(|k| index_of_key(k).expect("8 bytes")).collect();
        assert_eq!(indexes, [2, 255, 256, 300, 1 << 40]);
    }

    #[test]
    fn a_garbled_entry_is_corruption_not_a_panic() {
        let key = log_key(5);
        assert!(matches!(
            decode_entry(&key, &[0xff; 3]),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            decode_entry(&[1, 2], &[]),
            Err(StorageError::Corrupt(_))
        ));
        let misplaced = encode("entry", &Entry::command(1, 6, "x")).expect("encodes");
        assert!(matches!(
            decode_entry(&key, &misplaced),
            Err(StorageError::Corrupt(_))
        ));
    }
}

//! An append-only journal of records in one preallocated segment file at a time.
//!
//! Why not RocksDB's write-ahead log: an `fdatasync` after an append that grows a file must also
//! write the file's new size, which on ext4 is a journal commit of its own, and the syncs of
//! several files (three nodes on one disk) then queue behind each other's journal commits. A
//! segment is allocated to its full size when it is created (`posix_fallocate`, which sets the
//! size), so an append changes no metadata and its sync writes only its own pages. Measured on
//! this project's machine (docs/benchmarks.md, "A journal in place of RocksDB's log"): three
//! writers syncing at once, 130-150 µs a sync in place against 190-275 µs appending.
//!
//! **Layout.** `<seq>.journal` files (`seq` is 20 digits); only the newest is live. Its first
//! record is a checkpoint (everything the store holds, written when the segment was created), and
//! the writes since follow it. A record is a header of 8 bytes (the payload's length, then a
//! CRC-32 of the length's bytes and the payload, both little-endian) and its payload. The unused
//! rest of a segment reads as zeros (a header of zeros ends the records).
//!
//! **Rolling over.** A record that does not fit starts a new segment, whose checkpoint includes
//! it: the segment is written under a temporary name, synced, renamed into place and the
//! directory synced, and then the older segment is deleted. A crash in between leaves either the
//! old segment alone or both (the older one is deleted at the next open).
//!
//! **Recovery.** Opening reads the newest segment's records up to the first header of zeros.
//! Writes are synced one at a time, so only the last one can have been cut short by a crash. A
//! record that does not check out is taken for that torn write, and dropped (its bytes zeroed),
//! only when nothing but zeros follows it; anything else (a damaged record with records after it,
//! bytes after the zeros that end the records, a damaged checkpoint) is corruption, and the open
//! fails rather than bring the node back without a write it acknowledged.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, warn};

use crate::snapshot_files::sync_dir;

/// A record's header: the payload's length and the CRC-32 of the length and payload.
const HEADER_BYTES: usize = 8;
const SEGMENT_SUFFIX: &str = ".journal";
const TEMP_SUFFIX: &str = ".journal.tmp";
/// Segments are sized in whole pages.
const PAGE: u64 = 4096;

/// Why the journal could not be opened or written.
#[derive(Debug, Error)]
pub(crate) enum JournalError {
    /// A file operation failed.
    #[error("journal {path}: {context}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// What is on disk does not check out.
    #[error("journal {path} is corrupt: {reason}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// A record longer than a header can say, or than the segment has room for.
    #[error("a journal record of {0} bytes is too large")]
    TooLarge(usize),
    /// An earlier write failed: nothing more is written until the store is opened again.
    #[error("journal {0}: an earlier write failed; reopen the store")]
    Failed(PathBuf),
}

fn io_error<'a>(path: &'a Path, context: &'static str) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        context,
        source,
    }
}

/// The live segment, open for appending.
pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    seq: u64,
    /// Where the next record goes.
    offset: u64,
    /// The segment's size.
    capacity: u64,
    /// The smallest size a new segment is given.
    min_segment_bytes: u64,
    /// The header and payload of the record being written, reused.
    buffer: Vec<u8>,
    /// A write or sync failed: what is on disk past `offset` is unknown, so nothing more is
    /// written (the next open sorts it out).
    failed: bool,
}

/// What an open read back: the checkpoint's payload, then the later records' payloads, in order.
pub(crate) struct Recovered {
    pub(crate) checkpoint: Vec<u8>,
    pub(crate) records: Vec<Vec<u8>>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

/// A segment's size for a first record of `first_record` bytes: room for it and as much again.
fn segment_size(min_segment_bytes: u64, first_record: usize) -> u64 {
    let wanted = (first_record as u64).saturating_mul(2).max(min_segment_bytes);
    wanted.div_ceil(PAGE).saturating_mul(PAGE)
}

/// Allocates `len` bytes of `file` on disk, setting its size: writes into them then change no
/// metadata. Where the file system cannot allocate ahead, the size is set and the file is sparse
/// (correct, but each sync then writes metadata too).
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsFd;
    let Ok(signed) = i64::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "segment size out of range",
        ));
    };
    match nix::fcntl::posix_fallocate(file.as_fd(), 0, signed) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EINVAL) => file.set_len(len),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// What reading a segment found.
struct Scanned {
    recovered: Recovered,
    /// Where the next record goes.
    next_offset: u64,
    /// The extent of a torn last record, dropped, to be zeroed.
    torn: Option<std::ops::Range<u64>>,
}

/// Reads the records of a segment's bytes: the checkpoint and the records after it, and where
/// the next record goes. A torn last record is dropped.
fn read_records(path: &Path, data: &[u8]) -> Result<Scanned, JournalError> {
    let corrupt = |reason: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let all_zero = |from: usize| data.get(from..).is_none_or(|rest| rest.iter().all(|b| *b == 0));
    let mut payloads = Vec::new();
    let mut pos = 0usize;
    let mut torn = None;
    while pos + HEADER_BYTES <= data.len() {
        let len_bytes = [data[pos], data[pos + 1], data[pos + 2], data[pos + 3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let stored_crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len == 0 && stored_crc == 0 {
            if !all_zero(pos) {
                return Err(corrupt(format!(
                    "bytes after the end of the records (a header of zeros at offset {pos})"
                )));
            }
            break;
        }
        let start = pos + HEADER_BYTES;
        let end = start.checked_add(len).filter(|end| *end <= data.len());
        let Some(end) = end else {
            return Err(corrupt(format!(
                "the record at offset {pos} claims {len} bytes, past the segment's end"
            )));
        };
        let payload = &data[start..end];
        if len == 0 || crc(len_bytes, payload) != stored_crc {
            if payloads.is_empty() {
                return Err(corrupt("the checkpoint does not check out".into()));
            }
            if !all_zero(end) {
                return Err(corrupt(format!(
                    "the record at offset {pos} does not check out, and records follow it"
                )));
            }
            // The last write, cut short by a crash before it was acknowledged.
            torn = Some(pos as u64..end as u64);
            break;
        }
        payloads.push(payload.to_vec());
        pos = end;
    }
    if pos + HEADER_BYTES > data.len() && !all_zero(pos) {
        return Err(corrupt(format!("a partial header at offset {pos}")));
    }
    let mut payloads = payloads.into_iter();
    let Some(checkpoint) = payloads.next() else {
        return Err(corrupt("no checkpoint".into()));
    };
    let recovered = Recovered {
        checkpoint,
        records: payloads.collect(),
    };
    Ok(Scanned {
        recovered,
        next_offset: pos as u64,
        torn,
    })
}

impl Journal {
    /// Opens the journal in `dir`: `None` when there is none yet (then [`Self::create`] it).
    pub(crate) fn open(
        dir: &Path,
        min_segment_bytes: u64,
    ) -> Result<Option<(Journal, Recovered)>, JournalError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list the directory"))? {
            let entry = entry.map_err(io_error(dir, "list the directory"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(TEMP_SUFFIX) {
                // A new segment a crash interrupted before it was renamed into place.
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io_error(&path, "remove an unfinished segment"))?;
            } else if let Some(seq) = seq_of(&name) {
                segments.push(seq);
            }
        }
        segments.sort_unstable();
        let Some(&seq) = segments.last() else {
            return Ok(None);
        };
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "open"))?;
        let data = std::fs::read(&path).map_err(io_error(&path, "read"))?;
        let Scanned {
            recovered,
            next_offset: offset,
            torn,
        } = read_records(&path, &data)?;
        if let Some(torn) = torn {
            warn!(path = %path.display(), offset = torn.start, "dropping a record cut short by a crash");
            // Within the segment's bytes just read: the length fits in memory.
            let zeros = vec![0u8; (torn.end - torn.start) as usize];
            file.write_all_at(&zeros, torn.start)
                .map_err(io_error(&path, "zero a torn record"))?;
            file.sync_data().map_err(io_error(&path, "sync"))?;
        }
        for older in segments.iter().filter(|s| **s < seq) {
            // Superseded by the newer segment's checkpoint; a crash came before it was deleted.
            let older = segment_path(dir, *older);
            std::fs::remove_file(&older).map_err(io_error(&older, "remove a superseded segment"))?;
        }
        if segments.len() > 1 {
            sync_dir(dir).map_err(io_error(dir, "sync the directory"))?;
        }
        info!(path = %path.display(), records = recovered.records.len(), offset, "opened the journal");
        let journal = Journal {
            dir: dir.to_path_buf(),
            file,
            path,
            seq,
            offset,
            capacity: data.len() as u64,
            min_segment_bytes,
            buffer: Vec::new(),
            failed: false,
        };
        Ok(Some((journal, recovered)))
    }

    /// Creates the journal in `dir`, with `checkpoint` as its first record.
    pub(crate) fn create(
        dir: &Path,
        min_segment_bytes: u64,
        checkpoint: &[u8],
    ) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
        let (file, path, capacity, offset) = Self::new_segment(dir, 1, min_segment_bytes, checkpoint)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            file,
            path,
            seq: 1,
            offset,
            capacity,
            min_segment_bytes,
            buffer: Vec::new(),
            failed: false,
        })
    }

    /// Whether a record of `payload_len` bytes fits in the live segment.
    pub(crate) fn fits(&self, payload_len: usize) -> bool {
        (payload_len as u64).saturating_add(HEADER_BYTES as u64) <= self.capacity.saturating_sub(self.offset)
    }

    /// Appends a record (one that does not [fit](Self::fits) is refused); with `sync`, it is
    /// durable when this returns.
    pub(crate) fn append(&mut self, payload: &[u8], sync: bool) -> Result<(), JournalError> {
        self.check_usable()?;
        if !self.fits(payload.len()) {
            return Err(JournalError::TooLarge(payload.len()));
        }
        let len = u32::try_from(payload.len()).map_err(|_| JournalError::TooLarge(payload.len()))?;
        let len_bytes = len.to_le_bytes();
        self.buffer.clear();
        self.buffer.extend_from_slice(&len_bytes);
        self.buffer
            .extend_from_slice(&crc(len_bytes, payload).to_le_bytes());
        self.buffer.extend_from_slice(payload);
        let written = self
            .file
            .write_all_at(&self.buffer, self.offset)
            .map_err(io_error(&self.path, "write"))
            .and_then(|()| match sync {
                true => self.file.sync_data().map_err(io_error(&self.path, "sync")),
                false => Ok(()),
            });
        if written.is_err() {
            self.failed = true;
        }
        written?;
        self.offset += self.buffer.len() as u64;
        Ok(())
    }

    /// Starts a new segment with `checkpoint` as its first record (durable when this returns),
    /// and deletes the old one.
    pub(crate) fn roll_over(&mut self, checkpoint: &[u8]) -> Result<(), JournalError> {
        self.check_usable()?;
        let seq = self.seq + 1;
        let made = Self::new_segment(&self.dir, seq, self.min_segment_bytes, checkpoint);
        if made.is_err() {
            self.failed = true;
        }
        let (file, path, capacity, offset) = made?;
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        self.seq = seq;
        self.capacity = capacity;
        self.offset = offset;
        // The checkpoint supersedes the old segment; if it cannot go now, the next open deletes it.
        match std::fs::remove_file(&old).and_then(|()| sync_dir(&self.dir)) {
            Ok(()) => {}
            Err(error) => warn!(path = %old.display(), %error, "cannot remove a superseded journal segment"),
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        match self.failed {
            true => Err(JournalError::Failed(self.path.clone())),
            false => Ok(()),
        }
    }

    /// Writes segment `seq` with `first` as its first record: under a temporary name, synced,
    /// renamed into place, the directory synced. Returns it, its path, size and next offset.
    fn new_segment(
        dir: &Path,
        seq: u64,
        min_segment_bytes: u64,
        first: &[u8],
    ) -> Result<(File, PathBuf, u64, u64), JournalError> {
        let len = u32::try_from(first.len()).map_err(|_| JournalError::TooLarge(first.len()))?;
        let capacity = segment_size(min_segment_bytes, first.len() + HEADER_BYTES);
        let temp = dir.join(format!("{seq:020}{TEMP_SUFFIX}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(io_error(&temp, "create"))?;
        allocate(&file, capacity).map_err(io_error(&temp, "allocate"))?;
        let len_bytes = len.to_le_bytes();
        let mut record = Vec::with_capacity(HEADER_BYTES + first.len());
        record.extend_from_slice(&len_bytes);
        record.extend_from_slice(&crc(len_bytes, first).to_le_bytes());
        record.extend_from_slice(first);
        file.write_all_at(&record, 0).map_err(io_error(&temp, "write"))?;
        file.sync_all().map_err(io_error(&temp, "sync"))?;
        let path = segment_path(dir, seq);
        std::fs::rename(&temp, &path).map_err(io_error(&path, "rename into place"))?;
        sync_dir(dir).map_err(io_error(dir, "sync the directory"))?;
        Ok((file, path, capacity, record.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: u64 = 2 * PAGE;

    fn reopen(dir: &Path) -> (Journal, Recovered) {
        Journal::open(dir, SMALL).unwrap().expect("a journal")
    }

    #[test]
    fn records_come_back_in_order_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"checkpoint").unwrap();
        journal.append(b"one", true).unwrap();
        journal.append(b"two", false).unwrap();
        drop(journal);
        let (_, recovered) = reopen(dir.path());
        assert_eq!(recovered.checkpoint, b"checkpoint");
        assert_eq!(recovered.records, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn a_new_segment_is_allocated_to_its_full_size() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), SMALL, b"c").unwrap();
        assert_eq!(std::fs::metadata(&journal.path).unwrap().len(), SMALL);
    }

    #[test]
    fn rolling_over_keeps_only_the_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"first").unwrap();
        let big = vec![7u8; 5000];
        journal.append(&big, true).unwrap();
        assert!(!journal.fits(big.len()));
        journal.roll_over(b"second").unwrap();
        journal.append(b"after", true).unwrap();
        drop(journal);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("{:020}.journal", 2)]);
        let (_, recovered) = reopen(dir.path());
        assert_eq!(recovered.checkpoint, b"second");
        assert_eq!(recovered.records, vec![b"after".to_vec()]);
    }

    #[test]
    fn a_checkpoint_bigger_than_a_segment_gets_a_bigger_segment() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![1u8; 3 * SMALL as usize];
        let journal = Journal::create(dir.path(), SMALL, &big).unwrap();
        assert!(journal.capacity >= 2 * big.len() as u64);
        drop(journal);
        assert_eq!(reopen(dir.path()).1.checkpoint, big);
    }

    #[test]
    fn an_older_segment_left_by_a_crash_is_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"first").unwrap();
        journal.append(b"x", true).unwrap();
        let old = journal.path.clone();
        let kept = std::fs::read(&old).unwrap();
        journal.roll_over(b"second").unwrap();
        drop(journal);
        std::fs::write(&old, kept).unwrap();
        let (_, recovered) = reopen(dir.path());
        assert_eq!(recovered.checkpoint, b"second");
        assert!(!old.exists());
    }

    #[test]
    fn an_unfinished_new_segment_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"first").unwrap();
        journal.append(b"x", true).unwrap();
        drop(journal);
        let temp = dir.path().join(format!("{:020}{TEMP_SUFFIX}", 2));
        std::fs::write(&temp, b"garbage").unwrap();
        let (_, recovered) = reopen(dir.path());
        assert_eq!(recovered.records, vec![b"x".to_vec()]);
        assert!(!temp.exists());
    }

    /// Damages the byte at `offset` of the live segment.
    fn flip(dir: &Path, offset: u64) {
        let path = segment_path(dir, 1);
        let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).unwrap();
        byte[0] ^= 0x40;
        file.write_all_at(&byte, offset).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_next_append_takes_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"c").unwrap();
        journal.append(b"kept", true).unwrap();
        let torn_at = journal.offset;
        journal.append(b"cut short by a crash", true).unwrap();
        drop(journal);
        flip(dir.path(), torn_at + HEADER_BYTES as u64 + 5);
        let (mut journal, recovered) = reopen(dir.path());
        assert_eq!(recovered.records, vec![b"kept".to_vec()]);
        assert_eq!(journal.offset, torn_at);
        journal.append(b"new", true).unwrap();
        drop(journal);
        assert_eq!(
            reopen(dir.path()).1.records,
            vec![b"kept".to_vec(), b"new".to_vec()]
        );
    }

    #[test]
    fn a_damaged_record_with_records_after_it_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"c").unwrap();
        let damaged = journal.offset;
        journal.append(b"acknowledged", true).unwrap();
        journal.append(b"also acknowledged", true).unwrap();
        drop(journal);
        flip(dir.path(), damaged + HEADER_BYTES as u64 + 2);
        let error = Journal::open(dir.path(), SMALL).err().expect("corrupt");
        assert!(matches!(error, JournalError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn a_damaged_checkpoint_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::create(dir.path(), SMALL, b"checkpoint").unwrap());
        flip(dir.path(), HEADER_BYTES as u64 + 1);
        assert!(matches!(
            Journal::open(dir.path(), SMALL),
            Err(JournalError::Corrupt { .. })
        ));
    }

    #[test]
    fn bytes_after_the_end_of_the_records_refuse_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), SMALL, b"c").unwrap();
        let end = journal.offset;
        drop(journal);
        flip(dir.path(), end + 100);
        assert!(matches!(
            Journal::open(dir.path(), SMALL),
            Err(JournalError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_length_past_the_segment_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), SMALL, b"c").unwrap();
        let at = journal.offset;
        journal.append(b"x", true).unwrap();
        drop(journal);
        flip(dir.path(), at + 3);
        assert!(matches!(
            Journal::open(dir.path(), SMALL),
            Err(JournalError::Corrupt { .. })
        ));
    }

    #[test]
    fn no_journal_yet_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Journal::open(dir.path(), SMALL).unwrap().is_none());
    }
}

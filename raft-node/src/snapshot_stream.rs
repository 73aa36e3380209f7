//! Snapshots as streams of records: what a state machine needs to write its state into a
//! snapshot and read it back without holding all of it in one buffer.
//!
//! Each record is a postcard value behind a 4-byte little-endian length. The writer batches
//! records into pieces of about 64 KiB; the reader takes pieces of any size and splits records
//! across their boundaries.
//!
//! ```
//! use raft_node::snapshot_stream::{RecordReader, RecordWriter};
//! # use raft_core::{SnapshotRead, SnapshotWrite, StorageError};
//! # use bytes::Bytes;
//! # struct Buffer(Vec<Bytes>);
//! # #[async_trait::async_trait]
//! # impl SnapshotWrite for Buffer {
//! #     async fn write(&mut self, data: Bytes) -> Result<(), StorageError> { self.0.push(data); Ok(()) }
//! # }
//! # #[async_trait::async_trait]
//! # impl SnapshotRead for Buffer {
//! #     async fn read(&mut self) -> Result<Option<Bytes>, StorageError> {
//! #         Ok(if self.0.is_empty() { None } else { Some(self.0.remove(0)) })
//! #     }
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut buffer = Buffer(Vec::new());
//! let mut writer = RecordWriter::new(&mut buffer);
//! writer.push(&("key", "value")).await?;
//! writer.finish().await?;
//! let mut reader = RecordReader::new(&mut buffer);
//! let record: Option<(String, String)> = reader.next().await?;
//! assert_eq!(record, Some(("key".into(), "value".into())));
//! assert_eq!(reader.next::<(String, String)>().await?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use bytes::{Buf, Bytes, BytesMut};
use raft_core::{SnapshotRead, SnapshotWrite, StorageError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Pieces are handed to the snapshot store once they reach this size.
const PIECE_BYTES: usize = 64 << 10;

/// The largest record a reader accepts (a corrupt length must not allocate without bound).
const MAX_RECORD_BYTES: usize = 256 << 20;

/// Writes records into a snapshot.
pub struct RecordWriter<'a> {
    out: &'a mut dyn SnapshotWrite,
    piece: BytesMut,
}

impl<'a> RecordWriter<'a> {
    /// A writer into `out`.
    pub fn new(out: &'a mut dyn SnapshotWrite) -> Self {
        RecordWriter {
            out,
            piece: BytesMut::new(),
        }
    }

    /// Appends one record.
    pub async fn push<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), StorageError> {
        let encoded = postcard::to_allocvec(record)
            .map_err(|e| StorageError::Backend(format!("cannot encode a snapshot record: {e}").into()))?;
        let len = u32::try_from(encoded.len())
            .map_err(|_| StorageError::Backend("snapshot record larger than 4 GiB".into()))?;
        self.piece.extend_from_slice(&len.to_le_bytes());
        self.piece.extend_from_slice(&encoded);
        if self.piece.len() >= PIECE_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Appends raw bytes after the records written so far.
    pub async fn push_raw(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.flush().await?;
        self.out.write(data).await
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if !self.piece.is_empty() {
            let piece = self.piece.split().freeze();
            self.out.write(piece).await?;
        }
        Ok(())
    }

    /// Writes out what is buffered.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        self.flush().await
    }
}

/// Reads records from a snapshot. It is itself a [`SnapshotRead`] of the bytes after the records
/// read so far, so a snapshot can start with records and continue with another format.
pub struct RecordReader<'a> {
    input: &'a mut dyn SnapshotRead,
    buffer: BytesMut,
}

impl<'a> RecordReader<'a> {
    /// A reader of `input`.
    pub fn new(input: &'a mut dyn SnapshotRead) -> Self {
        RecordReader {
            input,
            buffer: BytesMut::new(),
        }
    }

    /// Makes sure `len` bytes are buffered; false at the end of the snapshot.
    async fn fill(&mut self, len: usize) -> Result<bool, StorageError> {
        while self.buffer.len() < len {
            match self.input.read().await? {
                Some(piece) => self.buffer.extend_from_slice(&piece),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The next record, or `None` at the end of the snapshot.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, StorageError> {
        if !self.fill(4).await? {
            if self.buffer.is_empty() {
                return Ok(None);
            }
            return Err(StorageError::Corrupt(
                "snapshot ends inside a record length".into(),
            ));
        }
        let len =
            u32::from_le_bytes([self.buffer[0], self.buffer[1], self.buffer[2], self.buffer[3]]) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(StorageError::Corrupt(format!("snapshot record of {len} bytes")));
        }
        if !self.fill(4 + len).await? {
            return Err(StorageError::Corrupt("snapshot ends inside a record".into()));
        }
        self.buffer.advance(4);
        let record = self.buffer.split_to(len);
        postcard::from_bytes(&record)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("bad snapshot record: {e}")))
    }
}

/// The first record of a versioned part of a snapshot (a state machine's data, the session
/// table): it names the format version, which [`RecordReader::header`] checks.
pub trait SnapshotHeader: Serialize + DeserializeOwned {
    /// What the part holds, for error messages ("key-value snapshot", "session table").
    const PART: &'static str;
    /// The format version this code writes and reads.
    const VERSION: u32;
    /// The version this header names.
    fn version(&self) -> u32;
}

impl RecordReader<'_> {
    /// Reads the header of the next part of the snapshot and checks its format version.
    pub async fn header<H: SnapshotHeader>(&mut self) -> Result<H, StorageError> {
        let header: H = self
            .next()
            .await?
            .ok_or_else(|| StorageError::Corrupt(format!("snapshot has no {}", H::PART)))?;
        if header.version() != H::VERSION {
            return Err(StorageError::Corrupt(format!(
                "{} version {} (expected {})",
                H::PART,
                header.version(),
                H::VERSION
            )));
        }
        Ok(header)
    }
}

#[async_trait::async_trait]
impl SnapshotRead for RecordReader<'_> {
    async fn read(&mut self) -> Result<Option<Bytes>, StorageError> {
        if !self.buffer.is_empty() {
            return Ok(Some(self.buffer.split().freeze()));
        }
        self.input.read().await
    }
}

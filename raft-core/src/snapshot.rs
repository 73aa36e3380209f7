//! Snapshots and log compaction (Raft paper §7, Raft thesis chapter 5).
//!
//! A snapshot is the state machine's state after applying every entry up to an index, together
//! with what the log knew at that point: the term of that entry and the configuration in force.
//! The core never holds a snapshot's bytes: it only decides, and the caller moves the bytes.
//!
//! **Compaction.** Once enough has been applied since the last snapshot (`Config`'s
//! `snapshot_after_entries` or `snapshot_after_log_bytes`), or when asked
//! ([`RaftCore::request_snapshot`]), [`Ready::build_snapshot`](crate::Ready::build_snapshot) asks
//! the caller to have the state machine write a snapshot into the snapshot store. The caller
//! reports it with [`RaftCore::on_snapshot_built`]; the core then describes it
//! ([`SnapshotMeta`]) and hands out a [`SnapshotUpdate`] that records it durably and purges the
//! log before it, keeping a tail of `snapshot_keep_entries` entries for followers that lag a
//! little.
//!
//! **Installation.** A follower that needs entries the leader has purged receives the snapshot
//! in chunks ([`InstallSnapshot`]), each naming its offset; at most `snapshot_chunks_in_flight`
//! are outstanding. The follower takes chunks strictly in order, keeps a running checksum, and
//! answers with the offset it expects next, so after a lost chunk the leader resumes from there
//! instead of starting over. When the last chunk arrives and the checksum and size match, the
//! follower drops the part of its log the snapshot covers (all of it when its log disagrees at
//! the snapshot's index), adopts the snapshot's configuration, and hands out a
//! [`SnapshotUpdate`] with `restore` set: once it is durable, the caller restores the state
//! machine from the snapshot and reports [`RaftCore::on_applied`] at its index. Entries after the
//! snapshot are not handed out for applying until then.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::core::RaftCore;
use crate::membership::Membership;
use crate::message::{AppendEntriesResponse, InstallSnapshot, InstallSnapshotResponse, Message, MessageBody};
use crate::types::{Index, NodeId, Role, Term};

/// What a snapshot contains: the state after applying every entry up to `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedChunk {
    /// The index of the snapshot the chunk belongs to.
    pub snapshot_index: Index,
    /// Where the chunk goes in the snapshot.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Bytes,
}

/// A chunk of this leader's snapshot to read from the snapshot store and send to a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl SnapshotChunkRequest {
    /// The message that carries the chunk, once its bytes are read.
    pub fn into_message(self, data: Bytes) -> Message {
        let done = self.offset + self.len >= self.meta.size;
        Message {
            from: self.from,
            to: self.to,
            term: self.term,
            body: MessageBody::InstallSnapshot(InstallSnapshot {
                meta: self.meta,
                offset: self.offset,
                data,
                done,
            }),
        }
    }
}

/// A snapshot that becomes this node's latest, with what it does to the stored log. The caller
/// writes it with the rest of the batch, atomically (see `LogWrite`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotUpdate {
    /// The snapshot, whose bytes are complete in the snapshot store.
    pub meta: SnapshotMeta,
    /// True when the snapshot came from the leader: once the write is durable, restore the state
    /// machine from it and report [`RaftCore::on_applied`] at `meta.index`.
    pub restore: bool,
    /// Drop every stored entry (the log disagreed with the snapshot).
    pub discard_log: bool,
    /// Drop the stored entries up to this index.
    pub purge_to: Index,
}

/// The leader's side of sending a snapshot to one follower.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotTransfer {
    pub(crate) meta: SnapshotMeta,
    /// The first byte not sent yet.
    next_offset: u64,
    /// The first byte the follower has not confirmed.
    acked_offset: u64,
    /// The chunk holding the last byte was sent (an empty snapshot is one empty chunk).
    last_sent: bool,
    /// Sending went back to `acked_offset` since the follower last confirmed progress, so further
    /// answers naming the same gap are echoes of it.
    rewound: bool,
}

impl SnapshotTransfer {
    pub(crate) fn new(meta: SnapshotMeta) -> Self {
        SnapshotTransfer {
            meta,
            next_offset: 0,
            acked_offset: 0,
            last_sent: false,
            rewound: false,
        }
    }

    /// The next chunk to send (offset, length), if the window allows one.
    fn next_chunk(&mut self, chunk_bytes: u64, window_chunks: u64) -> Option<(u64, u64)> {
        if self.last_sent || self.next_offset - self.acked_offset >= chunk_bytes * window_chunks {
            return None;
        }
        let offset = self.next_offset;
        let len = chunk_bytes.min(self.meta.size - offset);
        self.next_offset += len;
        self.last_sent = self.next_offset >= self.meta.size;
        Some((offset, len))
    }

    /// Chunks are out and unconfirmed.
    pub(crate) fn awaiting_ack(&self) -> bool {
        self.last_sent || self.next_offset > self.acked_offset
    }

    /// The follower expects `next_offset` next; `rejected` when it refused a chunk for a gap
    /// (or lost what it had received).
    fn on_response(&mut self, next_offset: u64, rejected: bool) {
        if next_offset > self.meta.size {
            return;
        }
        if next_offset > self.acked_offset {
            self.acked_offset = next_offset;
            self.rewound = false;
            if next_offset > self.next_offset {
                self.next_offset = next_offset;
                self.last_sent = false;
            }
        } else if !rejected {
            // An answer to a duplicate: nothing new.
        } else if next_offset < self.acked_offset {
            // The follower lost what it had received (it restarted): start again from there.
            self.acked_offset = next_offset;
            self.rewind();
        } else if !self.rewound && self.awaiting_ack() {
            // A chunk after a gap: the one at `acked_offset` was lost. Resume from it, once.
            self.rewind();
        }
    }

    /// Sends again from the first unconfirmed byte.
    pub(crate) fn rewind(&mut self) {
        self.next_offset = self.acked_offset;
        self.last_sent = false;
        self.rewound = true;
    }
}

/// A snapshot a follower is receiving.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    meta: SnapshotMeta,
    next_offset: u64,
    checksum: SnapshotChecksum,
}

impl RaftCore {
    // ---- compaction ------------------------------------------------------------------------------

    /// Asks for a snapshot at the next [`ready`](Self::ready), whatever the compaction policy says
    /// (nothing happens when nothing was applied since the latest snapshot).
    pub fn request_snapshot(&mut self) {
        self.snapshot_requested = true;
    }

    /// The latest snapshot this node has, built or received.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// Whether the caller should build a snapshot now (policy or request).
    pub(crate) fn take_snapshot_due(&mut self) -> bool {
        if self.snapshot_building {
            return false;
        }
        let since = self.log.applied.saturating_sub(self.log.snapshot_index);
        if since == 0 {
            self.snapshot_requested = false;
            return false;
        }
        let config = &self.config;
        let due = self.snapshot_requested
            || (config.snapshot_after_entries > 0 && since >= config.snapshot_after_entries)
            || (config.snapshot_after_log_bytes > 0
                && self.applied_bytes_since_snapshot >= config.snapshot_after_log_bytes);
        if due {
            self.snapshot_requested = false;
            self.snapshot_building = true;
        }
        due
    }

    /// Reports that the state machine wrote a snapshot of its state at `index` into the snapshot
    /// store, complete and durable, of `size` bytes with `checksum` (see [`SnapshotChecksum`]).
    /// Returns its description, or `None` when it is not newer than the latest snapshot (or
    /// covers entries that are not committed, which a correct caller never reports).
    pub fn on_snapshot_built(&mut self, index: Index, size: u64, checksum: u32) -> Option<SnapshotMeta> {
        self.snapshot_building = false;
        if index <= self.log.snapshot_index {
            return None;
        }
        if index > self.log.applying {
            warn!(
                node = self.id(),
                index,
                applying = self.log.applying,
                "snapshot reported beyond what was handed out to apply; ignored"
            );
            return None;
        }
        let term = self.log.term(index)?;
        let meta = SnapshotMeta {
            index,
            term,
            membership: self.configs.at(index).clone(),
            size,
            checksum,
        };
        let purge_to = index
            .saturating_sub(self.config.snapshot_keep_entries)
            .max(self.log.first_index() - 1);
        info!(
            node = self.id(),
            index, term, size, purge_to, "snapshot built; compacting the log"
        );
        self.log.compact(index, term, purge_to);
        self.configs.fold_up_to(index);
        self.applied_bytes_since_snapshot = self.log.bytes_between(index, self.log.applied);
        self.snapshot = Some(meta.clone());
        self.queue_snapshot_update(SnapshotUpdate {
            meta: meta.clone(),
            restore: false,
            discard_log: false,
            purge_to,
        });
        Some(meta)
    }

    fn queue_snapshot_update(&mut self, update: SnapshotUpdate) {
        let merged = match self.snapshot_update.take() {
            None => update,
            Some(earlier) => SnapshotUpdate {
                restore: earlier.restore || update.restore,
                discard_log: earlier.discard_log || update.discard_log,
                purge_to: earlier.purge_to.max(update.purge_to),
                meta: update.meta,
            },
        };
        self.snapshot_update = Some(merged);
    }

    // ---- leader side -----------------------------------------------------------------------------

    /// Starts sending the latest snapshot to `follower`, whose next entries were purged.
    pub(crate) fn start_snapshot_transfer(&mut self, follower: NodeId) {
        let Some(meta) = self.snapshot.clone() else {
            warn!(
                node = self.id(),
                follower, "entries purged without a snapshot; cannot catch the follower up"
            );
            debug_assert!(false, "entries purged without a snapshot");
            return;
        };
        let node = self.id();
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        debug!(
            node,
            follower,
            snapshot_index = meta.index,
            size = meta.size,
            "follower needs purged entries; sending the snapshot"
        );
        progress.become_snapshot(meta);
        self.send_snapshot_chunks(follower);
    }

    /// Asks for as many chunks as the window allows.
    pub(crate) fn send_snapshot_chunks(&mut self, follower: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes as u64;
        let window = self.config.snapshot_chunks_in_flight as u64;
        let (from, term) = (self.id(), self.term);
        let Some(transfer) = self.progress.get_mut(&follower).and_then(|p| p.snapshot.as_mut()) else {
            return;
        };
        while let Some((offset, len)) = transfer.next_chunk(chunk_bytes, window) {
            self.snapshot_sends.push(SnapshotChunkRequest {
                from,
                to: follower,
                term,
                meta: transfer.meta.clone(),
                offset,
                len,
            });
        }
    }

    /// A follower said which byte of the snapshot it expects next.
    pub(crate) fn handle_install_snapshot_response(
        &mut self,
        follower: NodeId,
        response: InstallSnapshotResponse,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        progress.recent_active = true;
        let Some(transfer) = progress.snapshot.as_mut() else {
            return;
        };
        if transfer.meta.index != response.snapshot_index {
            return;
        }
        let before = transfer.clone();
        transfer.on_response(response.next_offset, response.rejected);
        if transfer.acked_offset > before.acked_offset {
            progress.ticks_without_ack = 0;
        }
        self.send_snapshot_chunks(follower);
    }

    /// A transfer that heard nothing for a while lost a chunk or its answer: resend from the last
    /// confirmed byte, or start over with a newer snapshot if one was taken meanwhile.
    pub(crate) fn resume_stalled_snapshot(&mut self, follower: NodeId) {
        let latest = self.snapshot.clone();
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        let Some(transfer) = progress.snapshot.as_mut() else {
            return;
        };
        match latest {
            Some(latest) if latest.index != transfer.meta.index => {
                debug!(
                    follower,
                    snapshot_index = latest.index,
                    "restarting snapshot transfer with a newer snapshot"
                );
                progress.become_snapshot(latest);
            }
            _ => transfer.rewind(),
        }
        self.send_snapshot_chunks(follower);
    }

    // ---- follower side ---------------------------------------------------------------------------

    /// Takes one chunk of the leader's snapshot.
    pub(crate) fn handle_install_snapshot(&mut self, leader: NodeId, request: InstallSnapshot) {
        self.follow(leader);
        if self.role == Role::Leader {
            return;
        }
        let snapshot_index = request.meta.index;
        if snapshot_index <= self.log.committed {
            // Everything the snapshot holds is already committed here.
            self.incoming_snapshot = None;
            let answer = AppendEntriesResponse::Success {
                match_index: self.log.committed,
            };
            self.send(leader, MessageBody::AppendEntriesResponse(answer));
            return;
        }
        let same = self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|incoming| incoming.meta == request.meta);
        if !same {
            if request.offset != 0 {
                self.answer_snapshot_chunk(leader, snapshot_index, 0, true);
                return;
            }
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: request.meta.clone(),
                next_offset: 0,
                checksum: SnapshotChecksum::new(),
            });
        }
        let (node, restoring) = (
            self.id(),
            self.log.is_restoring()
                && !self.planted(crate::planted::PlantedBug::CompleteSnapshotWhileRestoring),
        );
        let Some(incoming) = self.incoming_snapshot.as_mut() else {
            return;
        };
        if request.offset != incoming.next_offset {
            // Before: a duplicate, or a leader that started over (a new leader sending the same
            // snapshot); it learns where to continue. After: a chunk was lost; resume from it.
            let (expected, gap) = (incoming.next_offset, request.offset > incoming.next_offset);
            self.answer_snapshot_chunk(leader, snapshot_index, expected, gap);
            return;
        }
        let end = request.offset + request.data.len() as u64;
        if end > request.meta.size || request.done != (end == request.meta.size) {
            warn!(
                node = self.id(),
                leader,
                offset = request.offset,
                len = request.data.len(),
                size = request.meta.size,
                "snapshot chunk does not fit the snapshot; starting over"
            );
            self.incoming_snapshot = None;
            self.answer_snapshot_chunk(leader, snapshot_index, 0, true);
            return;
        }
        if request.done && restoring {
            // The state machine is still being restored from the snapshot installed before.
            // Completing this one now would hand out a second restore, and recording it would let
            // the store delete the snapshot that restore is reading. The last chunk is taken when
            // the leader sends it again, after the restore is reported.
            debug!(
                node,
                leader,
                snapshot_index,
                "last snapshot chunk held back: the previous snapshot is still being restored"
            );
            let expected = incoming.next_offset;
            self.answer_snapshot_chunk(leader, snapshot_index, expected, false);
            return;
        }
        incoming.checksum.update(&request.data);
        incoming.next_offset = end;
        self.received_chunks.push(ReceivedChunk {
            snapshot_index,
            offset: request.offset,
            data: request.data,
        });
        if !request.done {
            self.answer_snapshot_chunk(leader, snapshot_index, end, false);
            return;
        }
        let intact = incoming.checksum.value() == request.meta.checksum;
        self.incoming_snapshot = None;
        if !intact {
            warn!(
                node = self.id(),
                leader, snapshot_index, "snapshot checksum mismatch; starting over"
            );
            self.answer_snapshot_chunk(leader, snapshot_index, 0, true);
            return;
        }
        self.install_received_snapshot(request.meta);
        let answer = AppendEntriesResponse::Success {
            match_index: snapshot_index,
        };
        self.send(leader, MessageBody::AppendEntriesResponse(answer));
    }

    fn answer_snapshot_chunk(
        &mut self,
        leader: NodeId,
        snapshot_index: Index,
        next_offset: u64,
        rejected: bool,
    ) {
        let answer = InstallSnapshotResponse {
            snapshot_index,
            next_offset,
            rejected,
        };
        self.send(leader, MessageBody::InstallSnapshotResponse(answer));
    }

    /// Replaces the log up to the snapshot's index with the snapshot (Raft paper Figure 13, steps
    /// 6 to 8): entries after it are kept if the log agrees at its index, otherwise all go.
    fn install_received_snapshot(&mut self, meta: SnapshotMeta) {
        let agrees = self.log.term(meta.index) == Some(meta.term);
        info!(
            node = self.id(),
            index = meta.index,
            term = meta.term,
            size = meta.size,
            keeps_log = agrees,
            "installing snapshot from the leader"
        );
        self.log.install_snapshot(meta.index, meta.term, agrees);
        self.configs.base = meta.membership.clone();
        self.configs
            .entries
            .retain(|(index, _, _)| agrees && *index > meta.index);
        self.adopt_latest_configuration();
        self.applied_bytes_since_snapshot = 0;
        self.snapshot = Some(meta.clone());
        self.queue_snapshot_update(SnapshotUpdate {
            purge_to: meta.index,
            meta,
            restore: true,
            discard_log: !agrees,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: 10,
            term: 2,
            membership: Membership::default(),
            size,
            checksum: 0,
        }
    }

    #[test]
    fn transfer_sends_a_window_of_chunks_then_waits() {
        let mut transfer = SnapshotTransfer::new(meta(10));
        assert_eq!(transfer.next_chunk(3, 2), Some((0, 3)));
        assert_eq!(transfer.next_chunk(3, 2), Some((3, 3)));
        assert_eq!(transfer.next_chunk(3, 2), None);
        transfer.on_response(3, false);
        assert_eq!(transfer.next_chunk(3, 2), Some((6, 3)));
        transfer.on_response(6, false);
        assert_eq!(transfer.next_chunk(3, 2), Some((9, 1)));
        assert_eq!(transfer.next_chunk(3, 2), None);
    }

    #[test]
    fn transfer_resumes_once_from_a_lost_chunk() {
        let mut transfer = SnapshotTransfer::new(meta(12));
        for _ in 0..4 {
            transfer.next_chunk(3, 4);
        }
        // Chunk 3..6 was lost: chunk 0..3 is confirmed, then the answers to 6..9 and 9..12 both
        // name offset 3. The first sends again from 3; the second is an echo of the same gap.
        transfer.on_response(3, false);
        transfer.on_response(3, true);
        transfer.on_response(3, true);
        let resent: Vec<_> = std::iter::from_fn(|| transfer.next_chunk(3, 4)).collect();
        assert_eq!(resent, vec![(3, 3), (6, 3), (9, 3)]);
    }

    #[test]
    fn empty_snapshot_is_one_empty_chunk() {
        let mut transfer = SnapshotTransfer::new(meta(0));
        assert_eq!(transfer.next_chunk(3, 4), Some((0, 0)));
        assert_eq!(transfer.next_chunk(3, 4), None);
    }
}

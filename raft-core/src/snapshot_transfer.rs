//! The state of snapshot transfers: the leader's side of sending one to a follower
//! ([`SnapshotTransfer`]: window, acknowledged offset, resume after a gap) and the follower's
//! side of receiving one ([`IncomingSnapshot`]). A leaf: the rules in `snapshot.rs` drive it.

use crate::snapshot_types::{SnapshotChecksum, SnapshotMeta};

/// The leader's side of sending a snapshot to one follower.
#[derive(Clone, Debug, Hash)]
pub(crate) struct SnapshotTransfer {
    pub(crate) meta: SnapshotMeta,
    /// The first byte not sent yet.
    next_offset: u64,
    /// The first byte the follower has not confirmed.
    pub(crate) acked_offset: u64,
    /// The chunk holding the last byte was sent (an empty snapshot is one empty chunk).
    last_sent: bool,
    /// Sending went back to `acked_offset` since the follower last confirmed progress, so further
    /// answers naming the same gap are echoes of it.
    rewound: bool,
    /// `acked_offset` when the transfer last stalled.
    acked_at_last_stall: u64,
    /// Stalls in a row with nothing confirmed in between.
    stalls_without_progress: u32,
}

/// Stalls in a row without a confirmed byte after which a transfer is given up for a newer
/// snapshot (its bytes may be gone).
const STALLS_BEFORE_GIVING_UP: u32 = 3;

impl SnapshotTransfer {
    pub(crate) fn new(meta: SnapshotMeta) -> Self {
        SnapshotTransfer {
            meta,
            next_offset: 0,
            acked_offset: 0,
            last_sent: false,
            rewound: false,
            acked_at_last_stall: 0,
            stalls_without_progress: 0,
        }
    }

    /// The transfer heard nothing for a while. Whether to give it up for a newer snapshot: only
    /// when several stalls in a row confirmed nothing (its snapshot may have been deleted). A
    /// transfer that is progressing, however slowly, is resumed, never restarted: a newer
    /// snapshot is recorded every few entries under sustained writes, and a large transfer that
    /// started over with each one would never finish.
    pub(crate) fn give_up_on_stall(&mut self) -> bool {
        if self.acked_offset > self.acked_at_last_stall {
            self.acked_at_last_stall = self.acked_offset;
            self.stalls_without_progress = 0;
        } else {
            self.stalls_without_progress += 1;
        }
        self.stalls_without_progress >= STALLS_BEFORE_GIVING_UP
    }

    /// The next chunk to send (offset, length), if the window allows one.
    pub(crate) fn next_chunk(&mut self, chunk_bytes: u64, window_chunks: u64) -> Option<(u64, u64)> {
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
    pub(crate) fn on_response(&mut self, next_offset: u64, rejected: bool) {
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
#[derive(Clone, Debug, Hash)]
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) next_offset: u64,
    pub(crate) checksum: SnapshotChecksum,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Membership;

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

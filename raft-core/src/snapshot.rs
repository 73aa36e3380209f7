//! Snapshots and log compaction (Raft paper §7, Raft thesis chapter 5).
//!
//! A snapshot is the state machine's state after applying every entry up to an index, together
//! with what the log knew at that point: the term of that entry and the configuration in force.
//! The core never holds a snapshot's bytes: it only decides, and the caller moves the bytes.
//!
//! **Compaction.** Once enough has been applied since the last snapshot (`Config`'s
//! `snapshot_after_entries` or `snapshot_after_log_bytes`, and with `snapshot_min_log_percent`
//! at least that share of the last snapshot's size), or when asked
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
//!
//! The values a snapshot is described by live in `snapshot_types.rs`, the state of transfers in
//! `snapshot_transfer.rs`; this file holds the rules.

use tracing::{debug, info, warn};

use crate::core::RaftCore;
use crate::message::{AppendEntriesResponse, InstallSnapshot, InstallSnapshotResponse, MessageBody};
use crate::snapshot_transfer::IncomingSnapshot;
use crate::snapshot_types::{
    ReceivedChunk, SnapshotChecksum, SnapshotChunkRequest, SnapshotMeta, SnapshotUpdate,
};
use crate::types::{Index, NodeId, Role};

impl RaftCore {
    // ---- compaction ------------------------------------------------------------------------------

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
        let by_policy = (config.snapshot_after_entries > 0 && since >= config.snapshot_after_entries)
            || (config.snapshot_after_log_bytes > 0
                && self.applied_bytes_since_snapshot >= config.snapshot_after_log_bytes);
        let due = self.snapshot_requested || (by_policy && self.log_outgrew_snapshot());
        if due {
            self.snapshot_requested = false;
            self.snapshot_building = true;
        }
        due
    }

    /// Whether the log applied since the last snapshot holds `snapshot_min_log_percent` % of that
    /// snapshot's bytes, so that writing the whole state again is paid for by as many bytes of
    /// commands (always, without a snapshot yet or with the floor at 0).
    fn log_outgrew_snapshot(&self) -> bool {
        let percent = self.config.snapshot_min_log_percent;
        match &self.snapshot {
            Some(last) if percent > 0 => {
                u128::from(self.applied_bytes_since_snapshot) * 100
                    >= u128::from(last.size) * u128::from(percent)
            }
            _ => true,
        }
    }

    /// The rule behind [`RaftCore::on_snapshot_built`].
    pub(crate) fn record_built_snapshot(
        &mut self,
        index: Index,
        size: u64,
        checksum: u32,
    ) -> Option<SnapshotMeta> {
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
    /// confirmed byte; only a transfer that has confirmed nothing for several stalls in a row
    /// starts over with a newer snapshot, if one was taken meanwhile.
    pub(crate) fn resume_stalled_snapshot(&mut self, follower: NodeId) {
        let latest = self.snapshot.clone();
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        let Some(transfer) = progress.snapshot.as_mut() else {
            return;
        };
        let give_up = transfer.give_up_on_stall();
        match latest {
            Some(latest) if give_up && latest.index != transfer.meta.index => {
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
        // The edge check (`inbound.rs`) guarantees that the chunk ends within the snapshot.
        let end = request.offset + request.data.len() as u64;
        if request.done != (end == request.meta.size) {
            warn!(
                node = self.id(),
                leader,
                offset = request.offset,
                len = request.data.len(),
                size = request.meta.size,
                "snapshot chunk's last-chunk flag disagrees with where it ends; starting over"
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
        let discard_log = self.log.install_snapshot(meta.index, meta.term, agrees);
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
            discard_log,
        });
    }
}

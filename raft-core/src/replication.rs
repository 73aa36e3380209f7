//! Log replication (Raft paper §5.3): AppendEntries on both sides, heartbeats, and flow control.
//!
//! The leader keeps a [`Progress`](crate::progress::Progress) per follower. A follower whose
//! position is unknown is *probed*: one AppendEntries at a time, and each rejection carries a
//! conflict hint so the leader backs up a whole term per round trip instead of one entry. Once a
//! probe succeeds the follower is *replicated to*: AppendEntries are pipelined up to a window of
//! messages and bytes; with [`Config::hold_partial_appends`](crate::Config::hold_partial_appends)
//! (Nagle's rule) one that reaches the log's end waits while another is in flight, so that
//! entries proposed one by one travel together. A heartbeat carries no entries and never fails
//! a log check, so it cannot knock a pipelining follower back into probing; it spreads the
//! commit index and, with its answer, keeps check-quorum informed.

use tracing::{debug, warn};

use crate::core::RaftCore;
use crate::entries::Entries;
use crate::entry::{Entry, EntryPayload};
use crate::message::{AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, MessageBody};
use crate::progress::ReplicationState;
use crate::types::{Index, NodeId, Role};

impl RaftCore {
    // ---- leader side ----------------------------------------------------------------------------

    /// Sends each follower what it is missing, as far as its flow-control window allows.
    pub(crate) fn flush_replication(&mut self) {
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for follower in followers {
            while self.send_append(follower) {}
        }
    }

    /// Sends one AppendEntries to `follower` if its window allows. A probing follower gets one
    /// (possibly empty) to learn where its log stands; a replicating one only gets messages that
    /// carry entries. Returns whether a message went out and another may follow.
    pub(crate) fn send_append(&mut self, follower: NodeId) -> bool {
        let config = &self.config;
        let Some(progress) = self.progress.get_mut(&follower) else {
            return false;
        };
        if !progress.can_send(config.max_inflight_messages, config.max_inflight_bytes) {
            return false;
        }
        let prev_log_index = progress.next_index - 1;
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            if progress.inflight_messages() > 0 {
                // The answers to what is in flight come first (or, if it was lost, the probe that
                // finds the gap): a follower may be a round trip from needing no snapshot at all,
                // and one that is unreachable would have its chunks sent into the void.
                return false;
            }
            // The entries the follower needs were compacted away: it gets the snapshot instead.
            self.start_snapshot_transfer(follower);
            return false;
        };
        if config.hold_partial_appends
            && progress.state == ReplicationState::Replicate
            && progress.inflight_messages() > 0
            && self.log.fits_one_message(
                progress.next_index,
                config.max_entries_per_message,
                config.max_bytes_per_message,
            )
        {
            // Nagle's rule: a message that would reach the log's end waits for the one in flight
            // to be answered, gathering what is proposed meanwhile (asked before the entries are
            // taken, which would cut this round's proposals into a run of their own).
            return false;
        }
        let entries = self.log.entries_from(
            progress.next_index,
            config.max_entries_per_message,
            config.max_bytes_per_message,
        );
        let probing = progress.state == ReplicationState::Probe;
        if entries.is_empty() && !probing {
            return false;
        }
        let bytes = entries.iter().map(|e| e.size_bytes()).sum();
        let last_index = prev_log_index + entries.len() as Index;
        progress.on_sent(last_index, entries.len(), bytes);
        let more = progress.state == ReplicationState::Replicate && !entries.is_empty();
        let request = AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.log.committed,
        };
        self.send(follower, MessageBody::AppendEntries(request));
        more
    }

    /// Sends heartbeats, and lets a probe that went unanswered be sent again.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let round = self.start_round();
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for follower in followers {
            if let Some(progress) = self.progress.get_mut(&follower) {
                if progress.state == ReplicationState::Probe {
                    progress.probe_sent = false;
                }
            }
            let heartbeat = self.heartbeat_for(follower, round);
            self.send(follower, MessageBody::Heartbeat(heartbeat));
        }
    }

    /// Restarts replication to followers whose pipeline acknowledged nothing for a whole election
    /// timeout while entries were in flight: a message was lost, and every later one is waiting
    /// behind the gap. Slow links and disks that still answer within the timeout are left alone.
    pub(crate) fn detect_stalled_pipelines(&mut self) {
        let limit = self.config.election_timeout_ticks;
        let snapshot_limit = 2 * self.config.heartbeat_interval_ticks;
        let last_index = self.log.last_index();
        let mut stalled_snapshots = Vec::new();
        for (follower, progress) in self.progress.iter_mut() {
            if let Some(transfer) = &progress.snapshot {
                if !transfer.awaiting_ack() {
                    progress.ticks_without_ack = 0;
                    continue;
                }
                progress.ticks_without_ack += 1;
                if progress.ticks_without_ack >= snapshot_limit {
                    progress.ticks_without_ack = 0;
                    stalled_snapshots.push(*follower);
                }
                continue;
            }
            let waiting = progress.state == ReplicationState::Replicate
                && progress.inflight_messages() > 0
                && progress.match_index < last_index;
            if !waiting {
                progress.ticks_without_ack = 0;
                continue;
            }
            progress.ticks_without_ack += 1;
            if progress.ticks_without_ack >= limit {
                debug!(
                    follower,
                    match_index = progress.match_index,
                    "replication stalled; probing"
                );
                let next = progress.match_index + 1;
                progress.become_probe(next);
            }
        }
        for follower in stalled_snapshots {
            debug!(
                follower,
                "snapshot transfer stalled; resending from the last confirmed byte"
            );
            self.resume_stalled_snapshot(follower);
        }
    }

    /// A follower answered an AppendEntries.
    pub(crate) fn handle_append_entries_response(
        &mut self,
        follower: NodeId,
        response: AppendEntriesResponse,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        progress.recent_active = true;
        match response {
            AppendEntriesResponse::Success { match_index } => {
                if match_index > self.log.last_index() {
                    warn!(
                        follower,
                        match_index, "follower claims entries this leader never sent"
                    );
                    return;
                }
                if progress.on_match(match_index) {
                    self.maybe_commit();
                }
                self.maybe_send_timeout_now(follower);
            }
            AppendEntriesResponse::Conflict {
                rejected_index,
                conflict_index,
                conflict_term,
            } => {
                if rejected_index > self.log.last_index() {
                    warn!(
                        follower,
                        rejected_index, "follower rejects entries this leader never sent"
                    );
                    return;
                }
                let stale = match progress.state {
                    ReplicationState::Probe => rejected_index + 1 != progress.next_index,
                    ReplicationState::Replicate => rejected_index <= progress.match_index,
                    ReplicationState::Snapshot => true,
                };
                if stale {
                    return;
                }
                // Back up by term (Raft paper §5.3): skip the follower's whole conflicting term, or
                // to just after our last entry of that term, which must match.
                let next = match conflict_term.and_then(|t| self.log.last_index_of_term(t, rejected_index)) {
                    Some(index) => index + 1,
                    None => conflict_index,
                };
                let next = next.min(rejected_index).min(self.log.last_index() + 1).max(1);
                if rejected_index <= progress.match_index {
                    warn!(
                        follower,
                        rejected_index,
                        match_index = progress.match_index,
                        "follower rejected entries it had acknowledged: its storage lost durable writes"
                    );
                }
                debug!(follower, rejected_index, next, "follower log mismatch; probing");
                let previous_next = progress.next_index;
                progress.become_probe(next);
                if progress.next_index < previous_next {
                    self.send_append(follower);
                } else {
                    // The search did not move (a duplicate, or a follower that lost what it
                    // acknowledged): probe again at the next heartbeat rather than ping-pong.
                    progress.probe_sent = true;
                }
            }
        }
    }

    /// A follower answered a heartbeat.
    pub(crate) fn handle_heartbeat_response(&mut self, follower: NodeId, response: HeartbeatResponse) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let mut behind = false;
        if let Some(progress) = self.progress.get_mut(&follower) {
            progress.recent_active = true;
            behind = progress.state == ReplicationState::Replicate && progress.match_index < last_index;
        }
        if behind {
            self.send_gap_probe(follower);
        }
        self.on_round_answered(follower, response.round);
    }

    /// Checks that a pipelining follower holds everything sent so far: an empty AppendEntries at
    /// `next_index - 1`, outside the flow-control window. Behind the messages still in flight it
    /// simply succeeds; if one of them was lost the follower rejects it, and the leader resends
    /// from the follower's log end at once instead of waiting for the stall timeout.
    fn send_gap_probe(&mut self, follower: NodeId) {
        let Some(progress) = self.progress.get(&follower) else {
            return;
        };
        // When the entries sent were compacted since, probe at the snapshot instead: a follower
        // without it rejects, and gets the snapshot.
        let mut prev_log_index = progress.next_index - 1;
        if self.log.term(prev_log_index).is_none() {
            prev_log_index = self.log.snapshot_index;
        }
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            return;
        };
        let probe = AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: Entries::new(),
            leader_commit: self.log.committed.min(progress.match_index),
        };
        self.send(follower, MessageBody::AppendEntries(probe));
    }

    // ---- follower side --------------------------------------------------------------------------

    /// Accepts the current leader's authority: a candidate of the same term steps down.
    pub(crate) fn follow(&mut self, leader: NodeId) {
        if self.role == Role::Leader {
            // Two leaders in one term would break election safety; refuse to act on it.
            warn!(
                node = self.id(),
                other = leader,
                term = self.term,
                "another leader in my term"
            );
            debug_assert!(false, "two leaders in term {}", self.term);
            return;
        }
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(self.term, Some(leader));
        }
        self.election_elapsed = 0;
    }

    /// Appends the leader's entries if our log matches at `prev_log_index`.
    pub(crate) fn handle_append_entries(&mut self, leader: NodeId, mut request: AppendEntries) {
        self.follow(leader);
        if self.role == Role::Leader {
            return;
        }
        // Entries up to our commit index are already in place and can never differ.
        let committed = self.log.committed;
        if request.prev_log_index < committed {
            let skip = (committed - request.prev_log_index) as usize;
            if skip >= request.entries.len() {
                self.send(
                    leader,
                    MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                        match_index: committed,
                    }),
                );
                return;
            }
            request.entries = request.entries.slice(skip..);
            request.prev_log_index = committed;
            request.prev_log_term = self.log.term(committed).unwrap_or_default();
        }
        let prev = request.prev_log_index;
        if self.log.term(prev) != Some(request.prev_log_term) {
            let (conflict_index, conflict_term) = match self.log.term(prev) {
                None => (self.log.last_index() + 1, None),
                Some(term) => (self.log.first_index_of_term_at(prev), Some(term)),
            };
            debug!(
                node = self.id(),
                prev,
                conflict_index,
                ?conflict_term,
                "rejecting AppendEntries"
            );
            let response = AppendEntriesResponse::Conflict {
                rejected_index: prev,
                conflict_index,
                conflict_term,
            };
            self.send(leader, MessageBody::AppendEntriesResponse(response));
            return;
        }
        let configs: Vec<Entry> = request
            .entries
            .iter()
            .filter(|e| matches!(e.payload, EntryPayload::Membership(_)))
            .cloned()
            .collect();
        let last_new = self.log.append_after(prev, request.entries);
        self.forget_truncated_configurations();
        self.configs.record(&configs);
        self.adopt_latest_configuration();
        // Only what is known to match the leader may be marked committed.
        let commit = request.leader_commit.min(last_new);
        if commit > self.log.committed {
            self.log.committed = commit;
        }
        self.send(
            leader,
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                match_index: last_new,
            }),
        );
    }

    /// Learns the commit index from the leader's heartbeat.
    pub(crate) fn handle_heartbeat(&mut self, leader: NodeId, heartbeat: Heartbeat) {
        self.follow(leader);
        if self.role == Role::Leader {
            return;
        }
        let commit = heartbeat.commit.min(self.log.last_index());
        if commit > self.log.committed {
            self.log.committed = commit;
        }
        let answer = HeartbeatResponse {
            round: heartbeat.round,
        };
        self.send(leader, MessageBody::HeartbeatResponse(answer));
    }
}

//! Reads: ReadIndex (linearizable), leases, and follower reads (Raft thesis §6.4).
//!
//! A ReadIndex read records the leader's commit index, then waits until the leader has proven it
//! still leads: a quorum answers a heartbeat *round* started after the read arrived. Every
//! heartbeat starts a round, and reads that arrive together join the next round, so many reads
//! share one confirmation. The read is served once the state machine has applied the recorded
//! index. A new leader first commits an entry of its own term (its blank entry); reads wait for
//! that, because before it the leader's commit index may lag the cluster's.
//!
//! A confirmed round also renews the leader's *lease*: followers that answered will not vote for
//! anyone else for an election timeout after they heard the heartbeat, so until
//! `sent + T - drift` (on the leader's clock) no other leader can exist and the leader may serve
//! reads without a round trip. Leases need check-quorum (followers ignore votes while they hear a
//! leader), and are off by default. A leadership transfer ends the lease for the rest of the term,
//! even if the transfer times out: the TimeoutNow it sent may still make another node leader, and
//! voters grant that election despite their leases.
//!
//! A follower forwards a read to the leader and gets back the confirmed index; it serves the read
//! once it has applied that index itself.
//!
//! Every read ends: served, failed when leadership changes, or failed with
//! [`ReadError::Expired`] once it has waited two election timeouts (a forwarded request or its
//! answer was lost, or the leader's rounds find no quorum), so nothing waits forever for an
//! answer that will not come.

use tracing::debug;

use crate::core::RaftCore;
use crate::error::ReadError;
use crate::message::{Heartbeat, MessageBody, ReadIndexRequest, ReadIndexResponse};
use crate::read_tracker::{PendingRead, ReadId, ReadState, Round};
use crate::types::{Index, NodeId, Role};

/// Rounds kept for lease renewal when they carry no reads.
const MAX_EMPTY_ROUNDS: usize = 64;

impl RaftCore {
    /// The rule behind [`RaftCore::read_index`].
    pub(crate) fn start_read_index(&mut self, id: ReadId) -> Result<(), ReadError> {
        match self.role {
            Role::Leader => {
                let me = self.id();
                self.queue_read(PendingRead {
                    id,
                    from: me,
                    arrived: self.ticks,
                });
                Ok(())
            }
            _ => match self.leader {
                Some(leader) => {
                    self.reads.forwarded.push((id, self.ticks));
                    self.send(leader, MessageBody::ReadIndexRequest(ReadIndexRequest { id }));
                    Ok(())
                }
                None => Err(ReadError::NotLeader { leader_hint: None }),
            },
        }
    }

    /// The rule behind [`RaftCore::lease_read`].
    pub(crate) fn start_lease_read(&mut self, id: ReadId) -> Result<(), ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if !self.holds_lease() {
            return Err(ReadError::LeaseNotHeld);
        }
        let index = self.log.committed;
        self.reads.ready.push(ReadState { id, index });
        Ok(())
    }

    /// The rule behind [`RaftCore::holds_lease`].
    pub(crate) fn lease_holds(&self) -> bool {
        let transfer_ends_lease = !self.planted(crate::planted::PlantedBug::KeepLeaseDuringTransfer);
        self.config.lease_reads
            && self.role == Role::Leader
            && (!transfer_ends_lease || (self.transfer.is_none() && !self.reads.lease_forfeited))
            && self.term_committed()
            && self.ticks < self.reads.lease_until
    }

    /// Whether the leader has committed an entry of its own term.
    pub(crate) fn term_committed(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    fn queue_read(&mut self, read: PendingRead) {
        if self.term_committed() {
            self.reads.unsent.push(read);
        } else {
            self.reads.waiting_for_term_commit.push(read);
        }
    }

    /// Starts a confirmation round carrying the reads queued so far; returns its id.
    pub(crate) fn start_round(&mut self) -> u64 {
        if self.term_committed() {
            let waiting = std::mem::take(&mut self.reads.waiting_for_term_commit);
            self.reads.unsent.extend(waiting);
        }
        self.reads.last_round += 1;
        let round = Round {
            id: self.reads.last_round,
            sent_tick: self.ticks,
            index: self.log.committed,
            reads: std::mem::take(&mut self.reads.unsent),
        };
        self.reads.rounds.push_back(round);
        while self.reads.rounds.len() > MAX_EMPTY_ROUNDS
            && self.reads.rounds.front().is_some_and(|r| r.reads.is_empty())
        {
            self.reads.rounds.pop_front();
        }
        self.confirm_rounds();
        self.reads.last_round
    }

    /// Sends a heartbeat round now if reads are waiting for one (called when collecting work).
    pub(crate) fn flush_reads(&mut self) {
        let waiting_ready = self.term_committed() && !self.reads.waiting_for_term_commit.is_empty();
        if !self.reads.unsent.is_empty() || waiting_ready {
            self.broadcast_heartbeat();
        }
    }

    /// A follower answered round `round`.
    pub(crate) fn on_round_answered(&mut self, follower: NodeId, round: u64) {
        let acked = self.reads.acked.entry(follower).or_insert(0);
        *acked = (*acked).max(round);
        self.confirm_rounds();
    }

    /// Completes every round a quorum has answered, oldest first.
    fn confirm_rounds(&mut self) {
        let me = self.id();
        while let Some(round) = self.reads.rounds.front() {
            let acked = &self.reads.acked;
            let id = round.id;
            if !self
                .membership
                .has_quorum(|n| n == me || acked.get(&n).is_some_and(|r| *r >= id))
            {
                break;
            }
            let Some(round) = self.reads.rounds.pop_front() else {
                break;
            };
            let lease = round.sent_tick + u64::from(self.config.election_timeout_ticks)
                - u64::from(self.config.lease_clock_drift_ticks);
            self.reads.lease_until = self.reads.lease_until.max(lease);
            for read in round.reads {
                self.complete_read(read, round.index);
            }
        }
    }

    fn complete_read(&mut self, read: PendingRead, index: Index) {
        if read.from == self.id() {
            self.reads.ready.push(ReadState { id: read.id, index });
        } else {
            let answer = ReadIndexResponse {
                id: read.id,
                index: Some(index),
            };
            self.send(read.from, MessageBody::ReadIndexResponse(answer));
        }
    }

    /// A follower forwarded a read.
    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, request: ReadIndexRequest) {
        if self.role == Role::Leader {
            self.queue_read(PendingRead {
                id: request.id,
                from,
                arrived: self.ticks,
            });
        } else {
            let answer = ReadIndexResponse {
                id: request.id,
                index: None,
            };
            self.send(from, MessageBody::ReadIndexResponse(answer));
        }
    }

    /// The leader answered a forwarded read.
    pub(crate) fn handle_read_index_response(&mut self, response: ReadIndexResponse) {
        let Some(position) = self.reads.forwarded.iter().position(|(id, _)| *id == response.id) else {
            return;
        };
        self.reads.forwarded.swap_remove(position);
        match response.index {
            Some(index) => self.reads.ready.push(ReadState {
                id: response.id,
                index,
            }),
            None => self.reads.failed.push((
                response.id,
                ReadError::NotLeader {
                    leader_hint: self.leader,
                },
            )),
        }
    }

    /// Leadership or the known leader changed: every read in progress fails, so that callers retry
    /// instead of waiting for an answer that will not come.
    pub(crate) fn fail_pending_reads(&mut self) {
        let me = self.id();
        let hint = self.leader.filter(|leader| *leader != me);
        let tracker = std::mem::take(&mut self.reads);
        let mut pending: Vec<PendingRead> = tracker.waiting_for_term_commit;
        pending.extend(tracker.unsent);
        pending.extend(tracker.rounds.into_iter().flat_map(|r| r.reads));
        self.reads.ready = tracker.ready;
        self.reads.failed = tracker.failed;
        for (id, _) in tracker.forwarded {
            self.reads
                .failed
                .push((id, ReadError::NotLeader { leader_hint: hint }));
        }
        if !pending.is_empty() {
            debug!(
                node = me,
                reads = pending.len(),
                "failing reads: leadership changed"
            );
        }
        for read in pending {
            if read.from == me {
                self.reads
                    .failed
                    .push((read.id, ReadError::NotLeader { leader_hint: hint }));
            } else {
                let answer = ReadIndexResponse {
                    id: read.id,
                    index: None,
                };
                self.send(read.from, MessageBody::ReadIndexResponse(answer));
            }
        }
    }

    /// Fails the reads that have waited two election timeouts: a forwarded request or its answer
    /// was lost, or the leader's rounds find no quorum (and, without check-quorum, nothing else
    /// would end them). Called on every tick.
    pub(crate) fn expire_reads(&mut self) {
        let patience = 2 * u64::from(self.config.election_timeout_ticks);
        let Some(cutoff) = self.ticks.checked_sub(patience) else {
            return;
        };
        let mut expired = Vec::new();
        self.reads.forwarded.retain(|(id, sent)| {
            let keep = *sent > cutoff;
            if !keep {
                expired.push(*id);
            }
            keep
        });
        for id in expired {
            self.reads.failed.push((id, ReadError::Expired));
        }
        let mut unconfirmed = Vec::new();
        while self.reads.rounds.front().is_some_and(|r| r.sent_tick <= cutoff) {
            if let Some(round) = self.reads.rounds.pop_front() {
                unconfirmed.extend(round.reads);
            }
        }
        // Reads still waiting for the term's first commit (a leader that cannot commit).
        let (old, young) = std::mem::take(&mut self.reads.waiting_for_term_commit)
            .into_iter()
            .partition(|read| read.arrived <= cutoff);
        self.reads.waiting_for_term_commit = young;
        unconfirmed.extend::<Vec<PendingRead>>(old);
        if !unconfirmed.is_empty() {
            debug!(
                node = self.id(),
                reads = unconfirmed.len(),
                "reads expired unconfirmed"
            );
        }
        for read in unconfirmed {
            if read.from == self.id() {
                self.reads.failed.push((read.id, ReadError::Expired));
            } else {
                let answer = ReadIndexResponse {
                    id: read.id,
                    index: None,
                };
                self.send(read.from, MessageBody::ReadIndexResponse(answer));
            }
        }
    }

    /// The heartbeat every follower gets for a new round.
    pub(crate) fn heartbeat_for(&self, follower: NodeId, round: u64) -> Heartbeat {
        // Never claim more is committed than the follower is known to hold.
        let matched = self.progress.get(&follower).map_or(0, |p| p.match_index);
        Heartbeat {
            commit: self.log.committed.min(matched),
            round,
        }
    }
}

//! Leadership transfer (Raft thesis §3.10).
//!
//! The leader stops accepting proposals, brings the target's log up to date, and sends it
//! TimeoutNow; the target campaigns at once, skipping pre-vote, and voters grant it even though
//! they heard from the old leader recently. If the target has not taken over within an election
//! timeout, the leader gives up and accepts proposals again.

use tracing::info;

use crate::core::RaftCore;
use crate::error::TransferError;
use crate::message::MessageBody;
use crate::transfer_state::Transfer;
use crate::types::{NodeId, Role};

impl RaftCore {
    /// The rule behind [`RaftCore::transfer_leadership`].
    pub(crate) fn start_transfer(&mut self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if target == self.id() {
            return Err(TransferError::AlreadyLeader(target));
        }
        if let Some(transfer) = self.transfer {
            return Err(TransferError::InProgress {
                target: transfer.target,
            });
        }
        if !self.membership.is_voter(target) {
            return Err(TransferError::NotAVoter(target));
        }
        info!(
            node = self.id(),
            target,
            term = self.term,
            "transferring leadership"
        );
        self.reads.lease_forfeited = true;
        self.transfer = Some(Transfer {
            target,
            elapsed: 0,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now(target);
        Ok(())
    }

    /// Sends TimeoutNow once the target's log matches the leader's.
    pub(crate) fn maybe_send_timeout_now(&mut self, follower: NodeId) {
        let last_index = self.log.last_index();
        let Some(transfer) = self.transfer.as_mut() else {
            return;
        };
        let caught_up = self
            .progress
            .get(&follower)
            .is_some_and(|p| p.match_index == last_index);
        if transfer.target == follower && caught_up && !transfer.timeout_now_sent {
            transfer.timeout_now_sent = true;
            self.send(follower, MessageBody::TimeoutNow);
        }
    }

    /// Gives up a transfer that has taken an election timeout.
    pub(crate) fn tick_transfer(&mut self) {
        let (limit, node) = (self.config.election_timeout_ticks, self.id());
        if let Some(transfer) = self.transfer.as_mut() {
            transfer.elapsed += 1;
            if transfer.elapsed >= limit {
                info!(node, target = transfer.target, "leadership transfer timed out");
                self.transfer = None;
            }
        }
    }

    /// The leader asked this node to campaign now.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.leader != Some(from) || !self.may_campaign() || self.role == Role::Leader {
            return;
        }
        info!(
            node = self.id(),
            term = self.term,
            "campaigning at the leader's request"
        );
        self.campaign(false, true);
    }
}

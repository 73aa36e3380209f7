//! Leader election (Raft paper §5.2, §5.4.1), pre-vote (Raft thesis §9.6) and check-quorum
//! (thesis §6.2).
//!
//! A follower that hears nothing from a leader for its randomized election timeout first asks for
//! *pre-votes*: "would you vote for me in term T+1?". Only when a quorum says yes does it raise its
//! term and ask for real votes, so a node cut off from the cluster cannot inflate its term and
//! depose a healthy leader when it returns. A vote is granted once per term, to a candidate whose
//! log is at least as up to date, and only after the vote is durable.

use tracing::{debug, info};

use crate::core::RaftCore;
use crate::membership::VoteResult;
use crate::message::{MessageBody, RequestVote, RequestVoteResponse};
use crate::planted::PlantedBug;
use crate::types::{NodeId, Role, Term};

impl RaftCore {
    /// A follower's or candidate's tick: start an election when the timer runs out.
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.leadership_pending.is_some() {
            // Won on its own vote; only its disk is to wait for. Campaigning again would start a
            // new term and a new write, and a disk slower than the election timeout would never
            // let it lead.
            return;
        }
        if self.election_elapsed >= self.randomized_election_timeout && self.may_campaign() {
            self.start_election();
        }
    }

    /// A leader's tick: heartbeats, and the check-quorum round every election timeout.
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.detect_stalled_pipelines();
        self.tick_transfer();
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                info!(
                    node = self.id(),
                    term = self.term,
                    "stepping down: no quorum heard within an election timeout (check-quorum)"
                );
                self.become_follower(self.term, None);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Whether a quorum answered since the last check, counting this node; clears the marks.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.id();
        let progress = &self.progress;
        let active = self
            .membership
            .has_quorum(|id| id == me || progress.get(&id).is_some_and(|p| p.recent_active));
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        active
    }

    /// Whether this node heard from a live leader within the minimum election timeout. Such a node
    /// refuses pre-votes, and with check-quorum ignores vote requests (thesis §4.2.3).
    pub(crate) fn leader_recently_heard(&self) -> bool {
        // With leases, a node that just started cannot know whether it heard a leader before it
        // stopped: it acts as if it did for one election timeout, so no lease is cut short.
        if self.config.lease_reads && self.ticks < u64::from(self.config.election_timeout_ticks) {
            return true;
        }
        match self.role {
            Role::Leader => true,
            _ => self.leader.is_some() && self.election_elapsed < self.config.election_timeout_ticks,
        }
    }

    /// Starts a pre-election when pre-vote is on, otherwise an election.
    pub(crate) fn start_election(&mut self) {
        self.campaign(self.config.pre_vote, false);
    }

    /// Asks the voters for (pre-)votes; `transfer` marks an election the leader asked for.
    pub(crate) fn campaign(&mut self, pre_vote: bool, transfer: bool) {
        self.fail_pending_reads();
        let me = self.id();
        let campaign_term = if pre_vote {
            self.role = Role::PreCandidate;
            self.term + 1
        } else {
            self.role = Role::Candidate;
            self.term += 1;
            self.voted_for = Some(me);
            self.term
        };
        self.leader = None;
        self.progress.clear();
        self.leadership_pending = None;
        self.reset_election_timer();
        debug!(node = me, term = campaign_term, pre_vote, "campaigning");
        self.votes.clear();
        self.votes.insert(me, true);
        if !pre_vote
            && self.membership.vote_result(&self.votes) == VoteResult::Won
            && !self.planted(PlantedBug::LeadBeforeVoteIsDurable)
        {
            // Our own vote is a quorum (a single voter), but the new term and the vote for
            // ourselves are not durable yet: leading now would let AppendEntries of this term
            // leave before the term is on disk, and a crash would let this node win the same
            // term again with a different log (Raft Figure 2: persist before acting).
            self.win_on_own_vote();
            return;
        }
        if self.tally_votes() {
            return;
        }
        let request = RequestVote {
            pre_vote,
            transfer,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        let voters: Vec<NodeId> = self
            .peers()
            .into_iter()
            .filter(|id| self.membership.is_voter(*id))
            .collect();
        for voter in voters {
            self.send_with_term(voter, campaign_term, MessageBody::RequestVote(request.clone()));
        }
    }

    /// Won the election on this node's own vote alone. Appends the term's first entry (the blank
    /// a new leader writes), which the caller persists together with the new term and the vote,
    /// and becomes leader only when [`on_persisted`](RaftCore::on_persisted) reports that entry
    /// durable. Until then it stays a candidate: it sends nothing of the term and takes no
    /// proposals. A crash before the write loses the term, the vote and the entry together, and
    /// nothing of the term was seen by anyone.
    fn win_on_own_vote(&mut self) {
        let index = self.log.last_index() + 1;
        info!(
            node = self.id(),
            term = self.term,
            index,
            "won the election on its own vote; leading once the term and the vote are durable"
        );
        self.log.push(crate::entry::Entry::blank(self.term, index));
        self.leadership_pending = Some(index);
    }

    /// Takes up the leadership won on its own vote once the term's first entry, written with the
    /// term and the vote, is durable.
    pub(crate) fn take_up_pending_leadership(&mut self) {
        let Some(index) = self.leadership_pending else {
            return;
        };
        let durable = self.log.persisted >= index && self.log.term(index) == Some(self.term);
        if self.role == Role::Candidate && durable {
            self.become_leader();
        }
    }

    /// Counts the votes; wins or loses the (pre-)election when decided. Returns whether decided.
    fn tally_votes(&mut self) -> bool {
        match self.membership.vote_result(&self.votes) {
            VoteResult::Won => {
                if self.role == Role::PreCandidate {
                    self.campaign(false, false);
                } else {
                    self.become_leader();
                }
                true
            }
            VoteResult::Lost => {
                debug!(node = self.id(), term = self.term, role = %self.role, "election lost");
                self.become_follower(self.term, None);
                true
            }
            VoteResult::Pending => false,
        }
    }

    /// Answers a (pre-)vote request whose term is not below ours.
    pub(crate) fn handle_vote_request(&mut self, candidate: NodeId, term: Term, request: RequestVote) {
        let log_ok = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term)
            || self.planted(PlantedBug::SkipUpToDateLogCheck);
        // Whether this node votes is the candidate's configuration's business, not ours: a node
        // promoted to voter may not have the entry that says so yet. A learner's grant is simply
        // not counted by a candidate whose configuration has it as a learner.
        let granted = if request.pre_vote {
            // Would we vote in `term`? Only if it is a new term, no leader is alive, and the log is
            // up to date. Nothing changes here.
            term > self.term && !self.leader_recently_heard() && log_ok
        } else {
            let can_vote = self.voted_for == Some(candidate)
                || (self.voted_for.is_none() && self.leader.is_none())
                || self.planted(PlantedBug::GrantSecondVoteInTerm);
            can_vote && log_ok
        };
        if granted && !request.pre_vote {
            self.voted_for = Some(candidate);
            self.reset_election_timer();
        }
        debug!(
            node = self.id(),
            candidate,
            term,
            pre_vote = request.pre_vote,
            granted,
            "vote request"
        );
        // A granted pre-vote answers in the proposed term; a refusal carries ours.
        let answer_term = if granted { term } else { self.term };
        self.send_with_term(
            candidate,
            answer_term,
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: request.pre_vote,
                granted,
            }),
        );
    }

    /// Counts a vote for the election under way, if it is for that election.
    pub(crate) fn handle_vote_response(&mut self, voter: NodeId, term: Term, response: RequestVoteResponse) {
        let current = match self.role {
            Role::PreCandidate => response.pre_vote && term == self.term + 1,
            Role::Candidate => !response.pre_vote && term == self.term,
            _ => false,
        };
        // A refused pre-vote comes in the voter's term, which may equal ours.
        let refused_pre_vote = self.role == Role::PreCandidate && response.pre_vote && !response.granted;
        if !current && !refused_pre_vote {
            return;
        }
        self.votes.insert(voter, response.granted);
        self.tally_votes();
    }
}

//! [`RaftCore`]: the node's protocol state and its one public face.
//!
//! Every public method of `RaftCore` is in this file, with its documentation: the inputs (`tick`,
//! `step`, `propose`, `ready`, `on_persisted`, `on_applied`), reads, snapshots, leadership
//! transfer, membership changes and the observers. The rules they apply live beside it, one
//! concern a file, each an `impl RaftCore` block of `pub(crate)` logic: `election.rs` (timeouts,
//! pre-vote, votes, check-quorum), `replication.rs` (AppendEntries, heartbeats, flow control),
//! `commit.rs` (quorum commit), `read.rs` (ReadIndex and leases), `snapshot.rs` (compaction and
//! InstallSnapshot), `transfer.rs` (leadership transfer) and `reconfiguration.rs` (joint
//! consensus). What the core keeps is in leaf modules that never refer back to it: `log`,
//! `progress`, `read_tracker`, `config_history`, `snapshot_transfer`, `transfer_state`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tracing::{debug, info, trace};

use crate::config::Config;
use crate::config_history::ConfigHistory;
use crate::entry::Entry;
use crate::error::{InitError, MembershipChangeError, ProposeError, ReadError, StepError, TransferError};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{Message, MessageBody};
use crate::progress::{Progress, ReplicationState};
use crate::read_tracker::{ReadId, ReadTracker};
use crate::ready::Ready;
use crate::rng::SeededRng;
use crate::snapshot_transfer::IncomingSnapshot;
use crate::snapshot_types::{ReceivedChunk, SnapshotChunkRequest, SnapshotMeta, SnapshotUpdate};
use crate::transfer_state::Transfer;
use crate::types::{HardState, Index, NodeId, Role, SoftState, Status, Term};

/// What a node had persisted when it stopped, to restart from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RestoredState {
    /// The saved hard state.
    pub hard_state: HardState,
    /// The latest saved snapshot, if any. The state machine must have been restored from it (or
    /// be further along) before the core starts.
    pub snapshot: Option<SnapshotMeta>,
    /// The saved log: consecutive entries, from index 1 when there is no snapshot, otherwise from
    /// at most the entry after the snapshot.
    pub entries: Vec<Entry>,
    /// The index the state machine has already applied (0 for a state machine that starts empty).
    pub applied: Index,
}

/// The leader's view of one follower, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FollowerProgress {
    /// The highest index known to match on the follower.
    pub match_index: Index,
    /// The next index the leader will send.
    pub next_index: Index,
    /// Probing or pipelining.
    pub state: ReplicationState,
    /// AppendEntries sent and not yet acknowledged.
    pub inflight_messages: usize,
    /// Payload bytes of the entries in those AppendEntries.
    pub inflight_bytes: usize,
}

/// One node's Raft protocol state machine.
///
/// It performs no I/O and reads no clock: the caller feeds it [`tick`](Self::tick)s, peer
/// messages ([`step`](Self::step)) and proposals ([`propose`](Self::propose)), collects the
/// resulting work with [`ready`](Self::ready), and reports back what it made durable
/// ([`on_persisted`](Self::on_persisted)) and applied ([`on_applied`](Self::on_applied)). The
/// same inputs in the same order always give the same outputs.
///
/// A core is a value: [`Clone`] forks it (a model checker explores both branches of a choice from
/// one state), and [`Hash`] covers every field that can change what it does next, so equal hashes
/// stand for equal states (up to collisions).
///
/// ```
/// use raft_core::{Config, Entry, Membership, RaftCore, Role};
///
/// // One round of the caller's loop: take the ready work, write it durably, send the messages,
/// // report the write, and apply what is committed.
/// fn run(node: &mut RaftCore, applied: &mut Vec<Entry>) {
///     let ready = node.ready();
///     // ... write ready.entries and ready.hard_state durably, then:
///     if let Some((index, term)) = ready.persisted_up_to() {
///         node.on_persisted(index, term);
///     }
///     applied.extend(ready.committed_entries);
/// }
///
/// // A one-node cluster elects itself (once its new term and vote are durable) and commits a
/// // proposal.
/// let mut node = RaftCore::new(Config::new(1), Membership::voters([1])?)?;
/// let mut applied = Vec::new();
/// while node.role() != Role::Leader {
///     node.tick();
///     run(&mut node, &mut applied);
/// }
/// let index = node.propose("hello".into())?;
/// while applied.last().map(|e| e.index) != Some(index) {
///     run(&mut node, &mut applied);
/// }
/// node.on_applied(index);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Hash)]
pub struct RaftCore {
    pub(crate) config: Config,
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) membership: Membership,
    /// The configurations in the log; `membership` is the latest.
    pub(crate) configs: ConfigHistory,
    pub(crate) rng: SeededRng,
    /// Ticks since the election timer was reset (followers and candidates), or since the last
    /// check-quorum round (leaders).
    pub(crate) election_elapsed: u32,
    /// The timeout drawn from `[T, 2T)` at the last reset.
    pub(crate) randomized_election_timeout: u32,
    pub(crate) heartbeat_elapsed: u32,
    /// Votes received in the current (pre-)election.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// A candidate that won on its own vote: the index of the term's first entry, which must be
    /// durable (with the term and the vote) before it leads.
    pub(crate) leadership_pending: Option<Index>,
    /// Per-follower replication state, while leader.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) messages: Vec<Message>,
    pub(crate) messages_after_persist: Vec<Message>,
    /// Ticks since this core was created: the clock of leases.
    pub(crate) ticks: u64,
    pub(crate) reads: ReadTracker,
    pub(crate) transfer: Option<Transfer>,
    /// The latest snapshot (built here or received), if any.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// A snapshot being received from the leader.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// The caller was asked for a snapshot and has not reported it yet.
    pub(crate) snapshot_building: bool,
    /// [`request_snapshot`](Self::request_snapshot) was called.
    pub(crate) snapshot_requested: bool,
    /// Bytes of the entries applied since the latest snapshot (compaction policy).
    pub(crate) applied_bytes_since_snapshot: u64,
    /// A new latest snapshot to record durably.
    pub(crate) snapshot_update: Option<SnapshotUpdate>,
    /// Snapshot chunks received, to store.
    pub(crate) received_chunks: Vec<ReceivedChunk>,
    /// Snapshot chunks to read and send.
    pub(crate) snapshot_sends: Vec<SnapshotChunkRequest>,
    /// What [`uncommitted_bytes`](Self::uncommitted_bytes) counted last.
    uncommitted_tally: UncommittedTally,
    /// The hard state last handed out in a [`Ready`]: what storage holds, or will once the
    /// batches handed out are written.
    last_hard_state: HardState,
    /// A tick passed since the hard state last went out: a change of the commit index alone may
    /// go out in a batch of its own (see [`Self::hard_state_to_write`]).
    commit_write_due: bool,
    last_soft_state: SoftState,
}

/// The bytes of the entries in `(committed, last]` of a leader's log in `term`.
#[derive(Clone, Copy, Debug, Default, Hash)]
struct UncommittedTally {
    term: Term,
    committed: Index,
    last: Index,
    bytes: usize,
}

impl RaftCore {
    /// A node of a new cluster: empty log, term 0. `membership` is the bootstrap configuration,
    /// the same on every founding node; a node that joins an existing cluster passes
    /// `Membership::default()` and learns its configuration from the leader's log.
    pub fn new(config: Config, membership: Membership) -> Result<Self, InitError> {
        Self::restore(config, membership, RestoredState::default())
    }

    /// A node restarting from what it had persisted.
    pub fn restore(config: Config, membership: Membership, state: RestoredState) -> Result<Self, InitError> {
        config.validate()?;
        if !membership.is_empty() {
            membership.validate()?;
        }
        check_stored_log(&state)?;
        let hard_state = state.hard_state;
        let snapshot_point = state.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        let mut configs = ConfigHistory {
            base: state
                .snapshot
                .as_ref()
                .map_or(membership, |s| s.membership.clone()),
            entries: Vec::new(),
        };
        let after_snapshot = state.entries.partition_point(|e| e.index <= snapshot_point.0);
        configs.record(&state.entries[after_snapshot..]);
        let membership = configs.latest().clone();
        let log = RaftLog::restore(snapshot_point, state.entries, hard_state.commit, state.applied);
        let mut core = RaftCore {
            rng: SeededRng::new(config.seed),
            config,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: Role::Follower,
            leader: None,
            log,
            membership,
            configs,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeMap::new(),
            leadership_pending: None,
            progress: BTreeMap::new(),
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            ticks: 0,
            reads: ReadTracker::default(),
            transfer: None,
            snapshot: state.snapshot,
            incoming_snapshot: None,
            snapshot_building: false,
            snapshot_requested: false,
            applied_bytes_since_snapshot: 0,
            snapshot_update: None,
            received_chunks: Vec::new(),
            snapshot_sends: Vec::new(),
            uncommitted_tally: UncommittedTally::default(),
            last_hard_state: hard_state,
            commit_write_due: false,
            last_soft_state: SoftState {
                role: Role::Follower,
                leader: None,
                term: hard_state.term,
            },
        };
        core.last_hard_state.commit = core.log.committed;
        core.reset_election_timer();
        Ok(core)
    }

    // ---- inputs -------------------------------------------------------------------------------

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.commit_write_due = true;
        self.expire_reads();
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Processes a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        if message.to != self.id() {
            return Err(StepError::WrongRecipient {
                to: message.to,
                local: self.id(),
            });
        }
        trace!(node = self.id(), message = %crate::describe::MessageSummary::of(&message), "step");
        crate::inbound::check(&message)?;
        let from_a_leader = matches!(
            message.body,
            MessageBody::AppendEntries(_) | MessageBody::Heartbeat(_) | MessageBody::InstallSnapshot(_)
        );
        if from_a_leader && self.role == Role::Leader && message.term == self.term {
            return Err(StepError::AnotherLeader {
                from: message.from,
                term: message.term,
            });
        }
        // A leader's configuration is the latest in the cluster it leads: a sender outside it
        // was removed (or never added), and nothing it says may move this leader (a removed
        // node times out and campaigns with ever higher terms). Honest removed nodes still
        // answer what was sent to them before, so this is ignored, not an error. A follower
        // cannot ignore the same way: its log may lag the configuration that added the sender.
        if self.role == Role::Leader && !self.membership.contains(message.from) {
            debug!(
                node = self.id(),
                from = message.from,
                "ignored a message from a non-member"
            );
            return Ok(());
        }
        if !self.observe_term(&message) {
            return Ok(());
        }
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_vote_request(message.from, message.term, request)
            }
            MessageBody::RequestVoteResponse(response) => {
                self.handle_vote_response(message.from, message.term, response)
            }
            MessageBody::AppendEntries(request) => self.handle_append_entries(message.from, request),
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_entries_response(message.from, response)
            }
            MessageBody::Heartbeat(heartbeat) => self.handle_heartbeat(message.from, heartbeat),
            MessageBody::HeartbeatResponse(response) => {
                self.handle_heartbeat_response(message.from, response)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(message.from),
            MessageBody::ReadIndexRequest(request) => self.handle_read_index_request(message.from, request),
            MessageBody::ReadIndexResponse(response) => self.handle_read_index_response(response),
            MessageBody::InstallSnapshot(request) => self.handle_install_snapshot(message.from, request),
            MessageBody::InstallSnapshotResponse(response) => {
                self.handle_install_snapshot_response(message.from, response)
            }
        }
        Ok(())
    }

    /// Proposes a command. On the leader it is appended to the log and its index returned; it is
    /// committed once a quorum stores it, and then handed out in [`Ready::committed_entries`].
    /// Whether *this* command ends up at that index is only known when the entry there is applied:
    /// compare its term with [`term`](Self::term) at the time of the proposal.
    pub fn propose(&mut self, command: Bytes) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(transfer) = self.transfer {
            return Err(ProposeError::TransferInProgress {
                target: transfer.target,
            });
        }
        if command.len() > self.config.max_entry_bytes {
            return Err(ProposeError::EntryTooLarge {
                size: command.len(),
                max: self.config.max_entry_bytes,
            });
        }
        let uncommitted = (self.log.last_index() - self.log.committed) as usize;
        if uncommitted >= self.config.max_uncommitted_entries {
            return Err(ProposeError::TooManyUncommitted {
                uncommitted,
                max: self.config.max_uncommitted_entries,
            });
        }
        let entry = Entry::command(self.term, self.log.last_index() + 1, command);
        let bytes = self.uncommitted_bytes();
        if uncommitted > 0 && bytes.saturating_add(entry.size_bytes()) > self.config.max_uncommitted_bytes {
            return Err(ProposeError::TooManyUncommittedBytes {
                bytes,
                max: self.config.max_uncommitted_bytes,
            });
        }
        let index = entry.index;
        // The tally was just brought up to `index - 1`: the new entry extends it, so the next
        // proposal of the round finds it current and walks no entry.
        self.uncommitted_tally.last = index;
        self.uncommitted_tally.bytes = bytes.saturating_add(entry.size_bytes());
        self.log.push(entry);
        Ok(index)
    }

    /// Bytes of the leader's entries after the commit index. Kept up to date lazily from what
    /// changed since the last call: a leader never truncates its own log in its term, so only
    /// appends and commits move it; after a compaction took entries it needs, it is recounted.
    fn uncommitted_bytes(&mut self) -> usize {
        let (committed, last) = (self.log.committed, self.log.last_index());
        let tally = &mut self.uncommitted_tally;
        if tally.term == self.term && tally.committed == committed && tally.last == last {
            return tally.bytes;
        }
        let mut recount = tally.term != self.term || tally.committed > committed || tally.last > last;
        if !recount {
            // The entries committed since the last count leave it; one compacted away (the
            // log holds fewer than expected) means counting again.
            let upto = committed.min(tally.last);
            let (held, bytes) = self
                .log
                .entries_between(tally.committed, upto)
                .fold((0, 0usize), |(held, bytes), e| {
                    (held + 1, bytes.saturating_add(e.size_bytes()))
                });
            if held == upto.saturating_sub(tally.committed) {
                tally.bytes = tally.bytes.saturating_sub(bytes);
            } else {
                recount = true;
            }
        }
        let counted_to = if recount {
            tally.bytes = 0;
            committed
        } else {
            tally.last.max(committed)
        };
        for entry in self.log.entries_between(counted_to, last) {
            tally.bytes = tally.bytes.saturating_add(entry.size_bytes());
        }
        *tally = UncommittedTally {
            term: self.term,
            committed,
            last,
            bytes: tally.bytes,
        };
        tally.bytes
    }

    /// Collects the work produced since the last call. See [`Ready`] for what to do with it.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            self.advance_membership_change();
        }
        if self.role == Role::Leader {
            self.flush_reads();
            self.flush_replication();
        }
        let build_snapshot = self.take_snapshot_due();
        let soft_state = self.soft_state();
        let mut ready = Ready {
            soft_state: (soft_state != self.last_soft_state).then_some(soft_state),
            messages: std::mem::take(&mut self.messages),
            entries: self.log.take_unstable(),
            hard_state: None,
            messages_after_persist: std::mem::take(&mut self.messages_after_persist),
            committed_entries: self.log.take_committed(),
            read_states: std::mem::take(&mut self.reads.ready),
            read_failures: std::mem::take(&mut self.reads.failed),
            build_snapshot,
            snapshot: self.snapshot_update.take(),
            received_chunks: std::mem::take(&mut self.received_chunks),
            snapshot_sends: std::mem::take(&mut self.snapshot_sends),
        };
        ready.hard_state = self.hard_state_to_write(&ready);
        self.last_soft_state = soft_state;
        ready
    }

    /// The hard state `ready` must write, if any: a new term or vote always, at once (votes and
    /// campaigns wait on it); a commit index that moved alone only when `ready` writes anyway or
    /// a tick has passed since the hard state last went out.
    ///
    /// The commit index on disk is a hint for a restart, not a promise anyone relies on: a
    /// restarted node takes whatever its state machine applied as committed, and learns the rest
    /// from the leader (etcd's raft does not sync a commit-only change either). A write of its
    /// own per commit would cost a leader one storage round per write under a light load (the
    /// entry's write, then the commit's); held back, the commit index rides on the next
    /// entries' write, and an idle node writes it within a tick.
    fn hard_state_to_write(&mut self, ready: &Ready) -> Option<HardState> {
        let hard_state = self.hard_state();
        let last = self.last_hard_state;
        if hard_state == last {
            return None;
        }
        let commit_only = hard_state.term == last.term && hard_state.voted_for == last.voted_for;
        let writes_anyway = !ready.entries.is_empty()
            || ready.snapshot.is_some()
            || !ready.received_chunks.is_empty()
            || !ready.messages_after_persist.is_empty();
        if commit_only && !writes_anyway && !self.commit_write_due {
            return None;
        }
        self.last_hard_state = hard_state;
        self.commit_write_due = false;
        Some(hard_state)
    }

    /// Reports that the entries up to `index`, whose entry has `term`, are durable (see
    /// [`Ready::persisted_up_to`]). Reports about entries that were since replaced are ignored.
    pub fn on_persisted(&mut self, index: Index, term: Term) {
        if !self.log.on_persisted(index, term) {
            return;
        }
        self.take_up_pending_leadership();
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Reports that the state machine applied the committed entries up to `index`.
    pub fn on_applied(&mut self, index: Index) {
        let before = self.log.applied;
        self.log.on_applied(index);
        let from = before.max(self.log.snapshot_index);
        self.applied_bytes_since_snapshot += self.log.bytes_between(from, self.log.applied);
    }

    // ---- reads --------------------------------------------------------------------------------

    /// Asks for a linearizable read. On the leader the read joins the next confirmation round; on a
    /// follower it is forwarded to the leader. Either way it comes back in
    /// [`Ready::read_states`](crate::Ready::read_states) (or [`Ready::read_failures`](crate::Ready::read_failures)).
    pub fn read_index(&mut self, id: ReadId) -> Result<(), ReadError> {
        self.start_read_index(id)
    }

    /// Asks for a lease read: served at the current commit index without a round trip, if lease
    /// reads are on and the leader holds its lease. Otherwise an error says to use
    /// [`read_index`](Self::read_index).
    pub fn lease_read(&mut self, id: ReadId) -> Result<(), ReadError> {
        self.start_lease_read(id)
    }

    /// Whether this leader may serve reads from its lease now.
    pub fn holds_lease(&self) -> bool {
        self.lease_holds()
    }

    // ---- snapshots ----------------------------------------------------------------------------

    /// Asks for a snapshot at the next [`ready`](Self::ready), whatever the compaction policy says
    /// (nothing happens when nothing was applied since the latest snapshot).
    pub fn request_snapshot(&mut self) {
        self.snapshot_requested = true;
    }

    /// The latest snapshot this node has, built or received.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// Reports that the state machine wrote a snapshot of its state at `index` into the snapshot
    /// store, complete and durable, of `size` bytes with `checksum` (see [`SnapshotChecksum`](crate::SnapshotChecksum)).
    /// Returns its description, or `None` when it is not newer than the latest snapshot (or
    /// covers entries that are not committed, which a correct caller never reports).
    pub fn on_snapshot_built(&mut self, index: Index, size: u64, checksum: u32) -> Option<SnapshotMeta> {
        self.record_built_snapshot(index, size, checksum)
    }

    // ---- leadership transfer ------------------------------------------------------------------

    /// Starts handing leadership to `target`. Proposals are refused until the transfer ends: when
    /// the target wins its election, or after an election timeout.
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), TransferError> {
        self.start_transfer(target)
    }

    /// The target of the transfer under way, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.target)
    }

    // ---- membership changes -------------------------------------------------------------------

    /// Changes the configuration to `voters` and `learners`. Changing the voters goes through a
    /// joint configuration first; the leader leaves it by itself once it is committed. Returns the
    /// index of the (first) configuration entry.
    pub fn change_membership(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<Index, MembershipChangeError> {
        self.start_membership_change(voters, learners, BTreeMap::new())
    }

    /// Like [`change_membership`](Self::change_membership), and records where members can be
    /// reached ([`Membership::addresses`]): `addresses` adds or replaces those of the given nodes;
    /// the other members keep theirs and leavers lose theirs. An address change alone is a change.
    pub fn change_membership_with_addresses(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        addresses: BTreeMap<NodeId, String>,
    ) -> Result<Index, MembershipChangeError> {
        self.start_membership_change(voters, learners, addresses)
    }

    // ---- observers ----------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The configuration in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The latest committed configuration (the one in force at the commit index).
    pub fn committed_membership(&self) -> &Membership {
        self.configs.at(self.log.committed)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The entry at `index`, if the log holds it.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The state that must be durable: term, vote and commit index.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.committed,
        }
    }

    /// Role, leader and term.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    /// Everything an observer may want in one value.
    pub fn status(&self) -> Status {
        Status {
            id: self.id(),
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.log.committed,
            applied_index: self.log.applied,
            last_log_index: self.log.last_index(),
            persisted_index: self.log.persisted,
            snapshot_index: self.log.snapshot_index,
            first_log_index: self.log.first_index(),
            leader_contact_ticks: match (self.role, self.leader) {
                (Role::Leader, _) => Some(0),
                (_, Some(_)) => Some(self.election_elapsed),
                (_, None) => None,
            },
        }
    }

    /// The leader's view of `follower`; `None` when not leader or not a follower.
    pub fn follower_progress(&self, follower: NodeId) -> Option<FollowerProgress> {
        self.progress.get(&follower).map(|p| FollowerProgress {
            match_index: p.match_index,
            next_index: p.next_index,
            state: p.state,
            inflight_messages: p.inflight_messages(),
            inflight_bytes: p.inflight_bytes(),
        })
    }

    // ---- shared machinery ---------------------------------------------------------------------

    /// Whether `bug` is switched on (only ever true in builds with the `planted-bugs` feature).
    #[inline]
    pub(crate) fn planted(&self, bug: crate::planted::PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.config.planted_bug == Some(bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// Applies the term rules every message obeys (Raft paper §5.1): adopt a higher term and step
    /// down; answer a stale one so its sender catches up. Returns whether to process the message.
    fn observe_term(&mut self, message: &Message) -> bool {
        use MessageBody::*;
        if message.term > self.term {
            match &message.body {
                // A pre-vote changes nobody's term; a granted pre-vote echoes the proposed term.
                RequestVote(r) if r.pre_vote => return true,
                RequestVoteResponse(r) if r.pre_vote && r.granted => return true,
                RequestVote(r) if !r.transfer && self.config.check_quorum && self.leader_recently_heard() => {
                    debug!(
                        node = self.id(),
                        from = message.from,
                        term = message.term,
                        "ignoring vote request: the leader was heard within the election timeout"
                    );
                    return false;
                }
                AppendEntries(_) | Heartbeat(_) | InstallSnapshot(_) => {
                    self.become_follower(message.term, Some(message.from))
                }
                _ => self.become_follower(message.term, None),
            }
            return true;
        }
        if message.term < self.term {
            match &message.body {
                AppendEntries(_) | Heartbeat(_) | InstallSnapshot(_) => {
                    // A deposed leader: our higher term in the answer makes it step down.
                    let answer = crate::message::HeartbeatResponse { round: 0 };
                    self.send(message.from, MessageBody::HeartbeatResponse(answer));
                }
                RequestVote(r) => {
                    let pre_vote = r.pre_vote;
                    self.send(
                        message.from,
                        MessageBody::RequestVoteResponse(crate::message::RequestVoteResponse {
                            pre_vote,
                            granted: false,
                        }),
                    );
                }
                ReadIndexRequest(r) => {
                    let answer = crate::message::ReadIndexResponse {
                        id: r.id,
                        index: None,
                    };
                    self.send(message.from, MessageBody::ReadIndexResponse(answer));
                }
                _ => {}
            }
            return false;
        }
        true
    }

    /// Queues a message in this term, routed by whether it may leave before persistence.
    ///
    /// Only what promises a write waits for it: a vote (or pre-vote) answer, an acknowledgement
    /// of entries or a snapshot, and a candidate's request (it counts its own durable vote). A
    /// leader's AppendEntries and heartbeats may leave at once (thesis §10.2.1), and so may a
    /// heartbeat's answer: it says "I follow you in this term", which is true when sent and which
    /// a restart with an older stored term cannot make false (a vote in a later term is stored
    /// before it is given). Holding it behind the disk would let one slow fsync on the followers'
    /// side look like a lost quorum to the leader's check-quorum and read-index rounds.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let early_ack = matches!(body, MessageBody::AppendEntriesResponse(_))
            && self.planted(crate::planted::PlantedBug::AcknowledgeBeforePersist);
        let promises_nothing_durable = matches!(
            body,
            MessageBody::AppendEntries(_) | MessageBody::Heartbeat(_) | MessageBody::HeartbeatResponse(_)
        ) || early_ack;
        let message = Message {
            from: self.id(),
            to,
            term,
            body,
        };
        if promises_nothing_durable {
            self.messages.push(message);
        } else {
            self.messages_after_persist.push(message);
        }
    }

    /// The other members, in id order.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        let me = self.id();
        self.membership.members().filter(|id| *id != me).collect()
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let t = self.config.election_timeout_ticks;
        self.randomized_election_timeout = self.rng.in_range(t, 2 * t);
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role != Role::Follower || self.leader != leader || term > self.term {
            self.fail_pending_reads();
        }
        self.transfer = None;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        if self.role != Role::Follower || self.leader != leader {
            debug!(node = self.id(), term, ?leader, "becoming follower");
        }
        // The election timer restarts only on hearing the current leader or granting a vote
        // (Raft paper Figure 2), not on learning a higher term: otherwise candidates with stale
        // logs, refused again and again, would keep the up-to-date nodes from ever campaigning.
        // A leader's timer counted check-quorum rounds, so it starts afresh.
        if self.role == Role::Leader {
            self.reset_election_timer();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.leadership_pending = None;
        self.progress.clear();
    }

    pub(crate) fn become_leader(&mut self) {
        debug_assert_eq!(self.role, Role::Candidate);
        info!(node = self.id(), term = self.term, "became leader");
        self.fail_pending_reads();
        self.transfer = None;
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        // A blank entry of the new term lets the leader commit what earlier terms left
        // (Raft paper §5.4.2 and §8). A leader that won on its own vote wrote it already.
        let blank = match self.leadership_pending.take() {
            Some(index) => index,
            None => {
                let index = self.log.last_index() + 1;
                self.log.push(Entry::blank(self.term, index));
                index
            }
        };
        self.progress = self
            .peers()
            .into_iter()
            .map(|id| (id, Progress::new(blank)))
            .collect();
    }
}

fn check_stored_log(state: &RestoredState) -> Result<(), InitError> {
    let last_index = state
        .entries
        .last()
        .map(|e| e.index)
        .max(state.snapshot.as_ref().map(|s| s.index))
        .unwrap_or(0);
    if state.hard_state.term > crate::inbound::MAX_TERM || last_index > crate::inbound::MAX_INDEX {
        return Err(InitError::ImpossibleStoredState {
            term: state.hard_state.term,
            index: last_index,
        });
    }
    let mut previous_term = 0;
    let first = match (&state.snapshot, state.entries.first()) {
        (Some(snapshot), _) if state.applied < snapshot.index => {
            return Err(InitError::StateMachineBehindSnapshot {
                applied: state.applied,
                snapshot_index: snapshot.index,
            });
        }
        (Some(snapshot), Some(first)) if first.index > snapshot.index + 1 => {
            return Err(InitError::LogNotContiguous {
                expected: snapshot.index + 1,
                found: first.index,
            });
        }
        (Some(_), Some(first)) => first.index,
        _ => 1,
    };
    if let Some(snapshot) = &state.snapshot {
        let at_snapshot = state.entries.iter().find(|e| e.index == snapshot.index);
        if snapshot.term > state.hard_state.term || at_snapshot.is_some_and(|e| e.term != snapshot.term) {
            return Err(InitError::SnapshotDisagreesWithLog {
                index: snapshot.index,
                term: snapshot.term,
            });
        }
    }
    for (expected, entry) in (first..).zip(state.entries.iter()) {
        if entry.index != expected {
            return Err(InitError::LogNotContiguous {
                expected,
                found: entry.index,
            });
        }
        if entry.term < previous_term || entry.term > state.hard_state.term {
            return Err(InitError::LogTermOutOfOrder {
                index: entry.index,
                term: entry.term,
                hard_term: state.hard_state.term,
            });
        }
        previous_term = entry.term;
    }
    Ok(())
}

//! The event loop: the task that owns the [`RaftCore`], takes in ticks, peer messages, requests
//! and the other tasks' results, and hands the core's work to the transport, to storage (through
//! its [`PersistQueue`], which it drives itself) and to the apply task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{
    Inbox, Index, LogStorage, Message, NodeId, ProposeError, RaftCore, Ready, Role, SnapshotChunkRequest,
    SnapshotMeta, StateMachineError, Status, StorageError, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, field, info, info_span, trace, warn, Span};

use crate::error::{ReadError, SnapshotError};
use crate::metrics::{CoreMetrics, Direction, MessageMeter};

use super::persist::PersistQueue;
use super::tick_clock::TickClock;
use super::types::{
    send, Applied, AppliedIndex, ApplyJob, NodeMembership, NodeStatus, PendingQuery, PersistJob, Persisted,
    ReadConsistency, ReplyTo, Request, RunState, Waiter,
};

enum Event {
    Tick,
    Message(Message),
    Request(Request),
    Persisted(Result<Persisted, StorageError>),
    Applied(Result<Applied, StateMachineError>),
    Shutdown,
}

/// How many inputs the loop takes in before it collects the resulting work.
const MAX_INPUTS_PER_ROUND: usize = 1024;

pub(super) struct EventLoop<S: LogStorage, T, I> {
    pub(super) core: RaftCore,
    pub(super) transport: Arc<T>,
    pub(super) inbox: I,
    pub(super) requests: mpsc::Receiver<Request>,
    /// Requests taken off `requests` in one batch, being handled (empty between rounds).
    pub(super) request_batch: Vec<Request>,
    /// The writes to storage, driven by this loop.
    pub(super) persist: PersistQueue<S, T>,
    /// Failures the snapshot sender task reports (a snapshot found corrupt).
    pub(super) snapshot_failures: mpsc::UnboundedReceiver<StorageError>,
    pub(super) apply_jobs: mpsc::UnboundedSender<ApplyJob>,
    pub(super) applied: mpsc::UnboundedReceiver<Result<Applied, StateMachineError>>,
    /// How far the apply task has applied, read each round (see [`AppliedIndex`]).
    pub(super) applied_index: Arc<AppliedIndex>,
    /// The applied index last given to the core.
    pub(super) applied_seen: Index,
    pub(super) status: watch::Sender<NodeStatus>,
    /// The configurations alone, published only when they change.
    pub(super) membership: watch::Sender<NodeMembership>,
    pub(super) tick_interval: Duration,
    /// The core's ticks, from the monotonic clock.
    pub(super) clock: TickClock,
    /// The time read at the start of this round (or since, for a request that needs the clock).
    pub(super) now: tokio::time::Instant,
    pub(super) next_read: u64,
    /// Reads waiting for the core to confirm a read index.
    pub(super) pending_reads: BTreeMap<u64, PendingQuery>,
    /// Snapshot chunks for the sender task to read and send.
    pub(super) snapshot_chunks: mpsc::UnboundedSender<SnapshotChunkRequest>,
    /// Callers of `RaftNode::snapshot` waiting for the next snapshot.
    pub(super) snapshot_waiters: Vec<ReplyTo<SnapshotMeta, SnapshotError>>,
    /// Proposals accepted in this turn, for the apply task in one job (see [`Self::send_to_apply`]).
    pub(super) accepted: Vec<Waiter>,
    /// The core's state and decisions, as metrics.
    pub(super) metrics: CoreMetrics,
    /// Messages this loop sends and receives, as metrics.
    pub(super) meter: MessageMeter,
    /// The `raft.election` span of an election this node runs, from its first (pre-)vote
    /// request until it leads or follows.
    pub(super) election: Option<Span>,
}

/// A panic in the event loop (a bug here, in the transport or in a backend called from it) must
/// not leave the status saying `Running`: the loop is gone and the node answers nothing more.
impl<S: LogStorage, T, I> Drop for EventLoop<S, T, I> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!(node = self.core.id(), "the event loop panicked; the node stops");
            self.status.send_modify(|status| {
                status.state = RunState::Failed("the event loop panicked".to_string());
            });
        }
    }
}

impl<S: LogStorage, T: Transport, I: Inbox> EventLoop<S, T, I> {
    pub(super) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let final_state = loop {
            let event = tokio::select! {
                biased;
                done = std::future::poll_fn(|cx| self.persist.poll_written(cx)), if self.persist.is_writing() => {
                    Event::Persisted(done)
                }
                Some(failure) = self.snapshot_failures.recv() => Event::Persisted(Err(failure)),
                Some(done) = self.applied.recv() => Event::Applied(done),
                request = self.requests.recv() => request.map_or(Event::Shutdown, Event::Request),
                Some(message) = self.inbox.recv() => Event::Message(message),
                _ = ticker.tick() => Event::Tick,
            };
            // Once a round, whatever woke the loop: under a steady stream of proposals the timer
            // branch is never reached, and the core must still see time pass.
            self.catch_up_ticks();
            self.note_applied(self.applied_index.get());
            self.applied_index
                .set_watched(self.status.receiver_count() > OWN_STATUS_RECEIVERS);
            if let Some(stop) = self.handle(event) {
                break stop;
            }
            if let Some(stop) = self.drain_ready_inputs() {
                break stop;
            }
            let ready = self.core.ready();
            // The status goes out before the messages: a peer that heard from this node (as
            // leader of a term, say) finds this node's status already saying so.
            self.publish_status(RunState::Running);
            // A round that woke other tasks (the peers' loops in process or the transport's, the
            // apply task) while more proposals wait yields once before the next. Otherwise the
            // loop runs that round at once, and the tasks it woke, queued behind it on its
            // worker, wait it out (or for the other worker to wake and steal them): at 256
            // clients in process the followers heard of an entry 25-50 µs after it was sent. With
            // nothing waiting the loop is about to sleep anyway; a yield there (measured) cost 17 %
            // of the writes/s at 16 clients.
            if self.dispatch(ready) && !self.requests.is_empty() {
                tokio::task::yield_now().await;
            }
        };
        info!(node = self.core.id(), state = ?final_state, "node stopping");
        // The writes already handed to storage are made, as `RaftNode::shutdown` promises.
        self.persist.finish().await;
        self.publish_status(final_state);
    }

    /// Gives the core the ticks due by the monotonic clock.
    fn catch_up_ticks(&mut self) {
        self.now = tokio::time::Instant::now();
        let due = self.clock.due(self.now);
        if due > 1 {
            debug!(node = self.core.id(), ticks = due, "catching up on missed ticks");
        }
        for _ in 0..due {
            self.core.tick();
        }
    }

    /// Tells the core the state machine has applied the entries up to `index`, unless it knew.
    fn note_applied(&mut self, index: Index) {
        if index > self.applied_seen {
            self.applied_seen = index;
            self.core.on_applied(index);
        }
    }

    /// Takes in everything that has already arrived, so that one round of work covers it all.
    fn drain_ready_inputs(&mut self) -> Option<RunState> {
        // The write in flight, once: a finished one is reported and the next write starts before
        // the loop takes in more. (Once, not at every input: polling a blocking task's handle
        // spends the task's cooperative budget, and a spent budget would end the round early.)
        // Nothing is awaited here: the no-op waker a `Pending` poll leaves is replaced when the
        // loop next waits, before it sleeps.
        if let Poll::Ready(done) = self.persist.poll_written(&mut Context::from_waker(Waker::noop())) {
            if let Some(stop) = self.handle(Event::Persisted(done)) {
                return Some(stop);
            }
        }
        let mut budget = MAX_INPUTS_PER_ROUND;
        while budget > 0 {
            budget -= 1;
            let event = if let Ok(failure) = self.snapshot_failures.try_recv() {
                Event::Persisted(Err(failure))
            } else if let Ok(done) = self.applied.try_recv() {
                Event::Applied(done)
            } else if self.take_ready_requests(budget + 1) {
                let mut requests = std::mem::take(&mut self.request_batch);
                budget = budget.saturating_sub(requests.len().saturating_sub(1));
                for request in requests.drain(..) {
                    if let Some(stop) = self.handle(Event::Request(request)) {
                        return Some(stop);
                    }
                }
                // The emptied buffer goes back, to be filled again without allocating.
                self.request_batch = requests;
                continue;
            } else if let Some(message) = self.inbox.try_recv() {
                Event::Message(message)
            } else {
                return None;
            };
            if let Some(stop) = self.handle(event) {
                return Some(stop);
            }
        }
        None
    }

    /// Moves up to `limit` requests that are already queued into `request_batch`, without
    /// waiting; returns whether there were any. One call frees the queue's slots for all of them
    /// at once: taking them one at a time locked the queue's semaphore once per request.
    fn take_ready_requests(&mut self, limit: usize) -> bool {
        // Nothing is awaited here: a `Pending` only means the queue is empty. The no-op waker it
        // leaves behind is replaced when the loop next waits on the queue, before it sleeps.
        let mut context = Context::from_waker(Waker::noop());
        matches!(
            self.requests.poll_recv_many(&mut context, &mut self.request_batch, limit),
            Poll::Ready(n) if n > 0
        )
    }

    /// Feeds one input to the core. Returns the state to stop in, if the node must stop.
    fn handle(&mut self, event: Event) -> Option<RunState> {
        // Time first, before a request that depends on it: after a pause the core must see the
        // ticks it missed before it serves a read (a lease read judged on a stopped clock could
        // be stale) or starts a transfer or a membership change. A proposal needs no clock (a
        // deposed leader's entry never commits), nor does a peer's message or a tick: they use
        // the time read at the start of the round, which saves a clock read per write.
        if matches!(&event, Event::Request(r) if r.needs_clock()) {
            self.catch_up_ticks();
        }
        match event {
            // The ticks themselves were counted by `catch_up_ticks`; the timer wakes the loop, and
            // the apply task answers the proposals that waited too long.
            Event::Tick => {
                self.send_to_apply(ApplyJob::ExpireWaiters);
                self.metrics.on_tick(&self.core.status());
                self.record_followers();
            }
            Event::Message(message) => {
                self.meter.count(Direction::Received, &message);
                trace!(
                    node = self.core.id(),
                    from = message.from,
                    kind = message.body.kind(),
                    "received"
                );
                if let Err(error) = self.core.step(message) {
                    warn!(node = self.core.id(), %error, "message refused");
                }
            }
            Event::Request(Request::Propose { command, reply, span }) => match self.core.propose(command) {
                Ok(index) => {
                    let term = self.core.term();
                    span.record("index", index);
                    self.metrics.proposal_accepted();
                    // The apply task receives this before the entry can be committed: the entry
                    // is written in this turn's dispatch, which hands these over first.
                    self.accepted.push(Waiter {
                        index,
                        term,
                        reply,
                        accepted_at: self.now,
                    });
                }
                Err(error) => {
                    self.metrics.proposal_refused(refusal_reason(&error));
                    let _ = reply.send(Err(error.into()));
                }
            },
            Event::Request(Request::Read {
                query,
                consistency,
                reply,
            }) => self.start_read(query, consistency, reply),
            Event::Request(Request::Transfer { target, reply }) => {
                let _ = reply.send(self.core.transfer_leadership(target));
            }
            Event::Request(Request::HandOff { reply }) => {
                let _ = reply.send(self.hand_off());
            }
            Event::Request(Request::ChangeMembership {
                voters,
                learners,
                addresses,
                started,
                applied,
            }) => match self
                .core
                .change_membership_with_addresses(voters, learners, addresses)
            {
                Ok(index) => {
                    let term = self.core.term();
                    let _ = started.send(Ok(()));
                    self.accepted.push(Waiter {
                        index,
                        term,
                        reply: applied,
                        accepted_at: self.now,
                    });
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            },
            Event::Request(Request::Snapshot { reply }) => {
                let status = self.core.status();
                if status.applied_index == 0 {
                    let _ = reply.send(Err(SnapshotError::NothingApplied));
                } else if status.applied_index <= status.snapshot_index {
                    let latest = self.core.snapshot_meta().cloned();
                    let _ = reply.send(latest.ok_or(SnapshotError::NothingApplied));
                } else {
                    self.core.request_snapshot();
                    self.snapshot_waiters.push(reply);
                }
            }
            Event::Request(Request::Shutdown) | Event::Shutdown => return Some(RunState::Stopped),
            Event::Persisted(Ok(persisted)) => {
                for (index, term) in persisted.acknowledged {
                    self.core.on_persisted(index, term);
                }
                for snapshot in persisted.restore {
                    self.metrics.snapshot_installed();
                    self.send_to_apply(ApplyJob::Restore(snapshot));
                }
            }
            Event::Persisted(Err(error)) => {
                error!(node = self.core.id(), %error, "storage failed; stopping without acknowledging");
                return Some(RunState::Failed(format!("storage failed: {error}")));
            }
            Event::Applied(Ok(Applied::UpTo(index))) => self.note_applied(index),
            Event::Applied(Ok(Applied::SnapshotBuilt {
                index,
                size,
                checksum,
            })) => {
                self.metrics.snapshot_built();
                let built = self.core.on_snapshot_built(index, size, checksum);
                let latest = built.or_else(|| self.core.snapshot_meta().cloned());
                if let Some(latest) = latest {
                    for waiter in self.snapshot_waiters.drain(..) {
                        let _ = waiter.send(Ok(latest.clone()));
                    }
                }
            }
            Event::Applied(Err(error)) => {
                error!(node = self.core.id(), %error, "state machine failed; stopping");
                return Some(RunState::Failed(format!("state machine failed: {error}")));
            }
        }
        None
    }

    fn start_read(&mut self, query: Bytes, consistency: ReadConsistency, reply: ReplyTo<Bytes, ReadError>) {
        if consistency == ReadConsistency::Serializable {
            self.send_to_apply(ApplyJob::Read {
                index: 0,
                query,
                reply,
            });
            return;
        }
        self.next_read += 1;
        let id = self.next_read;
        let lease = consistency == ReadConsistency::Lease && self.core.lease_read(id).is_ok();
        let asked = if lease { Ok(()) } else { self.core.read_index(id) };
        match asked {
            Ok(()) => {
                self.pending_reads.insert(id, (query, reply));
            }
            Err(error) => {
                let _ = reply.send(Err(error.into()));
            }
        }
    }

    /// If this node leads, starts a transfer to the voter whose log reaches furthest (the one that
    /// can take over soonest) and names it; `None` when this node does not lead or is the only
    /// voter.
    fn hand_off(&mut self) -> Result<Option<NodeId>, raft_core::TransferError> {
        if self.core.role() != Role::Leader {
            return Ok(None);
        }
        let id = self.core.id();
        let membership = self.core.membership();
        let best = membership
            .members()
            .filter(|peer| *peer != id && membership.is_voter(*peer))
            .filter_map(|peer| self.core.follower_progress(peer).map(|p| (p.match_index, peer)))
            .max();
        match best {
            Some((_, target)) => self.core.transfer_leadership(target).map(|()| Some(target)),
            None => Ok(None),
        }
    }

    /// Hands `job` to the apply task, after the proposals accepted so far, so that the task sees
    /// everything in the order the loop did it.
    fn send_to_apply(&mut self, job: ApplyJob) {
        self.hand_over_accepted();
        let _ = self.apply_jobs.send(job);
    }

    /// Hands the proposals accepted since the last hand-over to the apply task, in one job.
    fn hand_over_accepted(&mut self) {
        if !self.accepted.is_empty() {
            let accepted = std::mem::take(&mut self.accepted);
            let _ = self.apply_jobs.send(ApplyJob::Await(accepted));
        }
    }

    /// Hands the core's work to the transport, to storage and to the apply task. Returns whether
    /// it woke other tasks with it: sent messages, or handed entries or reads to the apply task.
    fn dispatch(&mut self, mut ready: Ready) -> bool {
        // Before the entries are written: they cannot commit (nor be applied) before then. (Held
        // back until their entries commit, they saved the apply task a wake-up per write at one
        // client, and cost 5-25 % of the writes/s there: the early wake keeps the other worker
        // from going to sleep while the followers answer.)
        self.hand_over_accepted();
        if ready.is_empty() {
            return false;
        }
        let hands_off = !ready.messages.is_empty()
            || !ready.committed_entries.is_empty()
            || !ready.read_states.is_empty();
        if let Some(soft) = ready.soft_state {
            debug!(node = self.core.id(), role = %soft.role, term = soft.term, leader = ?soft.leader, "role changed");
        }
        let persisted = ready.persisted_up_to();
        let needs_persist = ready.needs_persist() || !ready.messages_after_persist.is_empty();
        let (write, restore) = ready.take_log_write();
        for message in ready.messages {
            send(&*self.transport, &mut self.meter, message);
        }
        for chunk in ready.snapshot_sends {
            let _ = self.snapshot_chunks.send(chunk);
        }
        if ready.build_snapshot {
            self.send_to_apply(ApplyJob::BuildSnapshot);
        }
        if needs_persist {
            self.persist.push(PersistJob {
                write,
                persisted,
                messages: ready.messages_after_persist,
                chunks: ready.received_chunks,
                restore,
            });
        }
        if !ready.committed_entries.is_empty() {
            self.send_to_apply(ApplyJob::Apply(ready.committed_entries));
        }
        // Reads go after the entries above, so the apply task sees them in order.
        for state in ready.read_states {
            if let Some((query, reply)) = self.pending_reads.remove(&state.id) {
                let job = ApplyJob::Read {
                    index: state.index,
                    query,
                    reply,
                };
                self.send_to_apply(job);
            }
        }
        for (id, error) in ready.read_failures {
            if let Some((_, reply)) = self.pending_reads.remove(&id) {
                let _ = reply.send(Err(error.into()));
            }
        }
        hands_off
    }

    /// On a leader, records each follower's in-flight messages and how far its log lags.
    fn record_followers(&mut self) {
        if self.core.role() != Role::Leader {
            return;
        }
        let last = self.core.status().last_log_index;
        let id = self.core.id();
        for peer in self.core.membership().members() {
            if peer == id {
                continue;
            }
            if let Some(progress) = self.core.follower_progress(peer) {
                let lag = last.saturating_sub(progress.match_index);
                self.metrics.follower(peer, &progress, lag);
            }
        }
    }

    /// Opens the `raft.election` span when this node starts campaigning and closes it, with the
    /// outcome, when it leads or follows again.
    fn follow_election(&mut self, raft: &Status) {
        match raft.role {
            Role::PreCandidate | Role::Candidate => {
                if let Some(span) = &self.election {
                    span.record("term", raft.term);
                } else {
                    let span = info_span!(
                        "raft.election",
                        node = raft.id,
                        term = raft.term,
                        outcome = field::Empty
                    );
                    span.in_scope(|| info!(role = %raft.role, "election starts"));
                    self.election = Some(span);
                }
            }
            Role::Leader | Role::Follower => {
                if let Some(span) = self.election.take() {
                    let outcome = if raft.role == Role::Leader { "won" } else { "lost" };
                    span.record("outcome", outcome);
                    span.record("term", raft.term);
                    span.in_scope(
                        || info!(outcome, term = raft.term, leader = ?raft.leader, "election ends"),
                    );
                }
            }
        }
    }

    /// Publishes the status when it changed. Runs every loop turn: compare first, clone the
    /// configurations only when something differs.
    ///
    /// Receivers are notified only while someone besides the node itself holds one (a task that
    /// called [`RaftNode::watch_status`](super::RaftNode::watch_status)); otherwise the value
    /// changes silently, which [`RaftNode::status`](super::RaftNode::status) still reads, and
    /// the per-turn cost of waking nobody (a watch notifies through eight locked lists) is
    /// saved. The count is read under the watch's write lock, so a receiver cloned meanwhile
    /// either reads the new value or is notified of it.
    fn publish_status(&mut self, state: RunState) {
        let raft = self.core.status();
        let core = &self.core;
        let status = &self.status;
        let mut raft_changed = false;
        let mut membership_changed = false;
        status.send_if_modified(|current| {
            let watched = status.receiver_count() > OWN_STATUS_RECEIVERS;
            raft_changed = current.raft != raft;
            let same_membership = current.membership == *core.membership()
                && current.committed_membership == *core.committed_membership();
            if !same_membership {
                membership_changed = true;
                *current = NodeStatus::of(core, state);
                return watched;
            }
            // Under load only the indexes move: copy those, not the configurations.
            let changed = current.raft != raft || current.state != state;
            if changed {
                current.raft = raft;
                current.state = state;
            }
            changed && watched
        });
        if membership_changed {
            self.membership.send_replace(NodeMembership::of(core));
        }
        if raft_changed {
            self.metrics.observe(&raft);
            self.follow_election(&raft);
        }
    }
}

/// The status receivers the node holds itself: the one [`RaftNode::status`](super::RaftNode::status)
/// reads. More than these means a watcher, to be notified of each change.
const OWN_STATUS_RECEIVERS: usize = 1;

/// The `outcome` label of a refused proposal.
fn refusal_reason(error: &ProposeError) -> &'static str {
    match error {
        ProposeError::NotLeader { .. } => "not_leader",
        ProposeError::TransferInProgress { .. } => "transfer_in_progress",
        ProposeError::TooManyUncommitted { .. } => "too_many_uncommitted",
        ProposeError::TooManyUncommittedBytes { .. } => "too_many_uncommitted_bytes",
        ProposeError::EntryTooLarge { .. } => "entry_too_large",
    }
}

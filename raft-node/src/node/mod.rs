//! [`RaftNode`]: one Raft node running on tokio.
//!
//! Two tasks make a node, connected by channels; the event loop drives the writes to storage
//! itself:
//!
//! ```text
//!            requests, peer messages, ticks
//!                        │
//!                 ┌──────▼──────┐  messages (leader AppendEntries, heartbeats) ──► transport
//!                 │ event loop  │
//!                 │ (RaftCore)  │── persist jobs ──► ┌───────────────┐ ── after-persist messages ──► transport
//!                 │             │◄── persisted ───── │ persist queue │    (votes, acknowledgements)
//!                 │             │                    └───────────────┘
//!                 │             │── apply jobs ────► ┌──────────────┐ ── results ──► proposers
//!                 │             │◄── applied ─────── │  apply task  │
//!                 └─────────────┘                    └──────────────┘
//! ```
//!
//! The apply task reports how far it has applied through an index it shares with the loop,
//! which reads it each round rather than being woken for each batch (it is woken only while
//! someone watches the status). A third task reads the chunks of a snapshot the leader sends to
//! a lagging follower from the snapshot store, so that a large transfer never delays
//! heartbeats. Snapshots are built and restored on the apply task, which owns the state machine.
//!
//! The event loop never waits for storage or the state machine: while one write is being made
//! durable it keeps accepting messages and proposals, and the next write takes everything queued
//! meanwhile in one call (group commit). The write in flight is a future the loop polls beside
//! its other inputs, so a store's completion wakes the loop itself, and an in-memory store's
//! write completes within the loop's turn: no task hop on either side. The leader sends
//! AppendEntries before its own write is durable, so its fsync runs in parallel with the
//! followers'.
//!
//! The files of this folder follow that diagram: [`event_loop`] (the core and its inputs),
//! [`persist`] (the queue of writes and the writer that owns the storage), [`apply`] (with
//! snapshot building and restoring, and serving reads) and [`snapshot_sender`]; this file is the
//! [`RaftNode`] handle that starts them and talks to the event loop. What they pass each other
//! lives in the leaf [`types`], which refers to none of them: handle → event loop → {persist,
//! apply, snapshot sender} → types.

mod apply;
mod event_loop;
mod persist;
mod snapshot_check;
mod snapshot_sender;
mod tick_clock;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{
    Inbox, LogStorage, Membership, NodeId, RaftCore, RestoredState, SnapshotMeta, SnapshotStore,
    StateMachine, Transport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug_span, field, info, Instrument};

use crate::metrics::{ApplyMetrics, CoreMetrics, MessageMeter, PersistMetrics, ReadMetrics};

use crate::config::NodeConfig;
use crate::error::{
    ChangeMembershipError, ProposeError, ReadError, SnapshotError, StartError, TransferError,
};

use self::apply::apply_loop;
use self::event_loop::EventLoop;
use self::persist::PersistQueue;
use self::snapshot_check::verify_snapshot;
use self::snapshot_sender::send_snapshot_chunks;
use self::tick_clock::TickClock;
use self::types::{AppliedIndex, Request};
pub use self::types::{NodeMembership, NodeStatus, ReadConsistency, RunState};

/// A running Raft node: the protocol core driven by a tick timer, wired to a storage, a transport
/// and a state machine.
///
/// The [crate documentation](crate#example) starts a node with a state machine of a dozen lines.
#[derive(Debug)]
pub struct RaftNode {
    id: NodeId,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
    /// How far the apply task has applied: [`Self::status`] reads it current (the event loop
    /// learns it at its next round).
    applied_index: Arc<AppliedIndex>,
    membership: watch::Receiver<NodeMembership>,
    propose_timeout: Duration,
    transfer_timeout: Duration,
    read_metrics: ReadMetrics,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RaftNode {
    /// Restores the node from `storage` and starts it. The state machine says how far it has
    /// already applied; the node applies the committed log from there.
    pub async fn start<S, T, I, M>(
        config: NodeConfig,
        membership: Membership,
        mut storage: S,
        transport: T,
        inbox: I,
        mut state_machine: M,
    ) -> Result<RaftNode, StartError>
    where
        S: LogStorage,
        T: Transport,
        I: Inbox,
        M: StateMachine,
    {
        if let Some(limit) = transport.max_message_bytes() {
            let needed = config.core.max_message_bytes();
            if needed > limit {
                return Err(StartError::MessageTooLargeForTransport { needed, limit });
            }
        }
        let stored = storage.load().await?;
        let snapshots = storage.snapshot_store();
        if let Some(snapshot) = &stored.snapshot {
            if state_machine.applied_index() < snapshot.index {
                info!(
                    index = snapshot.index,
                    "restoring the state machine from the stored snapshot"
                );
                verify_snapshot(&snapshots, snapshot).await?;
                let mut reader = snapshots.open(snapshot.index).await?;
                state_machine.restore(snapshot.index, reader.as_mut()).await?;
            }
        }
        let restored = RestoredState {
            hard_state: stored.hard_state,
            snapshot: stored.snapshot,
            entries: stored.entries,
            applied: state_machine.applied_index(),
        };
        let core = RaftCore::restore(config.core.clone(), membership, restored)?;
        let id = core.id();
        info!(
            node = id,
            term = core.term(),
            last_log_index = core.status().last_log_index,
            "node starting"
        );

        let transport = Arc::new(transport);
        let (snapshot_failures_tx, snapshot_failures_rx) = mpsc::unbounded_channel();
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let applied_index = Arc::new(AppliedIndex::new(core.status().applied_index));
        let (request_tx, request_rx) = mpsc::channel(config.request_queue.max(1));
        let (status_tx, status_rx) = watch::channel(NodeStatus::of(&core, RunState::Running));
        let (membership_tx, membership_rx) = watch::channel(NodeMembership::of(&core));

        let (chunk_tx, chunk_rx) = mpsc::unbounded_channel();
        let on = config.metrics;
        let persist = PersistQueue::new(
            storage,
            transport.clone(),
            MessageMeter::new(id, on),
            PersistMetrics::new(id, on),
        );
        let apply_task = tokio::spawn(apply_loop(
            state_machine,
            snapshots.clone(),
            config.propose_timeout,
            ApplyMetrics::new(id, on),
            apply_rx,
            applied_tx,
            applied_index.clone(),
        ));
        // A snapshot found corrupt when it is about to be sent stops the node like a failed write.
        let sender_task = tokio::spawn(send_snapshot_chunks(
            snapshots,
            transport.clone(),
            chunk_rx,
            snapshot_failures_tx,
            MessageMeter::new(id, on),
        ));
        let mut metrics = CoreMetrics::new(id, on);
        metrics.observe(&core.status());
        metrics.on_tick(&core.status());
        let event_loop = EventLoop {
            core,
            transport,
            inbox,
            requests: request_rx,
            request_batch: Vec::new(),
            persist,
            snapshot_failures: snapshot_failures_rx,
            apply_jobs: apply_tx,
            applied: applied_rx,
            applied_seen: applied_index.get(),
            applied_index: applied_index.clone(),
            status: status_tx,
            membership: membership_tx,
            tick_interval: config.tick_interval,
            clock: TickClock::new(
                tokio::time::Instant::now(),
                config.tick_interval,
                // Past two election timeouts every timer of the core has fired: leases, elections,
                // check-quorum, read expiry.
                2 * u64::from(config.core.election_timeout_ticks) + 2,
            ),
            now: tokio::time::Instant::now(),
            next_read: 0,
            pending_reads: BTreeMap::new(),
            snapshot_chunks: chunk_tx,
            snapshot_waiters: Vec::new(),
            accepted: Vec::new(),
            metrics,
            meter: MessageMeter::new(id, on),
            election: None,
        };
        let main_task = tokio::spawn(event_loop.run());
        Ok(RaftNode {
            id,
            requests: request_tx,
            status: status_rx,
            applied_index,
            membership: membership_rx,
            propose_timeout: config.propose_timeout,
            transfer_timeout: config.election_timeout() * 2,
            read_metrics: ReadMetrics::new(id, on),
            tasks: Mutex::new(vec![main_task, apply_task, sender_task]),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Proposes a command and waits until it is applied, returning the state machine's response.
    /// See [`ProposeError`] for which failures leave the outcome open.
    ///
    /// Runs in a `raft.propose` span (debug level) that records the index the command got.
    pub async fn propose(&self, command: impl Into<Bytes>) -> Result<Bytes, ProposeError> {
        let span = debug_span!("raft.propose", node = self.id, index = field::Empty);
        let (reply, result) = oneshot::channel();
        let request = Request::Propose {
            command: command.into(),
            reply,
            span: span.clone(),
        };
        // The wait for a slot, if the queue is full, is boxed (see `enqueue`), so that nothing
        // but it and the span lives across this await.
        let queued = match self.enqueue(request) {
            Enqueued::Queued => Ok(()),
            Enqueued::Waiting(wait) => wait.instrument(span.clone()).await,
            Enqueued::Closed => Err(()),
        };
        if queued.is_err() {
            // The loop is gone: the request was never seen, so nothing was proposed, but callers
            // cannot tell that apart from a stop mid-flight; report the stop.
            return Err(ProposeError::Stopped);
        }
        // No timer here: the apply task answers a proposal that waited past the propose timeout
        // (it checks on every tick), and a node that stops drops the reply, which reads as
        // `Stopped`. A timer per proposal cost more than the rest of the caller's side.
        result
            .instrument(span)
            .await
            .unwrap_or(Err(ProposeError::Stopped))
    }

    /// Puts a request in the event loop's queue if it has a free slot, or builds the wait for
    /// one. The try comes first because the queue nearly always has room and costs less than
    /// the wait (a semaphore acquisition, polled and moved). The wait is boxed: every proposal's
    /// future would otherwise hold room for it and the request, a few hundred bytes that each
    /// proposal builds and moves, and that a thousand waiting callers spread over the cache.
    fn enqueue(&self, request: Request) -> Enqueued<'_> {
        match self.requests.try_send(request) {
            Ok(()) => Enqueued::Queued,
            Err(mpsc::error::TrySendError::Full(request)) => Enqueued::Waiting(Box::pin(async move {
                self.requests.send(request).await.map_err(drop)
            })),
            Err(mpsc::error::TrySendError::Closed(_)) => Enqueued::Closed,
        }
    }

    /// Runs a read-only `query` against the state machine at the given consistency level, without
    /// writing to the log.
    ///
    /// Runs in a `raft.read` span (debug level) and records its latency by consistency.
    pub async fn read(
        &self,
        query: impl Into<Bytes>,
        consistency: ReadConsistency,
    ) -> Result<Bytes, ReadError> {
        let span = debug_span!("raft.read", node = self.id, ?consistency);
        let started = tokio::time::Instant::now();
        let answer = self.submit_read(query.into(), consistency).instrument(span).await;
        let latency = match consistency {
            ReadConsistency::Linearizable => &self.read_metrics.linearizable,
            ReadConsistency::Lease => &self.read_metrics.lease,
            ReadConsistency::Serializable => &self.read_metrics.serializable,
        };
        latency.record(started.elapsed().as_secs_f64());
        answer
    }

    async fn submit_read(&self, query: Bytes, consistency: ReadConsistency) -> Result<Bytes, ReadError> {
        let (reply, result) = oneshot::channel();
        let request = Request::Read {
            query,
            consistency,
            reply,
        };
        if self.requests.send(request).await.is_err() {
            return Err(ReadError::Stopped);
        }
        match tokio::time::timeout(self.propose_timeout, result).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(_)) => Err(ReadError::Stopped),
            Ok(Ok(result)) => result,
        }
    }

    /// Hands leadership to `target` and waits until this node sees it lead (at most two election
    /// timeouts). Proposals to this node are refused while the transfer runs.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), TransferError> {
        let (reply, started) = oneshot::channel();
        if self
            .requests
            .send(Request::Transfer { target, reply })
            .await
            .is_err()
        {
            return Err(TransferError::Stopped);
        }
        match started.await {
            Err(_) => return Err(TransferError::Stopped),
            Ok(Err(refused)) => return Err(refused.into()),
            Ok(Ok(())) => {}
        }
        self.wait_until_leads(target).await
    }

    /// If this node leads, hands leadership to the voter whose log reaches furthest and waits
    /// until this node sees it lead (at most two election timeouts); returns that voter. Returns
    /// `Ok(None)` at once when this node does not lead, or is the only voter.
    ///
    /// Call it before [`shutdown`](Self::shutdown) to stop a leader without leaving the cluster
    /// leaderless for an election timeout (as a rolling restart does, node by node):
    ///
    /// ```no_run
    /// # async fn stop(node: raft_node::RaftNode) {
    /// match node.hand_off_leadership().await {
    ///     Ok(Some(next)) => println!("node {next} leads now"),
    ///     Ok(None) => {}
    ///     Err(e) => eprintln!("stopping without a hand-off: {e}"),
    /// }
    /// node.shutdown().await;
    /// # }
    /// ```
    pub async fn hand_off_leadership(&self) -> Result<Option<NodeId>, TransferError> {
        let (reply, started) = oneshot::channel();
        if self.requests.send(Request::HandOff { reply }).await.is_err() {
            return Err(TransferError::Stopped);
        }
        match started.await {
            Err(_) => Err(TransferError::Stopped),
            Ok(Err(refused)) => Err(refused.into()),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(target))) => self.wait_until_leads(target).await.map(|()| Some(target)),
        }
    }

    /// Waits (at most the transfer timeout) until this node sees `target` lead.
    async fn wait_until_leads(&self, target: NodeId) -> Result<(), TransferError> {
        let mut status = self.status.clone();
        let outcome = tokio::time::timeout(self.transfer_timeout, async {
            let seen = status
                .wait_for(|s| s.raft.leader == Some(target) || s.state != RunState::Running)
                .await;
            seen.map(|s| s.raft.leader == Some(target)).unwrap_or(false)
        })
        .await;
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(TransferError::Stopped),
            Err(_) => Err(TransferError::TimedOut { target }),
        }
    }

    /// Changes the cluster's configuration to `voters` and `learners` (call it on the leader) and
    /// waits until that configuration is in force on this node: a change of voters passes through
    /// a joint configuration, which the leader leaves by itself once it is committed.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<(), ChangeMembershipError> {
        self.change_membership_with_addresses(voters, learners, BTreeMap::new())
            .await
    }

    /// Like [`change_membership`](Self::change_membership), and records where the given members
    /// can be reached in the replicated configuration
    /// ([`Membership::addresses`](raft_core::Membership::addresses)); other members keep theirs.
    pub async fn change_membership_with_addresses(
        &self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        addresses: BTreeMap<NodeId, String>,
    ) -> Result<(), ChangeMembershipError> {
        let (started, accepted) = oneshot::channel();
        let (applied, first_entry) = oneshot::channel();
        let request = Request::ChangeMembership {
            voters: voters.clone(),
            learners: learners.clone(),
            addresses: addresses.clone(),
            started,
            applied,
        };
        if self.requests.send(request).await.is_err() {
            return Err(ChangeMembershipError::Stopped);
        }
        match accepted.await {
            Err(_) => return Err(ChangeMembershipError::Stopped),
            Ok(Err(refused)) => return Err(ChangeMembershipError::Refused(refused)),
            Ok(Ok(())) => {}
        }
        let deadline = tokio::time::Instant::now() + self.propose_timeout;
        match tokio::time::timeout_at(deadline, first_entry).await {
            Err(_) => return Err(ChangeMembershipError::Timeout),
            Ok(Err(_)) => return Err(ChangeMembershipError::Stopped),
            Ok(Ok(Err(ProposeError::Dropped))) => return Err(ChangeMembershipError::Dropped),
            Ok(Ok(Err(ProposeError::Timeout))) => return Err(ChangeMembershipError::Timeout),
            Ok(Ok(Err(_))) => return Err(ChangeMembershipError::Stopped),
            Ok(Ok(Ok(_))) => {}
        }
        let mut status = self.status.clone();
        // In force once the final configuration is in the log and committed (a leader that
        // removed itself steps down in the same step it commits).
        let in_force = async {
            let appended = status
                .wait_for(|s| {
                    let m = &s.membership;
                    let addressed = addresses.iter().all(|(id, a)| m.addresses.get(id) == Some(a));
                    (m.voters == voters && m.learners == learners && !m.is_joint() && addressed)
                        || s.state != RunState::Running
                })
                .await
                .map(|s| (s.state == RunState::Running).then_some(s.raft.last_log_index));
            let Ok(Some(final_index)) = appended else {
                return false;
            };
            status
                .wait_for(|s| s.raft.commit_index >= final_index || s.state != RunState::Running)
                .await
                .map(|s| s.state == RunState::Running)
                .unwrap_or(false)
        };
        match tokio::time::timeout_at(deadline, in_force).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ChangeMembershipError::Stopped),
            Err(_) => Err(ChangeMembershipError::Timeout),
        }
    }

    /// Takes a snapshot of the state machine now and compacts the log before it (keeping
    /// `Config::snapshot_keep_entries`), whatever the compaction policy says. Returns the snapshot
    /// once it is complete in the snapshot store (the write that records it and purges the log
    /// follows). If a snapshot was already being built when this was called, that one is
    /// returned; when nothing was applied since the latest snapshot, the latest is returned.
    pub async fn snapshot(&self) -> Result<SnapshotMeta, SnapshotError> {
        let (reply, result) = oneshot::channel();
        if self.requests.send(Request::Snapshot { reply }).await.is_err() {
            return Err(SnapshotError::Stopped);
        }
        result.await.unwrap_or(Err(SnapshotError::Stopped))
    }

    /// The node's current status. Its `applied_index` is the state machine's, read as this is
    /// called.
    pub fn status(&self) -> NodeStatus {
        let mut status = self.status.borrow().clone();
        // The published status may trail the apply task by a round (on an idle node, by up to
        // a tick), and what is applied was committed, so the index stays within the commit index.
        status.raft.applied_index = status.raft.applied_index.max(self.applied_index.get());
        status
    }

    /// A receiver that sees every status change. The status changes on every commit: a task
    /// that cares only about the configurations should use [`Self::watch_membership`], which
    /// does not wake it for each one. While a receiver is out, the node also publishes each
    /// batch the state machine applies at once (otherwise its event loop notes them at its next
    /// round); a receiver taken now sees that from the node's next round on.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// A receiver that sees the configurations change (a member added, promoted or removed, or
    /// an address changed), and nothing else. It closes when the node stops.
    ///
    /// ```
    /// # async fn follow(node: &raft_node::RaftNode) {
    /// let mut configurations = node.watch_membership();
    /// while configurations.changed().await.is_ok() {
    ///     let now = configurations.borrow_and_update();
    ///     println!("voters: {:?}", now.membership.voters);
    /// }
    /// # }
    /// ```
    pub fn watch_membership(&self) -> watch::Receiver<NodeMembership> {
        self.membership.clone()
    }

    /// Waits until this node knows a leader (itself or another), up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut status = self.status.clone();
        let known = tokio::time::timeout(timeout, status.wait_for(|s| s.raft.leader.is_some())).await;
        match known {
            Ok(Ok(s)) => s.raft.leader,
            _ => None,
        }
    }

    /// Stops the node after the writes already handed to storage are done, and waits for it.
    pub async fn shutdown(&self) {
        // A full queue or a stopped loop both end in the loop stopping; nothing to report.
        let _ = self.requests.send(Request::Shutdown).await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Stops the node at once, as a crash would: queued writes are not made.
    pub fn abort(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            task.abort();
        }
    }
}

impl Drop for RaftNode {
    fn drop(&mut self) {
        self.abort();
    }
}

/// What [`RaftNode::enqueue`] did with a request.
enum Enqueued<'a> {
    /// It is in the queue.
    Queued,
    /// The queue is full: this future puts it in once a slot frees, or fails if the loop is gone.
    Waiting(std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ()>> + Send + 'a>>),
    /// The event loop is gone.
    Closed,
}

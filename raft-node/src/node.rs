//! [`RaftNode`]: one Raft node running on tokio.
//!
//! Three tasks make a node, connected by channels:
//!
//! ```text
//!            requests, peer messages, ticks
//!                        │
//!                 ┌──────▼──────┐  messages (leader AppendEntries, heartbeats) ──► transport
//!                 │ event loop  │
//!                 │ (RaftCore)  │── persist jobs ──► ┌──────────────┐ ── after-persist messages ──► transport
//!                 │             │◄── persisted ───── │ persist task │    (votes, acknowledgements)
//!                 │             │                    └──────────────┘
//!                 │             │── apply jobs ────► ┌──────────────┐ ── results ──► proposers
//!                 │             │◄── applied ─────── │  apply task  │
//!                 └─────────────┘                    └──────────────┘
//! ```
//!
//! A fourth task reads the chunks of a snapshot the leader sends to a lagging follower from the
//! snapshot store, so that a large transfer never delays heartbeats. Snapshots are built and
//! restored on the apply task, which owns the state machine.
//!
//! The event loop never waits for storage or the state machine: while one write is being made
//! durable it keeps accepting messages and proposals, and the persist task writes everything
//! queued meanwhile in one call (group commit). The leader sends AppendEntries before its own write
//! is durable, so its fsync runs in parallel with the followers'.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{
    Entry, EntryPayload, Inbox, Index, LogStorage, LogWrite, Membership, MembershipChangeError, Message,
    NodeId, RaftCore, Ready, ReceivedChunk, RestoredState, SnapshotChecksum, SnapshotChunkRequest,
    SnapshotMeta, SnapshotSink, SnapshotStore, SnapshotWrite, StateMachine, StateMachineError, Status,
    StorageError, Term, Transport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, trace, warn};

use crate::config::NodeConfig;
use crate::error::{
    MembershipChangeFailed, ProposeError, ReadError, SnapshotError, StartError, TransferError,
};

/// Whether the node is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Processing inputs.
    Running,
    /// Shut down on request.
    Stopped,
    /// Stopped because storage or the state machine failed; the text says how.
    Failed(String),
}

/// What a node reports about itself: the protocol's view and whether the runtime runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Role, term, leader and the log's indexes, as the protocol core sees them.
    pub raft: Status,
    /// The configuration in force on this node (the latest in its log).
    pub membership: Membership,
    /// Whether the node runs.
    pub state: RunState,
}

impl NodeStatus {
    fn of(core: &RaftCore, state: RunState) -> Self {
        NodeStatus {
            raft: core.status(),
            membership: core.membership().clone(),
            state,
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write completed before the read began (ReadIndex: one heartbeat round to a
    /// quorum, shared by reads that arrive together). Works on any node: a follower asks the
    /// leader for the read index and answers from its own state machine.
    Linearizable,
    /// Linearizable without a round trip while the leader holds its lease (`Config::lease_reads`);
    /// relies on bounded clock drift. Falls back to ReadIndex when no lease is held.
    Lease,
    /// This node's current state, at once: may be stale, and never blocks.
    Serializable,
}

type ReplyTo<T, E> = oneshot::Sender<Result<T, E>>;

/// A read-only query and where its answer goes.
type PendingQuery = (Bytes, ReplyTo<Bytes, ReadError>);

enum Request {
    Propose {
        command: Bytes,
        reply: ReplyTo<Bytes, ProposeError>,
    },
    Read {
        query: Bytes,
        consistency: ReadConsistency,
        reply: ReplyTo<Bytes, ReadError>,
    },
    Transfer {
        target: NodeId,
        reply: ReplyTo<(), raft_core::TransferError>,
    },
    ChangeMembership {
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        started: ReplyTo<(), MembershipChangeError>,
        applied: ReplyTo<Bytes, ProposeError>,
    },
    Snapshot {
        reply: ReplyTo<SnapshotMeta, SnapshotError>,
    },
    Shutdown,
}

/// A write for the persist task, and what to do once it is durable.
struct PersistJob {
    write: LogWrite,
    /// (index, term) of the last entry written, reported back to the core.
    persisted: Option<(Index, Term)>,
    /// Messages that may leave only once the write is durable.
    messages: Vec<Message>,
    /// Snapshot chunks from the leader, written to the snapshot store before `write`.
    chunks: Vec<ReceivedChunk>,
    /// The received snapshot `write` records, to finish before the write and to restore the
    /// state machine from after it.
    restore: Option<SnapshotMeta>,
}

/// What the persist task made durable.
#[derive(Debug, Default)]
struct Persisted {
    /// (index, term) of the last entry of each write, to report to the core.
    acknowledged: Vec<(Index, Term)>,
    /// Received snapshots now durable: the state machine is to be restored from them.
    restore: Vec<SnapshotMeta>,
}

/// What the apply task did.
enum Applied {
    /// Entries up to this index are applied (or a snapshot up to it restored).
    UpTo(Index),
    /// A snapshot of the state after `index` was written to the snapshot store.
    SnapshotBuilt { index: Index, size: u64, checksum: u32 },
}

enum ApplyJob {
    /// A proposal accepted at `index` in `term` waits for its result.
    Await {
        index: Index,
        term: Term,
        reply: oneshot::Sender<Result<Bytes, ProposeError>>,
    },
    /// Committed entries to apply, in order.
    Apply(Vec<Entry>),
    /// A read to serve once `index` is applied.
    Read {
        index: Index,
        query: Bytes,
        reply: ReplyTo<Bytes, ReadError>,
    },
    /// Replace the state machine's state with this durable snapshot from the leader.
    Restore(SnapshotMeta),
    /// Write a snapshot of the state machine into the snapshot store.
    BuildSnapshot,
}

/// A running Raft node: the protocol core driven by a tick timer, wired to a storage, a transport
/// and a state machine.
///
/// ```
/// use raft_core::Membership;
/// use raft_net_mem::MemNetwork;
/// use raft_node::{KvCommand, KvResponse, KvStateMachine, NodeConfig, RaftNode};
/// use raft_storage_mem::MemStorage;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let network = MemNetwork::new(7);
/// let (transport, inbox) = network.register(1);
/// let node = RaftNode::start(
///     NodeConfig::new(1),
///     Membership::voters([1])?,
///     MemStorage::new(),
///     transport,
///     inbox,
///     KvStateMachine::new(),
/// )
/// .await?;
/// node.wait_for_leader(std::time::Duration::from_secs(5)).await;
/// let put = KvCommand::Put { key: "k".into(), value: "v".into() };
/// let reply = node.propose(put.encode()).await?;
/// assert_eq!(KvResponse::decode(&reply)?, KvResponse::Previous(None));
/// node.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct RaftNode {
    id: NodeId,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<NodeStatus>,
    propose_timeout: Duration,
    transfer_timeout: Duration,
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
        let stored = storage.load().await?;
        let snapshots = storage.snapshot_store();
        if let Some(snapshot) = &stored.snapshot {
            if state_machine.applied_index() < snapshot.index {
                info!(
                    index = snapshot.index,
                    "restoring the state machine from the stored snapshot"
                );
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
        let (persist_tx, persist_rx) = mpsc::unbounded_channel();
        let (persisted_tx, persisted_rx) = mpsc::unbounded_channel();
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let (request_tx, request_rx) = mpsc::channel(config.request_queue.max(1));
        let (status_tx, status_rx) = watch::channel(NodeStatus::of(&core, RunState::Running));

        let (chunk_tx, chunk_rx) = mpsc::unbounded_channel();
        let persist_task = tokio::spawn(persist_loop(storage, transport.clone(), persist_rx, persisted_tx));
        let apply_task = tokio::spawn(apply_loop(state_machine, snapshots.clone(), apply_rx, applied_tx));
        let sender_task = tokio::spawn(send_snapshot_chunks(snapshots, transport.clone(), chunk_rx));
        let event_loop = EventLoop {
            core,
            transport,
            inbox,
            requests: request_rx,
            persist_jobs: persist_tx,
            persisted: persisted_rx,
            apply_jobs: apply_tx,
            applied: applied_rx,
            status: status_tx,
            tick_interval: config.tick_interval,
            next_read: 0,
            pending_reads: BTreeMap::new(),
            snapshot_chunks: chunk_tx,
            snapshot_waiters: Vec::new(),
        };
        let main_task = tokio::spawn(event_loop.run());
        Ok(RaftNode {
            id,
            requests: request_tx,
            status: status_rx,
            propose_timeout: config.propose_timeout,
            transfer_timeout: config.election_timeout() * 2,
            tasks: Mutex::new(vec![main_task, persist_task, apply_task, sender_task]),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Proposes a command and waits until it is applied, returning the state machine's response.
    /// See [`ProposeError`] for which failures leave the outcome open.
    pub async fn propose(&self, command: impl Into<Bytes>) -> Result<Bytes, ProposeError> {
        let (reply, result) = oneshot::channel();
        let request = Request::Propose {
            command: command.into(),
            reply,
        };
        if self.requests.send(request).await.is_err() {
            // The loop is gone: the request was never seen, so nothing was proposed, but callers
            // cannot tell that apart from a stop mid-flight; report the stop.
            return Err(ProposeError::Stopped);
        }
        match tokio::time::timeout(self.propose_timeout, result).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Ok(Ok(result)) => result,
        }
    }

    /// Runs a read-only `query` against the state machine at the given consistency level, without
    /// writing to the log.
    pub async fn read(
        &self,
        query: impl Into<Bytes>,
        consistency: ReadConsistency,
    ) -> Result<Bytes, ReadError> {
        let (reply, result) = oneshot::channel();
        let request = Request::Read {
            query: query.into(),
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
    ) -> Result<(), MembershipChangeFailed> {
        let (started, accepted) = oneshot::channel();
        let (applied, first_entry) = oneshot::channel();
        let request = Request::ChangeMembership {
            voters: voters.clone(),
            learners: learners.clone(),
            started,
            applied,
        };
        if self.requests.send(request).await.is_err() {
            return Err(MembershipChangeFailed::Stopped);
        }
        match accepted.await {
            Err(_) => return Err(MembershipChangeFailed::Stopped),
            Ok(Err(refused)) => return Err(MembershipChangeFailed::Refused(refused)),
            Ok(Ok(())) => {}
        }
        let deadline = tokio::time::Instant::now() + self.propose_timeout;
        match tokio::time::timeout_at(deadline, first_entry).await {
            Err(_) => return Err(MembershipChangeFailed::Timeout),
            Ok(Err(_)) => return Err(MembershipChangeFailed::Stopped),
            Ok(Ok(Err(ProposeError::Dropped))) => return Err(MembershipChangeFailed::Dropped),
            Ok(Ok(Err(_))) => return Err(MembershipChangeFailed::Stopped),
            Ok(Ok(Ok(_))) => {}
        }
        let mut status = self.status.clone();
        // In force once the final configuration is in the log and committed (a leader that
        // removed itself steps down in the same step it commits).
        let in_force = async {
            let appended = status
                .wait_for(|s| {
                    let m = &s.membership;
                    (m.voters == voters && m.learners == learners && !m.is_joint())
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
            Ok(false) => Err(MembershipChangeFailed::Stopped),
            Err(_) => Err(MembershipChangeFailed::Timeout),
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

    /// The node's current status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
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

struct EventLoop<T, I> {
    core: RaftCore,
    transport: Arc<T>,
    inbox: I,
    requests: mpsc::Receiver<Request>,
    persist_jobs: mpsc::UnboundedSender<PersistJob>,
    persisted: mpsc::UnboundedReceiver<Result<Persisted, StorageError>>,
    apply_jobs: mpsc::UnboundedSender<ApplyJob>,
    applied: mpsc::UnboundedReceiver<Result<Applied, StateMachineError>>,
    status: watch::Sender<NodeStatus>,
    tick_interval: Duration,
    next_read: u64,
    /// Reads waiting for the core to confirm a read index.
    pending_reads: BTreeMap<u64, PendingQuery>,
    /// Snapshot chunks for the sender task to read and send.
    snapshot_chunks: mpsc::UnboundedSender<SnapshotChunkRequest>,
    /// Callers of `RaftNode::snapshot` waiting for the next snapshot.
    snapshot_waiters: Vec<ReplyTo<SnapshotMeta, SnapshotError>>,
}

impl<T: Transport, I: Inbox> EventLoop<T, I> {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let final_state = loop {
            let event = tokio::select! {
                biased;
                Some(done) = self.persisted.recv() => Event::Persisted(done),
                Some(done) = self.applied.recv() => Event::Applied(done),
                request = self.requests.recv() => request.map_or(Event::Shutdown, Event::Request),
                Some(message) = self.inbox.recv() => Event::Message(message),
                _ = ticker.tick() => Event::Tick,
            };
            if let Some(stop) = self.handle(event) {
                break stop;
            }
            if let Some(stop) = self.drain_ready_inputs() {
                break stop;
            }
            let ready = self.core.ready();
            self.dispatch(ready);
            self.publish_status(RunState::Running);
        };
        info!(node = self.core.id(), state = ?final_state, "node stopping");
        self.publish_status(final_state);
    }

    /// Takes in everything that has already arrived, so that one round of work covers it all.
    fn drain_ready_inputs(&mut self) -> Option<RunState> {
        for _ in 0..MAX_INPUTS_PER_ROUND {
            let event = if let Ok(done) = self.persisted.try_recv() {
                Event::Persisted(done)
            } else if let Ok(done) = self.applied.try_recv() {
                Event::Applied(done)
            } else if let Ok(request) = self.requests.try_recv() {
                Event::Request(request)
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

    /// Feeds one input to the core. Returns the state to stop in, if the node must stop.
    fn handle(&mut self, event: Event) -> Option<RunState> {
        match event {
            Event::Tick => self.core.tick(),
            Event::Message(message) => {
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
            Event::Request(Request::Propose { command, reply }) => match self.core.propose(command) {
                Ok(index) => {
                    let term = self.core.term();
                    // The apply task receives this before the entry can be committed.
                    let _ = self.apply_jobs.send(ApplyJob::Await { index, term, reply });
                }
                Err(error) => {
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
            Event::Request(Request::ChangeMembership {
                voters,
                learners,
                started,
                applied,
            }) => match self.core.change_membership(voters, learners) {
                Ok(index) => {
                    let term = self.core.term();
                    let _ = started.send(Ok(()));
                    let _ = self.apply_jobs.send(ApplyJob::Await {
                        index,
                        term,
                        reply: applied,
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
                    let _ = self.apply_jobs.send(ApplyJob::Restore(snapshot));
                }
            }
            Event::Persisted(Err(error)) => {
                error!(node = self.core.id(), %error, "storage failed; stopping without acknowledging");
                return Some(RunState::Failed(format!("storage failed: {error}")));
            }
            Event::Applied(Ok(Applied::UpTo(index))) => self.core.on_applied(index),
            Event::Applied(Ok(Applied::SnapshotBuilt {
                index,
                size,
                checksum,
            })) => {
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
            let _ = self.apply_jobs.send(ApplyJob::Read {
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

    /// Hands the core's work to the transport, the persist task and the apply task.
    fn dispatch(&mut self, mut ready: Ready) {
        if ready.is_empty() {
            return;
        }
        if let Some(soft) = ready.soft_state {
            debug!(node = self.core.id(), role = %soft.role, term = soft.term, leader = ?soft.leader, "role changed");
        }
        let persisted = ready.persisted_up_to();
        let needs_persist = ready.needs_persist() || !ready.messages_after_persist.is_empty();
        let (write, restore) = ready.take_log_write();
        for message in ready.messages {
            send(&*self.transport, message);
        }
        for chunk in ready.snapshot_sends {
            let _ = self.snapshot_chunks.send(chunk);
        }
        if ready.build_snapshot {
            let _ = self.apply_jobs.send(ApplyJob::BuildSnapshot);
        }
        if needs_persist {
            let job = PersistJob {
                write,
                persisted,
                messages: ready.messages_after_persist,
                chunks: ready.received_chunks,
                restore,
            };
            // If the persist task is gone it reported why; the loop stops on that report.
            let _ = self.persist_jobs.send(job);
        }
        if !ready.committed_entries.is_empty() {
            let _ = self.apply_jobs.send(ApplyJob::Apply(ready.committed_entries));
        }
        // Reads go after the entries above, so the apply task sees them in order.
        for state in ready.read_states {
            if let Some((query, reply)) = self.pending_reads.remove(&state.id) {
                let job = ApplyJob::Read {
                    index: state.index,
                    query,
                    reply,
                };
                let _ = self.apply_jobs.send(job);
            }
        }
        for (id, error) in ready.read_failures {
            if let Some((_, reply)) = self.pending_reads.remove(&id) {
                let _ = reply.send(Err(error.into()));
            }
        }
    }

    fn publish_status(&self, state: RunState) {
        let status = NodeStatus::of(&self.core, state);
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

fn send<T: Transport>(transport: &T, message: Message) {
    let (to, kind) = (message.to, message.body.kind());
    if let Err(error) = transport.send(message) {
        debug!(to, kind, %error, "message not sent");
    }
}

/// Makes writes durable in order, many at a time, then releases the messages that waited on them.
async fn persist_loop<S: LogStorage, T: Transport>(
    mut storage: S,
    transport: Arc<T>,
    mut jobs: mpsc::UnboundedReceiver<PersistJob>,
    done: mpsc::UnboundedSender<Result<Persisted, StorageError>>,
) {
    let snapshots = storage.snapshot_store();
    let mut receiving = ReceivingSnapshot::default();
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        // Snapshot chunks go to the snapshot store first; a completed snapshot is finished
        // (durable) before the write that records it as the latest.
        for job in &mut batch {
            let stored = receiving.store(&snapshots, std::mem::take(&mut job.chunks), job.restore.as_ref());
            if let Err(error) = stored.await {
                let _ = done.send(Err(error));
                return;
            }
        }
        let write = merge_writes(&mut batch);
        if !write.is_empty() {
            if let Err(error) = storage.persist(write).await {
                let _ = done.send(Err(error));
                return;
            }
        }
        let mut persisted = Persisted::default();
        for job in batch {
            for message in job.messages {
                send(&*transport, message);
            }
            persisted.acknowledged.extend(job.persisted);
            persisted.restore.extend(job.restore);
        }
        if done.send(Ok(persisted)).is_err() {
            return;
        }
    }
}

/// The snapshots a follower is receiving from the leader, as they are written to the snapshot
/// store, by index.
#[derive(Default)]
struct ReceivingSnapshot {
    sinks: BTreeMap<Index, Box<dyn SnapshotSink>>,
}

impl ReceivingSnapshot {
    /// Writes `chunks` (a chunk at offset 0 starts its snapshot afresh), then finishes the
    /// snapshot `complete` names, if any, abandoning older unfinished ones.
    async fn store<St: SnapshotStore>(
        &mut self,
        snapshots: &St,
        chunks: Vec<ReceivedChunk>,
        complete: Option<&SnapshotMeta>,
    ) -> Result<(), StorageError> {
        for chunk in chunks {
            let index = chunk.snapshot_index;
            if chunk.offset == 0 {
                self.sinks.insert(index, snapshots.create(index).await?);
            }
            match self.sinks.get_mut(&index) {
                Some(sink) => sink.write(chunk.data).await?,
                None => return Err(StorageError::SnapshotNotFound(index)),
            }
        }
        if let Some(meta) = complete {
            let sink = self
                .sinks
                .remove(&meta.index)
                .ok_or(StorageError::SnapshotNotFound(meta.index))?;
            sink.finish().await?;
            self.sinks.retain(|index, _| *index > meta.index);
        }
        Ok(())
    }
}

/// Merges consecutive writes into one (group commit), exactly as storage would apply them one
/// after the other.
fn merge_writes(batch: &mut [PersistJob]) -> LogWrite {
    let mut merged = LogWrite::default();
    for job in batch.iter_mut() {
        merged.merge(std::mem::take(&mut job.write));
    }
    merged
}

/// Reads the chunks of snapshots the leader sends and hands them to the transport.
async fn send_snapshot_chunks<St: SnapshotStore, T: Transport>(
    snapshots: St,
    transport: Arc<T>,
    mut requests: mpsc::UnboundedReceiver<SnapshotChunkRequest>,
) {
    while let Some(request) = requests.recv().await {
        match snapshots
            .read_chunk(request.meta.index, request.offset, request.len)
            .await
        {
            Ok(data) => send(&*transport, request.into_message(data)),
            // Superseded by a newer snapshot: the core starts over with that one when the
            // transfer stalls.
            Err(error) => debug!(to = request.to, %error, "snapshot chunk not sent"),
        }
    }
}

/// A snapshot being built: the bytes go to the store, their checksum is kept on the way.
struct ChecksummedSink {
    sink: Box<dyn SnapshotSink>,
    checksum: SnapshotChecksum,
}

#[async_trait::async_trait]
impl SnapshotWrite for ChecksummedSink {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.checksum.update(&data);
        self.sink.write(data).await
    }
}

/// Builds a snapshot of the state after `index` into the store.
async fn build_snapshot<M: StateMachine, St: SnapshotStore>(
    state_machine: &mut M,
    snapshots: &St,
    index: Index,
) -> Result<Applied, StateMachineError> {
    let as_state_machine_error = |error: StorageError| StateMachineError {
        index,
        source: Box::new(error),
    };
    let sink = snapshots.create(index).await.map_err(as_state_machine_error)?;
    let mut writer = ChecksummedSink {
        sink,
        checksum: SnapshotChecksum::new(),
    };
    state_machine.snapshot(&mut writer).await?;
    let ChecksummedSink { sink, checksum } = writer;
    sink.finish().await.map_err(as_state_machine_error)?;
    Ok(Applied::SnapshotBuilt {
        index,
        size: checksum.size(),
        checksum: checksum.value(),
    })
}

/// Replaces the state machine's state with the snapshot at `index`.
async fn restore_snapshot<M: StateMachine, St: SnapshotStore>(
    state_machine: &mut M,
    snapshots: &St,
    index: Index,
) -> Result<(), StateMachineError> {
    let mut reader = snapshots.open(index).await.map_err(|error| StateMachineError {
        index,
        source: Box::new(error),
    })?;
    state_machine.restore(index, reader.as_mut()).await
}

/// Applies committed entries in order and answers the proposals waiting for them; builds and
/// restores snapshots.
async fn apply_loop<M: StateMachine, St: SnapshotStore>(
    mut state_machine: M,
    snapshots: St,
    mut jobs: mpsc::UnboundedReceiver<ApplyJob>,
    done: mpsc::UnboundedSender<Result<Applied, StateMachineError>>,
) {
    let mut waiters: BTreeMap<Index, (Term, ReplyTo<Bytes, ProposeError>)> = BTreeMap::new();
    let mut reads: BTreeMap<Index, Vec<PendingQuery>> = BTreeMap::new();
    let mut applied = state_machine.applied_index();
    while let Some(job) = jobs.recv().await {
        let entries = match job {
            ApplyJob::Await { index, term, reply } => {
                waiters.insert(index, (term, reply));
                continue;
            }
            ApplyJob::Read { index, query, reply } => {
                if index <= applied {
                    if !serve_read(&mut state_machine, query, reply, &done).await {
                        return;
                    }
                } else {
                    reads.entry(index).or_default().push((query, reply));
                }
                continue;
            }
            ApplyJob::BuildSnapshot => {
                let built = build_snapshot(&mut state_machine, &snapshots, applied).await;
                let failed = built.is_err();
                if done.send(built).is_err() || failed {
                    return;
                }
                continue;
            }
            ApplyJob::Restore(snapshot) => {
                if let Err(error) = restore_snapshot(&mut state_machine, &snapshots, snapshot.index).await {
                    let _ = done.send(Err(error));
                    return;
                }
                applied = snapshot.index;
                // Proposals covered by the snapshot: which command took their index is unknown.
                while let Some(waiter) = waiters.first_entry() {
                    if *waiter.key() > applied {
                        break;
                    }
                    let (_, reply) = waiter.remove();
                    let _ = reply.send(Err(ProposeError::Superseded));
                }
                if !serve_reads_up_to(&mut state_machine, &mut reads, applied, &done).await {
                    return;
                }
                if done.send(Ok(Applied::UpTo(applied))).is_err() {
                    return;
                }
                continue;
            }
            ApplyJob::Apply(entries) => entries,
        };
        let mut last = 0;
        for entry in entries {
            let response = match entry.payload {
                // Configuration changes are Raft's own business, not the state machine's.
                EntryPayload::Blank | EntryPayload::Membership(_) => Bytes::new(),
                EntryPayload::Command(command) => match state_machine.apply(entry.index, command).await {
                    Ok(response) => response,
                    Err(error) => {
                        let _ = done.send(Err(error));
                        return;
                    }
                },
            };
            // Proposals at or below this index are decided: ours if the term matches, otherwise
            // another leader's entry took the place.
            while let Some(waiter) = waiters.first_entry() {
                if *waiter.key() > entry.index {
                    break;
                }
                let index = *waiter.key();
                let (term, reply) = waiter.remove();
                let result = if index == entry.index && term == entry.term {
                    Ok(response.clone())
                } else {
                    Err(ProposeError::Dropped)
                };
                let _ = reply.send(result);
            }
            last = entry.index;
        }
        applied = applied.max(last);
        if !serve_reads_up_to(&mut state_machine, &mut reads, applied, &done).await {
            return;
        }
        if done.send(Ok(Applied::UpTo(last))).is_err() {
            return;
        }
    }
}

/// Serves the reads whose index is now applied; returns false if the state machine failed.
async fn serve_reads_up_to<M: StateMachine>(
    state_machine: &mut M,
    reads: &mut BTreeMap<Index, Vec<PendingQuery>>,
    applied: Index,
    done: &mpsc::UnboundedSender<Result<Applied, StateMachineError>>,
) -> bool {
    while let Some(ready) = reads.first_entry() {
        if *ready.key() > applied {
            break;
        }
        for (query, reply) in ready.remove() {
            if !serve_read(state_machine, query, reply, done).await {
                return false;
            }
        }
    }
    true
}

/// Answers one read from the state machine; returns false if the state machine failed.
async fn serve_read<M: StateMachine>(
    state_machine: &mut M,
    query: Bytes,
    reply: ReplyTo<Bytes, ReadError>,
    done: &mpsc::UnboundedSender<Result<Applied, StateMachineError>>,
) -> bool {
    match state_machine.query(query).await {
        Ok(answer) => {
            let _ = reply.send(Ok(answer));
            true
        }
        Err(error) => {
            let _ = done.send(Err(error));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(entries: Vec<Entry>, term: Option<Term>) -> PersistJob {
        PersistJob {
            write: LogWrite {
                entries,
                hard_state: term.map(|term| raft_core::HardState {
                    term,
                    voted_for: None,
                    commit: 0,
                }),
                ..LogWrite::default()
            },
            persisted: None,
            messages: Vec::new(),
            chunks: Vec::new(),
            restore: None,
        }
    }

    #[test]
    fn merged_writes_apply_later_truncations_and_the_last_hard_state() {
        let mut batch = vec![
            job(
                vec![Entry::blank(1, 1), Entry::blank(1, 2), Entry::blank(1, 3)],
                Some(1),
            ),
            job(vec![Entry::blank(2, 2)], Some(2)),
            job(vec![Entry::blank(2, 3)], None),
        ];
        let merged = merge_writes(&mut batch);
        let terms: Vec<(Index, Term)> = merged.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(1, 1), (2, 2), (3, 2)]);
        assert_eq!(merged.hard_state.map(|h| h.term), Some(2));
    }
}

//! A synchronous harness for rule tests: several cores, a message queue between them, and storage
//! that acknowledges every write at once unless told to hold it.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use raft_core::{
    Config, Entry, HardState, Index, Membership, Message, NodeId, RaftCore, ReadError, ReadState, Ready,
    RestoredState, Role, SnapshotChecksum, SnapshotMeta,
};

/// Settings used by the rule tests: T = 10 ticks, heartbeat every 2.
pub fn config(id: NodeId) -> Config {
    Config::new(id)
        .with_election_timeout_ticks(10)
        .with_heartbeat_interval_ticks(2)
        .with_seed(id * 7919)
}

pub struct Net {
    pub nodes: BTreeMap<NodeId, RaftCore>,
    /// Messages in flight, delivered in order.
    pub queue: VecDeque<Message>,
    /// Nodes whose messages (both ways) are dropped.
    pub isolated: BTreeSet<NodeId>,
    /// What each node persisted.
    pub stored: BTreeMap<NodeId, (HardState, Vec<Entry>)>,
    /// What each node applied.
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Reads each node reported safe, and reads that failed.
    pub reads: BTreeMap<NodeId, ReadOutcomes>,
    /// Each node's complete snapshots by index (its state machine is the list of applied entries,
    /// so a snapshot is that list, encoded).
    pub snapshots: BTreeMap<NodeId, BTreeMap<Index, Bytes>>,
    /// Each node's latest recorded snapshot.
    pub stored_snapshot: BTreeMap<NodeId, SnapshotMeta>,
    /// The snapshots each node is receiving, by (node, snapshot index).
    pub receiving: BTreeMap<(NodeId, Index), Vec<u8>>,
    /// Snapshot chunks at these offsets are dropped once, on their way.
    pub drop_chunks_at: BTreeSet<u64>,
    /// A snapshot chunk at this offset gets a byte flipped once, on its way.
    pub corrupt_chunk_at: Option<u64>,
    /// Snapshot chunks sent so far.
    pub chunks_sent: usize,
    /// Nodes whose disk stalls: their readies' writes wait (with the messages that need them)
    /// until [`Net::unstall`], while the messages that may leave at once still go.
    pub stalled: BTreeSet<NodeId>,
    /// The readies a stalled node handed out and has not made durable yet, in order.
    pub held: BTreeMap<NodeId, Vec<Ready>>,
}

/// The reads one node reported safe, and those that failed.
pub type ReadOutcomes = (Vec<ReadState>, Vec<(u64, ReadError)>);

impl Net {
    pub fn new(size: u64) -> Self {
        Self::with_config(size, config)
    }

    pub fn with_config(size: u64, make: impl Fn(NodeId) -> Config) -> Self {
        let membership = Membership::voters(1..=size).unwrap();
        Self::with_membership(membership, make)
    }

    /// Every member of `membership` (voters and learners), bootstrapped with it.
    pub fn with_membership(membership: Membership, make: impl Fn(NodeId) -> Config) -> Self {
        let ids: Vec<NodeId> = membership.members().collect();
        let nodes = ids
            .iter()
            .map(|id| (*id, RaftCore::new(make(*id), membership.clone()).unwrap()))
            .collect();
        Net {
            nodes,
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            stored: ids
                .iter()
                .map(|id| (*id, (HardState::default(), Vec::new())))
                .collect(),
            applied: ids.iter().map(|id| (*id, Vec::new())).collect(),
            reads: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            stored_snapshot: BTreeMap::new(),
            receiving: BTreeMap::new(),
            drop_chunks_at: BTreeSet::new(),
            corrupt_chunk_at: None,
            chunks_sent: 0,
            stalled: BTreeSet::new(),
            held: BTreeMap::new(),
        }
    }

    /// Builds a node from a stored log, as after a restart.
    pub fn with_logs(logs: &[(NodeId, Vec<Entry>, HardState)]) -> Self {
        let ids: Vec<NodeId> = logs.iter().map(|(id, _, _)| *id).collect();
        let membership = Membership::voters(ids.clone()).unwrap();
        let mut net = Net::new(ids.len() as u64);
        net.nodes.clear();
        for (id, entries, hard_state) in logs {
            let restored = RestoredState {
                hard_state: *hard_state,
                snapshot: None,
                entries: entries.clone(),
                applied: 0,
            };
            net.nodes.insert(
                *id,
                RaftCore::restore(config(*id), membership.clone(), restored).unwrap(),
            );
            net.stored.insert(*id, (*hard_state, entries.clone()));
        }
        net
    }

    pub fn node(&mut self, id: NodeId) -> &mut RaftCore {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Collects a node's ready, persists it at once, queues its messages and records applies.
    pub fn process(&mut self, id: NodeId) -> Ready {
        let ready = self.node(id).ready();
        if self.stalled.contains(&id) {
            self.queue.extend(ready.messages.iter().cloned());
            self.held.entry(id).or_default().push(ready.clone());
            return ready;
        }
        self.persist(id, &ready);
        self.enqueue(&ready);
        self.send_snapshot_chunks(id, &ready);
        self.build_snapshot(id, &ready);
        ready
    }

    pub fn persist(&mut self, id: NodeId, ready: &Ready) {
        for chunk in &ready.received_chunks {
            let buffer = self.receiving.entry((id, chunk.snapshot_index)).or_default();
            if chunk.offset == 0 {
                buffer.clear();
            }
            assert_eq!(buffer.len() as u64, chunk.offset, "chunks out of order");
            buffer.extend_from_slice(&chunk.data);
        }
        let stored = self.stored.get_mut(&id).unwrap();
        if let Some(update) = &ready.snapshot {
            if update.restore {
                let data = self
                    .receiving
                    .remove(&(id, update.meta.index))
                    .unwrap_or_default();
                self.snapshots
                    .entry(id)
                    .or_default()
                    .insert(update.meta.index, data.into());
            }
            if update.discard_log {
                stored.1.clear();
            }
            stored.1.retain(|e| e.index > update.purge_to);
            self.stored_snapshot.insert(id, update.meta.clone());
        }
        if let Some(first) = ready.entries.first() {
            stored.1.retain(|e| e.index < first.index);
            stored.1.extend(ready.entries.iter().cloned());
        }
        if let Some(hs) = ready.hard_state {
            stored.0 = hs;
        }
        if let Some((index, term)) = ready.persisted_up_to() {
            self.node(id).on_persisted(index, term);
        }
        if let Some(update) = ready.snapshot.as_ref().filter(|u| u.restore) {
            let data = &self.snapshots[&id][&update.meta.index];
            let restored: Vec<Entry> = postcard::from_bytes(data).unwrap();
            self.applied.insert(id, restored);
            self.node(id).on_applied(update.meta.index);
        }
        let reads = self.reads.entry(id).or_default();
        reads.0.extend(ready.read_states.iter().copied());
        reads.1.extend(ready.read_failures.iter().cloned());
        let applied = self.applied.get_mut(&id).unwrap();
        applied.extend(ready.committed_entries.iter().cloned());
        if let Some(last) = ready.committed_entries.last() {
            let index = last.index;
            self.node(id).on_applied(index);
        }
    }

    /// Ends a node's disk stall: what it held becomes durable, in order, and the messages that
    /// waited for it leave.
    pub fn unstall(&mut self, id: NodeId) {
        self.stalled.remove(&id);
        for ready in self.held.remove(&id).unwrap_or_default() {
            self.persist(id, &ready);
            self.queue.extend(ready.messages_after_persist.iter().cloned());
            self.send_snapshot_chunks(id, &ready);
            self.build_snapshot(id, &ready);
        }
    }

    pub fn enqueue(&mut self, ready: &Ready) {
        self.queue.extend(ready.messages.iter().cloned());
        self.queue.extend(ready.messages_after_persist.iter().cloned());
    }

    /// Reads the chunks the leader asked for from its snapshots and queues them.
    fn send_snapshot_chunks(&mut self, id: NodeId, ready: &Ready) {
        for request in &ready.snapshot_sends {
            self.chunks_sent += 1;
            if self.drop_chunks_at.remove(&request.offset) {
                continue;
            }
            let Some(data) = self.snapshots.get(&id).and_then(|s| s.get(&request.meta.index)) else {
                continue;
            };
            let (start, end) = (request.offset as usize, (request.offset + request.len) as usize);
            let mut chunk = data.slice(start..end);
            if self.corrupt_chunk_at == Some(request.offset) && !chunk.is_empty() {
                self.corrupt_chunk_at = None;
                let mut bytes = chunk.to_vec();
                bytes[0] ^= 0xff;
                chunk = bytes.into();
            }
            self.queue.push_back(request.clone().into_message(chunk));
        }
    }

    /// Writes a snapshot of the node's applied entries when the core asks for one.
    fn build_snapshot(&mut self, id: NodeId, ready: &Ready) {
        if ready.build_snapshot {
            self.snapshot_now(id);
        }
    }

    /// Builds a snapshot of what `id` applied and reports it.
    pub fn snapshot_now(&mut self, id: NodeId) -> Option<SnapshotMeta> {
        let index = self.node(id).status().applied_index;
        let data: Bytes = postcard::to_allocvec(&self.applied[&id]).unwrap().into();
        let mut checksum = SnapshotChecksum::new();
        checksum.update(&data);
        self.snapshots.entry(id).or_default().insert(index, data);
        self.node(id)
            .on_snapshot_built(index, checksum.size(), checksum.value())
    }

    /// Processes every node once.
    pub fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
    }

    /// Delivers messages until none are left.
    pub fn settle(&mut self) {
        self.process_all();
        let mut rounds = 0;
        while let Some(message) = self.queue.pop_front() {
            rounds += 1;
            assert!(rounds < 100_000, "the network never settled");
            if self.isolated.contains(&message.from) || self.isolated.contains(&message.to) {
                continue;
            }
            let to = message.to;
            if let Some(node) = self.nodes.get_mut(&to) {
                node.step(message).unwrap();
                self.process(to);
            }
        }
    }

    pub fn tick(&mut self, id: NodeId, ticks: u32) {
        for _ in 0..ticks {
            self.node(id).tick();
        }
    }

    /// Ticks every node once and settles, `ticks` times.
    pub fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node(id).tick();
            }
            self.settle();
        }
    }

    /// Makes `id` leader: ticks it alone until it campaigns, then settles.
    pub fn elect(&mut self, id: NodeId) {
        for _ in 0..100 {
            self.node(id).tick();
            if self.node(id).role() != Role::Follower {
                break;
            }
        }
        self.settle();
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} did not win");
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| n.id())
            .collect()
    }

    pub fn read_states(&self, id: NodeId) -> Vec<ReadState> {
        self.reads.get(&id).map(|r| r.0.clone()).unwrap_or_default()
    }

    pub fn read_failures(&self, id: NodeId) -> Vec<(u64, ReadError)> {
        self.reads.get(&id).map(|r| r.1.clone()).unwrap_or_default()
    }

    pub fn log_terms(&self, id: NodeId) -> Vec<u64> {
        self.stored[&id].1.iter().map(|e| e.term).collect()
    }

    pub fn applied_indexes(&self, id: NodeId) -> Vec<Index> {
        self.applied[&id].iter().map(|e| e.index).collect()
    }
}

/// A log of blank entries with the given terms, from index 1.
pub fn entries(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| Entry::command(*t, i as u64 + 1, format!("e{}-t{}", i + 1, t)))
        .collect()
}

pub fn hard(term: u64) -> HardState {
    HardState {
        term,
        voted_for: None,
        commit: 0,
    }
}

impl Net {
    /// Restarts `id` from what it persisted: its latest snapshot, its log and hard state. Its
    /// state machine is restored from the snapshot; what was not persisted is lost.
    pub fn restart(&mut self, id: NodeId, make: impl Fn(NodeId) -> Config, membership: Membership) {
        let (hard_state, entries) = self.stored[&id].clone();
        let snapshot = self.stored_snapshot.get(&id).cloned();
        let applied = match &snapshot {
            Some(meta) => {
                let data = &self.snapshots[&id][&meta.index];
                self.applied.insert(id, postcard::from_bytes(data).unwrap());
                meta.index
            }
            None => {
                self.applied.insert(id, Vec::new());
                0
            }
        };
        let restored = RestoredState {
            hard_state,
            snapshot,
            entries,
            applied,
        };
        self.receiving.retain(|(node, _), _| *node != id);
        let node = RaftCore::restore(make(id), membership, restored).unwrap();
        self.nodes.insert(id, node);
    }

    /// Adds node `id` outside the cluster (empty configuration), as an operator starts a node
    /// before adding it.
    pub fn add_joiner(&mut self, id: NodeId) {
        let node = RaftCore::new(config(id), Membership::default()).unwrap();
        self.nodes.insert(id, node);
        self.stored.insert(id, (HardState::default(), Vec::new()));
        self.applied.insert(id, Vec::new());
    }
}

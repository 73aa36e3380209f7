//! The nodes of a simulated cluster and what the invariants remember about them: the part of a run
//! that the random simulator and the exhaustive checker share.
//!
//! A [`Cluster`] turns one input at a time (deliver a message, tick, make a write durable, crash,
//! restart, propose, read, change the configuration) into the node's reaction: it carries out
//! the node's `Ready` (messages out, a write queued, entries applied, a snapshot built) and
//! checks the invariants the step could break. What it cannot decide itself it asks its
//! [`Effects`]: where a message goes, when a write becomes durable, and what to record. The
//! simulator answers with a random network, random disk delays and a trace; the checker with a
//! set of messages in flight and writes that complete only when it chooses.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use raft_core::{
    Index, Message, MessageSummary, NodeId, RaftCore, Role, SnapshotChunkRequest, SnapshotMeta, SoftState,
};

use crate::invariants::{self, Observer, Violation};
use crate::log_mirror::{entry_hash, extend_chain};
use crate::node::{decode_snapshot, encode_snapshot, PendingWrite, SimNode};
use crate::trace::Event;

/// What the world outside the nodes does with their output.
pub(crate) trait Effects {
    /// Hands a message to the network.
    fn send(&mut self, message: Message);
    /// The time at which a write issued now becomes durable at the earliest.
    fn durable_at(&mut self) -> u64;
    /// Notes an event.
    fn record(&mut self, event: Event);
}

/// The nodes, and what the checks remember across steps.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cluster {
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    pub(crate) observer: Observer,
    /// Each running node's soft state after its last `Ready`.
    soft_states: BTreeMap<NodeId, SoftState>,
    /// Reads asked and not yet served: id -> (node, commit index reached when asked).
    reads: BTreeMap<u64, (NodeId, u64)>,
    next_read: u64,
    /// The highest index any state machine applied.
    pub(crate) max_applied: Index,
}

impl Hash for Cluster {
    /// Everything that decides what can happen next and what the checks would say about it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        for node in self.nodes.values() {
            node.hash_state(state);
        }
        self.observer.hash(state);
        self.reads.hash(state);
    }
}

impl Cluster {
    pub(crate) fn new(nodes: BTreeMap<NodeId, SimNode>) -> Self {
        Cluster {
            nodes,
            ..Cluster::default()
        }
    }

    pub(crate) fn core(&self, id: NodeId) -> Option<&RaftCore> {
        self.nodes.get(&id).and_then(|n| n.core.as_ref())
    }

    pub(crate) fn core_mut(&mut self, id: NodeId) -> Option<&mut RaftCore> {
        self.nodes.get_mut(&id).and_then(|n| n.core.as_mut())
    }

    pub(crate) fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(SimNode::is_up)
    }

    /// The running leader of the highest term, if any.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.core.as_ref())
            .filter(|c| c.role() == Role::Leader)
            .max_by_key(|c| c.term())
            .map(|c| c.id())
    }

    /// Loses `id`'s process (its unsynced writes, its state machine); it is due back at
    /// `restart_at`. Returns how many writes were lost.
    pub(crate) fn crash(&mut self, id: NodeId, restart_at: u64, fx: &mut impl Effects) -> usize {
        let Some(node) = self.nodes.get_mut(&id).filter(|n| n.is_up()) else {
            return 0;
        };
        let lost = node.pending.len();
        node.crash(restart_at);
        fx.record(Event::Crash {
            node: id,
            lost_writes: lost,
        });
        lost
    }

    /// Starts `id` again from its disk.
    pub(crate) fn restart(&mut self, id: NodeId, fx: &mut impl Effects) -> Result<(), Violation> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        node.restart()
            .map_err(|error| Violation::Unexpected { node: id, error })?;
        if node.applied > 0 {
            invariants::check_restored_state(&self.observer, id, node.applied, node.state)?;
        }
        let (term, last_index) = node
            .core
            .as_ref()
            .map_or((0, 0), |c| (c.term(), c.status().last_log_index));
        self.soft_states.remove(&id);
        fx.record(Event::Restart {
            node: id,
            term,
            last_index,
        });
        Ok(())
    }

    /// Makes `id`'s writes due by `now` durable, in order, and carries out what waited on them.
    pub(crate) fn complete_due_writes(
        &mut self,
        id: NodeId,
        now: u64,
        fx: &mut impl Effects,
    ) -> Result<(), Violation> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let done = node
            .complete_writes(now)
            .map_err(|error| Violation::Unexpected { node: id, error })?;
        for write in done {
            self.write_completed(id, write, fx)?;
        }
        Ok(())
    }

    /// Makes `id`'s oldest pending write durable. Returns whether there was one.
    pub(crate) fn complete_next_write(
        &mut self,
        id: NodeId,
        fx: &mut impl Effects,
    ) -> Result<bool, Violation> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(false);
        };
        let Some(write) = node
            .complete_next_write()
            .map_err(|error| Violation::Unexpected { node: id, error })?
        else {
            return Ok(false);
        };
        self.write_completed(id, write, fx)?;
        Ok(true)
    }

    fn write_completed(
        &mut self,
        id: NodeId,
        write: PendingWrite,
        fx: &mut impl Effects,
    ) -> Result<(), Violation> {
        let hard_state = self.nodes[&id].disk.log.hard_state;
        invariants::check_durable_state(&mut self.observer, id, hard_state)?;
        fx.record(Event::Durable {
            node: id,
            last_index: write.persisted.map(|(i, _)| i),
            term: hard_state.term,
        });
        for message in write.messages {
            fx.send(message);
        }
        if let (Some((index, term)), Some(core)) = (write.persisted, self.core_mut(id)) {
            core.on_persisted(index, term);
        }
        if let Some(meta) = write.restore {
            self.restore_state_machine(id, &meta, fx)?;
        }
        Ok(())
    }

    /// Restores `id`'s state machine from the durable snapshot `meta` received from a leader.
    fn restore_state_machine(
        &mut self,
        id: NodeId,
        meta: &SnapshotMeta,
        fx: &mut impl Effects,
    ) -> Result<(), Violation> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let decoded = node
            .disk
            .snapshots
            .get(&meta.index)
            .and_then(|data| decode_snapshot(data));
        let Some((index, state)) = decoded.filter(|(index, _)| *index == meta.index) else {
            return Err(Violation::Unexpected {
                node: id,
                error: format!("snapshot {} unreadable after install", meta.index),
            });
        };
        invariants::check_restored_state(&self.observer, id, index, state)?;
        node.applied = index;
        node.state = state;
        fx.record(Event::SnapshotInstalled { node: id, index });
        if let Some(core) = node.core.as_mut() {
            core.on_applied(index);
        }
        Ok(())
    }

    /// Hands `message` to its recipient, which must be running.
    pub(crate) fn deliver(&mut self, message: Message, fx: &mut impl Effects) -> Result<(), Violation> {
        let to = message.to;
        fx.record(Event::Deliver(MessageSummary::of(&message)));
        if let Some(core) = self.core_mut(to) {
            core.step(message).map_err(|e| Violation::Unexpected {
                node: to,
                error: format!("refused a message: {e}"),
            })?;
        }
        Ok(())
    }

    /// Offers `command` to `id`; returns its index if `id` leads and accepted it.
    pub(crate) fn propose(&mut self, id: NodeId, command: Bytes, fx: &mut impl Effects) -> Option<Index> {
        let core = self.core_mut(id)?;
        let index = core.propose(command).ok()?;
        let term = core.term();
        fx.record(Event::Propose {
            node: id,
            index,
            term,
        });
        Some(index)
    }

    /// Asks `id` for a read (from its lease, or by ReadIndex); returns whether it took it.
    pub(crate) fn read(&mut self, id: NodeId, lease: bool, fx: &mut impl Effects) -> bool {
        self.next_read += 1;
        let read = self.next_read;
        let committed_before = self.observer.committed.len();
        let Some(core) = self.core_mut(id) else {
            return false;
        };
        let asked = if lease {
            core.lease_read(read).is_ok()
        } else {
            core.read_index(read).is_ok()
        };
        if asked {
            self.reads.insert(read, (id, committed_before));
            fx.record(Event::Read {
                node: id,
                id: read,
                lease,
            });
        }
        asked
    }

    /// Asks `leader` to move to `voters` and `learners`; returns the change's index if it began.
    pub(crate) fn change_membership(
        &mut self,
        leader: NodeId,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        fx: &mut impl Effects,
    ) -> Option<Index> {
        let core = self.core_mut(leader)?;
        let index = core.change_membership(voters.clone(), learners.clone()).ok()?;
        fx.record(Event::Reconfigure {
            leader,
            index,
            voters: bits(&voters),
            learners: bits(&learners),
        });
        Some(index)
    }

    /// Asks `leader` to hand its leadership to `target`; returns whether it began.
    pub(crate) fn transfer_leadership(
        &mut self,
        leader: NodeId,
        target: NodeId,
        fx: &mut impl Effects,
    ) -> bool {
        let Some(core) = self.core_mut(leader) else {
            return false;
        };
        let began = core.transfer_leadership(target).is_ok();
        if began {
            fx.record(Event::Transfer {
                from: leader,
                to: target,
            });
        }
        began
    }

    /// Carries out one node's `Ready`: send, queue the write, apply what is committed.
    pub(crate) fn carry_out_ready(&mut self, id: NodeId, fx: &mut impl Effects) -> Result<(), Violation> {
        let Some(mut ready) = self.core_mut(id).map(|core| core.ready()) else {
            return Ok(());
        };
        if let Some(soft) = ready.soft_state {
            let previous = self.soft_states.insert(id, soft);
            if previous.map(|p| (p.role, p.term)) != Some((soft.role, soft.term)) {
                fx.record(Event::Role {
                    node: id,
                    role: soft.role,
                    term: soft.term,
                });
            }
        }
        // A snapshot from the leader makes the committed prefix up to it the logical log (entries
        // it covers may never have been handed out to this node's storage), followed by the
        // node's own entries after it unless they disagreed and were discarded.
        let mut mirror_reset = None;
        if let Some(update) = ready.snapshot.as_ref().filter(|u| u.restore) {
            let prefix =
                self.observer
                    .committed
                    .prefix(update.meta.index)
                    .ok_or_else(|| Violation::Unexpected {
                        node: id,
                        error: format!(
                            "installed snapshot {} beyond the committed log",
                            update.meta.index
                        ),
                    })?;
            mirror_reset = Some((prefix, update.discard_log));
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            if let Some((prefix, discard)) = &mirror_reset {
                node.mirror = node.mirror.rebase(prefix, *discard);
            }
            node.mirror.write(&ready.entries);
        }
        let persisted = ready.persisted_up_to();
        let write_needed = ready.needs_persist() || !ready.messages_after_persist.is_empty();
        let (write, restore) = ready.take_log_write();
        for message in ready.messages {
            fx.send(message);
        }
        self.send_snapshot_chunks(id, ready.snapshot_sends, fx);
        if write_needed {
            let durable_at = fx.durable_at();
            if let Some(node) = self.nodes.get_mut(&id) {
                // The core's contract: one restore at a time (the state machine restores from the
                // snapshot the store still keeps).
                if let Some(meta) = restore.as_ref() {
                    if let Some(earlier) = node.pending.iter().find_map(|w| w.restore.as_ref()) {
                        return Err(Violation::Unexpected {
                            node: id,
                            error: format!(
                                "snapshot {} handed out to restore while snapshot {} is still to be restored",
                                meta.index, earlier.index
                            ),
                        });
                    }
                }
                let after = node.pending.back().map_or(0, |w| w.durable_at);
                node.pending.push_back(PendingWrite {
                    write,
                    persisted,
                    messages: ready.messages_after_persist,
                    chunks: ready.received_chunks,
                    restore,
                    mirror_reset,
                    durable_at: after.max(durable_at),
                });
            }
        }
        if let Some(node) = self.nodes.get(&id) {
            invariants::check_committed_prefix(&mut self.observer, node)?;
        }
        for read in &ready.read_states {
            if let Some((asked_on, committed_before)) = self.reads.remove(&read.id) {
                fx.record(Event::ReadReady {
                    node: id,
                    id: read.id,
                    index: read.index,
                });
                debug_assert_eq!(asked_on, id);
                invariants::check_read_freshness(id, read.id, read.index, committed_before)?;
            }
        }
        for (read, _) in &ready.read_failures {
            self.reads.remove(read);
        }
        let mut last_applied = None;
        for entry in ready.committed_entries.iter() {
            let Some(node) = self.nodes.get_mut(&id) else {
                break;
            };
            invariants::check_applied_entry(&self.observer, node, entry)?;
            node.applied = entry.index;
            node.state = extend_chain(node.state, entry_hash(entry));
            last_applied = Some(entry.index);
        }
        if let Some(index) = last_applied {
            fx.record(Event::Commit { node: id, index });
            self.max_applied = self.max_applied.max(index);
            if let Some(core) = self.core_mut(id) {
                core.on_applied(index);
            }
        }
        if ready.build_snapshot {
            self.build_snapshot(id, fx);
        }
        Ok(())
    }

    /// `id`'s state machine writes a snapshot of its state (at once) and reports it.
    fn build_snapshot(&mut self, id: NodeId, fx: &mut impl Effects) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let (index, state) = (node.applied, node.state);
        let (data, checksum) = encode_snapshot(index, state);
        node.disk.snapshots.insert(index, data);
        if let Some(core) = node.core.as_mut() {
            if core
                .on_snapshot_built(index, checksum.size(), checksum.value())
                .is_some()
            {
                fx.record(Event::SnapshotBuilt { node: id, index });
            }
        }
    }

    /// Reads the snapshot chunks a leader asked for and sends them.
    fn send_snapshot_chunks(
        &mut self,
        id: NodeId,
        requests: Vec<SnapshotChunkRequest>,
        fx: &mut impl Effects,
    ) {
        for request in requests {
            let data = self
                .nodes
                .get(&id)
                .and_then(|n| n.disk.snapshots.get(&request.meta.index))
                .map(|data| {
                    let start = (request.offset as usize).min(data.len());
                    let end = ((request.offset + request.len) as usize).min(data.len());
                    data.slice(start..end)
                });
            if let Some(data) = data {
                fx.send(request.into_message(data));
            }
        }
    }

    /// The checks of the whole cluster after a step.
    pub(crate) fn check_invariants(&mut self) -> Result<(), Violation> {
        for node in self.nodes.values_mut() {
            invariants::check_running_state(node)?;
        }
        for node in self.nodes.values() {
            invariants::check_election_safety(&mut self.observer, node)?;
            invariants::check_leader_append_only(&mut self.observer, node)?;
            invariants::check_leader_completeness(&self.observer, node)?;
            invariants::check_committed_prefix(&mut self.observer, node)?;
        }
        let nodes: Vec<&SimNode> = self.nodes.values().collect();
        invariants::check_log_matching(&nodes)
    }

    /// One line per node (and per follower of a leader), for a failure report.
    pub(crate) fn describe_nodes(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for node in self.nodes.values() {
            let Some(core) = &node.core else {
                lines.push(format!(
                    "node {}: down, disk last index {}",
                    node.id,
                    node.disk.mirror.len()
                ));
                continue;
            };
            let s = core.status();
            lines.push(format!(
                "node {}: {} term {} leader {:?} commit {} applied {} persisted {} last {} pending writes {} config {:?}",
                s.id,
                s.role,
                s.term,
                s.leader,
                s.commit_index,
                s.applied_index,
                s.persisted_index,
                s.last_log_index,
                node.pending.len(),
                core.membership()
            ));
            for peer in self.nodes.keys() {
                if let Some(p) = core.follower_progress(*peer) {
                    lines.push(format!("    follower {peer}: {p:?}"));
                }
            }
        }
        lines
    }
}

/// A set of node ids as a bit set (bit i = node i + 1), for compact traces.
pub(crate) fn bits(ids: &BTreeSet<NodeId>) -> u64 {
    ids.iter().fold(0, |acc, id| acc | (1 << (id - 1)))
}

//! The simulated world: one seed drives every choice, and the invariants are checked after every
//! step.
//!
//! A step is the smallest unit of simulated time. In each step, in this order: faults may strike
//! (during the chaos phase), crashed nodes due back restart, writes due become durable (and
//! release the messages that waited on them), messages due are delivered, nodes whose clock is due
//! tick, a proposal may arrive, every running node's `Ready` is carried out, and the invariants
//! are checked. Nothing depends on wall-clock time or on iteration order of a hash map, so a
//! seed replays exactly.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use raft_core::{
    Config, Membership, MessageSummary, NodeId, Role, SeededRng, SnapshotChunkRequest, SnapshotMeta,
    SoftState,
};

use crate::hostile::{self, Expect};
use crate::invariants::{self, Observer, Violation};
use crate::log_mirror::{entry_hash, extend_chain};
use crate::network::{Network, SendOutcome};
use crate::node::{decode_snapshot, encode_snapshot, PendingWrite, SimNode};
use crate::options::SimOptions;
use crate::trace::{Event, Trace};

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Steps simulated.
    pub steps: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost (random drop, partition, or recipient down).
    pub lost: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Proposals accepted by a leader.
    pub proposals: u64,
    /// Highest commit index reached.
    pub committed: u64,
    /// Times a node became leader.
    pub elections: u64,
    /// Crashes.
    pub crashes: u64,
    /// Writes lost in crashes.
    pub lost_writes: u64,
    /// Disk failures injected (writes failed, not acknowledged, the node stopped).
    pub disk_failures: u64,
    /// Hostile messages injected (each refused or ignored as it must be).
    pub hostile: u64,
    /// Partition events (isolate, split, cut).
    pub partitions: u64,
    /// Steps from the end of the faults to the first new commit.
    pub recovery_steps: u64,
    /// Snapshots built (log compactions).
    pub snapshots_built: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshot chunks sent.
    pub snapshot_chunks: u64,
}

/// The successful end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The settings the seed produced.
    pub nodes: u64,
    /// What happened.
    pub stats: SimStats,
}

/// A run that broke an invariant: the seed replays it exactly.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed that reproduces the failure.
    pub seed: u64,
    /// The step at which the invariant broke.
    pub step: u64,
    /// What broke.
    pub violation: Violation,
    /// The last events before the failure.
    pub trace: Vec<String>,
    /// Each node's state when it failed.
    pub nodes: Vec<String>,
    /// The settings of the run.
    pub options: SimOptions,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation seed {} failed at step {}: {}",
            self.seed, self.step, self.violation
        )?;
        writeln!(
            f,
            "replay: RAFT_SIM_SEED={} cargo test -p raft-sim --test simulation, or \
             cargo run -p raft-sim -- --seed {}{}",
            self.seed,
            self.seed,
            self.options
                .planted_bug
                .map(|b| format!(" --bug {b:?}"))
                .unwrap_or_default()
        )?;
        writeln!(f, "options: {:?}", self.options)?;
        writeln!(f, "nodes:")?;
        for line in &self.nodes {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "last {} events:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimFailure {}

/// Runs the simulation of `seed` with the settings the seed chooses.
///
/// ```
/// let report = raft_sim::run_seed(7).expect("no invariant breaks");
/// assert!(report.stats.committed > 0);
/// ```
pub fn run_seed(seed: u64) -> Result<SimReport, Box<SimFailure>> {
    Simulation::new(seed, SimOptions::for_seed(seed)).run()
}

/// One simulated cluster.
pub struct Simulation {
    seed: u64,
    options: SimOptions,
    rng: SeededRng,
    now: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    network: Network,
    observer: Observer,
    trace: Trace,
    stats: SimStats,
    soft_states: BTreeMap<NodeId, SoftState>,
    proposal_counter: u64,
    /// In the calm phase: the entry (index, term) whose commit proves liveness.
    liveness_marker: Option<(NodeId, u64, u64)>,
    /// The step by which liveness must be shown (set when the faults stop).
    liveness_deadline: u64,
    /// Reads asked and not yet served: id -> (node, commit index reached when asked).
    reads: BTreeMap<u64, (NodeId, u64)>,
    next_read: u64,
}

impl Simulation {
    /// A cluster of `options.nodes` fresh nodes.
    pub fn new(seed: u64, options: SimOptions) -> Self {
        let mut rng = SeededRng::new(seed);
        let ids: Vec<NodeId> = (1..=options.nodes + options.spare_nodes).collect();
        let membership = Membership::voters(1..=options.nodes).unwrap_or_default();
        let mut nodes = BTreeMap::new();
        for id in ids {
            // Spare nodes start outside the cluster and learn their configuration from a leader.
            let initial = if id <= options.nodes {
                membership.clone()
            } else {
                Membership::default()
            };
            let mut config = Config::new(id)
                .with_election_timeout_ticks(options.election_ticks)
                .with_heartbeat_interval_ticks(options.heartbeat_ticks)
                .with_pre_vote(options.pre_vote)
                .with_check_quorum(options.check_quorum)
                .with_seed(rng.next_u64());
            config.max_entries_per_message = options.max_entries_per_message;
            config.max_inflight_messages = options.max_inflight_messages;
            config.max_uncommitted_entries = options.max_uncommitted_entries;
            config.snapshot_after_entries = options.snapshot_after_entries;
            config.snapshot_after_log_bytes = 0;
            config.snapshot_keep_entries = options.snapshot_keep_entries;
            config.snapshot_chunk_bytes = options.snapshot_chunk_bytes;
            config.snapshot_chunks_in_flight = options.snapshot_chunks_in_flight;
            config.max_promotion_lag_entries = options.max_promotion_lag_entries;
            config.planted_bug = options.planted_bug;
            // A lease must outlast no follower's election timeout: cover the clock skew (periods
            // differ by up to 2 x skew) plus one tick of rounding.
            config.lease_reads = options.lease_reads && options.check_quorum;
            let fastest = options.tick_period - options.tick_skew;
            let slowest = options.tick_period + options.tick_skew;
            let skew_ticks = u64::from(options.election_ticks) * (slowest - fastest);
            config.lease_clock_drift_ticks = (skew_ticks.div_ceil(slowest) + 1) as u32;
            let skew = options.tick_skew;
            let period = options.tick_period - skew + rng.below(2 * skew + 1);
            nodes.insert(id, SimNode::new(id, config, &initial, period));
        }
        let network = Network::new(
            options.drop_probability,
            options.duplicate_probability,
            options.max_delay,
        );
        Simulation {
            seed,
            options,
            rng,
            now: 0,
            nodes,
            network,
            observer: Observer::default(),
            trace: Trace::new(400),
            stats: SimStats::default(),
            soft_states: BTreeMap::new(),
            proposal_counter: 0,
            liveness_marker: None,
            liveness_deadline: u64::MAX,
            reads: BTreeMap::new(),
            next_read: 0,
        }
    }

    /// Runs the chaos phase, then the calm phase until the cluster commits a new entry.
    pub fn run(mut self) -> Result<SimReport, Box<SimFailure>> {
        while self.now < self.liveness_deadline {
            match self.step() {
                Ok(true) => {
                    self.stats.steps = self.now;
                    self.stats.recovery_steps = self.now - self.options.chaos_steps;
                    return Ok(SimReport {
                        seed: self.seed,
                        nodes: self.options.nodes,
                        stats: self.stats,
                    });
                }
                Ok(false) => {}
                Err(violation) => return Err(self.failure(violation)),
            }
        }
        let steps = self.liveness_deadline - self.options.chaos_steps;
        Err(self.failure(Violation::Liveness { steps }))
    }

    fn failure(&self, violation: Violation) -> Box<SimFailure> {
        Box::new(SimFailure {
            seed: self.seed,
            step: self.now,
            violation,
            trace: self.trace.lines(),
            nodes: self.describe_nodes(),
            options: self.options.clone(),
        })
    }

    fn describe_nodes(&self) -> Vec<String> {
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

    /// One step of simulated time. Returns whether liveness has been shown (calm phase only).
    fn step(&mut self) -> Result<bool, Violation> {
        self.now += 1;
        let chaos = self.now < self.options.chaos_steps;
        if self.now == self.options.chaos_steps {
            self.calm_down()?;
        }
        if chaos {
            self.inject_faults();
        }
        self.restart_due_nodes()?;
        self.complete_writes()?;
        self.deliver_messages()?;
        self.tick_nodes();
        if chaos && self.rng.chance(self.options.propose_probability) {
            self.propose_somewhere();
        }
        if chaos && self.rng.chance(self.options.read_probability) {
            self.read_somewhere();
        }
        if chaos && self.rng.chance(self.options.transfer_probability) {
            self.transfer_leadership();
        }
        // Drawn only when the fault is on, so seeds without it replay as before.
        if chaos
            && self.options.hostile_probability > 0.0
            && self.rng.chance(self.options.hostile_probability)
        {
            self.inject_hostile()?;
        }
        // Without pre-vote, a removed server that never learns of its removal, or a new voter
        // with a stale log and configuration, raises the term and votes for itself again and
        // again, and can keep the electable nodes from winning for a long time (Raft thesis
        // §4.2.3). Check-quorum defends only a live leader; once the leader is gone only pre-vote
        // keeps such a node from disrupting (seed 1011261). So changes are tested with pre-vote.
        let defended = self.options.pre_vote;
        if chaos && defended && self.rng.chance(self.options.membership_change_probability) {
            self.change_membership();
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in &ids {
            self.carry_out_ready(*id)?;
        }
        self.check_invariants()?;
        Ok(!chaos && self.liveness_shown())
    }

    fn inject_faults(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        if self.rng.chance(self.options.crash_probability) {
            let up: Vec<NodeId> = ids.iter().copied().filter(|id| self.nodes[id].is_up()).collect();
            if !up.is_empty() {
                let victim = up[self.rng.below(up.len() as u64) as usize];
                self.crash_node(victim);
            }
        }
        if self.rng.chance(self.options.partition_probability) {
            self.stats.partitions += 1;
            match self.rng.below(4) {
                0 => {
                    // Prefer isolating the leader: that is where the interesting cases are.
                    let leader = self.leader();
                    let victim = match leader {
                        Some(l) if self.rng.chance(0.6) => l,
                        _ => ids[self.rng.below(ids.len() as u64) as usize],
                    };
                    self.network.isolate(victim, &ids);
                    self.trace.record(self.now, Event::Isolate { node: victim });
                }
                1 => {
                    let mut group = 0u64;
                    for id in &ids {
                        if self.rng.chance(0.5) {
                            group |= 1 << (id - 1);
                        }
                    }
                    for a in &ids {
                        for b in &ids {
                            let side = |id: &NodeId| group & (1 << (id - 1)) != 0;
                            if side(a) != side(b) {
                                self.network.block(*a, *b);
                            }
                        }
                    }
                    self.trace.record(self.now, Event::Split { group });
                }
                2 => {
                    let from = ids[self.rng.below(ids.len() as u64) as usize];
                    let to = ids[self.rng.below(ids.len() as u64) as usize];
                    if from != to {
                        self.network.block(from, to);
                        self.trace.record(self.now, Event::Cut { from, to });
                    }
                }
                _ => {
                    self.network.heal();
                    self.trace.record(self.now, Event::Heal);
                }
            }
        }
    }

    /// Crashes `victim` (when it runs), losing its unsynced writes; it restarts within
    /// `max_down_steps`.
    fn crash_node(&mut self, victim: NodeId) {
        if !self.nodes.get(&victim).is_some_and(|n| n.is_up()) {
            return;
        }
        let back_at = self.now + 1 + self.rng.below(self.options.max_down_steps);
        if let Some(node) = self.nodes.get_mut(&victim) {
            let lost = node.pending.len();
            node.crash(back_at);
            self.stats.crashes += 1;
            self.stats.lost_writes += lost as u64;
            self.trace.record(
                self.now,
                Event::Crash {
                    node: victim,
                    lost_writes: lost,
                },
            );
        }
    }

    /// Faults stop: the network heals and stops losing messages, and crashed nodes come back.
    fn calm_down(&mut self) -> Result<(), Violation> {
        self.trace.record(self.now, Event::Calm);
        self.liveness_deadline = self.now + self.liveness_allowance();
        self.network.heal();
        self.network.drop_probability = 0.0;
        self.network.duplicate_probability = 0.0;
        for node in self.nodes.values_mut() {
            if !node.is_up() {
                node.restart_at = Some(self.now);
            }
        }
        Ok(())
    }

    fn restart_due_nodes(&mut self) -> Result<(), Violation> {
        let now = self.now;
        for node in self.nodes.values_mut() {
            if node.restart_at.is_some_and(|at| at <= now) {
                node.restart()
                    .map_err(|error| Violation::Unexpected { node: node.id, error })?;
                if node.applied > 0 {
                    invariants::check_restored_state(&self.observer, node.id, node.applied, node.state)?;
                }
                let (term, last_index) = node
                    .core
                    .as_ref()
                    .map_or((0, 0), |c| (c.term(), c.status().last_log_index));
                node.next_tick = now + node.tick_period;
                self.soft_states.remove(&node.id);
                self.trace.record(
                    now,
                    Event::Restart {
                        node: node.id,
                        term,
                        last_index,
                    },
                );
            }
        }
        Ok(())
    }

    /// Sends one hostile message to a running node and checks that it sees through it.
    fn inject_hostile(&mut self) -> Result<(), Violation> {
        let up: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.core.is_some())
            .map(|n| n.id)
            .collect();
        if up.len() < 2 {
            return Ok(());
        }
        let leader = self.leader();
        let (to, message, expect) = match leader {
            Some(leader) if self.rng.chance(0.3) => {
                let term = self.core_mut(leader).map_or(0, |c| c.term());
                let message = hostile::outsider_message(&mut self.rng, leader, term);
                (leader, message, Expect::IgnoredByLeader)
            }
            _ => {
                let to = up[self.rng.below(up.len() as u64) as usize];
                let others: Vec<NodeId> = self.nodes.keys().copied().filter(|id| *id != to).collect();
                let from = others[self.rng.below(others.len() as u64) as usize];
                let term = self.core_mut(to).map_or(0, |c| c.term());
                let message = hostile::refused_message(&mut self.rng, from, to, term);
                (to, message, Expect::Refused)
            }
        };
        let summary = MessageSummary::of(&message);
        let Some(core) = self.core_mut(to) else {
            return Ok(());
        };
        let before = (core.status(), core.role(), core.term());
        let stepped = core.step(message);
        let after = (core.status(), core.role(), core.term());
        let fooled = match expect {
            Expect::Refused if stepped.is_ok() => Some("accepted a message no honest peer sends"),
            Expect::Refused if after != before => Some("refused a hostile message but changed its state"),
            Expect::IgnoredByLeader if (after.1, after.2) != (before.1, before.2) => {
                Some("a leader was moved by a message from outside its configuration")
            }
            _ => None,
        };
        self.stats.hostile += 1;
        let outcome = match (&stepped, fooled) {
            (_, Some(what)) => what,
            (Err(_), None) => "refused",
            (Ok(()), None) => "ignored",
        };
        self.trace.record(
            self.now,
            Event::Hostile {
                message: summary,
                outcome,
            },
        );
        match fooled {
            Some(what) => Err(Violation::Unexpected {
                node: to,
                error: format!("hostile {summary}: {what}"),
            }),
            None => Ok(()),
        }
    }

    /// A disk failure on `id`: the writes due now fail. They are not acknowledged and their
    /// messages are not sent; they reach the disk or not, as drawn; the node stops (it must not
    /// go on trusting a disk that failed) and restarts later.
    fn fail_disk(&mut self, id: NodeId) -> Result<(), Violation> {
        let kept = self.rng.chance(0.5);
        let back_at = self.now + 1 + self.rng.below(self.options.max_down_steps);
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let failed = if kept {
            node.complete_writes(self.now)
                .map_err(|error| Violation::Unexpected { node: id, error })?
                .len()
        } else {
            node.pending.iter().filter(|w| w.durable_at <= self.now).count()
        };
        node.crash(back_at);
        self.stats.disk_failures += 1;
        self.trace.record(
            self.now,
            Event::DiskFailure {
                node: id,
                failed_writes: failed,
                kept,
            },
        );
        Ok(())
    }

    fn complete_writes(&mut self) -> Result<(), Violation> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let chaos = self.now < self.options.chaos_steps;
        for id in ids {
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            let due = node.pending.front().is_some_and(|w| w.durable_at <= self.now);
            // Drawn only when the fault is on, so seeds without it replay as before.
            if chaos
                && due
                && self.options.disk_failure_probability > 0.0
                && self.rng.chance(self.options.disk_failure_probability)
            {
                self.fail_disk(id)?;
                continue;
            }
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            let done: Vec<PendingWrite> = node
                .complete_writes(self.now)
                .map_err(|error| Violation::Unexpected { node: id, error })?;
            for write in done {
                let hard_state = self.nodes[&id].disk.log.hard_state;
                invariants::check_durable_state(&mut self.observer, id, hard_state)?;
                self.trace.record(
                    self.now,
                    Event::Durable {
                        node: id,
                        last_index: write.persisted.map(|(i, _)| i),
                        term: hard_state.term,
                    },
                );
                for message in write.messages {
                    self.send(message);
                }
                if let (Some((index, term)), Some(core)) = (write.persisted, self.core_mut(id)) {
                    core.on_persisted(index, term);
                }
                if let Some(meta) = write.restore {
                    self.restore_state_machine(id, &meta)?;
                }
            }
        }
        Ok(())
    }

    /// Restores `id`'s state machine from the durable snapshot `meta` received from a leader.
    fn restore_state_machine(&mut self, id: NodeId, meta: &SnapshotMeta) -> Result<(), Violation> {
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
        self.stats.snapshots_installed += 1;
        self.trace
            .record(self.now, Event::SnapshotInstalled { node: id, index });
        if let Some(core) = self.core_mut(id) {
            core.on_applied(index);
        }
        Ok(())
    }

    /// `id`'s state machine writes a snapshot of its state (at once) and reports it.
    fn build_snapshot(&mut self, id: NodeId) {
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
                self.stats.snapshots_built += 1;
                self.trace
                    .record(self.now, Event::SnapshotBuilt { node: id, index });
            }
        }
    }

    /// Reads the snapshot chunks a leader asked for and sends them.
    fn send_snapshot_chunks(&mut self, id: NodeId, requests: Vec<SnapshotChunkRequest>) {
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
                self.stats.snapshot_chunks += 1;
                self.send(request.into_message(data));
            }
        }
    }

    fn deliver_messages(&mut self) -> Result<(), Violation> {
        for message in self.network.due(self.now) {
            let summary = MessageSummary::of(&message);
            let (from, to) = (message.from, message.to);
            let why = if self.network.is_blocked(from, to) {
                Some("partition")
            } else if !self.nodes.get(&to).is_some_and(SimNode::is_up) {
                Some("recipient down")
            } else {
                None
            };
            if let Some(why) = why {
                self.stats.lost += 1;
                let lost = Event::Lost {
                    message: summary,
                    why,
                };
                self.trace.record(self.now, lost);
                continue;
            }
            self.stats.delivered += 1;
            self.trace.record(self.now, Event::Deliver(summary));
            if let Some(core) = self.core_mut(to) {
                core.step(message).map_err(|e| Violation::Unexpected {
                    node: to,
                    error: format!("refused a message: {e}"),
                })?;
            }
        }
        Ok(())
    }

    fn tick_nodes(&mut self) {
        let now = self.now;
        for node in self.nodes.values_mut() {
            if node.next_tick <= now {
                node.next_tick = now + node.tick_period;
                if let Some(core) = node.core.as_mut() {
                    core.tick();
                }
            }
        }
    }

    fn propose_somewhere(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let target = ids[self.rng.below(ids.len() as u64) as usize];
        self.proposal_counter += 1;
        let command = Bytes::from(format!("s{}-p{}", self.seed, self.proposal_counter));
        if let Some(core) = self.core_mut(target) {
            if let Ok(index) = core.propose(command) {
                let term = core.term();
                self.stats.proposals += 1;
                self.trace.record(
                    self.now,
                    Event::Propose {
                        node: target,
                        index,
                        term,
                    },
                );
            }
        }
    }

    /// Asks a random node for a read: a lease read on the leader half the time (when leases are
    /// on), otherwise ReadIndex.
    fn read_somewhere(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let target = ids[self.rng.below(ids.len() as u64) as usize];
        self.next_read += 1;
        let id = self.next_read;
        let committed_before = self.observer.committed.len();
        let lease = self.rng.chance(0.5);
        let Some(core) = self.core_mut(target) else { return };
        let asked = if lease {
            core.lease_read(id).is_ok()
        } else {
            core.read_index(id).is_ok()
        };
        if asked {
            self.reads.insert(id, (target, committed_before));
            self.trace.record(
                self.now,
                Event::Read {
                    node: target,
                    id,
                    lease,
                },
            );
        }
    }

    /// The leader moves to a random configuration over all node ids: some voters, some learners.
    fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut voters = std::collections::BTreeSet::new();
        let mut learners = std::collections::BTreeSet::new();
        for id in &ids {
            match self.rng.below(4) {
                0 => {
                    learners.insert(*id);
                }
                1 => {}
                _ => {
                    voters.insert(*id);
                }
            }
        }
        if voters.is_empty() {
            voters.insert(ids[self.rng.below(ids.len() as u64) as usize]);
            learners.retain(|id| !voters.contains(id));
        }
        let single = self.options.single_voter_probability;
        if single > 0.0 && self.rng.chance(single) {
            // Shrink to one voter; everyone else stays on as a learner.
            let voter = ids[self.rng.below(ids.len() as u64) as usize];
            voters = [voter].into();
            learners = ids.iter().copied().filter(|id| *id != voter).collect();
        }
        let Some(core) = self.core_mut(leader) else {
            return;
        };
        let Ok(index) = core.change_membership(voters.clone(), learners.clone()) else {
            return;
        };
        self.trace.record(
            self.now,
            Event::Reconfigure {
                leader,
                index,
                voters: bits(&voters),
                learners: bits(&learners),
            },
        );
        let crash = self.options.crash_after_change_probability;
        if crash > 0.0 && self.rng.chance(crash) {
            let victim = if self.rng.chance(0.5) {
                leader
            } else {
                ids[self.rng.below(ids.len() as u64) as usize]
            };
            self.crash_node(victim);
        }
    }

    fn transfer_leadership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let ids: Vec<NodeId> = self.nodes.keys().copied().filter(|id| *id != leader).collect();
        let target = ids[self.rng.below(ids.len() as u64) as usize];
        if let Some(core) = self.core_mut(leader) {
            if core.transfer_leadership(target).is_ok() {
                self.trace.record(
                    self.now,
                    Event::Transfer {
                        from: leader,
                        to: target,
                    },
                );
            }
        }
    }

    /// Carries out one node's `Ready`: send, queue the write, apply what is committed.
    fn carry_out_ready(&mut self, id: NodeId) -> Result<(), Violation> {
        let Some(mut ready) = self.core_mut(id).map(|core| core.ready()) else {
            return Ok(());
        };
        if let Some(soft) = ready.soft_state {
            let previous = self.soft_states.insert(id, soft);
            if previous.map(|p| (p.role, p.term)) != Some((soft.role, soft.term)) {
                self.trace.record(
                    self.now,
                    Event::Role {
                        node: id,
                        role: soft.role,
                        term: soft.term,
                    },
                );
                if soft.role == Role::Leader {
                    self.stats.elections += 1;
                }
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
            self.send(message);
        }
        self.send_snapshot_chunks(id, ready.snapshot_sends);
        if write_needed {
            let delay = 1 + self.rng.below(self.options.max_disk_delay);
            let now = self.now;
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
                    durable_at: after.max(now + delay),
                });
            }
        }
        if let Some(node) = self.nodes.get(&id) {
            invariants::check_committed_prefix(&mut self.observer, node)?;
        }
        for read in &ready.read_states {
            if let Some((asked_on, committed_before)) = self.reads.remove(&read.id) {
                self.trace.record(
                    self.now,
                    Event::ReadReady {
                        node: id,
                        id: read.id,
                        index: read.index,
                    },
                );
                debug_assert_eq!(asked_on, id);
                invariants::check_read_freshness(id, read.id, read.index, committed_before)?;
            }
        }
        for (read, _) in &ready.read_failures {
            self.reads.remove(read);
        }
        let mut last_applied = None;
        for entry in &ready.committed_entries {
            let Some(node) = self.nodes.get_mut(&id) else {
                break;
            };
            invariants::check_applied_entry(&self.observer, node, entry)?;
            node.applied = entry.index;
            node.state = extend_chain(node.state, entry_hash(entry));
            last_applied = Some(entry.index);
        }
        if let Some(index) = last_applied {
            self.stats.committed = self.stats.committed.max(index);
            if let Some(core) = self.core_mut(id) {
                core.on_applied(index);
            }
        }
        if ready.build_snapshot {
            self.build_snapshot(id);
        }
        Ok(())
    }

    fn send(&mut self, message: raft_core::Message) {
        let summary = MessageSummary::of(&message);
        match self.network.send(message, self.now, &mut self.rng) {
            SendOutcome::Queued => {}
            SendOutcome::Duplicated => self.stats.duplicated += 1,
            SendOutcome::Dropped => {
                self.stats.lost += 1;
                self.trace.record(
                    self.now,
                    Event::Lost {
                        message: summary,
                        why: "dropped",
                    },
                );
            }
        }
    }

    fn check_invariants(&mut self) -> Result<(), Violation> {
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

    /// How long the calm phase may take: a fixed allowance for elections, plus the time the
    /// configured pipeline needs to replicate the entries outstanding when the faults stopped
    /// (a new entry commits only after them).
    fn liveness_allowance(&self) -> u64 {
        // A node may have to receive everything it lacks before a new entry can commit (after a
        // membership change it may be a new voter), so the backlog is longest log minus shortest.
        let logs: Vec<u64> = self
            .nodes
            .values()
            .map(|n| n.disk.mirror.len().max(n.mirror.len()))
            .collect();
        let longest = logs.iter().copied().max().unwrap_or(0);
        let shortest = logs.iter().copied().min().unwrap_or(0);
        let backlog = longest - shortest;
        let o = &self.options;
        let round_trip = 2 * o.max_delay + o.max_disk_delay + 2 * o.tick_period;
        let per_round = (o.max_entries_per_message * o.max_inflight_messages) as u64;
        o.liveness_steps + backlog * round_trip.div_ceil(per_round) * 2
    }

    /// In the calm phase: proposes a marker on the leader and reports whether it committed.
    fn liveness_shown(&mut self) -> bool {
        if let Some((leader, index, term)) = self.liveness_marker {
            let committed = self
                .nodes
                .get(&leader)
                .and_then(|n| n.core.as_ref())
                .is_some_and(|c| {
                    // A leader never loses its own entries during its term (even once compacted
                    // into a snapshot, when the entry itself is no longer at hand).
                    let still_leading = c.role() == Role::Leader && c.term() == term;
                    c.status().commit_index >= index
                        && (still_leading || c.entry(index).is_some_and(|e| e.term == term))
                });
            if committed {
                return true;
            }
            let still_leading = self
                .nodes
                .get(&leader)
                .and_then(|n| n.core.as_ref())
                .is_some_and(|c| c.role() == Role::Leader && c.term() == term);
            if still_leading {
                return false;
            }
            self.liveness_marker = None;
        }
        if let Some(leader) = self.leader() {
            let command = Bytes::from(format!("s{}-liveness", self.seed));
            if let Some(core) = self.core_mut(leader) {
                if let Ok(index) = core.propose(command) {
                    let term = core.term();
                    self.liveness_marker = Some((leader, index, term));
                }
            }
        }
        false
    }

    /// The running leader of the highest term, if any.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.core.as_ref())
            .filter(|c| c.role() == Role::Leader)
            .max_by_key(|c| c.term())
            .map(|c| c.id())
    }

    fn core_mut(&mut self, id: NodeId) -> Option<&mut raft_core::RaftCore> {
        self.nodes.get_mut(&id).and_then(|n| n.core.as_mut())
    }
}

/// A set of node ids as a bit set (bit i = node i + 1), for compact traces.
fn bits(ids: &std::collections::BTreeSet<NodeId>) -> u64 {
    ids.iter().fold(0, |acc, id| acc | (1 << (id - 1)))
}

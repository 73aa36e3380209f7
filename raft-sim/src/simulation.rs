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
use raft_core::{Config, Membership, Message, MessageBody, MessageSummary, NodeId, Role, SeededRng};

use crate::cluster::{Cluster, Effects};
use crate::hostile::{self, Expect};
use crate::invariants::Violation;
use crate::network::{Network, SendOutcome};
use crate::node::SimNode;
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
    cluster: Cluster,
    network: Network,
    trace: Trace,
    stats: SimStats,
    proposal_counter: u64,
    /// In the calm phase: the entry (index, term) whose commit proves liveness.
    liveness_marker: Option<(NodeId, u64, u64)>,
    /// The step by which liveness must be shown (set when the faults stop).
    liveness_deadline: u64,
}

/// The simulator's answers to a node's output: a random network and random disk delays, with
/// every event traced and counted.
struct SimEffects<'a> {
    network: &'a mut Network,
    rng: &'a mut SeededRng,
    trace: &'a mut Trace,
    stats: &'a mut SimStats,
    now: u64,
    max_disk_delay: u64,
}

impl Effects for SimEffects<'_> {
    fn send(&mut self, message: Message) {
        if matches!(message.body, MessageBody::InstallSnapshot(_)) {
            self.stats.snapshot_chunks += 1;
        }
        let summary = MessageSummary::of(&message);
        match self.network.send(message, self.now, self.rng) {
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

    fn durable_at(&mut self) -> u64 {
        self.now + 1 + self.rng.below(self.max_disk_delay)
    }

    fn record(&mut self, event: Event) {
        match event {
            Event::Role {
                role: Role::Leader, ..
            } => self.stats.elections += 1,
            Event::Propose { .. } => self.stats.proposals += 1,
            Event::Crash { lost_writes, .. } => {
                self.stats.crashes += 1;
                self.stats.lost_writes += lost_writes as u64;
            }
            Event::Deliver(_) => self.stats.delivered += 1,
            Event::SnapshotBuilt { .. } => self.stats.snapshots_built += 1,
            Event::SnapshotInstalled { .. } => self.stats.snapshots_installed += 1,
            _ => {}
        }
        self.trace.record(self.now, event);
    }
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
            config.hold_partial_appends = options.hold_partial_appends;
            config.max_uncommitted_entries = options.max_uncommitted_entries;
            config.snapshot_after_entries = options.snapshot_after_entries;
            config.snapshot_after_log_bytes = 0;
            config.snapshot_keep_entries = options.snapshot_keep_entries;
            config.snapshot_min_log_percent = options.snapshot_min_log_percent;
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
            cluster: Cluster::new(nodes),
            network,
            trace: Trace::new(400),
            stats: SimStats::default(),
            proposal_counter: 0,
            liveness_marker: None,
            liveness_deadline: u64::MAX,
        }
    }

    /// The cluster, and the effects of its nodes' output at this step.
    fn split(&mut self) -> (&mut Cluster, SimEffects<'_>) {
        let fx = SimEffects {
            network: &mut self.network,
            rng: &mut self.rng,
            trace: &mut self.trace,
            stats: &mut self.stats,
            now: self.now,
            max_disk_delay: self.options.max_disk_delay,
        };
        (&mut self.cluster, fx)
    }

    /// Runs the chaos phase, then the calm phase until the cluster commits a new entry.
    pub fn run(mut self) -> Result<SimReport, Box<SimFailure>> {
        self.run_to_end()
    }

    /// Runs like [`Simulation::run`] and also returns the run's timeline: every role change,
    /// commit, fault and membership change, by step (the same run as without it: recording
    /// draws no random numbers).
    pub fn run_with_timeline(mut self) -> (Result<SimReport, Box<SimFailure>>, raft_timeline::Timeline) {
        self.trace.keep_for_timeline();
        let outcome = self.run_to_end();
        let title = match &outcome {
            Ok(_) => format!("simulation seed {}: every invariant held", self.seed),
            Err(failure) => format!(
                "simulation seed {}: {} at step {}",
                self.seed, failure.violation, failure.step
            ),
        };
        let timeline = crate::timeline::of_run(title, self.options.nodes, self.trace.kept());
        (outcome, timeline)
    }

    fn run_to_end(&mut self) -> Result<SimReport, Box<SimFailure>> {
        while self.now < self.liveness_deadline {
            match self.step() {
                Ok(true) => {
                    self.stats.steps = self.now;
                    self.stats.committed = self.cluster.max_applied;
                    self.stats.recovery_steps = self.now - self.options.chaos_steps;
                    return Ok(SimReport {
                        seed: self.seed,
                        nodes: self.options.nodes,
                        stats: self.stats.clone(),
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
            nodes: self.cluster.describe_nodes(),
            options: self.options.clone(),
        })
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
        let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
        let (cluster, mut fx) = self.split();
        for id in ids {
            cluster.carry_out_ready(id, &mut fx)?;
        }
        cluster.check_invariants()?;
        Ok(!chaos && self.liveness_shown())
    }

    fn inject_faults(&mut self) {
        let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
        if self.rng.chance(self.options.crash_probability) {
            let up: Vec<NodeId> = ids.iter().copied().filter(|id| self.cluster.is_up(*id)).collect();
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
                    let leader = self.cluster.leader();
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
        if !self.cluster.is_up(victim) {
            return;
        }
        let back_at = self.now + 1 + self.rng.below(self.options.max_down_steps);
        let (cluster, mut fx) = self.split();
        cluster.crash(victim, back_at, &mut fx);
    }

    /// Faults stop: the network heals and stops losing messages, and crashed nodes come back.
    fn calm_down(&mut self) -> Result<(), Violation> {
        self.trace.record(self.now, Event::Calm);
        self.liveness_deadline = self.now + self.liveness_allowance();
        self.network.heal();
        self.network.drop_probability = 0.0;
        self.network.duplicate_probability = 0.0;
        for node in self.cluster.nodes.values_mut() {
            if !node.is_up() {
                node.restart_at = Some(self.now);
            }
        }
        Ok(())
    }

    fn restart_due_nodes(&mut self) -> Result<(), Violation> {
        let now = self.now;
        let due: Vec<NodeId> = (self.cluster.nodes.values())
            .filter(|n| n.restart_at.is_some_and(|at| at <= now))
            .map(|n| n.id)
            .collect();
        for id in due {
            let (cluster, mut fx) = self.split();
            cluster.restart(id, &mut fx)?;
            if let Some(node) = self.cluster.nodes.get_mut(&id) {
                node.next_tick = now + node.tick_period;
            }
        }
        Ok(())
    }

    /// Sends one hostile message to a running node and checks that it sees through it.
    fn inject_hostile(&mut self) -> Result<(), Violation> {
        let up: Vec<NodeId> = self
            .cluster
            .nodes
            .values()
            .filter(|n| n.core.is_some())
            .map(|n| n.id)
            .collect();
        if up.len() < 2 {
            return Ok(());
        }
        let leader = self.cluster.leader();
        let (to, message, expect) = match leader {
            Some(leader) if self.rng.chance(0.3) => {
                let term = self.cluster.core(leader).map_or(0, |c| c.term());
                let message = hostile::outsider_message(&mut self.rng, leader, term);
                (leader, message, Expect::IgnoredByLeader)
            }
            _ => {
                let to = up[self.rng.below(up.len() as u64) as usize];
                let others: Vec<NodeId> = self
                    .cluster
                    .nodes
                    .keys()
                    .copied()
                    .filter(|id| *id != to)
                    .collect();
                let from = others[self.rng.below(others.len() as u64) as usize];
                let term = self.cluster.core(to).map_or(0, |c| c.term());
                let message = hostile::refused_message(&mut self.rng, from, to, term);
                (to, message, Expect::Refused)
            }
        };
        let summary = MessageSummary::of(&message);
        let Some(core) = self.cluster.core_mut(to) else {
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
        let Some(node) = self.cluster.nodes.get_mut(&id) else {
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
        let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
        let chaos = self.now < self.options.chaos_steps;
        for id in ids {
            let Some(node) = self.cluster.nodes.get(&id) else {
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
            let now = self.now;
            let (cluster, mut fx) = self.split();
            cluster.complete_due_writes(id, now, &mut fx)?;
        }
        Ok(())
    }

    fn deliver_messages(&mut self) -> Result<(), Violation> {
        for message in self.network.due(self.now) {
            let (from, to) = (message.from, message.to);
            let why = if self.network.is_blocked(from, to) {
                Some("partition")
            } else if !self.cluster.is_up(to) {
                Some("recipient down")
            } else {
                None
            };
            if let Some(why) = why {
                self.stats.lost += 1;
                let lost = Event::Lost {
                    message: MessageSummary::of(&message),
                    why,
                };
                self.trace.record(self.now, lost);
                continue;
            }
            let (cluster, mut fx) = self.split();
            cluster.deliver(message, &mut fx)?;
        }
        Ok(())
    }

    fn tick_nodes(&mut self) {
        let now = self.now;
        for node in self.cluster.nodes.values_mut() {
            if node.next_tick <= now {
                node.next_tick = now + node.tick_period;
                if let Some(core) = node.core.as_mut() {
                    core.tick();
                }
            }
        }
    }

    fn propose_somewhere(&mut self) {
        let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
        let target = ids[self.rng.below(ids.len() as u64) as usize];
        self.proposal_counter += 1;
        let command = Bytes::from(format!("s{}-p{}", self.seed, self.proposal_counter));
        let (cluster, mut fx) = self.split();
        cluster.propose(target, command, &mut fx);
    }

    /// Asks a random node for a read: a lease read on the leader half the time (when leases are
    /// on), otherwise ReadIndex.
    fn read_somewhere(&mut self) {
        let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
        let target = ids[self.rng.below(ids.len() as u64) as usize];
        let lease = self.rng.chance(0.5);
        let (cluster, mut fx) = self.split();
        cluster.read(target, lease, &mut fx);
    }

    /// The leader moves to a random configuration over all node ids: some voters, some learners.
    fn change_membership(&mut self) {
        let Some(leader) = self.cluster.leader() else {
            return;
        };
        let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
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
        let (cluster, mut fx) = self.split();
        if cluster
            .change_membership(leader, voters, learners, &mut fx)
            .is_none()
        {
            return;
        }
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
        let Some(leader) = self.cluster.leader() else {
            return;
        };
        let ids: Vec<NodeId> = self
            .cluster
            .nodes
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        let target = ids[self.rng.below(ids.len() as u64) as usize];
        let (cluster, mut fx) = self.split();
        cluster.transfer_leadership(leader, target, &mut fx);
    }

    /// How long the calm phase may take: a fixed allowance for elections, plus the time the
    /// configured pipeline needs to replicate the entries outstanding when the faults stopped
    /// (a new entry commits only after them).
    fn liveness_allowance(&self) -> u64 {
        // A node may have to receive everything it lacks before a new entry can commit (after a
        // membership change it may be a new voter), so the backlog is longest log minus shortest.
        let logs: Vec<u64> = self
            .cluster
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
            let committed = self.cluster.core(leader).is_some_and(|c| {
                // A leader never loses its own entries during its term (even once compacted
                // into a snapshot, when the entry itself is no longer at hand).
                let still_leading = c.role() == Role::Leader && c.term() == term;
                c.status().commit_index >= index
                    && (still_leading || c.entry(index).is_some_and(|e| e.term == term))
            });
            if committed {
                return true;
            }
            let still_leading =
                (self.cluster.core(leader)).is_some_and(|c| c.role() == Role::Leader && c.term() == term);
            if still_leading {
                return false;
            }
            self.liveness_marker = None;
        }
        if let Some(leader) = self.cluster.leader() {
            let command = Bytes::from(format!("s{}-liveness", self.seed));
            if let Some(core) = self.cluster.core_mut(leader) {
                if let Ok(index) = core.propose(command) {
                    let term = core.term();
                    self.liveness_marker = Some((leader, index, term));
                }
            }
        }
        false
    }
}

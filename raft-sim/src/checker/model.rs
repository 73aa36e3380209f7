//! One state of the checked world (a cluster of real cores, the messages in flight, and the
//! budget of faults and requests already spent) and every action that can follow it.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use raft_core::{Config, Membership, Message, MessageSummary, NodeId, Role};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::checker::CheckOptions;
use crate::cluster::{Cluster, Effects};
use crate::invariants::Violation;
use crate::node::SimNode;
use crate::trace::Event;

/// One step the checker can take from a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Deliver the message at this position of the state's (canonically ordered) messages.
    Deliver(usize),
    /// Lose it.
    Drop(usize),
    /// Send a second copy of it.
    Duplicate(usize),
    /// One tick of a node's clock.
    Tick(NodeId),
    /// One tick of every running node's clock, in id order (clocks that never drift apart).
    TickAll,
    /// A node's oldest pending write becomes durable.
    Persist(NodeId),
    /// A node's process dies, losing its writes not yet durable.
    Crash(NodeId),
    /// A crashed node starts again from its disk.
    Restart(NodeId),
    /// A client proposes a command to a leader.
    Propose(NodeId),
    /// A client asks a node for a ReadIndex read.
    Read(NodeId),
    /// A client asks a node for a read from its lease.
    LeaseRead(NodeId),
    /// A leader starts handing its leadership to another node.
    Transfer(NodeId, NodeId),
    /// A leader starts moving to the voters of this bit set (bit i = node i + 1); the others
    /// become learners.
    ChangeVoters(NodeId, u64),
}

/// What an action did, for a trace a person reads: the action and the message it named.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) action: Action,
    pub(crate) message: Option<MessageSummary>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = |f: &mut fmt::Formatter<'_>| match &self.message {
            Some(m) => write!(f, " {m}"),
            None => Ok(()),
        };
        match self.action {
            Action::Deliver(i) => {
                write!(f, "deliver #{i}")?;
                message(f)
            }
            Action::Drop(i) => {
                write!(f, "drop #{i}")?;
                message(f)
            }
            Action::Duplicate(i) => {
                write!(f, "duplicate #{i}")?;
                message(f)
            }
            Action::Tick(n) => write!(f, "tick {n}"),
            Action::TickAll => write!(f, "tick every node"),
            Action::Persist(n) => write!(f, "persist {n}"),
            Action::Crash(n) => write!(f, "crash {n}"),
            Action::Restart(n) => write!(f, "restart {n}"),
            Action::Propose(n) => write!(f, "propose {n}"),
            Action::Read(n) => write!(f, "read {n}"),
            Action::LeaseRead(n) => write!(f, "lease read {n}"),
            Action::Transfer(from, to) => write!(f, "transfer {from} to {to}"),
            Action::ChangeVoters(n, voters) => write!(f, "change-voters {n} {voters:#b}"),
        }
    }
}

/// What has been spent of each budget on the way to a state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Spent {
    pub(crate) ticks: u32,
    pub(crate) proposals: u32,
    pub(crate) crashes: u32,
    pub(crate) drops: u32,
    pub(crate) duplicates: u32,
    pub(crate) reads: u32,
    pub(crate) transfers: u32,
    pub(crate) changes: u32,
}

/// The checker's answers to a node's output: messages join the set in flight (or are lost when
/// it is full), writes wait for a `Persist` action, and events are kept only when asked for.
pub(crate) struct ModelEffects<'a> {
    in_flight: &'a mut Vec<Message>,
    capacity: usize,
    /// Messages sent so far (kept or lost).
    sent: usize,
    pub(crate) events: Option<&'a mut Vec<Event>>,
}

impl Effects for ModelEffects<'_> {
    fn send(&mut self, message: Message) {
        self.sent += 1;
        if self.in_flight.len() < self.capacity {
            self.in_flight.push(message);
        } else if let Some(events) = self.events.as_deref_mut() {
            events.push(Event::Lost {
                message: MessageSummary::of(&message),
                why: "network full",
            });
        }
    }

    fn durable_at(&mut self) -> u64 {
        0
    }

    fn record(&mut self, event: Event) {
        if let Some(events) = self.events.as_deref_mut() {
            events.push(event);
        }
    }
}

/// The configuration of node `id` under `options`.
pub(crate) fn node_config(options: &CheckOptions, id: NodeId) -> Config {
    let mut config = Config::new(id)
        .with_election_timeout_ticks(options.election_ticks)
        .with_heartbeat_interval_ticks(options.heartbeat_ticks)
        .with_pre_vote(options.pre_vote)
        .with_check_quorum(options.check_quorum);
    config.max_entries_per_message = options.max_entries_per_message;
    config.snapshot_after_entries = options.snapshot_after_entries;
    config.snapshot_after_log_bytes = 0;
    config.snapshot_keep_entries = 0;
    config.snapshot_chunk_bytes = 64;
    // A lease is only as safe as the bound on how far clocks drift apart: leases only with
    // clocks that tick in lockstep (one tick of rounding allowed for).
    config.lease_reads = options.lease_reads && options.lockstep_ticks;
    config.lease_clock_drift_ticks = 1;
    config.planted_bug = options.planted_bug;
    config
}

/// Carries out `id`'s ready work; with `instant_disk`, also makes every write durable at once
/// and carries out what that releases, until nothing is pending.
fn settle(
    cluster: &mut Cluster,
    id: NodeId,
    options: &CheckOptions,
    fx: &mut ModelEffects<'_>,
) -> Result<(), Violation> {
    cluster.carry_out_ready(id, fx)?;
    if options.instant_disk {
        // Each round makes at least one write durable; a core issues a bounded number in reply.
        for _ in 0..64 {
            if !cluster.complete_next_write(id, fx)? {
                break;
            }
            cluster.carry_out_ready(id, fx)?;
        }
    }
    Ok(())
}

/// A state of the checked world.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub(crate) cluster: Cluster,
    /// The messages in flight, a multiset kept in a canonical order (by fingerprint), so that
    /// the same set reached in another order is the same state.
    pub(crate) in_flight: Vec<Message>,
    pub(crate) spent: Spent,
}

/// A `Hasher` that gathers the bytes and hashes them at once: a state is hashed field by field,
/// thousands of small writes, and a streaming hash pays its bookkeeping on every one.
#[derive(Default)]
struct Gather {
    bytes: Vec<u8>,
}

impl Hasher for Gather {
    fn write(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn write_u8(&mut self, n: u8) {
        self.bytes.push(n);
    }

    fn write_u32(&mut self, n: u32) {
        self.bytes.extend_from_slice(&n.to_le_bytes());
    }

    fn write_u64(&mut self, n: u64) {
        self.bytes.extend_from_slice(&n.to_le_bytes());
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        xxh3_64(&self.bytes)
    }
}

fn fingerprint_of(value: &impl Hash) -> u128 {
    thread_local! {
        static GATHER: std::cell::RefCell<Gather> = std::cell::RefCell::default();
    }
    GATHER.with_borrow_mut(|gather| {
        gather.bytes.clear();
        value.hash(gather);
        xxh3_128(&gather.bytes)
    })
}

impl State {
    /// The cluster as configured, before anything happened.
    pub(crate) fn initial(options: &CheckOptions) -> Self {
        let membership = Membership::voters(1..=options.nodes).unwrap_or_default();
        let mut nodes = BTreeMap::new();
        for id in 1..=options.nodes {
            let config = node_config(options, id);
            nodes.insert(id, SimNode::new(id, config, &membership, 1));
        }
        State {
            cluster: Cluster::new(nodes),
            in_flight: Vec::new(),
            spent: Spent::default(),
        }
    }

    /// The state's fingerprint (XXH3, 128 bits): equal states have equal fingerprints, and two
    /// different states share one with a chance of about 2^-128 per pair.
    ///
    /// Of each budget only what is left counts, and nothing of an unlimited one: states that
    /// differ only in how many ticks it took to reach them have the same future. Proposals
    /// always count (the next command's bytes depend on them).
    pub(crate) fn fingerprint(&self, options: &CheckOptions) -> u128 {
        let left = |max: u32, spent: u32| {
            if max == u32::MAX {
                u32::MAX
            } else {
                max - spent.min(max)
            }
        };
        let s = &self.spent;
        let budgets = [
            left(options.max_ticks, s.ticks),
            s.proposals,
            left(options.max_crashes, s.crashes),
            left(options.max_drops, s.drops),
            left(options.max_duplicates, s.duplicates),
            left(options.max_reads, s.reads),
            left(options.max_transfers, s.transfers),
            left(options.max_membership_changes, s.changes),
        ];
        fingerprint_of(&(&self.cluster, &self.in_flight, budgets))
    }

    /// The highest term any node reached, running or on disk.
    pub(crate) fn max_term(&self) -> u64 {
        (self.cluster.nodes.values())
            .map(|n| {
                n.core
                    .as_ref()
                    .map_or(0, |c| c.term())
                    .max(n.disk.log.hard_state.term)
            })
            .max()
            .unwrap_or(0)
    }

    /// Every action the bounds allow from here, in a fixed order.
    pub(crate) fn actions(&self, options: &CheckOptions, out: &mut Vec<Action>) {
        out.clear();
        if options.lockstep_ticks && self.spent.ticks < options.max_ticks {
            out.push(Action::TickAll);
        }
        for (i, message) in self.in_flight.iter().enumerate() {
            // Copies of one message lead to the same states: offer the first only.
            if i > 0 && self.in_flight[i - 1] == *message {
                continue;
            }
            if self.cluster.is_up(message.to) {
                out.push(Action::Deliver(i));
            }
            if self.spent.drops < options.max_drops {
                out.push(Action::Drop(i));
            }
            if self.spent.duplicates < options.max_duplicates && self.in_flight.len() < options.max_in_flight
            {
                out.push(Action::Duplicate(i));
            }
        }
        for node in self.cluster.nodes.values() {
            let id = node.id;
            let Some(core) = &node.core else {
                out.push(Action::Restart(id));
                continue;
            };
            if self.spent.ticks < options.max_ticks && !options.lockstep_ticks {
                out.push(Action::Tick(id));
            }
            if !node.pending.is_empty() && !options.instant_disk {
                out.push(Action::Persist(id));
            }
            if self.spent.crashes < options.max_crashes {
                out.push(Action::Crash(id));
            }
            let leads = core.role() == Role::Leader;
            if leads && self.spent.proposals < options.max_proposals {
                out.push(Action::Propose(id));
            }
            if self.spent.reads < options.max_reads {
                out.push(Action::Read(id));
                if options.lease_reads {
                    out.push(Action::LeaseRead(id));
                }
            }
            if leads && self.spent.transfers < options.max_transfers {
                for target in (1..=options.nodes).filter(|n| *n != id) {
                    out.push(Action::Transfer(id, target));
                }
            }
            if leads && self.spent.changes < options.max_membership_changes {
                let all = (1u64 << options.nodes) - 1;
                let current = crate::cluster::bits(&core.membership().voters);
                // Every non-empty set of voters but the current one.
                for voters in (1..=all).filter(|v| *v != current) {
                    out.push(Action::ChangeVoters(id, voters));
                }
            }
        }
    }

    /// The state after `action`, or the violation it led to. `events`, when given, receives
    /// what happened.
    pub(crate) fn after(
        &self,
        action: Action,
        options: &CheckOptions,
        events: Option<&mut Vec<Event>>,
    ) -> Result<State, Violation> {
        let mut next = self.clone();
        let mut fx = ModelEffects {
            in_flight: &mut next.in_flight,
            capacity: options.max_in_flight,
            sent: 0,
            events,
        };
        let cluster = &mut next.cluster;
        if let Action::Tick(_) | Action::TickAll = action {
            next.spent.ticks += 1;
        }
        let touched = match action {
            Action::Deliver(i) => {
                let message = fx.in_flight.remove(i);
                let to = message.to;
                cluster.deliver(message, &mut fx)?;
                Some(to)
            }
            Action::Drop(i) => {
                let message = fx.in_flight.remove(i);
                fx.record(Event::Lost {
                    message: MessageSummary::of(&message),
                    why: "dropped",
                });
                next.spent.drops += 1;
                None
            }
            Action::Duplicate(i) => {
                let copy = fx.in_flight[i].clone();
                fx.in_flight.push(copy);
                next.spent.duplicates += 1;
                None
            }
            Action::Tick(_) | Action::TickAll => {
                let nodes: Vec<NodeId> = match action {
                    Action::Tick(id) => vec![id],
                    _ => (cluster.nodes.keys().copied())
                        .filter(|id| cluster.is_up(*id))
                        .collect(),
                };
                // With `tick_to_timeout`, tick until a node does something: sends, or changes
                // its role or term (every timer of the core fires within 2T ticks).
                let roles = |c: &Cluster| -> Vec<_> {
                    let role = |id: &NodeId| c.core(*id).map(|core| (core.role(), core.term()));
                    nodes.iter().map(role).collect()
                };
                let before = roles(cluster);
                let rounds = if options.tick_to_timeout {
                    2 * options.election_ticks + 1
                } else {
                    1
                };
                for _ in 0..rounds {
                    let sent = fx.sent;
                    for id in &nodes {
                        if let Some(core) = cluster.core_mut(*id) {
                            core.tick();
                        }
                        settle(cluster, *id, options, &mut fx)?;
                    }
                    if fx.sent > sent || roles(cluster) != before {
                        break;
                    }
                }
                None
            }
            Action::Persist(id) => {
                cluster.complete_next_write(id, &mut fx)?;
                Some(id)
            }
            Action::Crash(id) => {
                cluster.crash(id, 0, &mut fx);
                next.spent.crashes += 1;
                None
            }
            Action::Restart(id) => {
                cluster.restart(id, &mut fx)?;
                Some(id)
            }
            Action::Propose(id) => {
                next.spent.proposals += 1;
                let command = Bytes::from(format!("p{}", next.spent.proposals));
                cluster.propose(id, command, &mut fx);
                Some(id)
            }
            Action::Read(id) | Action::LeaseRead(id) => {
                next.spent.reads += 1;
                cluster.read(id, action == Action::LeaseRead(id), &mut fx);
                Some(id)
            }
            Action::Transfer(id, target) => {
                next.spent.transfers += 1;
                cluster.transfer_leadership(id, target, &mut fx);
                Some(id)
            }
            Action::ChangeVoters(id, voters) => {
                next.spent.changes += 1;
                let all = 1..=options.nodes;
                let is_voter = |n: &NodeId| voters & (1 << (n - 1)) != 0;
                let learners = all.clone().filter(|n| !is_voter(n)).collect();
                cluster.change_membership(id, all.filter(is_voter).collect(), learners, &mut fx);
                Some(id)
            }
        };
        if let Some(id) = touched {
            settle(cluster, id, options, &mut fx)?;
        }
        cluster.check_invariants()?;
        next.in_flight.sort_by_cached_key(fingerprint_of);
        Ok(next)
    }

    /// What `action` names, for a trace.
    pub(crate) fn describe(&self, action: Action) -> Step {
        let message = match action {
            Action::Deliver(i) | Action::Drop(i) | Action::Duplicate(i) => {
                self.in_flight.get(i).map(MessageSummary::of)
            }
            _ => None,
        };
        Step { action, message }
    }
}

//! The simulated network: messages in flight with a delivery step, random loss, duplication and
//! delay, and blocked links for partitions.

use std::collections::{BTreeMap, BTreeSet};

use raft_core::{Message, NodeId, SeededRng};

#[derive(Debug, Default)]
pub(crate) struct Network {
    /// Messages in flight, keyed by (delivery step, send order).
    in_flight: BTreeMap<(u64, u64), Message>,
    sequence: u64,
    /// Blocked directed links (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub(crate) drop_probability: f64,
    pub(crate) duplicate_probability: f64,
    pub(crate) max_delay: u64,
}

/// What happened to a message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    Queued,
    Duplicated,
    Dropped,
}

impl Network {
    pub(crate) fn new(drop_probability: f64, duplicate_probability: f64, max_delay: u64) -> Self {
        Network {
            drop_probability,
            duplicate_probability,
            max_delay,
            ..Network::default()
        }
    }

    pub(crate) fn send(&mut self, message: Message, now: u64, rng: &mut SeededRng) -> SendOutcome {
        if rng.chance(self.drop_probability) {
            return SendOutcome::Dropped;
        }
        let copies = if rng.chance(self.duplicate_probability) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + 1 + rng.below(self.max_delay.max(1));
            self.sequence += 1;
            self.in_flight.insert((at, self.sequence), message.clone());
        }
        if copies == 2 {
            SendOutcome::Duplicated
        } else {
            SendOutcome::Queued
        }
    }

    /// Removes and returns the messages due at or before `now`, in delivery order.
    pub(crate) fn due(&mut self, now: u64) -> Vec<Message> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values().collect()
    }

    pub(crate) fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub(crate) fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    pub(crate) fn isolate(&mut self, node: NodeId, all: &[NodeId]) {
        for other in all.iter().copied().filter(|o| *o != node) {
            self.block(node, other);
            self.block(other, node);
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
    }
}

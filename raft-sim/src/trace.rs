//! The last events of a run, kept compact and formatted only when a run fails.

use std::collections::VecDeque;
use std::fmt;

use raft_core::{Index, MessageSummary, NodeId, Role, Term};

/// One thing that happened in the simulated world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message reached its recipient.
    Deliver(MessageSummary),
    /// A message was lost: dropped at random, blocked by a partition, or its recipient was down.
    Lost {
        /// The message.
        message: MessageSummary,
        /// Why.
        why: &'static str,
    },
    /// A node's role, leader or term changed.
    Role {
        /// The node.
        node: NodeId,
        /// Its new role.
        role: Role,
        /// Its term.
        term: Term,
    },
    /// A leader accepted a proposal.
    Propose {
        /// The leader.
        node: NodeId,
        /// The entry's index.
        index: Index,
        /// The entry's term.
        term: Term,
    },
    /// A write became durable.
    Durable {
        /// The node.
        node: NodeId,
        /// The last entry written, if any.
        last_index: Option<Index>,
        /// The durable term.
        term: Term,
    },
    /// A node's commit index advanced.
    Commit {
        /// The node.
        node: NodeId,
        /// Its new commit index.
        index: Index,
    },
    /// A node crashed; `lost_writes` writes were not yet durable.
    Crash {
        /// The node.
        node: NodeId,
        /// Writes lost.
        lost_writes: usize,
    },
    /// A node's disk failed the writes due (they were not acknowledged); `kept` says whether
    /// they reached the disk anyway. The node stopped.
    DiskFailure {
        /// The node.
        node: NodeId,
        /// Writes that failed.
        failed_writes: usize,
        /// Whether the failed writes are on the disk all the same.
        kept: bool,
    },
    /// A hostile message, and what the node did with it.
    Hostile {
        /// The message.
        message: MessageSummary,
        /// What the node did.
        outcome: &'static str,
    },
    /// A node restarted from its disk.
    Restart {
        /// The node.
        node: NodeId,
        /// Its restored term.
        term: Term,
        /// Its restored last log index.
        last_index: Index,
    },
    /// All links of a node were cut.
    Isolate {
        /// The node.
        node: NodeId,
    },
    /// The cluster was split; bit i of `group` set means node i+1 is on the first side.
    Split {
        /// The first side, as a bit set.
        group: u64,
    },
    /// One direction of a link was cut.
    Cut {
        /// Sender side.
        from: NodeId,
        /// Receiver side.
        to: NodeId,
    },
    /// Every partition healed.
    Heal,
    /// Faults stopped; the liveness phase began.
    Calm,
    /// A node was asked for a read.
    Read {
        /// The node asked.
        node: NodeId,
        /// The read's id.
        id: u64,
        /// Served from a lease (true) or by ReadIndex.
        lease: bool,
    },
    /// A read became safe to serve at `index`.
    ReadReady {
        /// The node.
        node: NodeId,
        /// The read's id.
        id: u64,
        /// Its read index.
        index: Index,
    },
    /// A leader started a membership change.
    Reconfigure {
        /// The leader.
        leader: NodeId,
        /// The index of the configuration entry.
        index: Index,
        /// The new voters (bit i = node i + 1).
        voters: u64,
        /// The new learners (bit i = node i + 1).
        learners: u64,
    },
    /// A node's state machine wrote a snapshot and its log was compacted.
    SnapshotBuilt {
        /// The node.
        node: NodeId,
        /// The snapshot's index.
        index: Index,
    },
    /// A node restored its state machine from a snapshot received from a leader.
    SnapshotInstalled {
        /// The node.
        node: NodeId,
        /// The snapshot's index.
        index: Index,
    },
    /// A leader started a leadership transfer.
    Transfer {
        /// The leader.
        from: NodeId,
        /// The target.
        to: NodeId,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Deliver(message) => write!(f, "{message}"),
            Event::Lost { message, why } => write!(f, "{message} lost ({why})"),
            Event::Role { node, role, term } => write!(f, "node {node} is {role} in term {term}"),
            Event::Propose { node, index, term } => {
                write!(f, "node {node} appended proposal {index} (t{term})")
            }
            Event::Durable {
                node,
                last_index,
                term,
            } => {
                write!(
                    f,
                    "node {node} write durable: last_index={last_index:?} term={term}"
                )
            }
            Event::Commit { node, index } => write!(f, "node {node} commit index {index}"),
            Event::Crash { node, lost_writes } => {
                write!(f, "node {node} CRASHED, {lost_writes} unsynced writes lost")
            }
            Event::Hostile { message, outcome } => write!(f, "HOSTILE {message}: {outcome}"),
            Event::DiskFailure {
                node,
                failed_writes,
                kept,
            } => {
                let fate = if kept { "on the disk anyway" } else { "lost" };
                write!(
                    f,
                    "node {node} DISK FAILED: {failed_writes} writes not acknowledged ({fate}); the node stopped"
                )
            }
            Event::Restart {
                node,
                term,
                last_index,
            } => {
                write!(
                    f,
                    "node {node} restarted with term {term}, last index {last_index}"
                )
            }
            Event::Isolate { node } => write!(f, "node {node} isolated"),
            Event::Split { group } => write!(f, "split: nodes {group:#b} (bit i = node i+1) vs the rest"),
            Event::Cut { from, to } => write!(f, "link {from} -> {to} cut"),
            Event::Heal => write!(f, "network healed"),
            Event::Calm => write!(f, "faults stop; the cluster must elect and commit"),
            Event::Read { node, id, lease } => {
                write!(
                    f,
                    "node {node} asked for read {id} ({})",
                    if lease { "lease" } else { "ReadIndex" }
                )
            }
            Event::ReadReady { node, id, index } => write!(f, "node {node} read {id} ready at index {index}"),
            Event::Transfer { from, to } => write!(f, "leader {from} transfers leadership to {to}"),
            Event::SnapshotBuilt { node, index } => write!(f, "node {node} took a snapshot at {index}"),
            Event::SnapshotInstalled { node, index } => {
                write!(f, "node {node} installed the leader's snapshot at {index}")
            }
            Event::Reconfigure {
                leader,
                index,
                voters,
                learners,
            } => write!(
                f,
                "leader {leader} changes membership at {index}: voters {voters:#b}, learners {learners:#b}"
            ),
        }
    }
}

/// A ring buffer of the last events, and, when asked for, every event a timeline shows.
#[derive(Debug)]
pub(crate) struct Trace {
    events: VecDeque<(u64, Event)>,
    capacity: usize,
    /// Every role change, commit, fault and membership change of the run, for its timeline.
    kept: Option<Vec<(u64, Event)>>,
}

impl Trace {
    pub(crate) fn new(capacity: usize) -> Self {
        Trace {
            events: VecDeque::with_capacity(capacity),
            capacity,
            kept: None,
        }
    }

    /// Keeps, from now on, every event a timeline shows.
    pub(crate) fn keep_for_timeline(&mut self) {
        self.kept.get_or_insert_with(Vec::new);
    }

    /// The events kept for the timeline.
    pub(crate) fn kept(&self) -> &[(u64, Event)] {
        self.kept.as_deref().unwrap_or_default()
    }

    pub(crate) fn record(&mut self, step: u64, event: Event) {
        if let Some(kept) = &mut self.kept {
            if crate::timeline::shows(&event) {
                kept.push((step, event));
            }
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back((step, event));
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|(step, event)| format!("step {step:>6}: {event}"))
            .collect()
    }
}

//! The safety properties of Raft (paper Figure 3), each its own check, run after every step.
//!
//! The checks read the simulator's mirrors of the nodes' logs (terms and a hash chain), so each is
//! a handful of comparisons rather than a walk over whole logs.

use std::collections::BTreeMap;
use std::fmt;

use raft_core::{Entry, HardState, Index, NodeId, Role, Term};

use crate::log_mirror::{entry_hash, extend_chain, LogMirror};
use crate::node::SimNode;

/// A broken property, with what is needed to understand it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two leaders in one term: two nodes, or one node in two incarnations (it led the term,
    /// crashed, and was elected for the same term again).
    ElectionSafety {
        /// The term.
        term: Term,
        /// The leader seen first, and its incarnation.
        first: (NodeId, u64),
        /// The second leader, and its incarnation.
        second: (NodeId, u64),
    },
    /// A leader's log lost or changed an entry while it led.
    LeaderAppendOnly {
        /// The leader.
        node: NodeId,
        /// Its term.
        term: Term,
        /// The last index it had, which is now gone or different.
        index: Index,
    },
    /// Two logs share an entry (same index and term) but differ before it.
    LogMatching {
        /// One node.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// The highest index at which their terms agree.
        index: Index,
    },
    /// A leader lacks an entry committed in an earlier term.
    LeaderCompleteness {
        /// The leader.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// The committed prefix it should hold entirely.
        committed: Index,
    },
    /// Two nodes committed or applied different entries at one index, or a node applied out of
    /// order or twice.
    StateMachineSafety {
        /// The node.
        node: NodeId,
        /// The index.
        index: Index,
        /// What exactly went wrong.
        what: &'static str,
    },
    /// Term, vote or commit index went backwards.
    Monotonicity {
        /// The node.
        node: NodeId,
        /// What went backwards.
        what: String,
    },
    /// A read was served at an index below an entry committed before the read was asked: it
    /// could miss a write that had already completed (a stale read).
    StaleRead {
        /// The node that served it.
        node: NodeId,
        /// The read's id.
        id: u64,
        /// Its read index.
        index: Index,
        /// The commit index the cluster had reached when the read was asked.
        committed_before: Index,
    },
    /// After faults stopped, no leader committed a new entry within the bound.
    Liveness {
        /// Steps waited.
        steps: u64,
    },
    /// The core refused an input it should have accepted, or could not restart from its disk.
    Unexpected {
        /// The node.
        node: NodeId,
        /// The error.
        error: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ElectionSafety { term, first, second } => {
                let ((a, a_life), (b, b_life)) = (first, second);
                if a == b {
                    write!(
                        f,
                        "election safety: node {a} led term {term} in incarnation {a_life} and again in {b_life}"
                    )
                } else {
                    write!(f, "election safety: nodes {a} and {b} both led term {term}")
                }
            }
            Violation::LeaderAppendOnly { node, term, index } => write!(
                f,
                "leader append-only: leader {node} of term {term} lost or changed its entry {index}"
            ),
            Violation::LogMatching { a, b, index } => write!(
                f,
                "log matching: nodes {a} and {b} agree on the term at index {index} but differ before it"
            ),
            Violation::LeaderCompleteness {
                leader,
                term,
                committed,
            } => write!(
                f,
                "leader completeness: leader {leader} of term {term} lacks committed entries up to {committed}"
            ),
            Violation::StateMachineSafety { node, index, what } => {
                write!(f, "state machine safety: node {node} at index {index}: {what}")
            }
            Violation::Monotonicity { node, what } => write!(f, "monotonicity: node {node}: {what}"),
            Violation::StaleRead {
                node,
                id,
                index,
                committed_before,
            } => write!(
                f,
                "linearizable reads: node {node} served read {id} at index {index}, but index \
                 {committed_before} was committed before the read was asked"
            ),
            Violation::Liveness { steps } => write!(
                f,
                "liveness: no leader committed a new entry within {steps} steps after faults stopped"
            ),
            Violation::Unexpected { node, error } => write!(f, "node {node}: {error}"),
        }
    }
}

/// What the checks remember across steps.
#[derive(Clone, Debug, Default, Hash)]
pub(crate) struct Observer {
    /// The leader of each term seen so far, with its incarnation: a node that led a term, crashed
    /// and leads the same term again is a second leader of that term.
    leader_of_term: BTreeMap<Term, (NodeId, u64)>,
    /// Per leader: (term, last index, chain at last index) at the previous step.
    leader_log: BTreeMap<NodeId, (Term, Index, u64)>,
    /// The committed log as first observed on any node.
    pub(crate) committed: LogMirror,
    /// For each committed index, the highest term at which any index up to it was first seen
    /// committed. Non-decreasing, so a binary search finds what a leader of term T must hold.
    committed_by_term: Vec<Term>,
    /// The last durable hard state of each node.
    durable: BTreeMap<NodeId, HardState>,
}

/// **Election safety**: at most one leader can be elected in a given term (Raft §5.2), counted
/// across restarts: a leadership belongs to one incarnation of one node.
pub(crate) fn check_election_safety(observer: &mut Observer, node: &SimNode) -> Result<(), Violation> {
    let Some(core) = &node.core else { return Ok(()) };
    if core.role() != Role::Leader {
        return Ok(());
    }
    let this = (node.id, node.incarnation);
    let first = *observer.leader_of_term.entry(core.term()).or_insert(this);
    if first != this {
        return Err(Violation::ElectionSafety {
            term: core.term(),
            first,
            second: this,
        });
    }
    Ok(())
}

/// **Leader append-only**: a leader never overwrites or deletes entries in its log; it only
/// appends new entries (Raft §5.3).
pub(crate) fn check_leader_append_only(observer: &mut Observer, node: &SimNode) -> Result<(), Violation> {
    let Some(core) = &node.core else {
        observer.leader_log.remove(&node.id);
        return Ok(());
    };
    if core.role() != Role::Leader {
        observer.leader_log.remove(&node.id);
        return Ok(());
    }
    let term = core.term();
    if let Some(&(seen_term, last, chain)) = observer.leader_log.get(&node.id) {
        if seen_term == term && node.mirror.chain(last) != Some(chain) {
            return Err(Violation::LeaderAppendOnly {
                node: node.id,
                term,
                index: last,
            });
        }
    }
    let last = node.mirror.len();
    let chain = node.mirror.chain(last).unwrap_or(0);
    observer.leader_log.insert(node.id, (term, last, chain));
    Ok(())
}

/// **Log matching**: if two logs contain an entry with the same index and term, the logs are
/// identical in all entries up through that index (Raft §5.3). Checked between every pair of
/// nodes, at the highest index where their terms agree.
pub(crate) fn check_log_matching(nodes: &[&SimNode]) -> Result<(), Violation> {
    fn log(n: &SimNode) -> &LogMirror {
        if n.is_up() {
            &n.mirror
        } else {
            &n.disk.mirror
        }
    }
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            let (log_a, log_b) = (log(a), log(b));
            let mut index = log_a.len().min(log_b.len());
            while index > 0 && log_a.term(index) != log_b.term(index) {
                index -= 1;
            }
            if log_a.chain(index) != log_b.chain(index) {
                return Err(Violation::LogMatching {
                    a: a.id,
                    b: b.id,
                    index,
                });
            }
        }
    }
    Ok(())
}

/// **Leader completeness**: if a log entry is committed in a given term, that entry will be
/// present in the logs of the leaders for all higher-numbered terms (Raft §5.4).
pub(crate) fn check_leader_completeness(observer: &Observer, node: &SimNode) -> Result<(), Violation> {
    let Some(core) = &node.core else { return Ok(()) };
    if core.role() != Role::Leader {
        return Ok(());
    }
    let term = core.term();
    // Entries first seen committed in a term below this leader's must all be in its log.
    let must_hold = observer.committed_by_term.partition_point(|t| *t < term) as Index;
    if node.mirror.len() < must_hold || node.mirror.chain(must_hold) != observer.committed.chain(must_hold) {
        return Err(Violation::LeaderCompleteness {
            leader: node.id,
            term,
            committed: must_hold,
        });
    }
    Ok(())
}

/// **State machine safety**, first half: every node's committed prefix is the same log. Extends
/// the reference committed log with what `node` newly commits.
pub(crate) fn check_committed_prefix(observer: &mut Observer, node: &SimNode) -> Result<(), Violation> {
    let Some(core) = &node.core else { return Ok(()) };
    let commit = core.status().commit_index;
    let known = observer.committed.len();
    let shared = commit.min(known);
    if node.mirror.chain(shared) != observer.committed.chain(shared) {
        return Err(Violation::StateMachineSafety {
            node: node.id,
            index: shared,
            what: "its committed entries differ from those committed elsewhere",
        });
    }
    let term = core.term();
    let floor = observer.committed_by_term.last().copied().unwrap_or(0);
    for index in known + 1..=commit {
        let (Some(entry_term), Some(hash)) = (node.mirror.term(index), node.mirror.hash(index)) else {
            return Err(Violation::StateMachineSafety {
                node: node.id,
                index,
                what: "its commit index is beyond its log",
            });
        };
        observer.committed.push(entry_term, hash);
        observer.committed_by_term.push(term.max(floor));
    }
    Ok(())
}

/// **State machine safety**, second half: if a server has applied a log entry at a given index,
/// no other server will ever apply a different log entry for the same index (Raft §5.4.3). Also
/// checks that a node applies each index once, in order.
pub(crate) fn check_applied_entry(
    observer: &Observer,
    node: &SimNode,
    entry: &Entry,
) -> Result<(), Violation> {
    let violation = |what| {
        Err(Violation::StateMachineSafety {
            node: node.id,
            index: entry.index,
            what,
        })
    };
    if entry.index != node.applied + 1 {
        return violation("applied out of order or twice");
    }
    let (Some(before), Some(after)) = (
        observer.committed.chain(entry.index - 1),
        observer.committed.chain(entry.index),
    ) else {
        return violation("applied an entry not known to be committed");
    };
    if extend_chain(before, entry_hash(entry)) != after {
        return violation("applied a different entry than another node committed");
    }
    Ok(())
}

/// **Linearizable reads**: a read (ReadIndex or lease) is served at an index no lower than every
/// entry committed anywhere before the read was asked, so it reflects every write that completed
/// before it started.
pub(crate) fn check_read_freshness(
    node: NodeId,
    id: u64,
    index: Index,
    committed_before: Index,
) -> Result<(), Violation> {
    if index < committed_before {
        return Err(Violation::StaleRead {
            node,
            id,
            index,
            committed_before,
        });
    }
    Ok(())
}

/// **State machine safety through snapshots**: a state machine restored from a snapshot (received
/// from a leader, or its own after a restart) holds exactly the committed log up to the snapshot's
/// index: the hash chain of its state equals the committed chain there.
pub(crate) fn check_restored_state(
    observer: &Observer,
    node: NodeId,
    index: Index,
    state: u64,
) -> Result<(), Violation> {
    if observer.committed.chain(index) == Some(state) {
        return Ok(());
    }
    Err(Violation::StateMachineSafety {
        node,
        index,
        what: "restored from a snapshot that differs from the committed log",
    })
}

/// **Monotonic durable state**: a node's durable term never decreases, its durable vote never
/// changes within a term, and its durable commit index never decreases, across restarts.
pub(crate) fn check_durable_state(
    observer: &mut Observer,
    node: NodeId,
    now: HardState,
) -> Result<(), Violation> {
    let violation = |what: String| Err(Violation::Monotonicity { node, what });
    if let Some(before) = observer.durable.get(&node) {
        if now.term < before.term {
            return violation(format!("durable term went from {} to {}", before.term, now.term));
        }
        if now.term == before.term && before.voted_for.is_some() && now.voted_for != before.voted_for {
            return violation(format!(
                "durable vote in term {} changed from {:?} to {:?}",
                now.term, before.voted_for, now.voted_for
            ));
        }
        if now.commit < before.commit {
            return violation(format!(
                "durable commit went from {} to {}",
                before.commit, now.commit
            ));
        }
    }
    observer.durable.insert(node, now);
    Ok(())
}

/// **Monotonic volatile state**: while a node runs, its term and commit index never decrease; a
/// restarted node starts from at least what it had made durable.
pub(crate) fn check_running_state(node: &mut SimNode) -> Result<(), Violation> {
    let Some(core) = &node.core else { return Ok(()) };
    let (term, commit) = (core.term(), core.status().commit_index);
    if term < node.last_term || commit < node.last_commit {
        return Err(Violation::Monotonicity {
            node: node.id,
            what: format!(
                "term/commit went from {}/{} to {}/{}",
                node.last_term, node.last_commit, term, commit
            ),
        });
    }
    if term < node.disk.log.hard_state.term {
        return Err(Violation::Monotonicity {
            node: node.id,
            what: format!(
                "running term {term} is below its durable term {}",
                node.disk.log.hard_state.term
            ),
        });
    }
    node.last_term = term;
    node.last_commit = commit;
    Ok(())
}

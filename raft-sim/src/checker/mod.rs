//! Exhaustive model checking of the real `RaftCore`: every interleaving of a small cluster, up to
//! a depth and within budgets of faults and requests.
//!
//! A state is a cluster of cores (with their disks, their pending writes and their state
//! machines, as the simulator keeps them), the multiset of messages in flight, and what has been
//! spent of each budget. From each state the checker takes every action the bounds allow:
//! deliver any one message, drop it, duplicate it, tick any node, make a node's oldest pending
//! write durable, crash a node (losing what is not durable), restart it, propose on a leader,
//! ask for a ReadIndex (or, with clocks in lockstep, a lease) read, hand over the leadership, or
//! change the voters. After each action the node's `Ready` is carried out and the simulator's
//! invariants are checked. States are explored depth by depth and each is seen once, by a
//! 128-bit fingerprint of everything that decides its future. The search deepens one action at a
//! time (iterative deepening), so the first violation found comes with the shortest sequence of
//! actions that leads to it.
//!
//! Not reduced by symmetry: node ids are part of each core's state (votes, leaders, progress,
//! the seed of its election timer), and a core cannot be relabelled from outside, so two states
//! that differ by a permutation of ids are explored as two.
//!
//! ```
//! use raft_sim::checker::{check, CheckOptions};
//!
//! let options = CheckOptions { max_depth: 6, ..CheckOptions::default() };
//! let report = check(&options).expect("no invariant breaks within 6 actions");
//! assert!(report.states > 100);
//! ```

mod model;
mod search;

use std::fmt;
use std::time::Duration;

use raft_core::{Index, NodeId, PlantedBug};

pub use crate::checker::model::Action;
use crate::checker::model::State;
use crate::invariants::Violation;
use crate::trace::Event;

/// The cluster to check and the bounds of the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Voters, with ids 1..=nodes.
    pub nodes: u64,
    /// Actions from the initial state.
    pub max_depth: u32,
    /// States in which some node reached a higher term are checked but not explored further.
    pub max_term: u64,
    /// Tick actions (with `tick_to_timeout`, timers fired: elections begun and heartbeats).
    pub max_ticks: u32,
    /// Client proposals.
    pub max_proposals: u32,
    /// Crashes.
    pub max_crashes: u32,
    /// Messages lost on purpose.
    pub max_drops: u32,
    /// Messages sent twice.
    pub max_duplicates: u32,
    /// ReadIndex reads asked.
    pub max_reads: u32,
    /// Leadership transfers begun.
    pub max_transfers: u32,
    /// Membership changes begun.
    pub max_membership_changes: u32,
    /// Messages the network holds; what is sent beyond is lost.
    pub max_in_flight: usize,
    /// The search stops (incomplete) after this many distinct states.
    pub max_states: u64,
    /// Threads of the search (with more than one, which of several shortest violations is
    /// reported may vary from run to run).
    pub threads: usize,
    /// Election timeout T in ticks (each election draws its timeout from [T, 2T)).
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Pre-vote on.
    pub pre_vote: bool,
    /// Check-quorum on.
    pub check_quorum: bool,
    /// Entries per AppendEntries.
    pub max_entries_per_message: usize,
    /// Compact the log into a snapshot after this many applied entries (0: never).
    pub snapshot_after_entries: u64,
    /// Each `Tick` action ticks the node until it sends or changes its role or term (its next
    /// timer fires), instead of once: shallower, at the cost of the states between.
    pub tick_to_timeout: bool,
    /// All running nodes tick together (`TickAll`), so their clocks never drift apart: the
    /// condition under which leases are safe.
    pub lockstep_ticks: bool,
    /// Lease reads (`LeaseRead` actions); only with `lockstep_ticks` and `check_quorum`.
    pub lease_reads: bool,
    /// Writes are durable as soon as they are issued (no `Persist` action; a crash loses only
    /// the process): shallower, at the cost of the crash-before-fsync states.
    pub instant_disk: bool,
    /// A known bug to plant in every node.
    pub planted_bug: Option<PlantedBug>,
    /// The search starts from the state these actions reach (a scenario's opening, to look
    /// deeper into one part of the space); depths count from the initial state all the same.
    pub prefix: Vec<Action>,
}

impl CheckOptions {
    /// Checks that the options describe a cluster that can start.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=8).contains(&self.nodes) {
            return Err(format!("nodes must be 1 to 8, not {}", self.nodes));
        }
        if self.max_in_flight == 0 {
            return Err("in-flight must be at least 1".into());
        }
        if self.lease_reads && !(self.lockstep_ticks && self.check_quorum) {
            return Err("lease reads need lockstep ticks (a bound on clock drift) and check-quorum".into());
        }
        model::node_config(self, 1)
            .validate()
            .map_err(|e| format!("node settings: {e}"))
    }
}

impl Default for CheckOptions {
    /// Three voters, two terms, one proposal, one crash, one lost message; timers of two ticks.
    fn default() -> Self {
        CheckOptions {
            nodes: 3,
            max_depth: 16,
            max_term: 2,
            max_ticks: u32::MAX,
            max_proposals: 1,
            max_crashes: 1,
            max_drops: 1,
            max_duplicates: 0,
            max_reads: 0,
            max_transfers: 0,
            max_membership_changes: 0,
            max_in_flight: 4,
            max_states: 20_000_000,
            threads: 1,
            election_ticks: 2,
            heartbeat_ticks: 1,
            pre_vote: false,
            check_quorum: false,
            max_entries_per_message: 1,
            snapshot_after_entries: 0,
            tick_to_timeout: false,
            lockstep_ticks: false,
            lease_reads: false,
            instant_disk: false,
            planted_bug: None,
            prefix: Vec::new(),
        }
    }
}

/// One depth of the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    /// Actions from the initial state.
    pub depth: u32,
    /// States first reached at this depth.
    pub new_states: u64,
    /// States reached at this depth or before.
    pub total_states: u64,
    /// Time since the search began, when this depth was done.
    pub elapsed: Duration,
}

/// A search that found no violation.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Distinct states reached.
    pub states: u64,
    /// Actions taken (each state's every action).
    pub transitions: u64,
    /// Per depth.
    pub levels: Vec<Level>,
    /// False when the search stopped at `max_states`.
    pub complete: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl CheckReport {
    /// States explored per second.
    pub fn states_per_second(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether the bounds of counts (not depth) closed the space: no new state at the last depth.
    pub fn exhausted(&self) -> bool {
        self.complete && self.levels.last().is_some_and(|l| l.new_states == 0)
    }
}

/// A violation, with the shortest way to it.
#[derive(Clone, Debug)]
pub struct CheckFailure {
    /// What broke.
    pub violation: Violation,
    /// The actions from the initial state, replayable with [`replay`].
    pub actions: Vec<Action>,
    /// Each action, what it named and what followed from it.
    pub steps: Vec<String>,
    /// The depth of the violation (the length of `actions`).
    pub depth: u32,
    /// Distinct states reached before it was found.
    pub states: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "violation at depth {} after {} states ({:.1?}): {}",
            self.depth, self.states, self.elapsed, self.violation
        )?;
        writeln!(f, "shortest trace ({} actions):", self.actions.len())?;
        for line in &self.steps {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", encode_actions(&self.actions))
    }
}

impl std::error::Error for CheckFailure {}

/// Explores every state within `options`' bounds; returns the first violation, on a shortest
/// path, if any.
///
/// Options that [`CheckOptions::validate`] refuses end in a violation at depth 0 (a node that
/// cannot start).
pub fn check(options: &CheckOptions) -> Result<CheckReport, Box<CheckFailure>> {
    check_with_progress(options, &mut |_| {})
}

/// [`check`], calling `on_level` as each depth is done (a long run shows how far it got).
pub fn check_with_progress(
    options: &CheckOptions,
    on_level: &mut dyn FnMut(&Level),
) -> Result<CheckReport, Box<CheckFailure>> {
    if let Err(error) = options.validate() {
        return Err(Box::new(CheckFailure {
            violation: Violation::Unexpected { node: 1, error },
            actions: Vec::new(),
            steps: Vec::new(),
            depth: 0,
            states: 0,
            elapsed: Duration::ZERO,
        }));
    }
    search::explore(options, on_level)
}

/// A situation to set up, as the opening of a deeper search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// This node leads.
    Leads(NodeId),
    /// This node leads and has committed (and applied) this index.
    LeadsWithCommit(NodeId, Index),
    /// This node leads, has committed an entry of its term, and every node holds its last
    /// entry: a settled cluster.
    Replicated(NodeId),
    /// The opening of the Raft paper's Figure 8: this node leads, the entry after its commit
    /// index is of an earlier term than its own and not yet committed, and another node holds a
    /// different entry at that index.
    Figure8(NodeId),
}

impl std::str::FromStr for Goal {
    type Err = String;

    /// `leads:N`, `commit:N:INDEX` or `figure8:N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected leads:N, commit:N:INDEX, replicated:N or figure8:N, not {text:?}");
        let parts: Vec<&str> = text.split(':').collect();
        let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
        match parts.as_slice() {
            ["leads", n] => Ok(Goal::Leads(number(n)?)),
            ["commit", n, index] => Ok(Goal::LeadsWithCommit(number(n)?, number(index)?)),
            ["replicated", n] => Ok(Goal::Replicated(number(n)?)),
            ["figure8", n] => Ok(Goal::Figure8(number(n)?)),
            _ => Err(bad()),
        }
    }
}

/// The shortest sequence of actions from the initial state to `goal` under `options` (its
/// `prefix` ignored), for [`CheckOptions::prefix`]; an error says why there is none within
/// the bounds.
///
/// ```
/// use raft_sim::checker::{opening, CheckOptions, Goal};
///
/// let options = CheckOptions { tick_to_timeout: true, ..CheckOptions::default() };
/// let elected = opening(&options, Goal::Leads(1)).expect("node 1 can be elected");
/// assert!(elected.len() <= 8);
/// ```
pub fn opening(options: &CheckOptions, goal: Goal) -> Result<Vec<Action>, String> {
    let reached = |state: &State| {
        let core = |id: NodeId| state.cluster.core(id);
        let leads = |id| core(id).filter(|c| c.role() == raft_core::Role::Leader);
        match goal {
            Goal::Leads(id) => leads(id).is_some(),
            Goal::LeadsWithCommit(id, index) => leads(id).is_some_and(|c| c.status().applied_index >= index),
            Goal::Replicated(id) => leads(id).is_some_and(|leader| {
                let last = leader.status().last_log_index;
                let mine = leader.entry(last).map(|e| (e.term, e.index));
                let committed = leader.status().commit_index;
                let of_my_term = leader.entry(committed).is_some_and(|e| e.term == leader.term());
                of_my_term
                    && (state.cluster.nodes.keys())
                        .all(|n| core(*n).and_then(|c| c.entry(last)).map(|e| (e.term, e.index)) == mine)
            }),
            Goal::Figure8(id) => leads(id).is_some_and(|leader| {
                let index = leader.status().commit_index + 1;
                let Some(entry) = leader.entry(index).filter(|e| e.term < leader.term()) else {
                    return false;
                };
                (state.cluster.nodes.keys()).any(|other| {
                    core(*other)
                        .and_then(|c| c.entry(index))
                        .is_some_and(|e| e.term != entry.term)
                })
            }),
        }
    };
    search::shortest_path(options, &reached)
}

/// How a replay ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Every action was taken and every invariant held.
    Held,
    /// The last action taken broke an invariant.
    Violated(Violation),
    /// The action at this position (from 0) is not one the state offers: the trace belongs to
    /// other options.
    NotPossible(usize),
}

/// Replays `actions` from the initial state: each step as text (the action, what it named, and
/// the events that followed), and how it ended.
pub fn replay(options: &CheckOptions, actions: &[Action]) -> (Vec<String>, ReplayEnd) {
    let mut lines = Vec::new();
    let (_, end) = walk(options, actions, Some(&mut lines));
    (lines, end)
}

/// Takes `actions` from the initial state; returns the state reached (the last good one) and
/// how the walk ended. With `lines`, describes each step there.
fn walk(
    options: &CheckOptions,
    actions: &[Action],
    mut lines: Option<&mut Vec<String>>,
) -> (State, ReplayEnd) {
    let mut state = State::initial(options);
    let mut offered = Vec::new();
    for (n, &action) in actions.iter().enumerate() {
        state.actions(options, &mut offered);
        let step = state.describe(action);
        if !offered.contains(&action) {
            if let Some(lines) = lines.as_deref_mut() {
                lines.push(format!("{:>3}. {step}: not possible in this state", n + 1));
            }
            return (state, ReplayEnd::NotPossible(n));
        }
        let mut events: Vec<Event> = Vec::new();
        let result = state.after(action, options, lines.is_some().then_some(&mut events));
        if let Some(lines) = lines.as_deref_mut() {
            lines.push(format!("{:>3}. {step}", n + 1));
            lines.extend(events.iter().map(|e| format!("       {e}")));
        }
        match result {
            Ok(next) => state = next,
            Err(violation) => return (state, ReplayEnd::Violated(violation)),
        }
    }
    if let Some(lines) = lines {
        lines.extend(
            state
                .cluster
                .describe_nodes()
                .into_iter()
                .map(|l| format!("     {l}")),
        );
        for (i, message) in state.in_flight.iter().enumerate() {
            lines.push(format!(
                "     in flight #{i}: {}",
                raft_core::MessageSummary::of(message)
            ));
        }
    }
    (state, ReplayEnd::Held)
}

/// `actions` as one line that [`decode_actions`] reads back: `d3 t1 p2 ...`.
pub fn encode_actions(actions: &[Action]) -> String {
    let words: Vec<String> = actions
        .iter()
        .map(|a| match *a {
            Action::Deliver(i) => format!("d{i}"),
            Action::Drop(i) => format!("x{i}"),
            Action::Duplicate(i) => format!("u{i}"),
            Action::Tick(n) => format!("t{n}"),
            Action::TickAll => "T".to_string(),
            Action::Persist(n) => format!("s{n}"),
            Action::Crash(n) => format!("c{n}"),
            Action::Restart(n) => format!("r{n}"),
            Action::Propose(n) => format!("p{n}"),
            Action::Read(n) => format!("q{n}"),
            Action::LeaseRead(n) => format!("e{n}"),
            Action::Transfer(from, to) => format!("l{from}:{to}"),
            Action::ChangeVoters(n, voters) => format!("m{n}:{voters}"),
        })
        .collect();
    words.join(" ")
}

/// Reads back what [`encode_actions`] wrote.
pub fn decode_actions(text: &str) -> Result<Vec<Action>, String> {
    text.split_whitespace()
        .map(|word| {
            let bad = || format!("bad action {word:?}");
            if word == "T" {
                return Ok(Action::TickAll);
            }
            let mut chars = word.chars();
            let kind = chars.next().ok_or_else(bad)?;
            let rest = chars.as_str();
            let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
            Ok(match kind {
                'd' => Action::Deliver(number(rest)? as usize),
                'x' => Action::Drop(number(rest)? as usize),
                'u' => Action::Duplicate(number(rest)? as usize),
                't' => Action::Tick(number(rest)?),
                's' => Action::Persist(number(rest)?),
                'c' => Action::Crash(number(rest)?),
                'r' => Action::Restart(number(rest)?),
                'p' => Action::Propose(number(rest)?),
                'q' => Action::Read(number(rest)?),
                'e' => Action::LeaseRead(number(rest)?),
                'l' => {
                    let (from, to) = rest.split_once(':').ok_or_else(bad)?;
                    Action::Transfer(number(from)?, number(to)?)
                }
                'm' => {
                    let (node, voters) = rest.split_once(':').ok_or_else(bad)?;
                    Action::ChangeVoters(number(node)?, number(voters)?)
                }
                _ => return Err(bad()),
            })
        })
        .collect()
}

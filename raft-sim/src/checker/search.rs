//! Iterative deepening: a depth-first search to depth 1, then 2, and so on, each seeing every
//! state within its depth once (by fingerprint). The first violation is found in the first
//! search deep enough to reach it, so its path is a shortest one; and memory holds only the
//! fingerprints seen and one path of states, not a breadth-first frontier of whole clusters
//! (which filled 23 GB at depth 13).
//!
//! A state reached again by a shorter path has more depth left to explore, so the map keeps, for
//! each fingerprint, the most depth left with which it was explored, and explores it again when
//! it arrives with more.
//!
//! With more than one thread, a pass first runs alone to a shallow depth and collects the states
//! there as tasks; the threads then take tasks in turn and share one map of fingerprints, in
//! shards. A state reached by two threads is explored by the one that claims it first, so the
//! counts are those of one thread, but which of several shortest violations is reported may
//! differ from run to run (one thread always reports the same one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::checker::model::{Action, State};
use crate::checker::{walk, CheckFailure, CheckOptions, CheckReport, Level, ReplayEnd};
use crate::invariants::Violation;

/// What ended a path.
enum Found {
    Violation(Violation),
    Goal,
}

/// The fingerprints a pass has seen, each with the most depth left with which it was explored.
struct Seen {
    shards: Vec<Mutex<HashMap<u128, u32>>>,
    len: AtomicU64,
}

impl Seen {
    fn new(shards: usize) -> Self {
        Seen {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            len: AtomicU64::new(0),
        }
    }

    /// Records that `key` is explored with `left` actions to go, unless it already was with as
    /// many; returns whether to explore it.
    fn claim(&self, key: u128, left: u32) -> bool {
        let shard = &self.shards[(key % self.shards.len() as u128) as usize];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&key) {
            Some(explored) if *explored >= left => false,
            Some(explored) => {
                *explored = left;
                true
            }
            None => {
                map.insert(key, left);
                self.len.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }
}

/// One depth-limited search from one state (or one task of a parallel pass).
struct Pass<'a> {
    options: &'a CheckOptions,
    /// A state to look for instead of a violation.
    goal: Option<&'a dyn Fn(&State) -> bool>,
    limit: u32,
    /// Collect the states at this depth as tasks instead of exploring them.
    split: Option<u32>,
    tasks: Vec<(State, Vec<Action>)>,
    seen: &'a Seen,
    /// Set when any thread of the pass is done (a violation, or the state budget).
    stop: &'a AtomicBool,
    path: Vec<Action>,
    transitions: u64,
    /// The state budget ran out.
    stopped: bool,
}

impl<'a> Pass<'a> {
    fn new(options: &'a CheckOptions, limit: u32, seen: &'a Seen, stop: &'a AtomicBool) -> Self {
        Pass {
            options,
            goal: None,
            limit,
            split: None,
            tasks: Vec::new(),
            seen,
            stop,
            path: options.prefix.clone(),
            transitions: 0,
            stopped: false,
        }
    }

    /// Explores what follows `state` (at `depth`); returns the violation (or the goal) that
    /// ends the path in `self.path`, if one is found.
    fn explore(&mut self, state: &State, depth: u32) -> Option<Found> {
        if self.split == Some(depth) {
            self.tasks.push((state.clone(), self.path.clone()));
            return None;
        }
        if depth == self.limit
            || state.max_term() > self.options.max_term
            || self.stop.load(Ordering::Relaxed)
        {
            return None;
        }
        let mut actions = Vec::new();
        state.actions(self.options, &mut actions);
        let left = self.limit - depth - 1;
        for action in actions {
            self.transitions += 1;
            self.path.push(action);
            let next = match state.after(action, self.options, None) {
                Ok(next) => next,
                Err(violation) => return Some(Found::Violation(violation)),
            };
            if self.goal.is_some_and(|goal| goal(&next)) {
                return Some(Found::Goal);
            }
            if self.seen.claim(next.fingerprint(self.options), left) {
                if self.seen.len() > self.options.max_states {
                    self.stopped = true;
                    self.stop.store(true, Ordering::Relaxed);
                    return None;
                }
                if let Some(found) = self.explore(&next, depth + 1) {
                    return Some(found);
                }
                if self.stopped {
                    return None;
                }
            }
            self.path.pop();
        }
        None
    }
}

/// What one pass to a depth limit found.
struct PassEnd {
    violation: Option<(Violation, Vec<Action>)>,
    states: u64,
    transitions: u64,
    stopped: bool,
}

/// One pass to `limit` from `initial` (at depth `start`), on `options.threads` threads.
fn pass(options: &CheckOptions, initial: &State, start: u32, limit: u32) -> PassEnd {
    let seen = Seen::new(if options.threads > 1 { 256 } else { 1 });
    let stop = AtomicBool::new(false);
    seen.claim(initial.fingerprint(options), limit - start);
    // A handful of depths alone give the threads a few hundred tasks to share.
    let split = start + 5;
    let mut first = Pass::new(options, limit, &seen, &stop);
    if options.threads > 1 && split < limit {
        first.split = Some(split);
    }
    let found = first.explore(initial, start);
    let mut end = PassEnd {
        violation: None,
        states: 0,
        transitions: first.transitions,
        stopped: first.stopped,
    };
    if let Some(Found::Violation(violation)) = found {
        end.violation = Some((violation, first.path));
    }
    if end.violation.is_none() && !first.tasks.is_empty() {
        let tasks = first.tasks;
        let next = AtomicUsize::new(0);
        let found: Mutex<Option<(usize, Violation, Vec<Action>)>> = Mutex::new(None);
        let transitions = AtomicU64::new(0);
        let stopped = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..options.threads {
                scope.spawn(|| loop {
                    let task = next.fetch_add(1, Ordering::Relaxed);
                    let Some((state, path)) = tasks.get(task) else {
                        break;
                    };
                    let mut worker = Pass::new(options, limit, &seen, &stop);
                    worker.path = path.clone();
                    let result = worker.explore(state, split);
                    transitions.fetch_add(worker.transitions, Ordering::Relaxed);
                    if worker.stopped {
                        stopped.store(true, Ordering::Relaxed);
                    }
                    if let Some(Found::Violation(violation)) = result {
                        let mut best = found.lock().unwrap_or_else(|e| e.into_inner());
                        if best.as_ref().is_none_or(|(at, _, _)| task < *at) {
                            *best = Some((task, violation, worker.path));
                        }
                        stop.store(true, Ordering::Relaxed);
                    }
                });
            }
        });
        end.transitions += transitions.into_inner();
        end.stopped |= stopped.into_inner();
        end.violation = (found.into_inner().unwrap_or_else(|e| e.into_inner())).map(|(_, v, path)| (v, path));
    }
    end.states = seen.len();
    end
}

/// Searches deeper and deeper up to `options.max_depth`; stops at the first violation, when a
/// depth adds no new state (the bounds closed the space), or at `options.max_states`.
pub(crate) fn explore(
    options: &CheckOptions,
    on_level: &mut dyn FnMut(&Level),
) -> Result<CheckReport, Box<CheckFailure>> {
    let started = Instant::now();
    let (initial, end) = walk(options, &options.prefix, None);
    let failure = |violation, actions: Vec<Action>, states| {
        Box::new(CheckFailure {
            violation,
            steps: crate::checker::replay(options, &actions).0,
            depth: actions.len() as u32,
            actions,
            states,
            elapsed: started.elapsed(),
        })
    };
    match end {
        ReplayEnd::Held => {}
        ReplayEnd::Violated(violation) => return Err(failure(violation, options.prefix.clone(), 0)),
        ReplayEnd::NotPossible(at) => {
            let error = format!("the prefix's action {} is not possible", at + 1);
            let violation = Violation::Unexpected { node: 0, error };
            return Err(failure(violation, options.prefix[..at].to_vec(), 0));
        }
    }
    let start = options.prefix.len() as u32;
    let mut levels: Vec<Level> = Vec::new();
    let mut transitions = 0;
    let mut complete = true;
    for limit in start + 1..=options.max_depth {
        let end = pass(options, &initial, start, limit);
        transitions += end.transitions;
        let total = end.states;
        if let Some((violation, path)) = end.violation {
            return Err(failure(violation, path, total));
        }
        let before = levels.last().map_or(1, |l| l.total_states);
        let level = Level {
            depth: limit,
            new_states: total.saturating_sub(before),
            total_states: total,
            elapsed: started.elapsed(),
        };
        on_level(&level);
        levels.push(level);
        if end.stopped {
            complete = false;
            break;
        }
        if total == before {
            break;
        }
    }
    Ok(CheckReport {
        states: levels.last().map_or(1, |l| l.total_states),
        transitions,
        levels,
        complete,
        elapsed: started.elapsed(),
    })
}

/// The shortest path from the initial state to a state where `goal` holds, within
/// `options.max_depth`; an error names what stopped the search.
pub(crate) fn shortest_path(
    options: &CheckOptions,
    goal: &dyn Fn(&State) -> bool,
) -> Result<Vec<Action>, String> {
    let initial = State::initial(options);
    for limit in 1..=options.max_depth {
        let seen = Seen::new(1);
        let stop = AtomicBool::new(false);
        seen.claim(initial.fingerprint(options), limit);
        let mut pass = Pass::new(options, limit, &seen, &stop);
        pass.goal = Some(goal);
        pass.path = Vec::new();
        match pass.explore(&initial, 0) {
            Some(Found::Goal) => return Ok(pass.path),
            Some(Found::Violation(violation)) => return Err(format!("a violation on the way: {violation}")),
            None if pass.stopped => return Err(format!("not within {} states", options.max_states)),
            None => {}
        }
    }
    Err(format!("not within {} actions", options.max_depth))
}

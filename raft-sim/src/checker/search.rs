//! Iterative deepening: a depth-first search to depth 1, then 2, and so on, each seeing every
//! state within its depth once (by fingerprint). The first violation is found in the first
//! search deep enough to reach it, so its path is a shortest one; and memory holds only the
//! fingerprints seen and one path of states, not a breadth-first frontier of whole clusters
//! (which filled 23 GB at depth 13).
//!
//! A state reached again by a shorter path has more depth left to explore, so the map keeps, for
//! each fingerprint, the most depth left with which it was explored, and explores it again when
//! it arrives with more.

use std::collections::HashMap;
use std::time::Instant;

use crate::checker::model::{Action, State};
use crate::checker::{walk, CheckFailure, CheckOptions, CheckReport, Level, ReplayEnd};
use crate::invariants::Violation;

/// What ended a path.
enum Found {
    Violation(Violation),
    Goal,
}

/// One depth-limited search.
struct Pass<'a> {
    options: &'a CheckOptions,
    /// A state to look for instead of a violation.
    goal: Option<&'a dyn Fn(&State) -> bool>,
    limit: u32,
    /// Fingerprint -> the most depth left with which the state was explored.
    seen: HashMap<u128, u32>,
    path: Vec<Action>,
    transitions: u64,
    /// The state budget ran out.
    stopped: bool,
}

impl Pass<'_> {
    /// Explores what follows `state` (at `depth`); returns the violation (or the goal) that
    /// ends the path in `self.path`, if one is found.
    fn explore(&mut self, state: &State, depth: u32) -> Option<Found> {
        if depth == self.limit || state.max_term() > self.options.max_term {
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
            let key = next.fingerprint(self.options);
            let fresh = self.seen.get(&key).is_none_or(|explored| *explored < left);
            if fresh {
                if self.seen.len() as u64 >= self.options.max_states {
                    self.stopped = true;
                    return None;
                }
                self.seen.insert(key, left);
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
        let mut pass = Pass {
            options,
            goal: None,
            limit,
            seen: HashMap::from([(initial.fingerprint(options), limit - start)]),
            path: options.prefix.clone(),
            transitions: 0,
            stopped: false,
        };
        let found = pass.explore(&initial, start);
        transitions += pass.transitions;
        let total = pass.seen.len() as u64;
        if let Some(Found::Violation(violation)) = found {
            return Err(failure(violation, pass.path, total));
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
        if pass.stopped {
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
        let mut pass = Pass {
            options,
            goal: Some(goal),
            limit,
            seen: HashMap::from([(initial.fingerprint(options), limit)]),
            path: Vec::new(),
            transitions: 0,
            stopped: false,
        };
        match pass.explore(&initial, 0) {
            Some(Found::Goal) => return Ok(pass.path),
            Some(Found::Violation(violation)) => return Err(format!("a violation on the way: {violation}")),
            None if pass.stopped => return Err(format!("not within {} states", options.max_states)),
            None => {}
        }
    }
    Err(format!("not within {} actions", options.max_depth))
}

//! Breadth-first search over the states of the checked world, with every state seen once (by
//! fingerprint) and the way back to the initial state kept, so that a violation comes with the
//! shortest sequence of actions that leads to it.

use std::collections::HashMap;
use std::time::Instant;

use crate::checker::model::{Action, State};
use crate::checker::{CheckFailure, CheckOptions, CheckReport, Level};

/// How a state was first reached: from which state, by which action.
#[derive(Clone, Copy)]
struct Parent {
    from: u64,
    action: Action,
}

/// The fingerprint the initial state's parent link points to.
const ROOT: u64 = 0;

/// Explores every state within the bounds, level by level; stops at the first violation.
pub(crate) fn explore(options: &CheckOptions) -> Result<CheckReport, Box<CheckFailure>> {
    let started = Instant::now();
    let initial = State::initial(options);
    let mut parents: HashMap<u64, Parent> = HashMap::new();
    parents.insert(
        initial.fingerprint(),
        Parent {
            from: ROOT,
            action: Action::Tick(0),
        },
    );
    let mut frontier = vec![(initial.fingerprint(), initial)];
    let mut levels = Vec::new();
    let mut actions = Vec::new();
    let mut transitions = 0u64;
    let mut complete = true;
    for depth in 1..=options.max_depth {
        let mut next = Vec::new();
        let mut new_states = 0u64;
        for (fingerprint, state) in &frontier {
            if state.max_term() > options.max_term {
                continue;
            }
            state.actions(options, &mut actions);
            for &action in &actions {
                transitions += 1;
                match state.after(action, options, None) {
                    Ok(successor) => {
                        let key = successor.fingerprint();
                        if parents.contains_key(&key) {
                            continue;
                        }
                        parents.insert(
                            key,
                            Parent {
                                from: *fingerprint,
                                action,
                            },
                        );
                        new_states += 1;
                        next.push((key, successor));
                    }
                    Err(violation) => {
                        let mut path = path_to(&parents, *fingerprint);
                        path.push(action);
                        return Err(Box::new(CheckFailure {
                            violation,
                            steps: crate::checker::replay_steps(options, &path),
                            actions: path,
                            depth,
                            states: parents.len() as u64,
                            elapsed: started.elapsed(),
                        }));
                    }
                }
            }
            if parents.len() as u64 >= options.max_states {
                complete = false;
                break;
            }
        }
        levels.push(Level {
            depth,
            new_states,
            total_states: parents.len() as u64,
            elapsed: started.elapsed(),
        });
        frontier = next;
        if !complete || frontier.is_empty() {
            break;
        }
    }
    Ok(CheckReport {
        states: parents.len() as u64,
        transitions,
        levels,
        complete,
        elapsed: started.elapsed(),
    })
}

/// The actions from the initial state to the state `to`.
fn path_to(parents: &HashMap<u64, Parent>, mut to: u64) -> Vec<Action> {
    let mut path = Vec::new();
    while let Some(parent) = parents.get(&to) {
        if parent.from == ROOT {
            break;
        }
        path.push(parent.action);
        to = parent.from;
    }
    path.reverse();
    path
}

//! A linearizability checker for key-value histories.
//!
//! The algorithm is Wing and Gong's search (1993) with Lowe's memoization (2017): walk the
//! history's call and return events in time order, try to linearize each pending call against a
//! model of the store, and backtrack when a return is reached whose operation could not be placed.
//! A set of (linearized operations, model state) pairs already explored prunes repeated work.
//! Keys are independent registers, so the history is split per key and each part checked alone,
//! which keeps the search small.
//!
//! Operations that certainly failed (`ok: false`) are left out. Operations whose outcome is
//! unknown get an infinite return time: the search may place them anywhere after their call,
//! including after everything else, which is the same as never taking effect. An unknown read
//! constrains nothing and is left out.
//!
//! ```
//! use raft_sim::history::{Command, Operation, Outcome};
//! use raft_sim::linearizability::{check, Verdict};
//!
//! let op = |call, ret, command| Operation {
//!     client_id: 0, key: "k".into(), command, call_ns: call, return_ns: Some(ret), outcome: Outcome::Ok,
//! };
//! // A read that starts after a write has returned must see it.
//! let stale = vec![
//!     op(0, 10, Command::Put { value: "v".into() }),
//!     op(20, 30, Command::Get { output: None }),
//! ];
//! assert!(matches!(check(&stale, 1_000_000), Verdict::NotLinearizable { .. }));
//! ```

use std::collections::{BTreeMap, HashSet};

use crate::history::{Command, Operation, Outcome};

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a valid linearization.
    Linearizable,
    /// This key's operations admit no linearization.
    NotLinearizable {
        /// The key.
        key: String,
        /// Its operations (completed and unknown), in call order.
        operations: Vec<Operation>,
    },
    /// The search for this key exceeded its step budget.
    Inconclusive {
        /// The key.
        key: String,
        /// Steps taken.
        steps: u64,
    },
}

/// Checks a whole history, key by key, with at most `max_steps` search steps per key.
pub fn check(history: &[Operation], max_steps: u64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        let relevant = !matches!(
            (op.outcome, &op.command),
            (Outcome::Failed, _) | (Outcome::Unknown, Command::Get { .. })
        );
        if relevant {
            by_key.entry(&op.key).or_default().push(op);
        }
    }
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| op.call_ns);
        match check_register(&ops, max_steps) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::NotLinearizable => {
                return Verdict::NotLinearizable {
                    key: key.to_string(),
                    operations: ops.into_iter().cloned().collect(),
                }
            }
            KeyVerdict::Inconclusive(steps) => {
                return Verdict::Inconclusive {
                    key: key.to_string(),
                    steps,
                }
            }
        }
    }
    Verdict::Linearizable
}

enum KeyVerdict {
    Linearizable,
    NotLinearizable,
    Inconclusive(u64),
}

/// The register's next state if `op` may take effect in `state`, or `None` if its observed
/// result contradicts `state`.
fn apply(state: &Option<String>, op: &Operation) -> Option<Option<String>> {
    let completed = op.outcome == Outcome::Ok;
    match &op.command {
        Command::Get { output } => (state == output).then(|| state.clone()),
        Command::Put { value } => Some(Some(value.clone())),
        Command::Append { value } => {
            let mut next = state.clone().unwrap_or_default();
            next.push_str(value);
            Some(Some(next))
        }
        Command::Cas {
            expected,
            value,
            swapped,
        } => {
            let holds = state == expected;
            if completed && holds != *swapped {
                None
            } else if holds {
                Some(Some(value.clone()))
            } else {
                Some(state.clone())
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// The index of the matching return event (for a call).
    partner: usize,
}

/// Wing & Gong with Lowe's memoization over one key's operations.
fn check_register(ops: &[&Operation], max_steps: u64) -> KeyVerdict {
    // Events in time order; at equal times calls come first, so touching operations overlap.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call_ns, 0, i));
        order.push((op.return_ns.unwrap_or(u64::MAX), 1, i));
    }
    order.sort_unstable();
    let mut events: Vec<Event> = order
        .iter()
        .map(|&(_, kind, op)| Event {
            op,
            is_call: kind == 0,
            partner: 0,
        })
        .collect();
    let mut return_of = vec![0; ops.len()];
    for (position, event) in events.iter().enumerate() {
        if !event.is_call {
            return_of[event.op] = position;
        }
    }
    for event in events.iter_mut() {
        if event.is_call {
            event.partner = return_of[event.op];
        }
    }

    // A doubly linked list over the events; index `head` is the sentinel.
    let count = events.len();
    if count == 0 {
        return KeyVerdict::Linearizable;
    }
    let head = count;
    let mut next: Vec<usize> = (1..=count + 1).collect();
    let mut prev: Vec<usize> = Vec::with_capacity(count + 1);
    prev.push(head);
    prev.extend(0..count);
    next[count] = 0;
    next[count - 1] = head;
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = next[node];
        prev[next[node]] = prev[node];
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = node;
        prev[next[node]] = node;
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut state: Option<String> = None;
    let mut entry = next[head];
    let mut steps = 0u64;
    while next[head] != head {
        steps += 1;
        if steps > max_steps {
            return KeyVerdict::Inconclusive(steps);
        }
        let event = events[entry];
        if event.is_call {
            if let Some(new_state) = apply(&state, ops[event.op]) {
                let (word, bit) = (event.op / 64, 1u64 << (event.op % 64));
                linearized[word] |= bit;
                if seen.insert((linearized.clone(), new_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, new_state)));
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, event.partner);
                    entry = next[head];
                    continue;
                }
                linearized[word] &= !bit;
            }
            entry = next[entry];
        } else {
            // An operation returned before anything let it be placed: undo the last choice.
            let Some((call, previous_state)) = stack.pop() else {
                return KeyVerdict::NotLinearizable;
            };
            let op = events[call].op;
            linearized[op / 64] &= !(1u64 << (op % 64));
            state = previous_state;
            relink(&mut next, &mut prev, events[call].partner);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    KeyVerdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, call: u64, ret: Option<u64>, outcome: Outcome, command: Command) -> Operation {
        Operation {
            client_id: client,
            key: "k".into(),
            command,
            call_ns: call,
            return_ns: ret,
            outcome,
        }
    }
    fn ok(client: u64, call: u64, ret: u64, command: Command) -> Operation {
        op(client, call, Some(ret), Outcome::Ok, command)
    }
    fn put(v: &str) -> Command {
        Command::Put { value: v.into() }
    }
    fn get(v: Option<&str>) -> Command {
        Command::Get {
            output: v.map(str::to_string),
        }
    }
    fn append(v: &str) -> Command {
        Command::Append { value: v.into() }
    }
    fn linearizable(history: &[Operation]) -> bool {
        match check(history, 1_000_000) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } => false,
            Verdict::Inconclusive { .. } => panic!("inconclusive"),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            ok(1, 0, 1, put("a")),
            ok(1, 2, 3, get(Some("a"))),
            ok(2, 4, 5, append("b")),
            ok(2, 6, 7, get(Some("ab"))),
        ];
        assert!(linearizable(&h));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        let old = [
            ok(1, 0, 1, put("a")),
            ok(1, 2, 10, put("b")),
            ok(2, 3, 4, get(Some("a"))),
        ];
        let new = [
            ok(1, 0, 1, put("a")),
            ok(1, 2, 10, put("b")),
            ok(2, 3, 4, get(Some("b"))),
        ];
        assert!(linearizable(&old));
        assert!(linearizable(&new));
    }

    #[test]
    fn stale_read_is_not_linearizable() {
        let h = [
            ok(1, 0, 1, put("a")),
            ok(1, 2, 3, put("b")),
            ok(2, 4, 5, get(Some("a"))),
        ];
        assert!(!linearizable(&h));
    }

    #[test]
    fn lost_write_is_not_linearizable() {
        let h = [ok(1, 0, 1, put("a")), ok(2, 2, 3, get(None))];
        assert!(!linearizable(&h));
    }

    #[test]
    fn failed_write_that_becomes_visible_is_not_linearizable() {
        let h = [
            op(1, 0, Some(1), Outcome::Failed, put("x")),
            ok(2, 2, 3, get(Some("x"))),
        ];
        assert!(!linearizable(&h));
    }

    #[test]
    fn unknown_write_may_or_may_not_take_effect() {
        let seen = [
            op(1, 0, None, Outcome::Unknown, put("x")),
            ok(2, 5, 6, get(Some("x"))),
        ];
        let unseen = [op(1, 0, None, Outcome::Unknown, put("x")), ok(2, 5, 6, get(None))];
        assert!(linearizable(&seen));
        assert!(linearizable(&unseen));
        // But never before it was called.
        let early = [
            ok(2, 0, 1, get(Some("x"))),
            op(1, 5, None, Outcome::Unknown, put("x")),
        ];
        assert!(!linearizable(&early));
    }

    #[test]
    fn appends_are_ordered_once() {
        let ba = [
            ok(1, 0, 10, append("a")),
            ok(2, 0, 10, append("b")),
            ok(3, 11, 12, get(Some("ba"))),
        ];
        let twice = [
            ok(1, 0, 10, append("a")),
            ok(2, 0, 10, append("b")),
            ok(3, 11, 12, get(Some("aba"))),
        ];
        assert!(linearizable(&ba));
        assert!(!linearizable(&twice));
    }

    #[test]
    fn compare_and_swap_must_agree_with_the_state() {
        let cas = |expected: Option<&str>, swapped| Command::Cas {
            expected: expected.map(str::to_string),
            value: "z".into(),
            swapped,
        };
        let good = [
            ok(1, 0, 1, put("a")),
            ok(2, 2, 3, cas(Some("a"), true)),
            ok(2, 4, 5, get(Some("z"))),
        ];
        let bad = [ok(1, 0, 1, put("a")), ok(2, 2, 3, cas(None, true))];
        let refused_wrongly = [ok(1, 0, 1, put("a")), ok(2, 2, 3, cas(Some("a"), false))];
        assert!(linearizable(&good));
        assert!(!linearizable(&bad));
        assert!(!linearizable(&refused_wrongly));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = vec![ok(1, 0, 1, put("a")), ok(1, 2, 3, get(Some("a")))];
        let mut other = ok(2, 0, 1, put("b"));
        other.key = "other".into();
        let mut stale = ok(2, 2, 3, get(None));
        stale.key = "other".into();
        h.push(other);
        h.push(stale);
        match check(&h, 1000) {
            Verdict::NotLinearizable { key, .. } => assert_eq!(key, "other"),
            v => panic!("expected a violation on key other, got {v:?}"),
        }
    }

    #[test]
    fn many_concurrent_operations_check_quickly() {
        // 8 clients, 400 operations on one key, a valid sequential execution with overlaps.
        let mut h = Vec::new();
        let mut value = String::new();
        for i in 0..400u64 {
            let client = i % 8;
            let call = i * 10;
            if i % 3 == 0 {
                h.push(ok(
                    client,
                    call,
                    call + 25,
                    get(Some(&value).filter(|v| !v.is_empty()).map(|v| v.as_str())),
                ));
            } else {
                let s = format!("{i},");
                value.push_str(&s);
                h.push(ok(client, call, call + 25, append(&s)));
            }
        }
        assert!(linearizable(&h));
    }
}

//! The records folded into what the picture shows: per node, the bands of its state over time,
//! where its term changed, and its commit index; for the cluster, the markers.

use std::collections::BTreeMap;

use crate::event::{Event, Fault, Record, Role};

/// What a band of a lane shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LaneState {
    /// Running in this role.
    Role(Role),
    /// Paused: alive, but doing nothing.
    Paused,
    /// Not running.
    Down,
}

/// A stretch of time in one state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    /// From.
    pub start: f64,
    /// To.
    pub end: f64,
    /// The state.
    pub state: LaneState,
}

/// One node's lane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lane {
    /// Its states, in order, covering the run.
    pub bands: Vec<Band>,
    /// Where its term changed: (time, new term).
    pub terms: Vec<(f64, u64)>,
    /// Its commit index: (time, index), in order.
    pub commits: Vec<(f64, u64)>,
    /// Faults on this node: (time, fault, detail).
    pub faults: Vec<(f64, Fault, String)>,
}

/// A timeline ready to draw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lanes {
    /// The lanes, by node.
    pub lanes: BTreeMap<u64, Lane>,
    /// Faults on the whole cluster: (time, fault, detail).
    pub cluster_faults: Vec<(f64, Fault, String)>,
    /// Membership changes: (time, voters, learners).
    pub memberships: Vec<(f64, Vec<u64>, Vec<u64>)>,
    /// The first time, and the last one plus a margin (3 % of the run, at least 1).
    pub span: (f64, f64),
    /// The highest commit index.
    pub max_commit: u64,
}

/// Where one node is while the records are folded.
struct Cursor {
    since: f64,
    state: LaneState,
    /// The role to return to after a pause.
    role: Role,
    term: u64,
}

impl Lanes {
    /// Folds `records` (in time order) into lanes.
    pub fn of(records: &[Record]) -> Lanes {
        let mut lanes = Lanes::default();
        let times = records.iter().map(|r| r.time).filter(|t| t.is_finite());
        let start = times.clone().fold(f64::INFINITY, f64::min);
        let end = times.fold(f64::NEG_INFINITY, f64::max);
        if !start.is_finite() {
            return lanes;
        }
        // A little room after the last record, so that the state it leads to shows.
        lanes.span = (start, end + ((end - start) * 0.03).max(1.0));
        let mut cursors: BTreeMap<u64, Cursor> = BTreeMap::new();
        let mut learners: Vec<u64> = Vec::new();
        for record in records {
            // A configuration is the cluster's, whichever node reported it.
            if let Event::Membership {
                voters,
                learners: new,
            } = &record.event
            {
                lanes.memberships.push((record.time, voters.clone(), new.clone()));
                learners.clone_from(new);
                for id in voters.iter().chain(new) {
                    lanes.lanes.entry(*id).or_default();
                }
                continue;
            }
            let Some(node) = record.node else {
                if let Event::Fault { fault, detail } = &record.event {
                    lanes.cluster_faults.push((record.time, *fault, detail.clone()));
                }
                continue;
            };
            let lane = lanes.lanes.entry(node).or_default();
            let cursor = cursors.entry(node).or_insert(Cursor {
                since: start,
                state: LaneState::Role(Role::Follower),
                role: Role::Follower,
                term: 0,
            });
            let next = match &record.event {
                Event::Role { role, term } => {
                    if *term != cursor.term {
                        lane.terms.push((record.time, *term));
                        cursor.term = *term;
                    }
                    let role = if *role == Role::Follower && learners.contains(&node) {
                        Role::Learner
                    } else {
                        *role
                    };
                    cursor.role = role;
                    // A down node's role changes only once it is back.
                    (cursor.state != LaneState::Down).then_some(LaneState::Role(role))
                }
                Event::Commit { index } => {
                    lane.commits.push((record.time, *index));
                    lanes.max_commit = lanes.max_commit.max(*index);
                    None
                }
                Event::Fault { fault, detail } => {
                    lane.faults.push((record.time, *fault, detail.clone()));
                    match fault {
                        Fault::Kill | Fault::DiskFailure => {
                            cursor.role = Role::Follower;
                            Some(LaneState::Down)
                        }
                        Fault::Pause => Some(LaneState::Paused),
                        Fault::Restart | Fault::Resume => Some(LaneState::Role(cursor.role)),
                        _ => None,
                    }
                }
                Event::Membership { .. } | Event::Meta { .. } => None,
            };
            if let Some(state) = next.filter(|s| *s != cursor.state) {
                if record.time > cursor.since {
                    lane.bands.push(Band {
                        start: cursor.since,
                        end: record.time,
                        state: cursor.state,
                    });
                }
                cursor.since = record.time;
                cursor.state = state;
            }
        }
        let end = lanes.span.1;
        for (node, cursor) in cursors {
            if let Some(lane) = lanes.lanes.get_mut(&node) {
                lane.bands.push(Band {
                    start: cursor.since,
                    end,
                    state: cursor.state,
                });
            }
        }
        lanes
    }

    /// The nodes that led, and when: (node, start, end) per leader band.
    pub fn leaders(&self) -> Vec<(u64, f64, f64)> {
        let mut leaders: Vec<(u64, f64, f64)> = self
            .lanes
            .iter()
            .flat_map(|(node, lane)| {
                lane.bands
                    .iter()
                    .filter(|b| b.state == LaneState::Role(Role::Leader))
                    .map(move |b| (*node, b.start, b.end))
            })
            .collect();
        leaders.sort_by(|a, b| a.1.total_cmp(&b.1));
        leaders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: f64, node: u64, event: Event) -> Record {
        Record {
            time,
            node: Some(node),
            event,
        }
    }

    fn role(role: Role, term: u64) -> Event {
        Event::Role { role, term }
    }

    #[test]
    fn a_killed_leader_is_down_until_it_restarts_as_a_follower() {
        let kill = Event::Fault {
            fault: Fault::Kill,
            detail: String::new(),
        };
        let restart = Event::Fault {
            fault: Fault::Restart,
            detail: String::new(),
        };
        let records = vec![
            at(0.0, 1, role(Role::Follower, 0)),
            at(10.0, 1, role(Role::Candidate, 1)),
            at(12.0, 1, role(Role::Leader, 1)),
            at(50.0, 1, kill),
            at(80.0, 1, restart),
            at(90.0, 1, role(Role::Follower, 2)),
            at(100.0, 1, Event::Commit { index: 7 }),
        ];
        let lanes = Lanes::of(&records);
        let states: Vec<(f64, f64, LaneState)> = lanes.lanes[&1]
            .bands
            .iter()
            .map(|b| (b.start, b.end, b.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (0.0, 10.0, LaneState::Role(Role::Follower)),
                (10.0, 12.0, LaneState::Role(Role::Candidate)),
                (12.0, 50.0, LaneState::Role(Role::Leader)),
                (50.0, 80.0, LaneState::Down),
                (80.0, 103.0, LaneState::Role(Role::Follower)),
            ]
        );
        assert_eq!(lanes.lanes[&1].terms, vec![(10.0, 1), (90.0, 2)]);
        assert_eq!(lanes.leaders(), vec![(1, 12.0, 50.0)]);
        assert_eq!(lanes.max_commit, 7);
    }

    #[test]
    fn a_follower_in_the_learner_set_is_drawn_as_a_learner() {
        let records = vec![
            Record {
                time: 0.0,
                node: None,
                event: Event::Membership {
                    voters: vec![1, 2, 3],
                    learners: vec![4],
                },
            },
            at(1.0, 4, role(Role::Follower, 1)),
            at(5.0, 4, Event::Commit { index: 1 }),
        ];
        let lanes = Lanes::of(&records);
        assert_eq!(lanes.lanes.len(), 4, "every member has a lane");
        assert_eq!(
            lanes.lanes[&4].bands.last().map(|b| b.state),
            Some(LaneState::Role(Role::Learner))
        );
    }
}

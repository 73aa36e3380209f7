//! A simulation run as a [`Timeline`]: the trace's role changes, commits, faults and membership
//! changes, by step, for `raft-sim --seed N --timeline out.svg` and for the picture a failing seed
//! leaves beside its trace.

use std::path::{Path, PathBuf};

use raft_core::{NodeId, Role as CoreRole};
use raft_timeline::{Event as Mark, Fault, Role, Timeline, TimelineError};

use crate::trace::Event;
use crate::{SimFailure, SimOptions, Simulation};

/// Whether a timeline shows `event` (it leaves out messages, proposals and reads).
pub(crate) fn shows(event: &Event) -> bool {
    !matches!(
        event,
        Event::Deliver(_)
            | Event::Lost { .. }
            | Event::Propose { .. }
            | Event::Durable { .. }
            | Event::Hostile { .. }
            | Event::Read { .. }
            | Event::ReadReady { .. }
            | Event::SnapshotBuilt { .. }
            | Event::SnapshotInstalled { .. }
    )
}

/// The nodes whose bit is set in `bits` (bit i is node i + 1).
fn nodes_of(bits: u64) -> Vec<u64> {
    (0..64).filter(|i| bits & (1 << i) != 0).map(|i| i + 1).collect()
}

/// The timeline of a run of `voters` initial voters from the events the trace kept.
pub(crate) fn of_run(title: String, voters: u64, events: &[(u64, Event)]) -> Timeline {
    let mut timeline = Timeline::new(title, "step");
    timeline.push(
        0.0,
        None,
        Mark::Membership {
            voters: (1..=voters).collect(),
            learners: Vec::new(),
        },
    );
    for node in 1..=voters {
        timeline.push(
            0.0,
            Some(node),
            Mark::Role {
                role: Role::Follower,
                term: 0,
            },
        );
    }
    let fault = |fault, detail: String| Mark::Fault { fault, detail };
    for &(step, event) in events {
        let at = step as f64;
        let (node, mark): (Option<NodeId>, Mark) = match event {
            Event::Role { node, role, term } => {
                let role = match role {
                    CoreRole::Follower => Role::Follower,
                    CoreRole::PreCandidate => Role::PreCandidate,
                    CoreRole::Candidate => Role::Candidate,
                    CoreRole::Leader => Role::Leader,
                };
                (Some(node), Mark::Role { role, term })
            }
            Event::Commit { node, index } => (Some(node), Mark::Commit { index }),
            Event::Crash { node, lost_writes } => (
                Some(node),
                fault(Fault::Kill, format!("({lost_writes} unsynced lost)")),
            ),
            Event::DiskFailure { node, .. } => (Some(node), fault(Fault::DiskFailure, String::new())),
            Event::Restart { node, .. } => (Some(node), fault(Fault::Restart, String::new())),
            Event::Isolate { node } => (Some(node), fault(Fault::Isolate, String::new())),
            Event::Split { group } => (
                None,
                fault(Fault::Partition, format!("{:?} | rest", nodes_of(group))),
            ),
            Event::Cut { from, to } => (Some(from), fault(Fault::Cut, format!("{from}->{to}"))),
            Event::Heal => (None, fault(Fault::Heal, String::new())),
            Event::Calm => (None, fault(Fault::Calm, String::new())),
            Event::Transfer { from, to } => (Some(from), fault(Fault::Transfer, format!("to {to}"))),
            Event::Reconfigure { voters, learners, .. } => (
                None,
                Mark::Membership {
                    voters: nodes_of(voters),
                    learners: nodes_of(learners),
                },
            ),
            _ => continue,
        };
        timeline.push(at, node, mark);
    }
    timeline
}

/// Where timelines go: `$RAFT_TIMELINE_DIR`, or `target/timelines` under the workspace.
pub fn timeline_dir() -> PathBuf {
    std::env::var_os("RAFT_TIMELINE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/timelines"))
}

/// Replays the failing seed with its timeline recorded (the same run, step for step) and writes
/// `seed-N.svg` and `seed-N.jsonl` into `dir`; returns the picture's path.
pub fn write_failure_timeline(failure: &SimFailure, dir: &Path) -> Result<PathBuf, TimelineError> {
    write_seed_timeline(failure.seed, failure.options.clone(), dir)
}

/// Runs `seed` with `options`, recording its timeline, and writes `seed-N.svg` and
/// `seed-N.jsonl` into `dir`; returns the picture's path.
pub fn write_seed_timeline(seed: u64, options: SimOptions, dir: &Path) -> Result<PathBuf, TimelineError> {
    let (_, timeline) = Simulation::new(seed, options).run_with_timeline();
    let svg = dir.join(format!("seed-{seed}.svg"));
    timeline.write_jsonl(&dir.join(format!("seed-{seed}.jsonl")))?;
    timeline.write_svg(&svg)?;
    Ok(svg)
}

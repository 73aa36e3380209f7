//! Deterministic simulation of `raft-core` clusters, with Raft's safety properties checked after
//! every step.
//!
//! One seed drives every choice: message delays (and so their order), loss, duplication,
//! partitions (isolating a node or the leader, splitting the cluster, cutting one direction of a
//! link), crashes that lose the writes not yet durable, restarts, clock skew between nodes, and
//! proposals. The nodes run the real `RaftCore`, not a model of it. After every step the
//! [`Violation`]s of election safety, leader append-only, log matching, leader completeness, state
//! machine safety and monotonic durable state are checked; after the faults stop, the cluster must
//! elect a leader and commit a new entry within a bound (liveness).
//!
//! A failure prints its seed and the last events; [`run_seed`] with that seed replays the run
//! exactly, step for step:
//!
//! ```text
//! cargo run -p raft-sim -- --seed 1234          # replay one seed, with its trace on failure
//! cargo run --release -p raft-sim -- --seeds 0..100000   # soak
//! RAFT_SIM_SEED=1234 cargo test -p raft-sim --test simulation
//! ```
//!
//! ```
//! let report = raft_sim::run_seed(42).expect("seed 42 holds every invariant");
//! println!("{:?}", report.stats);
//! ```

pub mod checker;
mod cluster;
pub mod history;
mod hostile;
mod invariants;
pub mod linearizability;
mod log_mirror;
mod network;
mod node;
mod options;
mod simulation;
pub mod timeline;
mod trace;

pub use crate::invariants::Violation;
pub use crate::options::{SeedFamily, SimOptions};
pub use crate::simulation::{run_seed, SimFailure, SimReport, SimStats, Simulation};
pub use crate::trace::Event;
pub use raft_core::PlantedBug;

/// Runs `seeds` with `bug` planted in every node (or none), on `threads` threads, and returns the
/// failures in seed order.
pub fn run_seeds(
    seeds: std::ops::Range<u64>,
    bug: Option<PlantedBug>,
    threads: usize,
    stop_at_first: bool,
) -> (Vec<SimReport>, Vec<SimFailure>) {
    let seeds: Vec<u64> = seeds.collect();
    run_seed_list(&seeds, bug, threads, stop_at_first)
}

/// Runs each seed of `seeds` (any order, gaps allowed) like [`run_seeds`]; the reports and the
/// failures come back in seed order.
pub fn run_seed_list(
    seeds: &[u64],
    bug: Option<PlantedBug>,
    threads: usize,
    stop_at_first: bool,
) -> (Vec<SimReport>, Vec<SimFailure>) {
    run_seed_list_in(SeedFamily::Mixed, seeds, bug, threads, stop_at_first)
}

/// [`run_seed_list`] with the settings each seed draws within `family`
/// ([`SimOptions::for_seed_in`]).
pub fn run_seed_list_in(
    family: SeedFamily,
    seeds: &[u64],
    bug: Option<PlantedBug>,
    threads: usize,
    stop_at_first: bool,
) -> (Vec<SimReport>, Vec<SimFailure>) {
    run_seed_list_observed(family, seeds, bug, threads, stop_at_first, &|_| {})
}

/// What [`run_seed_list_observed`] reports as each seed finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedOutcome {
    /// The seed that finished.
    pub seed: u64,
    /// Whether every invariant held.
    pub passed: bool,
}

/// [`run_seed_list_in`], calling `observe` (from the thread that ran it) as each seed finishes,
/// in the order they finish: a long soak can show its progress and name a failing seed at once,
/// not only at the end.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use raft_sim::{run_seed_list_observed, SeedFamily};
///
/// let finished = AtomicUsize::new(0);
/// let (reports, failures) = run_seed_list_observed(SeedFamily::Mixed, &[1, 2], None, 2, false, &|_| {
///     finished.fetch_add(1, Ordering::Relaxed);
/// });
/// assert_eq!(finished.load(Ordering::Relaxed), reports.len() + failures.len());
/// ```
pub fn run_seed_list_observed(
    family: SeedFamily,
    seeds: &[u64],
    bug: Option<PlantedBug>,
    threads: usize,
    stop_at_first: bool,
    observe: &(dyn Fn(SeedOutcome) + Sync),
) -> (Vec<SimReport>, Vec<SimFailure>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let reports = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let options = SimOptions::for_seed_in(family, seed).with_planted_bug(bug);
                    match Simulation::new(seed, options).run() {
                        Ok(report) => {
                            reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
                            observe(SeedOutcome { seed, passed: true });
                        }
                        Err(failure) => {
                            failures.lock().unwrap_or_else(|e| e.into_inner()).push(*failure);
                            if stop_at_first {
                                stop.store(true, Ordering::Relaxed);
                            }
                            observe(SeedOutcome { seed, passed: false });
                        }
                    }
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|r| r.seed);
    failures.sort_by_key(|f| f.seed);
    (reports, failures)
}

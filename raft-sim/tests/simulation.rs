//! The simulator over many seeds, in CI.
//!
//! * `RAFT_SIM_SEED=N` runs only seed N (to replay a failure; its trace is printed).
//! * `RAFT_SIM_SEEDS=N` changes how many seeds the sweep runs (default 5,000).

use std::time::Instant;

use raft_sim::{run_seed, run_seeds, PlantedBug, SimOptions, Simulation};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_invariant_holds_at_every_step_for_many_seeds() {
    let seeds = match env_u64("RAFT_SIM_SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..env_u64("RAFT_SIM_SEEDS").unwrap_or(5000),
    };
    let started = Instant::now();
    let (reports, failures) = run_seeds(seeds.clone(), None, 2, false);
    let steps: u64 = reports.iter().map(|r| r.stats.steps).sum();
    let crashes: u64 = reports.iter().map(|r| r.stats.crashes).sum();
    let elections: u64 = reports.iter().map(|r| r.stats.elections).sum();
    let built: u64 = reports.iter().map(|r| r.stats.snapshots_built).sum();
    let installed: u64 = reports.iter().map(|r| r.stats.snapshots_installed).sum();
    println!(
        "simulated seeds {seeds:?} in {:.1?}: {steps} steps, {elections} elections, {crashes} crashes, \
         {built} snapshots built, {installed} installed from a leader",
        started.elapsed()
    );
    if let Some(first) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
        panic!("{} of the seeds failed: {seeds:?}\n\n{first}", failures.len());
    }
    assert_eq!(reports.len() as u64, seeds.end - seeds.start);
    assert!(
        reports.iter().all(|r| r.stats.committed > 0),
        "every run commits something"
    );
    if seeds.end - seeds.start >= 100 {
        assert!(
            built > 0 && installed > 0,
            "the sweep exercises compaction and InstallSnapshot"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 99] {
        assert_eq!(run_seed(seed).unwrap(), run_seed(seed).unwrap(), "seed {seed}");
    }
    // A failing run replays to the same step with the same trace.
    let options = || SimOptions::for_seed(1).with_planted_bug(Some(PlantedBug::GrantSecondVoteInTerm));
    let first = Simulation::new(1, options()).run().unwrap_err();
    let again = Simulation::new(1, options()).run().unwrap_err();
    assert_eq!(
        (first.step, &first.violation, &first.trace),
        (again.step, &again.violation, &again.trace)
    );
}

#[test]
fn different_seeds_explore_different_runs() {
    let a = run_seed(1).unwrap();
    let b = run_seed(2).unwrap();
    assert_ne!(a.stats, b.stats);
}

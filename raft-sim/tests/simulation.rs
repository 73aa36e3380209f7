//! The simulator over many seeds, in CI.
//!
//! * Every seed in `raft-sim/regression-seeds.txt` (each one failed once) runs on every run.
//! * A sweep of fresh seeds: `RAFT_SIM_SWEEP_START` (CI sets it from the commit) or, by default,
//!   a window chosen by today's date, so that runs do not keep proving the same seeds. The window
//!   is printed; a failure names its seed and how to replay it.
//! * `RAFT_SIM_SEEDS=N` changes how many fresh seeds the sweep runs (default 10,000).
//! * `RAFT_SIM_SEED=N` runs only seed N (to replay a failure; its trace is printed).

use std::ops::Range;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use raft_sim::timeline::{timeline_dir, write_failure_timeline};
use raft_sim::{run_seed, run_seed_list_in, PlantedBug, SeedFamily, SimOptions, Simulation};
use raft_timeline::{Fault, Timeline};

/// Where the date-chosen windows start: above every range swept by hand so far.
const FRESH_SEEDS_FROM: u64 = 10_000_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seeds of `regression-seeds.txt`.
fn regression_seeds() -> Vec<u64> {
    include_str!("../regression-seeds.txt")
        .lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|seed| seed.trim().parse().ok())
        .collect()
}

/// The fresh window for this run.
fn fresh_window(count: u64) -> Range<u64> {
    let start = env_u64("RAFT_SIM_SWEEP_START").unwrap_or_else(|| {
        let days = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() / 86_400);
        FRESH_SEEDS_FROM + days * count
    });
    start..start.saturating_add(count)
}

/// Runs `seeds` on both cores and fails with every failing seed and the first failure's trace.
fn sweep(what: &str, seeds: &[u64]) -> Vec<raft_sim::SimReport> {
    sweep_in(SeedFamily::Mixed, what, seeds)
}

/// [`sweep`] over the settings `family` draws.
fn sweep_in(family: SeedFamily, what: &str, seeds: &[u64]) -> Vec<raft_sim::SimReport> {
    let started = Instant::now();
    let (reports, failures) = run_seed_list_in(family, seeds, None, 2, false);
    let steps: u64 = reports.iter().map(|r| r.stats.steps).sum();
    let crashes: u64 = reports.iter().map(|r| r.stats.crashes).sum();
    let elections: u64 = reports.iter().map(|r| r.stats.elections).sum();
    let built: u64 = reports.iter().map(|r| r.stats.snapshots_built).sum();
    let installed: u64 = reports.iter().map(|r| r.stats.snapshots_installed).sum();
    let disk_failures: u64 = reports.iter().map(|r| r.stats.disk_failures).sum();
    let hostile: u64 = reports.iter().map(|r| r.stats.hostile).sum();
    println!(
        "{what}: {} seeds in {:.1?}: {steps} steps, {elections} elections, {crashes} crashes, \
         {disk_failures} disk failures, {hostile} hostile messages, {built} snapshots built, \
         {installed} installed from a leader",
        seeds.len(),
        started.elapsed()
    );
    if let Some(first) = failures.first() {
        let failed: Vec<u64> = failures.iter().map(|f| f.seed).collect();
        let picture = match write_failure_timeline(first, &timeline_dir()) {
            Ok(path) => format!("the first failure's timeline: {}", path.display()),
            Err(error) => format!("no timeline: {error}"),
        };
        panic!(
            "{what}: {} of the seeds failed: {failed:?}\n\
             add them to raft-sim/regression-seeds.txt; replay one with \
             `cargo run -p raft-sim -- --seed N{}`\n{picture}\n\n{first}",
            failures.len(),
            family.replay_flags()
        );
    }
    assert_eq!(reports.len(), seeds.len());
    assert!(
        reports.iter().all(|r| r.stats.committed > 0),
        "every run commits something"
    );
    reports
}

#[test]
fn every_invariant_holds_at_every_step_for_a_window_of_fresh_seeds() {
    let seeds = match env_u64("RAFT_SIM_SEED") {
        Some(seed) => seed..seed + 1,
        None => fresh_window(env_u64("RAFT_SIM_SEEDS").unwrap_or(10_000)),
    };
    println!(
        "sweeping seeds {seeds:?} (this window again: RAFT_SIM_SWEEP_START={} \
         RAFT_SIM_SEEDS={} cargo test -p raft-sim --release --test simulation)",
        seeds.start,
        seeds.end - seeds.start
    );
    let all: Vec<u64> = seeds.clone().collect();
    let reports = sweep(&format!("fresh seeds {seeds:?}"), &all);
    if seeds.end - seeds.start >= 100 {
        let built: u64 = reports.iter().map(|r| r.stats.snapshots_built).sum();
        let installed: u64 = reports.iter().map(|r| r.stats.snapshots_installed).sum();
        assert!(
            built > 0 && installed > 0,
            "the sweep exercises compaction and InstallSnapshot"
        );
        let disk_failures: u64 = reports.iter().map(|r| r.stats.disk_failures).sum();
        let hostile: u64 = reports.iter().map(|r| r.stats.hostile).sum();
        assert!(
            disk_failures > 0 && hostile > 0,
            "the sweep exercises failing disks and hostile messages"
        );
    }
}

#[test]
fn the_snapshot_family_holds_every_invariant_for_a_window_of_fresh_seeds() {
    // A window of its own, far from the mixed one: a thousand seeds that snapshot every 5
    // entries on slow disks, so restores and builds overlap often.
    let count = env_u64("RAFT_SIM_FAMILY_SEEDS").unwrap_or(1_000);
    let window = fresh_window(count);
    let from = window.start + 500_000_000;
    let seeds: Vec<u64> = (from..from + count).collect();
    let what = format!("snapshots family, {count} seeds from {from}");
    let reports = sweep_in(SeedFamily::Snapshots, &what, &seeds);
    let installed: u64 = reports.iter().map(|r| r.stats.snapshots_installed).sum();
    assert!(installed > 0, "the family installs snapshots from leaders");
}

#[test]
fn regression_seeds_hold_every_invariant() {
    let seeds = regression_seeds();
    assert!(seeds.len() >= 7, "the regression list was read: {seeds:?}");
    sweep("regression seeds", &seeds);
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
fn recording_a_timeline_leaves_the_run_as_it_was_and_shows_its_leaders_and_faults() {
    for seed in [5, 23] {
        let plain = run_seed(seed).unwrap();
        let (recorded, timeline) = Simulation::new(seed, SimOptions::for_seed(seed)).run_with_timeline();
        assert_eq!(recorded.unwrap(), plain, "seed {seed}: the same run");
        let lanes = timeline.lanes();
        assert!(lanes.lanes.len() as u64 >= plain.nodes, "a lane per node");
        assert!(!lanes.leaders().is_empty(), "seed {seed}: someone led");
        assert!(lanes.max_commit > 0, "seed {seed}: commits are drawn");
        assert!(
            lanes
                .cluster_faults
                .iter()
                .any(|(_, fault, _)| *fault == Fault::Calm),
            "seed {seed}: the end of the faults is marked"
        );
        let svg = timeline.render_svg().unwrap();
        assert!(svg.contains(&format!("simulation seed {seed}")));
    }
}

#[test]
fn a_failing_seed_leaves_its_timeline_on_disk() {
    let options = SimOptions::for_seed(1).with_planted_bug(Some(PlantedBug::GrantSecondVoteInTerm));
    let failure = Simulation::new(1, options).run().unwrap_err();
    let dir = std::env::temp_dir().join(format!("raft-sim-timeline-{}", std::process::id()));
    let path = write_failure_timeline(&failure, &dir).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("simulation seed 1: "), "the title names the seed");
    assert!(
        svg.contains(&format!("at step {}", failure.step)),
        "and where it failed"
    );
    let log = Timeline::read_jsonl(&path.with_extension("jsonl")).unwrap();
    assert!(!log.records.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn different_seeds_explore_different_runs() {
    let a = run_seed(1).unwrap();
    let b = run_seed(2).unwrap();
    assert_ne!(a.stats, b.stats);
}

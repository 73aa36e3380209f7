//! `raft-sim`: replay one simulation seed, or soak many.
//!
//! ```text
//! raft-sim --seed 1234                    # replay one seed; prints the trace if it fails
//! raft-sim --seeds 0..100000 --threads 2  # soak; prints every failing seed
//! raft-sim --seeds 0..500 --bug GrantSecondVoteInTerm   # how fast a planted bug is caught
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use raft_sim::{run_seeds, PlantedBug, SimOptions, Simulation};

#[derive(Parser)]
#[command(
    name = "raft-sim",
    about = "Deterministic simulation of raft-core clusters",
    version
)]
struct Cli {
    /// Replay exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds, like 0..100000.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<std::ops::Range<u64>>,
    /// Threads for a range of seeds.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Plant a known bug in every node (to see the simulator catch it).
    #[arg(long)]
    bug: Option<PlantedBug>,
    /// With --seeds: stop at the first failure.
    #[arg(long)]
    stop_at_first: bool,
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("expected START..END, got {text:?}"))?;
    let start = start.parse::<u64>().map_err(|e| format!("bad start: {e}"))?;
    let end = end.parse::<u64>().map_err(|e| format!("bad end: {e}"))?;
    if end <= start {
        return Err(format!("empty range {text}"));
    }
    Ok(start..end)
}

/// Prints a line, ignoring a closed pipe (as when the output goes to `head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(seed) = cli.seed {
        let options = SimOptions::for_seed(seed).with_planted_bug(cli.bug);
        return match Simulation::new(seed, options).run() {
            Ok(report) => {
                say!(
                    "seed {seed}: every invariant held ({} nodes): {:?}",
                    report.nodes,
                    report.stats
                );
                ExitCode::SUCCESS
            }
            Err(failure) => {
                say!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let seeds = cli.seeds.unwrap_or(0..1000);
    let started = Instant::now();
    let (reports, failures) = run_seeds(seeds.clone(), cli.bug, cli.threads, cli.stop_at_first);
    let elapsed = started.elapsed();
    let steps: u64 = reports.iter().map(|r| r.stats.steps).sum();
    say!(
        "{} seeds in {:.1?} ({} passed, {} failed; {} steps simulated)",
        reports.len() + failures.len(),
        elapsed,
        reports.len(),
        failures.len(),
        steps
    );
    let total = |field: fn(&raft_sim::SimStats) -> u64| reports.iter().map(|r| field(&r.stats)).sum::<u64>();
    say!(
        "faults injected in the passing seeds: {} crashes ({} unsynced writes lost), {} disk failures, \
         {} partition events, {} messages lost, {} duplicated, {} hostile messages; {} snapshots \
         built, {} installed from a leader",
        total(|s| s.crashes),
        total(|s| s.lost_writes),
        total(|s| s.disk_failures),
        total(|s| s.partitions),
        total(|s| s.lost),
        total(|s| s.duplicated),
        total(|s| s.hostile),
        total(|s| s.snapshots_built),
        total(|s| s.snapshots_installed)
    );
    if let Some(first) = failures.first() {
        say!("\nfirst failure:\n{first}");
        let seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
        say!("failing seeds: {seeds:?}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

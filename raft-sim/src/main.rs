//! `raft-sim`: replay one simulation seed, or soak many.
//!
//! ```text
//! raft-sim --seed 1234                    # replay one seed; prints the trace if it fails
//! raft-sim --seeds 0..100000 --threads 2  # soak; prints every failing seed
//! raft-sim --seeds 0..500 --bug GrantSecondVoteInTerm   # how fast a planted bug is caught
//! raft-sim check --depth 16 --max-term 2  # every interleaving of 3 nodes up to 16 actions
//! raft-sim check --bug CountPreviousTermTowardCommit ...   # the shortest trace to the bug
//! raft-sim check --replay "t1 t1 d0 s2 ..."                # replay a trace the checker printed
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use raft_sim::checker::{self, CheckOptions, ReplayEnd};
use raft_sim::{run_seed_list_observed, PlantedBug, SeedFamily, SeedOutcome, SimOptions, Simulation};

/// Prints a line, ignoring a closed pipe (as when the output goes to `head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

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
    /// Threads for a range of seeds, or for `check`.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Plant a known bug in every node (to see the simulator catch it).
    #[arg(long)]
    bug: Option<PlantedBug>,
    /// The settings the seeds draw: `mixed` (everything varies) or `snapshots` (snapshots every
    /// 5 entries on slow disks and networks). A failing seed replays only in its family.
    #[arg(long, default_value = "mixed")]
    family: SeedFamily,
    /// With --seed: draw the run's timeline into this file, a PNG if it ends in .png and an SVG
    /// otherwise (its event log goes beside it, as .jsonl). A failing seed draws its timeline into target/timelines even without it.
    #[arg(long, requires = "seed")]
    timeline: Option<std::path::PathBuf>,
    /// With --seeds: stop at the first failure.
    #[arg(long)]
    stop_at_first: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Explore every interleaving of a small cluster exhaustively, depth by depth, up to a depth;
    /// a violation prints the shortest trace that leads to it.
    Check(CheckArgs),
}

/// The bounds of an exhaustive check (defaults: `CheckOptions::default()`).
#[derive(Args)]
struct CheckArgs {
    /// Voters.
    #[arg(long, default_value_t = CheckOptions::default().nodes)]
    nodes: u64,
    /// Actions from the initial state.
    #[arg(long, default_value_t = CheckOptions::default().max_depth)]
    depth: u32,
    /// Highest term explored.
    #[arg(long, default_value_t = CheckOptions::default().max_term)]
    max_term: u64,
    /// Tick actions (with --tick-to-timeout: timers fired).
    #[arg(long, default_value_t = CheckOptions::default().max_ticks)]
    ticks: u32,
    /// Client proposals.
    #[arg(long, default_value_t = CheckOptions::default().max_proposals)]
    proposals: u32,
    /// Crashes (each loses the writes not yet durable).
    #[arg(long, default_value_t = CheckOptions::default().max_crashes)]
    crashes: u32,
    /// Messages lost.
    #[arg(long, default_value_t = CheckOptions::default().max_drops)]
    drops: u32,
    /// Messages duplicated.
    #[arg(long, default_value_t = CheckOptions::default().max_duplicates)]
    duplicates: u32,
    /// ReadIndex reads.
    #[arg(long, default_value_t = CheckOptions::default().max_reads)]
    reads: u32,
    /// Leadership transfers.
    #[arg(long, default_value_t = CheckOptions::default().max_transfers)]
    transfers: u32,
    /// Membership changes.
    #[arg(long, default_value_t = CheckOptions::default().max_membership_changes)]
    changes: u32,
    /// Messages the network holds (more are lost).
    #[arg(long, default_value_t = CheckOptions::default().max_in_flight)]
    in_flight: usize,
    /// Stop after this many distinct states.
    #[arg(long, default_value_t = CheckOptions::default().max_states)]
    max_states: u64,
    /// Election timeout T in ticks.
    #[arg(long, default_value_t = CheckOptions::default().election_ticks)]
    election_ticks: u32,
    /// Pre-vote on.
    #[arg(long)]
    pre_vote: bool,
    /// Check-quorum on.
    #[arg(long)]
    check_quorum: bool,
    /// Entries per AppendEntries.
    #[arg(long, default_value_t = CheckOptions::default().max_entries_per_message)]
    max_entries: usize,
    /// Snapshot after this many applied entries (0: never).
    #[arg(long, default_value_t = 0)]
    snapshot_after: u64,
    /// Each tick action ticks a node until its next timer fires.
    #[arg(long)]
    tick_to_timeout: bool,
    /// All running nodes tick together (clocks that never drift apart).
    #[arg(long)]
    lockstep_ticks: bool,
    /// Lease reads (needs --lockstep-ticks and --check-quorum).
    #[arg(long)]
    lease_reads: bool,
    /// Writes are durable at once (no persist action).
    #[arg(long)]
    instant_disk: bool,
    /// Search from the state these actions reach (a scenario's opening).
    #[arg(long)]
    from: Option<String>,
    /// Search from the first state (the fewest actions away) that reaches this goal:
    /// `leads:N`, `commit:N:INDEX`, `replicated:N` or `figure8:N`.
    #[arg(long, conflicts_with = "from")]
    from_goal: Option<checker::Goal>,
    /// Replay these actions (as a violation prints them) instead of searching.
    #[arg(long)]
    replay: Option<String>,
}

impl CheckArgs {
    fn options(&self, bug: Option<PlantedBug>, threads: usize) -> Result<CheckOptions, String> {
        let prefix = match &self.from {
            Some(text) => checker::decode_actions(text)?,
            None => Vec::new(),
        };
        let mut options = CheckOptions {
            nodes: self.nodes,
            max_depth: self.depth,
            max_term: self.max_term,
            max_ticks: self.ticks,
            max_proposals: self.proposals,
            max_crashes: self.crashes,
            max_drops: self.drops,
            max_duplicates: self.duplicates,
            max_reads: self.reads,
            max_transfers: self.transfers,
            max_membership_changes: self.changes,
            max_in_flight: self.in_flight,
            max_states: self.max_states,
            threads,
            election_ticks: self.election_ticks,
            heartbeat_ticks: 1,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            max_entries_per_message: self.max_entries,
            snapshot_after_entries: self.snapshot_after,
            tick_to_timeout: self.tick_to_timeout,
            lockstep_ticks: self.lockstep_ticks,
            lease_reads: self.lease_reads,
            instant_disk: self.instant_disk,
            planted_bug: bug,
            prefix,
        };
        if let Some(goal) = self.from_goal {
            let opening = CheckOptions {
                planted_bug: None,
                ..options.clone()
            };
            options.prefix = checker::opening(&opening, goal)?;
            say!(
                "opening ({} actions): {}",
                options.prefix.len(),
                checker::encode_actions(&options.prefix)
            );
        }
        Ok(options)
    }
}

/// `raft-sim check`: search, or replay a trace.
fn run_check(args: &CheckArgs, bug: Option<PlantedBug>, threads: usize) -> ExitCode {
    let options = match args.options(bug, threads) {
        Ok(options) => options,
        Err(error) => {
            say!("{error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(text) = &args.replay {
        let actions = match checker::decode_actions(text) {
            Ok(actions) => actions,
            Err(error) => {
                say!("{error}");
                return ExitCode::FAILURE;
            }
        };
        let (lines, end) = checker::replay(&options, &actions);
        for line in lines {
            say!("{line}");
        }
        return match end {
            ReplayEnd::Held => ExitCode::SUCCESS,
            ReplayEnd::Violated(violation) => {
                say!("violation: {violation}");
                ExitCode::FAILURE
            }
            ReplayEnd::NotPossible(at) => {
                say!(
                    "action {} is not possible there: were the options the same?",
                    at + 1
                );
                ExitCode::FAILURE
            }
        };
    }
    say!("{options:?}");
    say!("depth  new states  total states  elapsed");
    let mut print_level = |level: &checker::Level| {
        say!(
            "{:>5}  {:>10}  {:>12}  {:>7.1?}",
            level.depth,
            level.new_states,
            level.total_states,
            level.elapsed
        );
    };
    match checker::check_with_progress(&options, &mut print_level) {
        Ok(report) => {
            say!(
                "no violation: {} states, {} transitions in {:.1?} ({:.0} states/s){}",
                report.states,
                report.transitions,
                report.elapsed,
                report.states_per_second(),
                if !report.complete {
                    ", stopped at --max-states"
                } else if report.exhausted() {
                    ", every reachable state within the bounds"
                } else {
                    ", up to the depth bound"
                }
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            say!("{failure}");
            ExitCode::FAILURE
        }
    }
}

/// Replays a failing seed with its timeline recorded, and says where the picture is.
fn say_failure_timeline(failure: &raft_sim::SimFailure) {
    let dir = raft_sim::timeline::timeline_dir();
    match raft_sim::timeline::write_failure_timeline(failure, &dir) {
        Ok(path) => say!("timeline of seed {}: {}", failure.seed, path.display()),
        Err(error) => say!("no timeline for seed {}: {error}", failure.seed),
    }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check(args)) = &cli.command {
        return run_check(args, cli.bug, cli.threads);
    }
    if let Some(seed) = cli.seed {
        let options = SimOptions::for_seed_in(cli.family, seed).with_planted_bug(cli.bug);
        let simulation = Simulation::new(seed, options);
        let outcome = match &cli.timeline {
            Some(path) => {
                let (outcome, timeline) = simulation.run_with_timeline();
                let written = timeline
                    .write_jsonl(&path.with_extension("jsonl"))
                    .and_then(|()| timeline.write_picture(path));
                match written {
                    Ok(()) => say!(
                        "timeline: {} (events: {})",
                        path.display(),
                        path.with_extension("jsonl").display()
                    ),
                    Err(error) => say!("no timeline: {error}"),
                }
                outcome
            }
            None => simulation.run(),
        };
        return match outcome {
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
                if cli.timeline.is_none() {
                    say_failure_timeline(&failure);
                }
                ExitCode::FAILURE
            }
        };
    }
    let seeds = cli.seeds.unwrap_or(0..1000);
    let started = Instant::now();
    let seed_list: Vec<u64> = seeds.clone().collect();
    let progress = SoakProgress::new(seed_list.len() as u64, cli.family.replay_flags());
    let (reports, failures) = run_seed_list_observed(
        cli.family,
        &seed_list,
        cli.bug,
        cli.threads,
        cli.stop_at_first,
        &|outcome| progress.seed_finished(outcome),
    );
    progress.finish();
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
        say_failure_timeline(first);
        let seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
        say!(
            "failing seeds: {seeds:?} (replay one with --seed N{})",
            cli.family.replay_flags()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// How many failing seeds a soak names as they fail.
const NAMED_FAILURES: u64 = 20;

/// A soak's progress on stderr, while it runs: a bar on a terminal, otherwise a line at every
/// tenth of the seeds (a log of a long soak shows it is alive). A failing seed is named as it
/// fails, not only in the summary at the end.
struct SoakProgress {
    bar: indicatif::ProgressBar,
    total: u64,
    /// Seeds between two plain lines (no terminal).
    step: u64,
    terminal: bool,
    replay_flags: String,
    started: Instant,
    done: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl SoakProgress {
    fn new(total: u64, replay_flags: impl Into<String>) -> Self {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} seeds {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        SoakProgress {
            bar,
            total,
            step: (total / 10).max(1),
            terminal,
            replay_flags: replay_flags.into(),
            started: Instant::now(),
            done: Default::default(),
            failed: Default::default(),
        }
    }

    fn seed_finished(&self, outcome: SeedOutcome) {
        use std::sync::atomic::Ordering;
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = if outcome.passed {
            self.failed.load(Ordering::Relaxed)
        } else {
            let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
            // A planted bug fails most seeds: name the first few, count the rest.
            if failed <= NAMED_FAILURES {
                self.bar.suspend(|| {
                    eprintln!(
                        "seed {} failed (replay it with --seed {}{}){}",
                        outcome.seed,
                        outcome.seed,
                        self.replay_flags,
                        if failed == NAMED_FAILURES {
                            "; later failures are counted, and named at the end"
                        } else {
                            ""
                        }
                    )
                });
            }
            self.bar.set_message(format!("{failed} failed"));
            failed
        };
        if self.terminal {
            self.bar.inc(1);
        } else if done % self.step == 0 || done == self.total {
            eprintln!(
                "{done}/{} seeds in {:.1?}, {failed} failed",
                self.total,
                self.started.elapsed()
            );
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

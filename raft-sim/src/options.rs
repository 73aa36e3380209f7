//! What a simulation run does: cluster shape, fault rates and durations, all drawn from the seed.

use raft_core::{PlantedBug, SeededRng};

/// The settings of one simulation run. [`SimOptions::for_seed`] derives varied settings from a
/// seed, so that a range of seeds covers small and large clusters, gentle and harsh networks.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// Number of voters (node ids 1..=nodes).
    pub nodes: u64,
    /// Steps of chaos (faults on); afterwards the network heals, crashed nodes restart and the
    /// cluster must make progress.
    pub chaos_steps: u64,
    /// Steps the calm phase may take to elect a leader and commit a new entry, on top of the time
    /// the configured pipeline needs to replicate the backlog left when the faults stopped.
    pub liveness_steps: u64,
    /// A node ticks every this many steps, plus or minus `tick_skew`.
    pub tick_period: u64,
    /// Per-node deviation of the tick period (clock skew).
    pub tick_skew: u64,
    /// Election timeout T in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Pre-vote on.
    pub pre_vote: bool,
    /// Check-quorum on.
    pub check_quorum: bool,
    /// Probability that a message is lost.
    pub drop_probability: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_probability: f64,
    /// A message takes 1..=max_delay steps (random delays reorder messages).
    pub max_delay: u64,
    /// A write becomes durable 1..=max_disk_delay steps after it is issued.
    pub max_disk_delay: u64,
    /// Per-step probability of a proposal to a random node.
    pub propose_probability: f64,
    /// Per-step probability of crashing a random running node (unsynced writes are lost).
    pub crash_probability: f64,
    /// A crashed node restarts after up to this many steps.
    pub max_down_steps: u64,
    /// Per-step probability of a partition event (isolate, split, cut one way, or heal).
    pub partition_probability: f64,
    /// Entries per AppendEntries (small, to exercise batching limits).
    pub max_entries_per_message: usize,
    /// Pipelining window.
    pub max_inflight_messages: usize,
    /// Backpressure: uncommitted entries a leader accepts.
    pub max_uncommitted_entries: usize,
    /// Per-step probability of a read request to a random node.
    pub read_probability: f64,
    /// Lease reads on (only with check-quorum).
    pub lease_reads: bool,
    /// Per-step probability that the leader starts a leadership transfer.
    pub transfer_probability: f64,
    /// Extra nodes that start outside the cluster (empty configuration) and may be added.
    pub spare_nodes: u64,
    /// Per-step probability that the leader changes the voters and learners.
    pub membership_change_probability: f64,
    /// Take a snapshot after this many applied entries (0: never).
    pub snapshot_after_entries: u64,
    /// Entries kept before a snapshot.
    pub snapshot_keep_entries: u64,
    /// Snapshot chunk size.
    pub snapshot_chunk_bytes: usize,
    /// Snapshot chunks in flight per follower.
    pub snapshot_chunks_in_flight: usize,
    /// When the leader changes the membership, the chance that the new configuration has a single
    /// voter (every other node a learner): a cluster shrunk to one voter, grown back by a later
    /// change.
    pub single_voter_probability: f64,
    /// Right after a membership change is proposed, the chance that a node crashes (the leader
    /// half the time).
    pub crash_after_change_probability: f64,
    /// How far behind the commit index a node may be and still be made a voter.
    pub max_promotion_lag_entries: u64,
    /// Per-step probability that a node's disk fails the writes due now (an I/O error on write
    /// or fsync, or a full disk). The node stops without acknowledging them, as `raft-node`
    /// does; what the failed writes left on the disk is drawn: all of them, or none (a failed
    /// fsync may or may not have reached the platter). It restarts later from that disk, as an
    /// operator would after replacing it.
    pub disk_failure_probability: f64,
    /// Per-step probability of a hostile message among the honest traffic (see `hostile.rs`):
    /// refused as malformed, or from an outsider, which a leader ignores.
    pub hostile_probability: f64,
    /// A due snapshot waits until the log since the last one holds this percentage of that
    /// snapshot's bytes (`Config::snapshot_min_log_percent`; `raft-kv` runs with 100).
    pub snapshot_min_log_percent: u64,
    /// Nagle's rule for AppendEntries (`Config::hold_partial_appends`; `raft-kv` runs with it):
    /// a message short of full waits while another is in flight.
    pub hold_partial_appends: bool,
    /// A deliberate bug to switch on in every node.
    pub planted_bug: Option<PlantedBug>,
}

/// Which settings the seeds of a run draw. A family narrows the draw to where one kind of bug
/// lives, so a few thousand seeds reach it often instead of a handful of times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeedFamily {
    /// Everything varies ([`SimOptions::for_seed`]).
    #[default]
    Mixed,
    /// Snapshots every 5 entries, slow disks and slow networks, everything else as drawn: the
    /// state machine is often building a snapshot while a lagging follower restores one from
    /// the leader.
    Snapshots,
}

impl SeedFamily {
    /// Every family.
    pub const ALL: [SeedFamily; 2] = [SeedFamily::Mixed, SeedFamily::Snapshots];

    /// The family's name on `raft-sim`'s command line (`--family NAME`).
    pub fn name(self) -> &'static str {
        match self {
            SeedFamily::Mixed => "mixed",
            SeedFamily::Snapshots => "snapshots",
        }
    }

    /// What `raft-sim --seed N` needs besides the seed to replay a seed of this family: nothing
    /// for the mixed draw.
    pub fn replay_flags(self) -> String {
        match self {
            SeedFamily::Mixed => String::new(),
            family => format!(" --family {}", family.name()),
        }
    }
}

impl std::str::FromStr for SeedFamily {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        SeedFamily::ALL
            .into_iter()
            .find(|family| family.name() == text)
            .ok_or_else(|| format!("no seed family {text:?}: mixed or snapshots"))
    }
}

impl SimOptions {
    /// Settings drawn from `seed`.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = SeededRng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_0F75);
        let pick = |rng: &mut SeededRng, choices: &[f64]| choices[rng.below(choices.len() as u64) as usize];
        SimOptions {
            nodes: if rng.chance(0.5) { 3 } else { 5 },
            chaos_steps: 20_000,
            liveness_steps: 4000,
            tick_period: 10,
            tick_skew: rng.below(4),
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: rng.chance(0.75),
            check_quorum: rng.chance(0.75),
            drop_probability: pick(&mut rng, &[0.0, 0.02, 0.1, 0.25]),
            duplicate_probability: pick(&mut rng, &[0.0, 0.02, 0.1]),
            max_delay: pick(&mut rng, &[2.0, 10.0, 30.0]) as u64,
            max_disk_delay: pick(&mut rng, &[1.0, 5.0, 20.0]) as u64,
            propose_probability: pick(&mut rng, &[0.02, 0.1, 0.3]),
            crash_probability: pick(&mut rng, &[0.0, 0.001, 0.003]),
            max_down_steps: 400,
            partition_probability: pick(&mut rng, &[0.0, 0.002, 0.01]),
            max_entries_per_message: 1 + rng.below(8) as usize,
            max_inflight_messages: 1 + rng.below(4) as usize,
            max_uncommitted_entries: pick(&mut rng, &[16.0, 64.0, 256.0]) as usize,
            read_probability: pick(&mut rng, &[0.0, 0.05, 0.2]),
            lease_reads: rng.chance(0.5),
            transfer_probability: pick(&mut rng, &[0.0, 0.0005, 0.002]),
            spare_nodes: rng.below(3),
            membership_change_probability: pick(&mut rng, &[0.0, 0.0005, 0.002]),
            snapshot_after_entries: pick(&mut rng, &[0.0, 5.0, 20.0, 100.0]) as u64,
            snapshot_keep_entries: pick(&mut rng, &[0.0, 2.0, 10.0]) as u64,
            snapshot_chunk_bytes: pick(&mut rng, &[16.0, 100.0, 1024.0]) as usize,
            snapshot_chunks_in_flight: 1 + rng.below(4) as usize,
            // Drawn last, so the settings above stay what they were for every seed; their zero
            // values draw nothing during the run, so such seeds replay as before.
            single_voter_probability: pick(&mut rng, &[0.0, 0.25, 0.5]),
            crash_after_change_probability: pick(&mut rng, &[0.0, 0.2]),
            max_promotion_lag_entries: pick(&mut rng, &[4.0, 32.0, 1000.0]) as u64,
            disk_failure_probability: pick(&mut rng, &[0.0, 0.0005, 0.002]),
            hostile_probability: pick(&mut rng, &[0.0, 0.002, 0.02]),
            snapshot_min_log_percent: pick(&mut rng, &[0.0, 0.0, 100.0, 400.0]) as u64,
            hold_partial_appends: rng.chance(0.5),
            planted_bug: None,
        }
    }

    /// Settings drawn from `seed` within `family`: [`for_seed`](Self::for_seed) with the
    /// family's settings fixed.
    ///
    /// ```
    /// use raft_sim::{SeedFamily, SimOptions};
    ///
    /// let options = SimOptions::for_seed_in(SeedFamily::Snapshots, 7);
    /// assert_eq!(options.snapshot_after_entries, 5);
    /// assert_eq!(SimOptions::for_seed_in(SeedFamily::Mixed, 7), SimOptions::for_seed(7));
    /// ```
    pub fn for_seed_in(family: SeedFamily, seed: u64) -> Self {
        let options = Self::for_seed(seed);
        match family {
            SeedFamily::Mixed => options,
            SeedFamily::Snapshots => SimOptions {
                snapshot_after_entries: 5,
                max_disk_delay: 20,
                max_delay: 30,
                ..options
            },
        }
    }

    /// The same settings with `bug` switched on.
    pub fn with_planted_bug(mut self, bug: Option<PlantedBug>) -> Self {
        self.planted_bug = bug;
        self
    }
}

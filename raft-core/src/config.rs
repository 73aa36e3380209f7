//! Protocol settings, checked when they are built.

use crate::error::ConfigError;
use crate::types::NodeId;

/// Settings of one node's protocol state machine. All durations are in ticks: the caller decides
/// how long a tick lasts (the node runtime uses 10 ms by default).
///
/// ```
/// use raft_core::Config;
/// let config = Config::new(1).with_election_timeout_ticks(20).validated()?;
/// assert_eq!(config.election_timeout_ticks, 20);
/// # Ok::<(), raft_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// This node's id. Must not be 0.
    pub id: NodeId,
    /// The base election timeout T: a follower that hears nothing from a leader for a random
    /// number of ticks in `[T, 2T)` starts an election. Also the check-quorum period.
    pub election_timeout_ticks: u32,
    /// How often a leader sends heartbeats. Must be below the election timeout.
    pub heartbeat_interval_ticks: u32,
    /// Ask for pre-votes before raising the term (Raft thesis §9.6), so that a node returning from
    /// a partition does not depose a healthy leader.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and a
    /// follower that hears from a leader ignores vote requests for an election timeout.
    pub check_quorum: bool,
    /// At most this many entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// At most about this many bytes of entries in one AppendEntries (one entry is always sent,
    /// however large).
    pub max_bytes_per_message: usize,
    /// At most this many AppendEntries in flight to one follower (pipelining window).
    pub max_inflight_messages: usize,
    /// At most this many bytes of entries in flight to one follower.
    pub max_inflight_bytes: usize,
    /// Nagle's rule for AppendEntries (off by default): while an AppendEntries is in flight to a
    /// replicating follower, the next one goes out only if the per-message limits cut it short
    /// of the log's end. Entries proposed meanwhile wait for the acknowledgement (or for enough
    /// of them to fill a message) and then go together, so that a follower appends, syncs and
    /// answers once for them instead of once for each; a follower far behind still gets full
    /// messages pipelined up to the window. It pays where a follower's sync is dear beside the
    /// round trip (durable storage on a LAN: `raft-kv` turns it on); off, every round of
    /// proposals is sent at once, up to the window, which is faster when syncs are free (an
    /// in-memory log) and saves up to a round trip of waiting across long links.
    pub hold_partial_appends: bool,
    /// The largest command a proposal may carry.
    pub max_entry_bytes: usize,
    /// Serve reads from a leader lease, without a round trip (off by default). Needs check-quorum.
    pub lease_reads: bool,
    /// The bound on clock drift between nodes, in ticks: a lease lasts the election timeout minus
    /// this. Set it to cover how much faster any follower's clock may run than the leader's.
    pub lease_clock_drift_ticks: u32,
    /// A leader refuses new proposals while this many entries of its log are not yet committed
    /// (backpressure: a leader cannot run unboundedly ahead of its followers).
    pub max_uncommitted_entries: usize,
    /// A leader refuses new proposals while the entries of its log not yet committed hold this
    /// many bytes ([`Entry::size_bytes`](crate::Entry::size_bytes)); one entry is always
    /// admitted, however large. Counting entries alone would let 16,384 entries of 8 MiB pile up.
    pub max_uncommitted_bytes: usize,
    /// Take a snapshot once this many entries were applied since the last one (0: never by count).
    pub snapshot_after_entries: u64,
    /// Take a snapshot once the entries applied since the last one hold this many bytes (0: never
    /// by size).
    pub snapshot_after_log_bytes: u64,
    /// A snapshot due by count or by size waits until the log applied since the last snapshot
    /// holds at least this percentage of that snapshot's bytes (0, the default: it never waits).
    /// A snapshot rewrites the whole state: with a large state and a small
    /// `snapshot_after_log_bytes`, every few megabytes written would cost a rewrite of hundreds.
    /// At 100 the bytes a node writes for its snapshots stay within the bytes of the commands it
    /// applies, whatever the state's size; the log then grows to at most about the state's size
    /// between snapshots. Requested snapshots ([`RaftCore::request_snapshot`](crate::RaftCore::request_snapshot)) never wait.
    pub snapshot_min_log_percent: u64,
    /// After a snapshot, keep this many entries before it in the log, so that followers slightly
    /// behind catch up from the log rather than by snapshot.
    pub snapshot_keep_entries: u64,
    /// The size of the chunks a snapshot is sent in.
    pub snapshot_chunk_bytes: usize,
    /// At most this many snapshot chunks in flight to one follower.
    pub snapshot_chunks_in_flight: usize,
    /// A membership change may make a node a voter only if its log is at most this many entries
    /// behind the leader's commit index (Raft thesis §4.2.1: a new server catches up as a
    /// learner before it votes). A voter far behind cannot help commit, and with a stale log and
    /// configuration it can hold up elections; add it as a learner first and promote it once it
    /// has caught up.
    pub max_promotion_lag_entries: u64,
    /// The seed of the generator that randomizes election timeouts. Give every node its own.
    pub seed: u64,
    /// A deliberate protocol bug to switch on, for proving that the simulator catches it.
    #[cfg(feature = "planted-bugs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "planted-bugs")))]
    pub planted_bug: Option<crate::planted::PlantedBug>,
}

impl Config {
    /// Default settings for node `id`: T = 15 ticks, heartbeat every 3 ticks, pre-vote and
    /// check-quorum on, 256 entries or 1 MiB per message, 32 messages or 16 MiB in flight,
    /// commands of at most 8 MiB, at most 16,384 uncommitted entries or 64 MiB; a snapshot after 10,000
    /// entries or 64 MiB of applied log, keeping 1,000 entries, sent in 4 chunks of 1 MiB at a time.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_timeout_ticks: 15,
            heartbeat_interval_ticks: 3,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 32,
            max_inflight_bytes: 16 << 20,
            hold_partial_appends: false,
            max_entry_bytes: 8 << 20,
            max_uncommitted_entries: 16_384,
            max_uncommitted_bytes: 64 << 20,
            lease_reads: false,
            lease_clock_drift_ticks: 2,
            snapshot_after_entries: 10_000,
            snapshot_after_log_bytes: 64 << 20,
            snapshot_min_log_percent: 0,
            snapshot_keep_entries: 1_000,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_chunks_in_flight: 4,
            max_promotion_lag_entries: 1_000,
            seed: id,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Sets the base election timeout T.
    pub fn with_election_timeout_ticks(mut self, ticks: u32) -> Self {
        self.election_timeout_ticks = ticks;
        self
    }

    /// Sets the heartbeat interval.
    pub fn with_heartbeat_interval_ticks(mut self, ticks: u32) -> Self {
        self.heartbeat_interval_ticks = ticks;
        self
    }

    /// Turns pre-vote on or off.
    pub fn with_pre_vote(mut self, on: bool) -> Self {
        self.pre_vote = on;
        self
    }

    /// Turns lease reads on or off (they need check-quorum).
    pub fn with_lease_reads(mut self, on: bool) -> Self {
        self.lease_reads = on;
        self
    }

    /// Turns check-quorum on or off.
    pub fn with_check_quorum(mut self, on: bool) -> Self {
        self.check_quorum = on;
        self
    }

    /// Sets the compaction policy: snapshot after `entries` applied entries or `bytes` of applied
    /// log (0 turns a criterion off), keeping `keep` entries before the snapshot.
    pub fn with_snapshot_policy(mut self, entries: u64, bytes: u64, keep: u64) -> Self {
        self.snapshot_after_entries = entries;
        self.snapshot_after_log_bytes = bytes;
        self.snapshot_keep_entries = keep;
        self
    }

    /// Sets the seed of the election-timeout generator.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks that the settings can work, returning them unchanged if they can.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// An upper bound on the encoded size of any message these settings let the node build: the
    /// largest AppendEntries (a batch of `max_bytes_per_message`, or one entry of
    /// `max_entry_bytes`, which is always sent whole) or snapshot chunk, with room for the
    /// message's own fields and a membership entry's addresses.
    ///
    /// ```
    /// use raft_core::Config;
    /// let config = Config::new(1);
    /// assert!(config.max_message_bytes() > config.max_entry_bytes);
    /// ```
    pub fn max_message_bytes(&self) -> usize {
        const ROOM: usize = 64 << 10;
        self.max_bytes_per_message
            .max(self.max_entry_bytes.saturating_add(crate::Entry::OVERHEAD_BYTES))
            .max(self.snapshot_chunk_bytes)
            .saturating_add(ROOM)
    }

    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.election_timeout_ticks == 0 {
            return Err(ConfigError::ZeroElectionTimeout);
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeatInterval);
        }
        if self.heartbeat_interval_ticks >= self.election_timeout_ticks {
            return Err(ConfigError::HeartbeatNotBelowElectionTimeout {
                heartbeat: self.heartbeat_interval_ticks,
                election: self.election_timeout_ticks,
            });
        }
        if self.lease_reads && !self.check_quorum {
            return Err(ConfigError::LeaseNeedsCheckQuorum);
        }
        if self.lease_clock_drift_ticks >= self.election_timeout_ticks {
            return Err(ConfigError::LeaseDriftTooLarge {
                drift: self.lease_clock_drift_ticks,
                election: self.election_timeout_ticks,
            });
        }
        let limits = [
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_messages", self.max_inflight_messages),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_entry_bytes", self.max_entry_bytes),
            ("max_uncommitted_entries", self.max_uncommitted_entries),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("snapshot_chunks_in_flight", self.snapshot_chunks_in_flight),
        ];
        for (name, value) in limits {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { name });
            }
        }
        Ok(())
    }
}

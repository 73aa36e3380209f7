//! What a node records through the [`metrics`] facade.
//!
//! The node records; the integrator chooses where the numbers go by installing a recorder
//! (`metrics-exporter-prometheus`, a StatsD or OpenTelemetry bridge, or their own). Without a
//! recorder every handle is a no-op, and [`NodeConfig::metrics`](crate::NodeConfig::metrics)
//! turns recording off altogether. Every series carries the label `node` (the node's id).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `raft_term` | gauge | | the current term |
//! | `raft_role` | gauge | `role` | 1 for the node's role, 0 for the others |
//! | `raft_leader_id` | gauge | | the known leader (0: none) |
//! | `raft_last_log_index`, `raft_commit_index`, `raft_applied_index`, `raft_snapshot_index` | gauge | | the log's indexes |
//! | `raft_proposals_total` | counter | `outcome` (`accepted` or why refused) | proposals taken in |
//! | `raft_elections_started_total`, `raft_elections_won_total` | counter | | elections (not pre-votes) |
//! | `raft_leader_changes_total` | counter | | times the known leader changed to another node |
//! | `raft_messages_sent_total`, `raft_messages_received_total` | counter | `peer`, `kind` | messages |
//! | `raft_message_bytes_sent_total`, `raft_message_bytes_received_total` | counter | `peer`, `kind` | their payload bytes (entries and snapshot chunks) |
//! | `raft_snapshot_sends_total` | counter | `peer` | snapshot transfers started to a follower |
//! | `raft_snapshot_installs_total` | counter | | snapshots from a leader installed here |
//! | `raft_snapshots_built_total` | counter | | snapshots of the state machine built here |
//! | `raft_commit_latency_seconds` | histogram | | proposal accepted to its result |
//! | `raft_persist_latency_seconds` | histogram | | one group-commit write to storage |
//! | `raft_persist_batch_entries`, `raft_persist_batch_bytes` | histogram | | what one write holds |
//! | `raft_apply_batch_entries` | histogram | | entries applied in one batch |
//! | `raft_read_latency_seconds` | histogram | `consistency` | a read from request to answer |
//! | `raft_follower_inflight_messages` | gauge | `peer` | on the leader: AppendEntries unacknowledged |
//! | `raft_follower_inflight_bytes` | gauge | `peer` | on the leader: entry payload bytes in those AppendEntries |
//! | `raft_follower_match_lag` | gauge | `peer` | on the leader: last log index minus the follower's match index |
//!
//! Hot paths hold handles registered once; per-peer series are registered the first time a peer
//! appears. The index gauges and the count of accepted proposals are updated once per tick (they
//! lag by at most one tick); everything else as it happens.

use std::collections::HashMap;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use raft_core::{FollowerProgress, Message, MessageBody, NodeId, Role, Status};

/// The label every series of a node carries.
const NODE: &str = "node";

/// The roles `raft_role` has a series for.
const ROLES: [Role; 4] = [Role::Follower, Role::PreCandidate, Role::Candidate, Role::Leader];

/// The event loop's gauges and counters: the core's state and what it decided.
pub(crate) struct CoreMetrics {
    node: String,
    enabled: bool,
    term: Gauge,
    role: [Gauge; 4],
    leader: Gauge,
    last_log_index: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    accepted: Counter,
    refused: HashMap<&'static str, Counter>,
    elections_started: Counter,
    elections_won: Counter,
    leader_changes: Counter,
    snapshot_installs: Counter,
    snapshots_built: Counter,
    followers: HashMap<NodeId, FollowerGauges>,
    last: Option<Status>,
    /// Proposals accepted since the last flush: the counter is added to once per tick, not once
    /// per proposal.
    accepted_since_flush: u64,
}

struct FollowerGauges {
    inflight: Gauge,
    inflight_bytes: Gauge,
    lag: Gauge,
}

impl CoreMetrics {
    pub(crate) fn new(id: NodeId, enabled: bool) -> Self {
        let node = id.to_string();
        let g = |name: &'static str| {
            if enabled {
                gauge!(name, NODE => node.clone())
            } else {
                Gauge::noop()
            }
        };
        let c = |name: &'static str| {
            if enabled {
                counter!(name, NODE => node.clone())
            } else {
                Counter::noop()
            }
        };
        let role = ROLES.map(|role| {
            if enabled {
                gauge!("raft_role", NODE => node.clone(), "role" => role.to_string())
            } else {
                Gauge::noop()
            }
        });
        let accepted = if enabled {
            counter!("raft_proposals_total", NODE => node.clone(), "outcome" => "accepted")
        } else {
            Counter::noop()
        };
        CoreMetrics {
            term: g("raft_term"),
            role,
            leader: g("raft_leader_id"),
            last_log_index: g("raft_last_log_index"),
            commit_index: g("raft_commit_index"),
            applied_index: g("raft_applied_index"),
            snapshot_index: g("raft_snapshot_index"),
            accepted,
            refused: HashMap::new(),
            elections_started: c("raft_elections_started_total"),
            elections_won: c("raft_elections_won_total"),
            leader_changes: c("raft_leader_changes_total"),
            snapshot_installs: c("raft_snapshot_installs_total"),
            snapshots_built: c("raft_snapshots_built_total"),
            followers: HashMap::new(),
            last: None,
            accepted_since_flush: 0,
            node,
            enabled,
        }
    }

    /// Records the elections and leader changes since the last status, and the role, term and
    /// leader gauges when they changed. Cheap when only the indexes moved (the hot path: it runs
    /// whenever the status changes); the index gauges are set by [`Self::on_tick`].
    pub(crate) fn observe(&mut self, status: &Status) {
        if !self.enabled {
            return;
        }
        let last = self.last.replace(*status);
        let (last_term, last_role, last_leader) =
            last.map_or((0, Role::Follower, None), |l| (l.term, l.role, l.leader));
        if last.is_some() && (last_term, last_role, last_leader) == (status.term, status.role, status.leader)
        {
            return;
        }
        let campaigning = matches!(status.role, Role::Candidate | Role::Leader);
        // A node takes a higher term as candidate only by starting an election, and leads only
        // a term it won.
        if status.term > last_term && campaigning {
            self.elections_started.increment(1);
        }
        if status.role == Role::Leader && (last_role != Role::Leader || status.term != last_term) {
            self.elections_won.increment(1);
        }
        if status.leader.is_some() && status.leader != last_leader {
            self.leader_changes.increment(1);
        }
        if last_role == Role::Leader && status.role != Role::Leader {
            self.clear_followers();
        }
        self.term.set(status.term as f64);
        for (gauge, role) in self.role.iter().zip(ROLES) {
            gauge.set(if role == status.role { 1.0 } else { 0.0 });
        }
        self.leader.set(status.leader.unwrap_or(0) as f64);
    }

    /// On every tick: sets the index gauges and adds the proposals accepted since the last tick.
    pub(crate) fn on_tick(&mut self, status: &Status) {
        if !self.enabled {
            return;
        }
        self.last_log_index.set(status.last_log_index as f64);
        self.commit_index.set(status.commit_index as f64);
        self.applied_index.set(status.applied_index as f64);
        self.snapshot_index.set(status.snapshot_index as f64);
        if self.accepted_since_flush > 0 {
            self.accepted
                .increment(std::mem::take(&mut self.accepted_since_flush));
        }
    }

    /// Counts an accepted proposal (added to the counter on the next tick).
    pub(crate) fn proposal_accepted(&mut self) {
        self.accepted_since_flush += 1;
    }

    /// Counts a refused proposal under `reason` (a short, fixed name).
    pub(crate) fn proposal_refused(&mut self, reason: &'static str) {
        if !self.enabled {
            return;
        }
        let node = &self.node;
        self.refused
            .entry(reason)
            .or_insert_with(|| counter!("raft_proposals_total", NODE => node.clone(), "outcome" => reason))
            .increment(1);
    }

    pub(crate) fn snapshot_installed(&self) {
        self.snapshot_installs.increment(1);
    }

    pub(crate) fn snapshot_built(&self) {
        self.snapshots_built.increment(1);
    }

    /// Records a leader's view of one follower (zeroed again when this node stops leading).
    pub(crate) fn follower(&mut self, peer: NodeId, progress: &FollowerProgress, lag: u64) {
        if !self.enabled {
            return;
        }
        let node = &self.node;
        let gauges = self.followers.entry(peer).or_insert_with(|| {
            let peer = peer.to_string();
            FollowerGauges {
                inflight: gauge!("raft_follower_inflight_messages", NODE => node.clone(), "peer" => peer.clone()),
                inflight_bytes: gauge!("raft_follower_inflight_bytes", NODE => node.clone(), "peer" => peer.clone()),
                lag: gauge!("raft_follower_match_lag", NODE => node.clone(), "peer" => peer),
            }
        });
        gauges.inflight.set(progress.inflight_messages as f64);
        gauges.inflight_bytes.set(progress.inflight_bytes as f64);
        gauges.lag.set(lag as f64);
    }

    /// Zeroes the follower gauges: this node is not the leader any more.
    fn clear_followers(&mut self) {
        for gauges in self.followers.values() {
            gauges.inflight.set(0.0);
            gauges.inflight_bytes.set(0.0);
            gauges.lag.set(0.0);
        }
    }
}

/// Which way a message went.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Sent,
    Received,
}

/// Counts messages and their payload bytes per peer and kind. Each task that sends or receives
/// owns one; the recorder adds up series with the same name and labels.
pub(crate) struct MessageMeter {
    node: String,
    enabled: bool,
    series: HashMap<(Direction, NodeId, &'static str), (Counter, Counter)>,
    snapshot_sends: HashMap<NodeId, Counter>,
}

impl MessageMeter {
    pub(crate) fn new(id: NodeId, enabled: bool) -> Self {
        MessageMeter {
            node: id.to_string(),
            enabled,
            series: HashMap::new(),
            snapshot_sends: HashMap::new(),
        }
    }

    /// Counts `message`, sent to or received from its peer.
    pub(crate) fn count(&mut self, direction: Direction, message: &Message) {
        if !self.enabled {
            return;
        }
        let peer = match direction {
            Direction::Sent => message.to,
            Direction::Received => message.from,
        };
        let kind = message.body.kind();
        let node = &self.node;
        let (messages, bytes) = self.series.entry((direction, peer, kind)).or_insert_with(|| {
            let (messages, bytes) = match direction {
                Direction::Sent => ("raft_messages_sent_total", "raft_message_bytes_sent_total"),
                Direction::Received => (
                    "raft_messages_received_total",
                    "raft_message_bytes_received_total",
                ),
            };
            let peer = peer.to_string();
            (
                counter!(messages, NODE => node.clone(), "peer" => peer.clone(), "kind" => kind),
                counter!(bytes, NODE => node.clone(), "peer" => peer, "kind" => kind),
            )
        });
        messages.increment(1);
        let payload = payload_bytes(message);
        if payload > 0 {
            bytes.increment(payload);
        }
    }

    /// Counts a snapshot transfer started to `peer` (its first chunk).
    pub(crate) fn snapshot_send(&mut self, peer: NodeId) {
        if !self.enabled {
            return;
        }
        let node = &self.node;
        self.snapshot_sends
            .entry(peer)
            .or_insert_with(
                || counter!("raft_snapshot_sends_total", NODE => node.clone(), "peer" => peer.to_string()),
            )
            .increment(1);
    }
}

/// The bytes a message carries for the user: its entries, or its snapshot chunk.
fn payload_bytes(message: &Message) -> u64 {
    match &message.body {
        MessageBody::AppendEntries(append) => append.entries.iter().map(|e| e.size_bytes() as u64).sum(),
        MessageBody::InstallSnapshot(chunk) => chunk.data.len() as u64,
        _ => 0,
    }
}

/// Node `id`'s histogram `name`, or a no-op one when metrics are off.
fn node_histogram(enabled: bool, name: &'static str, id: NodeId) -> Histogram {
    if enabled {
        histogram!(name, NODE => id.to_string())
    } else {
        Histogram::noop()
    }
}

/// The histograms of the writes to storage.
pub(crate) struct PersistMetrics {
    /// Whether to measure at all (the bytes of a write are added up only then).
    pub(crate) enabled: bool,
    pub(crate) latency: Histogram,
    pub(crate) entries: Histogram,
    pub(crate) bytes: Histogram,
}

impl PersistMetrics {
    pub(crate) fn new(id: NodeId, enabled: bool) -> Self {
        let h = |name| node_histogram(enabled, name, id);
        PersistMetrics {
            enabled,
            latency: h("raft_persist_latency_seconds"),
            entries: h("raft_persist_batch_entries"),
            bytes: h("raft_persist_batch_bytes"),
        }
    }
}

/// The apply task's histograms.
pub(crate) struct ApplyMetrics {
    /// `None` when metrics are off: the apply task then reads no clock for it.
    pub(crate) commit_latency: Option<Histogram>,
    pub(crate) batch_entries: Histogram,
}

impl ApplyMetrics {
    pub(crate) fn new(id: NodeId, enabled: bool) -> Self {
        let h = |name| node_histogram(enabled, name, id);
        ApplyMetrics {
            commit_latency: enabled.then(|| h("raft_commit_latency_seconds")),
            batch_entries: h("raft_apply_batch_entries"),
        }
    }
}

/// The handle's read latency, one histogram per consistency.
pub(crate) struct ReadMetrics {
    /// For the handle's `Debug`.
    node: NodeId,
    pub(crate) linearizable: Histogram,
    pub(crate) lease: Histogram,
    pub(crate) serializable: Histogram,
}

impl ReadMetrics {
    pub(crate) fn new(id: NodeId, enabled: bool) -> Self {
        let h = |consistency: &'static str| {
            if enabled {
                histogram!("raft_read_latency_seconds", NODE => id.to_string(), "consistency" => consistency)
            } else {
                Histogram::noop()
            }
        };
        ReadMetrics {
            node: id,
            linearizable: h("linearizable"),
            lease: h("lease"),
            serializable: h("serializable"),
        }
    }
}

impl std::fmt::Debug for ReadMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadMetrics")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

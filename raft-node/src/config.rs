//! Settings of a node runtime.

use std::time::Duration;

/// Settings of one [`RaftNode`](crate::RaftNode): the protocol settings plus how long a tick lasts
/// and how long a proposal may wait.
///
/// ```
/// use std::time::Duration;
/// use raft_node::NodeConfig;
/// let config = NodeConfig::new(1).with_tick_interval(Duration::from_millis(5));
/// // T = 15 ticks of 5 ms: elections time out after 75 to 150 ms.
/// assert_eq!(config.election_timeout(), Duration::from_millis(75));
/// ```
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The protocol settings (node id, timeouts in ticks, limits).
    pub core: raft_core::Config,
    /// The duration of one tick. Default 10 ms, so the default election timeout T is 150 ms.
    pub tick_interval: Duration,
    /// How long [`RaftNode::propose`](crate::RaftNode::propose) waits for its command to be
    /// applied before it gives up with [`ProposeError::Timeout`](crate::ProposeError::Timeout).
    /// Counted from when the node accepted the proposal; the task that applies entries answers
    /// proposals past it on the next tick (the caller holds no timer), so a state machine stuck
    /// in `apply` also holds back that answer.
    pub propose_timeout: Duration,
    /// How many requests may wait in the node's queue before callers are slowed down.
    pub request_queue: usize,
    /// Whether the node records metrics (see [`crate::metrics`]) through the `metrics` facade.
    /// Default on: without an installed recorder the handles do nothing anyway; off skips even
    /// the bookkeeping.
    pub metrics: bool,
}

impl NodeConfig {
    /// Default settings for node `id`.
    pub fn new(id: raft_core::NodeId) -> Self {
        NodeConfig {
            core: raft_core::Config::new(id),
            tick_interval: Duration::from_millis(10),
            propose_timeout: Duration::from_secs(5),
            request_queue: 4096,
            metrics: true,
        }
    }

    /// Sets the tick duration.
    pub fn with_tick_interval(mut self, interval: Duration) -> Self {
        self.tick_interval = interval;
        self
    }

    /// Sets how long a proposal may wait.
    pub fn with_propose_timeout(mut self, timeout: Duration) -> Self {
        self.propose_timeout = timeout;
        self
    }

    /// Turns metrics recording on or off.
    pub fn with_metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Replaces the protocol settings.
    pub fn with_core(mut self, core: raft_core::Config) -> Self {
        self.core = core;
        self
    }

    /// The base election timeout T as a duration.
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval * self.core.election_timeout_ticks
    }
}

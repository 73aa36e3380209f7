//! Shared set-up for the benchmarks: a 3-node in-memory cluster and workloads against it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_node::raft_core::NodeId;
use raft_node::{ClusterOptions, KvCommand, MemCluster};

/// The payload size of the headline figures.
pub const PAYLOAD_BYTES: usize = 128;

/// A running cluster and its leader.
pub struct Bench {
    /// The cluster.
    pub cluster: Arc<MemCluster>,
    /// The leader proposals go to.
    pub leader: NodeId,
}

/// Starts a cluster of `size` nodes and waits for its leader.
pub async fn start(size: u64) -> Bench {
    let options = ClusterOptions {
        propose_timeout: Duration::from_secs(30),
        ..ClusterOptions::default()
    };
    let cluster = MemCluster::start(size, options).await.expect("cluster starts");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("a leader is elected");
    Bench {
        cluster: Arc::new(cluster),
        leader,
    }
}

/// A put of a `PAYLOAD_BYTES` value under a key derived from `n`.
pub fn command(n: u64) -> Bytes {
    KvCommand::Put {
        key: format!("k{}", n % 1024),
        value: "v".repeat(PAYLOAD_BYTES),
    }
    .encode()
}

impl Bench {
    /// Proposes `total` commands from `proposers` concurrent tasks, each waiting for its command
    /// to be applied before sending the next; returns the elapsed time.
    pub async fn run_proposals(&self, proposers: u64, total: u64) -> Duration {
        let per_proposer = total.div_ceil(proposers);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..proposers {
            let cluster = self.cluster.clone();
            let leader = self.leader;
            tasks.push(tokio::spawn(async move {
                let node = cluster.node(leader).expect("leader runs");
                for i in 0..per_proposer {
                    node.propose(command(p * per_proposer + i))
                        .await
                        .expect("proposal commits");
                }
            }));
        }
        for task in tasks {
            task.await.expect("proposer task");
        }
        started.elapsed()
    }

    /// Proposes `count` commands one after another and records each one's latency.
    pub async fn latency_histogram(&self, count: u64) -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let node = self.cluster.node(self.leader).expect("leader runs");
        for i in 0..count {
            let started = Instant::now();
            node.propose(command(i)).await.expect("proposal commits");
            let micros = started.elapsed().as_micros() as u64;
            histogram.saturating_record(micros.max(1));
        }
        histogram
    }
}

//! The gauges and counters that the node updates "on every tick" keep moving while proposals
//! never stop arriving: the loop's timer branch is then never the one that wakes it, and the
//! ticks it catches up on in every round must carry the tick's duties too.
//!
//! One test per file: the recorder is global to the process.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use raft_node::raft_core::Membership;
use raft_node::NodeConfig;

/// The leader's `raft_commit_index` gauge and its count of accepted proposals, from one
/// snapshot (taking a snapshot of the debugging recorder resets its counters).
fn leader_values(snapshotter: &Snapshotter, node: &str) -> (f64, u64) {
    let (mut commit, mut accepted) = (0.0, 0);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let has = |k: &str, v: &str| key.labels().any(|l| l.key() == k && l.value() == v);
        if !has("node", node) {
            continue;
        }
        match (key.name(), value) {
            ("raft_commit_index", DebugValue::Gauge(v)) => commit = v.into_inner(),
            ("raft_proposals_total", DebugValue::Counter(n)) if has("outcome", "accepted") => accepted = n,
            _ => {}
        }
    }
    (commit, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_metrics_move_while_proposals_never_stop() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder in this process");
    const TICK: Duration = Duration::from_millis(10);
    let cluster = Cluster::start(7, Membership::voters([1, 2, 3]).expect("membership"), |id| {
        NodeConfig::new(id).with_tick_interval(TICK).with_metrics(true)
    })
    .await;
    let leader = cluster.leader.clone();
    let label = leader.id().to_string();

    // Enough closed-loop writers that a request is always waiting when the loop looks.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..256u32 {
        let (leader, stop) = (leader.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = leader.propose(format!("w{w}-{i}")).await;
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut accepted = 0;
    for sample in 0..5 {
        let commit = leader.status().raft.commit_index;
        // Ten ticks later, still under load, the gauge and the counter have caught up with it.
        tokio::time::sleep(TICK * 10).await;
        let (gauge, counted) = leader_values(&snapshotter, &label);
        accepted += counted;
        assert!(
            gauge >= commit as f64,
            "sample {sample}: raft_commit_index {gauge} still behind {commit}, ten ticks later"
        );
        assert!(
            accepted + 1 >= commit,
            "sample {sample}: {accepted} accepted proposals counted, {commit} committed ten ticks before"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    }
}

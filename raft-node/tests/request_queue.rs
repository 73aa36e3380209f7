//! A proposal that finds the node's request queue full waits for a slot (it is not refused nor
//! lost), and every proposal so queued commits.

mod common;

use std::time::Duration;

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::NodeConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_beyond_a_full_request_queue_wait_for_a_slot_and_commit() {
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let cluster = Cluster::start(17, membership, |id| {
        let mut config = NodeConfig::new(id).with_tick_interval(Duration::from_millis(5));
        // One slot: of 64 proposals sent at once, all but one find it taken.
        config.request_queue = 1;
        config
    })
    .await;
    cluster.propose_all_at_once(64, Duration::from_secs(10)).await;
    let leader = cluster.leader.clone();
    // The apply task answers a proposal before the event loop hears that its entry is applied,
    // so the status catches up a moment after the last answer.
    let mut status = leader.watch_status();
    // (The guard `wait_for` returns holds the status's lock: drop it before reading it again.)
    let caught_up = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.raft.applied_index >= 64),
    )
    .await
    .is_ok_and(|waited| waited.is_ok());
    let applied = leader.status().raft.applied_index;
    assert!(caught_up, "applied up to {applied}, fewer than the 64 proposals");
    cluster.shutdown().await;
}

//! Scenario tests for snapshots and log compaction through `raft-node`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use raft_core::NodeId;
use raft_node::{ClusterOptions, KvCommand, MemCluster};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Snapshot after 20 applied entries keeping 5, in 256-byte chunks: a few dozen writes compact.
fn compacting(seed: u64) -> ClusterOptions {
    ClusterOptions {
        seed,
        configure: |config| {
            config.snapshot_after_entries = 20;
            config.snapshot_keep_entries = 5;
            config.snapshot_chunk_bytes = 256;
        },
        ..ClusterOptions::default()
    }
}

async fn write_many(cluster: &MemCluster, prefix: &str, count: usize) {
    for i in 0..count {
        let put = KvCommand::Put {
            key: format!("{prefix}-{i:03}"),
            value: format!("value-{i}"),
        };
        cluster.kv(put).await.unwrap();
    }
}

/// Waits until `id`'s replica equals the leader's.
async fn wait_until_replica_matches_leader(cluster: &MemCluster, id: NodeId) {
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (expected, actual) = (cluster.replica(leader), cluster.replica(id));
        if expected.is_some() && expected == actual {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id} did not catch up with the leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_partitioned_while_the_leader_compacts_catches_up_by_snapshot() {
    let cluster = MemCluster::start(3, compacting(11)).await.unwrap();
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.network().isolate(follower);
    write_many(&cluster, "k", 80).await;
    let leader_status = cluster.node(leader).unwrap().status().raft;
    let follower_last = cluster.node(follower).unwrap().status().raft.last_log_index;
    assert!(
        leader_status.first_log_index > follower_last + 1,
        "the leader compacted past the follower's log ({leader_status:?}, follower at {follower_last})"
    );
    cluster.network().heal();
    wait_until_replica_matches_leader(&cluster, follower).await;
    let storage = cluster.storage(follower).unwrap();
    let snapshot = storage
        .durable_snapshot()
        .expect("the follower stores a snapshot");
    assert!(snapshot.index > follower_last);
    assert_eq!(cluster.replica(follower).unwrap().len(), 80);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_after_compaction_catches_up_via_snapshot_and_is_promoted() {
    let cluster = MemCluster::start(3, compacting(12)).await.unwrap();
    write_many(&cluster, "before", 60).await;
    cluster.add_node(4).await.unwrap();
    let voters: BTreeSet<NodeId> = [1, 2, 3].into();
    cluster.change_membership(voters, [4].into()).await.unwrap();
    wait_until_replica_matches_leader(&cluster, 4).await;
    assert!(
        cluster.storage(4).unwrap().durable_snapshot().is_some(),
        "the learner caught up through a snapshot"
    );
    cluster
        .change_membership([1, 2, 3, 4].into(), BTreeSet::new())
        .await
        .unwrap();
    write_many(&cluster, "after", 5).await;
    wait_until_replica_matches_leader(&cluster, 4).await;
    let status = cluster.node(4).unwrap().status();
    assert!(status.membership.is_voter(4));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_recovers_from_its_snapshot_plus_the_log_after_it() {
    let cluster = MemCluster::start(3, compacting(13)).await.unwrap();
    write_many(&cluster, "k", 50).await;
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    wait_until_replica_matches_leader(&cluster, follower).await;
    let snapshot = cluster.storage(follower).unwrap().durable_snapshot().unwrap();
    cluster.network().isolate(follower);
    cluster.restart(follower).await.unwrap();
    // Before hearing from anyone, the fresh state machine already holds the snapshot's state
    // and the committed entries after it.
    let status = cluster.node(follower).unwrap().status().raft;
    assert_eq!(status.snapshot_index, snapshot.index);
    assert!(status.applied_index >= snapshot.index);
    assert!(!cluster.replica(follower).unwrap().is_empty());
    cluster.network().heal();
    write_many(&cluster, "more", 3).await;
    wait_until_replica_matches_leader(&cluster, follower).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_now_compacts_the_log_whatever_the_policy() {
    let cluster = MemCluster::start(3, ClusterOptions::default()).await.unwrap();
    write_many(&cluster, "k", 10).await;
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let node = cluster.node(leader).unwrap();
    let applied = node.status().raft.applied_index;
    let snapshot = node.snapshot().await.unwrap();
    assert!(snapshot.index >= applied);
    let storage = cluster.storage(leader).unwrap();
    // The write that records the snapshot follows shortly.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while storage.durable_snapshot().map(|s| s.index) != Some(snapshot.index) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the snapshot was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The default policy keeps 1,000 entries before the snapshot, so nothing is purged here; the
    // snapshot is recorded and the state is intact.
    assert_eq!(storage.snapshot_indexes(), vec![snapshot.index]);
    assert_eq!(cluster.replica(leader).unwrap().len(), 10);
    cluster.shutdown().await;
}

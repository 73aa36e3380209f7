//! Scenario tests for snapshots and log compaction through `raft-node`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use raft_core::NodeId;
use raft_kv::{ClusterOptions, KvCommand, MemCluster};

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

/// Collects a snapshot's bytes in memory.
struct Buffer(Vec<u8>);

#[async_trait::async_trait]
impl raft_core::SnapshotWrite for Buffer {
    async fn write(&mut self, data: bytes::Bytes) -> Result<(), raft_core::StorageError> {
        self.0.extend_from_slice(&data);
        Ok(())
    }
}

/// The snapshot, at `index` of term 1 in a 3-voter cluster, of a store holding `pairs`.
async fn kv_snapshot(index: u64, pairs: &[(&str, &str)]) -> (bytes::Bytes, raft_core::SnapshotMeta) {
    use raft_core::StateMachine;
    let mut kv = raft_kv::KvStateMachine::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        let put = KvCommand::Put {
            key: key.to_string(),
            value: value.to_string(),
        };
        kv.apply(i as u64 + 1, &put.encode()).await.unwrap();
    }
    let mut buffer = Buffer(Vec::new());
    kv.snapshot(&mut buffer).await.unwrap();
    let mut checksum = raft_core::SnapshotChecksum::new();
    checksum.update(&buffer.0);
    let meta = raft_core::SnapshotMeta {
        index,
        term: 1,
        membership: raft_core::Membership::voters([1, 2, 3]).unwrap(),
        size: checksum.size(),
        checksum: checksum.value(),
    };
    (buffer.0.into(), meta)
}

/// A message from node 1, leader of term 1, to node 2.
fn from_leader(body: raft_core::MessageBody) -> raft_core::Message {
    raft_core::Message {
        from: 1,
        to: 2,
        term: 1,
        body,
    }
}

/// The whole snapshot in one chunk.
fn whole_snapshot(meta: &raft_core::SnapshotMeta, data: &bytes::Bytes) -> raft_core::Message {
    from_leader(raft_core::MessageBody::InstallSnapshot(
        raft_core::InstallSnapshot {
            meta: meta.clone(),
            offset: 0,
            data: data.clone(),
            done: true,
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_given_two_snapshots_back_to_back_restores_them_in_turn() {
    use raft_core::Transport;
    // Node 1 is played by the test: it leads term 1 and sends node 2 two snapshots, I and J, one
    // right after the other. The disk is held so that both reach the persist queue before either
    // is durable: group commit would then record J (deleting I) before I is restored, and the
    // restore of I would find no snapshot.
    let network = raft_net_mem::MemNetwork::new(5);
    let (leader, _leader_inbox) = network.register(1);
    let (transport, inbox) = network.register(2);
    let storage = raft_storage_mem::MemStorage::new();
    let kv = raft_kv::KvStateMachine::new();
    let node = raft_node::RaftNode::start(
        raft_node::NodeConfig::new(2),
        raft_core::Membership::voters([1, 2, 3]).unwrap(),
        storage.clone(),
        transport,
        inbox,
        kv.clone(),
    )
    .await
    .unwrap();
    let heartbeats = {
        let leader = leader.clone();
        tokio::spawn(async move {
            loop {
                let heartbeat = raft_core::Heartbeat { commit: 0, round: 0 };
                let _ = leader.send(from_leader(raft_core::MessageBody::Heartbeat(heartbeat)));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (first_data, first) = kv_snapshot(10, &[("a", "1")]).await;
    let (second_data, second) = kv_snapshot(20, &[("a", "2"), ("b", "2")]).await;

    storage.hold_writes();
    tokio::time::sleep(Duration::from_millis(100)).await; // adopts term 1: that write is held
    leader.send(whole_snapshot(&first, &first_data)).unwrap();
    leader.send(whole_snapshot(&second, &second_data)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    storage.release_writes();

    // As a leader would, send the newest snapshot's last chunk again until it is taken.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let status = node.status();
        assert_eq!(status.state, raft_node::RunState::Running, "the node stopped");
        if status.raft.applied_index >= 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot J was never restored: {status:?}"
        );
        leader.send(whole_snapshot(&second, &second_data)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    heartbeats.abort();
    let expected: std::collections::BTreeMap<String, String> = [
        ("a".to_string(), "2".to_string()),
        ("b".to_string(), "2".to_string()),
    ]
    .into();
    assert_eq!(kv.contents(), expected);
    assert_eq!(storage.durable_snapshot().map(|m| m.index), Some(20));
    node.shutdown().await;
}

/// A snapshot taken every 10 entries, sent in 256 KiB chunks.
fn compacting_often(seed: u64) -> ClusterOptions {
    ClusterOptions {
        seed,
        configure: |config| {
            config.snapshot_after_entries = 10;
            config.snapshot_keep_entries = 5;
            config.snapshot_chunk_bytes = 256 << 10;
        },
        ..ClusterOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_transfer_completes_while_writes_keep_superseding_the_snapshot() {
    let cluster = std::sync::Arc::new(MemCluster::start(3, compacting_often(23)).await.unwrap());
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.network().isolate(follower);
    // 50 MiB of state: the snapshot is 200 chunks.
    let big = "x".repeat(1 << 20);
    for i in 0..50 {
        let put = KvCommand::Put {
            key: format!("big-{i:02}"),
            value: big.clone(),
        };
        cluster.kv(put).await.unwrap();
    }
    let follower_last = cluster.node(follower).unwrap().status().raft.last_log_index;
    // Each message takes 10 to 20 ms: the transfer (200 chunks, 4 in flight) takes longer than
    // four writers take to write 10 entries and make the leader record a newer snapshot, again
    // and again.
    cluster.network().set_faults(raft_net_mem::Faults {
        delay: (Duration::from_millis(10), Duration::from_millis(20)),
        ..raft_net_mem::Faults::none()
    });
    cluster.network().heal();
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (cluster, writing) = (cluster.clone(), writing.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while writing.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let put = KvCommand::Put {
                        key: format!("small-{w}-{}", n % 10),
                        value: n.to_string(),
                    };
                    let _ = cluster.kv(put).await;
                }
                n
            })
        })
        .collect();
    let leader_snapshots_at_start = cluster.node(leader).unwrap().status().raft.snapshot_index;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.node(follower).unwrap().status().raft;
        if status.snapshot_index > follower_last && status.applied_index >= status.snapshot_index {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never completed a snapshot transfer: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.unwrap();
    }
    let leader_snapshot = cluster.node(leader).unwrap().status().raft.snapshot_index;
    assert!(
        leader_snapshot > leader_snapshots_at_start + 20,
        "the writes ({writes}) superseded the leader's snapshot during the transfer"
    );
    wait_until_replica_matches_leader(&cluster, follower).await;
    assert_eq!(
        cluster.replica(follower).unwrap().get("big-49").map(String::len),
        Some(1 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_stored_snapshot_is_damaged_refuses_to_start_and_says_why() {
    let cluster = MemCluster::start(3, compacting(31)).await.unwrap();
    write_many(&cluster, "k", 40).await;
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    wait_until_replica_matches_leader(&cluster, follower).await;
    cluster.kill(follower);
    let storage = cluster.storage(follower).unwrap();
    let snapshot = storage.durable_snapshot().expect("the follower compacted");
    assert!(storage.damage_snapshot(snapshot.index));
    let refused = cluster.restart(follower).await;
    let error = refused.expect_err("a node must not restore from a damaged snapshot");
    let message = error.to_string();
    assert!(message.contains("does not match its metadata"), "{message}");
    assert!(message.contains("add it back"), "{message}");
    // The others carry on.
    write_many(&cluster, "after", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_snapshot_is_damaged_stops_instead_of_sending_it_and_the_cluster_recovers() {
    let cluster = MemCluster::start(3, compacting(37)).await.unwrap();
    let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.network().isolate(lagging);
    write_many(&cluster, "k", 60).await;
    let storage = cluster.storage(leader).unwrap();
    // A write is answered once applied, before the leader may take the snapshot that write made
    // due: wait until no snapshot is due and the latest one is durable, or a newer, sound one
    // would replace the one damaged below (and be sent instead).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let snapshot = loop {
        let raft = cluster.node(leader).unwrap().status().raft;
        let durable = storage.durable_snapshot();
        let settled = raft.applied_index == raft.commit_index
            && raft.applied_index - raft.snapshot_index < 20
            && durable.as_ref().is_some_and(|s| s.index == raft.snapshot_index);
        if settled {
            break durable.expect("the leader compacted");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader's snapshots never settled: {raft:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(storage.damage_snapshot(snapshot.index));
    cluster.network().heal();
    // The leader finds the damage when it is about to send the snapshot, and stops.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let raft_node::RunState::Failed(why) = cluster.node(leader).unwrap().status().state {
            assert!(why.contains("does not match its metadata"), "{why}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader sent a damaged snapshot (damaged {}, latest now {:?}, status {:?})",
            snapshot.index,
            storage.durable_snapshot().map(|s| s.index),
            cluster.node(leader).unwrap().status().raft
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(leader);
    // The third node leads and catches the lagging one up with its own, sound snapshot.
    wait_until_replica_matches_leader(&cluster, lagging).await;
    assert_eq!(cluster.replica(lagging).unwrap().len(), 60);
}

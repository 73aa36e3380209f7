//! A stall of the followers' disks, longer than several election timeouts, delays what they
//! acknowledge but does not depose the leader: their heartbeats' answers do not wait for the
//! disk, so check-quorum still hears a quorum. The writes proposed during the stall commit after
//! it, under the same leader.

mod common;

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::Cluster;
use raft_node::mem::MemStorage;
use raft_node::raft_core::{
    Entry, Index, LogStorage, LogWrite, Membership, NodeId, Role, StorageError, StoredLog,
};
use raft_node::NodeConfig;
use tokio::sync::watch;

/// A store whose writes wait while its disk is stalled (`true` on the watch), as a disk whose
/// fsync hangs does; reads are not affected.
struct StallingStorage {
    inner: MemStorage,
    stalled: watch::Receiver<bool>,
}

#[async_trait]
impl LogStorage for StallingStorage {
    type Snapshots = <MemStorage as LogStorage>::Snapshots;

    fn snapshot_store(&self) -> Self::Snapshots {
        self.inner.snapshot_store()
    }

    async fn load(&mut self) -> Result<StoredLog, StorageError> {
        self.inner.load().await
    }

    async fn persist(&mut self, write: LogWrite) -> Result<(), StorageError> {
        // A dropped sender (the test ended) lets the write through.
        let _ = self.stalled.wait_for(|stalled| !*stalled).await;
        self.inner.persist(write).await
    }

    async fn entries(&self, range: RangeInclusive<Index>) -> Result<Vec<Entry>, StorageError> {
        self.inner.entries(range).await
    }

    async fn last_index(&self) -> Result<Index, StorageError> {
        self.inner.last_index().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_keeps_leading_while_its_followers_disks_stall() {
    // A 300 ms election timeout: long enough that a loaded test machine does not depose a
    // healthy leader, short enough that the stall below spans several of them.
    let tick = Duration::from_millis(10);
    let config = |id| {
        let mut config = NodeConfig::new(id).with_tick_interval(tick);
        config.core.election_timeout_ticks = 30;
        config
    };
    let election_timeout = tick * config(1).core.election_timeout_ticks;
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let mut disks = Vec::new();
    let cluster = Cluster::start_on(31, membership, config, |id| {
        let (stall, stalled) = watch::channel(false);
        disks.push((id, stall));
        StallingStorage {
            inner: MemStorage::new(),
            stalled,
        }
    })
    .await;
    let leader = cluster.leader.clone();
    let leader_id = leader.id();
    leader.propose(&b"before"[..]).await.expect("commits");
    let term = leader.status().raft.term;

    let followers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != leader_id).collect();
    for (id, stall) in &disks {
        if followers.contains(id) {
            stall.send_replace(true);
        }
    }
    let during = {
        let leader = leader.clone();
        tokio::spawn(async move { leader.propose(&b"during the stall"[..]).await })
    };
    // Four election timeouts with both followers' writes stuck (check-quorum looks back one).
    let stall_for = election_timeout * 4;
    let started = Instant::now();
    while started.elapsed() < stall_for {
        let status = leader.status().raft;
        assert_eq!(
            (status.role, status.term),
            (Role::Leader, term),
            "the leader was deposed {:?} into the followers' disk stall",
            started.elapsed()
        );
        tokio::time::sleep(tick).await;
    }
    assert!(
        !during.is_finished(),
        "nothing commits while no follower's write is durable"
    );

    for (_, stall) in &disks {
        stall.send_replace(false);
    }
    let reply = tokio::time::timeout(Duration::from_secs(10), during)
        .await
        .expect("the write commits once the disks recover")
        .expect("the proposing task")
        .expect("commits");
    assert!(!reply.is_empty());
    let status = leader.status().raft;
    assert_eq!(
        (status.role, status.term),
        (Role::Leader, term),
        "the same leader throughout"
    );
    cluster.shutdown().await;
}

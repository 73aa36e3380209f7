//! A stall of the followers' disks, longer than several election timeouts, delays what they
//! acknowledge but does not depose the leader: their heartbeats' answers do not wait for the
//! disk, so check-quorum still hears a quorum. The writes proposed during the stall commit after
//! it, under the same leader.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use raft_node::mem::MemStorage;
use raft_node::raft_core::{Membership, NodeId, Role};
use raft_node::NodeConfig;
use raft_storage_mem::FaultyStorage;

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
        let (storage, faults) = FaultyStorage::new(MemStorage::new());
        disks.push((id, faults));
        storage
    })
    .await;
    let leader = cluster.leader.clone();
    let leader_id = leader.id();
    leader.propose(&b"before"[..]).await.expect("commits");
    let term = leader.status().raft.term;

    let followers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != leader_id).collect();
    for (id, faults) in &disks {
        if followers.contains(id) {
            faults.stall_writes();
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

    for (_, faults) in &disks {
        faults.resume_writes();
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

//! `RaftNode::watch_membership`: it wakes its watcher when a configuration changes, and not on
//! the commits in between (the status watch wakes on every one of those).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::NodeConfig;

fn config(id: u64) -> NodeConfig {
    NodeConfig::new(id).with_tick_interval(Duration::from_millis(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_watch_wakes_for_a_configuration_change_and_not_for_commits() {
    let mut membership = Membership::voters([1, 2, 3]).expect("membership");
    membership.learners.insert(4);
    let cluster = Cluster::start(31, membership, config).await;
    let leader = cluster.leader.clone();
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id() != leader.id() && n.id() != 4)
        .expect("a voting follower")
        .clone();
    let mut configurations = follower.watch_membership();
    let mut status = follower.watch_status();
    configurations.borrow_and_update();
    status.borrow_and_update();

    for i in 0..20 {
        leader
            .propose(format!("w{i}").into_bytes())
            .await
            .expect("commits");
    }
    let index = leader.status().raft.commit_index;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.raft.commit_index >= index),
    )
    .await
    .expect("the follower learns the commits")
    .expect("the follower runs");
    assert!(
        !configurations.has_changed().expect("the node runs"),
        "twenty commits changed no configuration, so the watch did not wake"
    );

    leader
        .change_membership(BTreeSet::from([1, 2, 3, 4]), BTreeSet::new())
        .await
        .expect("the learner is promoted");
    let promoted = tokio::time::timeout(
        Duration::from_secs(10),
        configurations.wait_for(|now| now.committed_membership.is_voter(4) && now.membership.is_voter(4)),
    )
    .await
    .expect("the follower sees the promotion committed within 10 s")
    .expect("the node runs")
    .clone();
    assert_eq!(promoted.membership.voters, BTreeSet::from([1, 2, 3, 4]));
    assert!(promoted.membership.learners.is_empty());
    assert_eq!(
        follower.status().membership,
        promoted.membership,
        "the watch and the status agree"
    );

    follower.shutdown().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), configurations.changed()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the watch closes when the node stops: {closed:?}"
    );
    cluster.shutdown().await;
}

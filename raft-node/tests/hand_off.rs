//! `RaftNode::hand_off_leadership`: a leader about to stop hands leadership to the voter that can
//! take over soonest, so the cluster is not left leaderless for an election timeout.

mod common;

use std::time::Duration;

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::NodeConfig;

fn config(id: u64) -> NodeConfig {
    NodeConfig::new(id).with_tick_interval(Duration::from_millis(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_leadership_moves_it_to_the_voter_whose_log_reaches_furthest() {
    // Each follower in turn is the one left behind, so no fixed order of choice can pass.
    for (seed, behind) in [(21, 0), (24, 1)] {
        let membership = Membership::voters([1, 2, 3]).expect("membership");
        let cluster = Cluster::start(seed, membership, config).await;
        let leader = cluster.leader.clone();
        let followers: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| n.id())
            .filter(|id| *id != leader.id())
            .collect();
        let (lagging, current) = (followers[behind], followers[1 - behind]);
        // One follower misses the writes: the leader and the other follower commit them.
        cluster.network.isolate(lagging);
        for i in 0..5 {
            leader
                .propose(format!("w{i}").into_bytes())
                .await
                .expect("commits without the lagging follower");
        }

        let next = leader.hand_off_leadership().await.expect("hands off");
        assert_eq!(
            next,
            Some(current),
            "the follower that has every entry takes over, not the lagging {lagging}"
        );
        let new_leader = cluster
            .nodes
            .iter()
            .find(|n| n.id() == current)
            .expect("the new leader");
        assert_eq!(new_leader.status().raft.leader, Some(current));
        new_leader
            .propose(&b"after"[..])
            .await
            .expect("the new leader commits");
        cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_leadership_on_a_follower_or_a_single_voter_does_nothing() {
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let cluster = Cluster::start(22, membership, config).await;
    let leader_id = cluster.leader.id();
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id() != leader_id)
        .expect("a follower");
    assert_eq!(follower.hand_off_leadership().await, Ok(None));
    assert_eq!(
        cluster.leader.status().raft.leader,
        Some(leader_id),
        "leadership stays where it was"
    );
    cluster.shutdown().await;

    let single = Cluster::start(23, Membership::voters([1]).expect("membership"), config).await;
    assert_eq!(
        single.leader.hand_off_leadership().await,
        Ok(None),
        "no other voter to take over"
    );
    single
        .leader
        .propose(&b"still leads"[..])
        .await
        .expect("still leads");
    single.shutdown().await;
}

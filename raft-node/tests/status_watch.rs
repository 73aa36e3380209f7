//! `RaftNode::status` and `RaftNode::watch_status`: the status reads every commit whether or not
//! anyone watches it, and a watcher is woken by each change made after it subscribed (the node
//! notifies receivers only while one besides its own exists). The event loop learns how far the
//! state machine applied at its next round rather than being woken for it; what a caller asks
//! after an answer still sees that entry applied.

mod common;

use std::time::Duration;

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::{NodeConfig, RaftNode, RunState};

fn config(id: u64) -> NodeConfig {
    NodeConfig::new(id).with_tick_interval(Duration::from_millis(5))
}

/// Proposes `command` on `leader` and returns the index it committed at (the test state machine
/// answers with it).
async fn commit(leader: &RaftNode, command: String) -> u64 {
    let answer = leader.propose(command.into_bytes()).await.expect("commits");
    std::str::from_utf8(&answer)
        .ok()
        .and_then(|index| index.parse().ok())
        .expect("the state machine answers with the entry's index")
}

/// Polls `node.status()` (every millisecond, at most 10 s) until its commit index reaches `index`.
async fn status_reaches(node: &RaftNode, index: u64) -> bool {
    for _ in 0..10_000 {
        if node.status().raft.commit_index >= index {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_each_commit_unwatched_and_a_watcher_is_woken_by_each_later_one() {
    let cluster = Cluster::start(41, Membership::voters([1, 2, 3]).expect("membership"), config).await;
    let leader = cluster.leader.clone();
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id() != leader.id())
        .expect("a follower")
        .clone();

    // Nobody watches: the status still reads every commit, on the leader and on a follower, and
    // the leader's reads each entry applied as soon as its proposal returns.
    let mut last = 0;
    for i in 0..10 {
        last = commit(&leader, format!("unwatched {i}")).await;
        let applied = leader.status().raft.applied_index;
        assert!(
            applied >= last,
            "applied {applied} right after {last} was answered"
        );
        assert!(
            applied <= leader.status().raft.commit_index,
            "applied within the commit index"
        );
    }
    assert!(
        status_reaches(&leader, last).await,
        "the leader's status reads index {last}"
    );
    assert!(
        status_reaches(&follower, last).await,
        "the follower's status reads index {last}"
    );

    // A watcher subscribes: each later commit wakes it, and the value it wakes to is current.
    let mut watcher = follower.watch_status();
    assert!(
        watcher.borrow_and_update().raft.commit_index >= last,
        "a new watcher starts from the current status"
    );
    for i in 0..5 {
        let index = commit(&leader, format!("watched {i}")).await;
        let woken = tokio::time::timeout(
            Duration::from_secs(10),
            watcher.wait_for(|s| s.raft.commit_index >= index),
        )
        .await;
        assert!(
            matches!(woken, Ok(Ok(_))),
            "the watcher is woken by the commit of {index}"
        );
    }
    let later = tokio::time::timeout(Duration::from_secs(10), async {
        let index = commit(&leader, "one more".to_string()).await;
        watcher.changed().await.map(|()| index)
    })
    .await;
    assert!(
        matches!(later, Ok(Ok(_))),
        "changed() wakes for a commit after the last seen: {later:?}"
    );

    // The watcher goes away: the status still reads every commit.
    drop(watcher);
    for i in 0..10 {
        last = commit(&leader, format!("unwatched again {i}")).await;
    }
    assert!(
        status_reaches(&follower, last).await,
        "the follower's status reads index {last}"
    );

    // Stopping wakes a watcher, which reads the node stopped (or sees the watch closed).
    let mut watcher = follower.watch_status();
    watcher.borrow_and_update();
    follower.shutdown().await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), watcher.changed()).await;
    match stopped {
        Ok(Ok(())) => assert_eq!(watcher.borrow().state, RunState::Stopped),
        Ok(Err(_)) => {}
        Err(_) => panic!("stopping the node did not wake its status watcher within 10 s"),
    }
    assert_eq!(
        follower.status().state,
        RunState::Stopped,
        "the status reads the node stopped"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_asked_for_right_after_a_proposal_returns_covers_that_entry() {
    let cluster = Cluster::start(43, Membership::voters([1, 2, 3]).expect("membership"), config).await;
    let leader = cluster.leader.clone();
    for round in 0..5 {
        let index = commit(&leader, format!("before snapshot {round}")).await;
        let snapshot = tokio::time::timeout(Duration::from_secs(10), leader.snapshot())
            .await
            .expect("the snapshot is built within 10 s")
            .expect("a snapshot");
        assert!(
            snapshot.index >= index,
            "round {round}: the snapshot at {} covers the entry {index} answered before it was asked for",
            snapshot.index
        );
    }
    cluster.shutdown().await;
}

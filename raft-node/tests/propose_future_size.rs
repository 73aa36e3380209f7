//! The future that [`RaftNode::propose`](raft_node::RaftNode::propose) returns stays small.
//!
//! A thousand closed-loop callers each hold one of these futures while they wait for their
//! entry to commit, and every proposal builds it and moves it into the caller's task. It was
//! 704 bytes when the wait for a queue slot lived inline in it; with that wait boxed (it is
//! rare: the queue nearly always has room) it is 176 bytes in a debug build. This test keeps it
//! from growing back unnoticed: a change that needs more room should say why here.

mod common;

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::NodeConfig;

/// Room for the span, the reply channel, the node reference and the state of the await, with
/// some slack; far below the 704 bytes of the inline wait.
const PROPOSE_FUTURE_MAX_BYTES: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_propose_future_holds_no_inline_wait_for_a_queue_slot() {
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let cluster = Cluster::start(17, membership, NodeConfig::new).await;
    let leader = cluster.leader.clone();
    let proposal = leader.propose(bytes::Bytes::from_static(b"x"));
    let size = std::mem::size_of_val(&proposal);
    assert!(
        size <= PROPOSE_FUTURE_MAX_BYTES,
        "the propose future is {size} bytes, more than {PROPOSE_FUTURE_MAX_BYTES}"
    );
    // It still does its work: the proposal commits and answers.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), proposal)
        .await
        .expect("the proposal answers within 10 s");
    assert!(answer.is_ok(), "the proposal commits: {answer:?}");
    cluster.shutdown().await;
}

//! A proposal that cannot commit is answered with `ProposeError::Timeout` once the propose
//! timeout has passed (the node's apply task answers it on a tick; the caller holds no timer).

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use raft_node::raft_core::Membership;
use raft_node::{NodeConfig, ProposeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_that_cannot_commit_times_out() {
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let cluster = Cluster::start(11, membership, |id| {
        NodeConfig::new(id)
            .with_tick_interval(Duration::from_millis(5))
            .with_propose_timeout(Duration::from_millis(300))
    })
    .await;
    let (network, leader) = (&cluster.network, cluster.leader.clone());
    let leader_id = leader.id();
    // A healthy cluster answers with the entry's response.
    let reply = leader.propose(&b"x"[..]).await.expect("commits");
    assert!(!reply.is_empty());

    // Cut the leader off: its entry can never reach a quorum.
    network.isolate(leader_id);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), leader.propose(&b"y"[..]))
        .await
        .expect("the proposal is answered, not left hanging");
    let waited = started.elapsed();
    match result {
        Err(ProposeError::Timeout) => {
            assert!(
                waited >= Duration::from_millis(300),
                "answered after {waited:?}, before the timeout"
            );
        }
        // Check-quorum may make the leader step down before its proposal is accepted.
        Err(ProposeError::Refused(_)) => {}
        other => panic!("expected a timeout, got {other:?} after {waited:?}"),
    }
    cluster.shutdown().await;
}

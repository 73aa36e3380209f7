//! The tutorial's replicated counter: three `RaftNode`s in one process on the in-memory storage
//! and transport. Every command adds one; a write is answered with the new count once a majority
//! has it, and a linearizable read on a follower sees it.
//!
//! ```sh
//! cargo run -p raft-node --example counter
//! ```

use std::time::Duration;

use bytes::Bytes;
use raft_core::Membership;
use raft_node::mem::{MemNetwork, MemStorage};
use raft_node::{NodeConfig, RaftNode, ReadConsistency};

#[path = "support/counter.rs"]
mod counter;
use counter::Counter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let network = MemNetwork::new(1);
    let membership = Membership::voters([1, 2, 3])?;
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let (transport, inbox) = network.register(id);
        let config = NodeConfig::new(id);
        let node = RaftNode::start(
            config,
            membership.clone(),
            MemStorage::new(),
            transport,
            inbox,
            Counter::default(),
        )
        .await?;
        nodes.push(node);
    }
    let leader_id = nodes[0]
        .wait_for_leader(Duration::from_secs(5))
        .await
        .ok_or("no leader")?;
    let leader = nodes
        .iter()
        .find(|n| n.id() == leader_id)
        .ok_or("the leader is ours")?;
    println!("node {leader_id} leads");
    for _ in 0..5 {
        let count = leader.propose(Bytes::new()).await?;
        println!("count is now {}", String::from_utf8_lossy(&count));
    }
    let follower = nodes.iter().find(|n| n.id() != leader_id).ok_or("a follower")?;
    let seen = follower.read(Bytes::new(), ReadConsistency::Linearizable).await?;
    println!(
        "node {} reads {} (linearizable)",
        follower.id(),
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(&seen[..], b"5");
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

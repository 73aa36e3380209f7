//! The tutorial's replicated counter: three `RaftNode`s in one process on the in-memory storage
//! and transport. Every command adds one; a write is answered with the new count once a majority
//! has it, and a linearizable read on a follower sees it.
//!
//! ```sh
//! cargo run -p raft-node --example counter
//! ```

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{Index, Membership, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError};
use raft_node::mem::{MemNetwork, MemStorage};
use raft_node::{NodeConfig, RaftNode, ReadConsistency};

/// The state machine: a count, and how far it has applied the log.
#[derive(Default)]
struct Counter {
    count: u64,
    applied: Index,
}

#[async_trait]
impl StateMachine for Counter {
    async fn apply(&mut self, index: Index, _command: Bytes) -> Result<Bytes, StateMachineError> {
        self.count += 1;
        self.applied = index;
        Ok(Bytes::from(self.count.to_string()))
    }

    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::from(self.count.to_string()))
    }

    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        let bytes = Bytes::copy_from_slice(&self.count.to_le_bytes());
        out.write(bytes)
            .await
            .map_err(|e| StateMachineError::storage(self.applied, e))
    }

    async fn restore(&mut self, index: Index, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let bytes = input
            .read()
            .await
            .map_err(|e| StateMachineError::storage(index, e))?;
        let count = bytes
            .as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .unwrap_or_default();
        (self.count, self.applied) = (u64::from_le_bytes(count), index);
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.applied
    }
}

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

//! What the node's integration tests share.
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_node::mem::{MemNetwork, MemStorage};
use raft_node::raft_core::{
    Index, LogStorage, Membership, NodeId, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError,
};
use raft_node::{NodeConfig, RaftNode};

/// A cluster of nodes on one in-memory network, with a leader elected.
pub struct Cluster {
    pub network: MemNetwork,
    pub nodes: Vec<Arc<RaftNode>>,
    pub leader: Arc<RaftNode>,
}

impl Cluster {
    /// Starts a node for every member of `membership` (voters and learners), each on
    /// `MemStorage` with an [`Echo`] state machine and the settings `config(id)`, and waits for
    /// a leader.
    pub async fn start(seed: u64, membership: Membership, config: impl Fn(NodeId) -> NodeConfig) -> Cluster {
        Self::start_on(seed, membership, config, |_| MemStorage::new()).await
    }

    /// [`start`](Self::start) with each node's store made by `storage(id)`.
    pub async fn start_on<S: LogStorage + Sync>(
        seed: u64,
        membership: Membership,
        config: impl Fn(NodeId) -> NodeConfig,
        mut storage: impl FnMut(NodeId) -> S,
    ) -> Cluster {
        let network = MemNetwork::new(seed);
        let mut nodes = Vec::new();
        for id in membership.members().collect::<Vec<_>>() {
            let (transport, inbox) = network.register(id);
            let node = RaftNode::start(
                config(id),
                membership.clone(),
                storage(id),
                transport,
                inbox,
                Echo::default(),
            )
            .await
            .expect("starts");
            nodes.push(Arc::new(node));
        }
        let leader_id = nodes[0]
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("a leader");
        let leader = nodes
            .iter()
            .find(|n| n.id() == leader_id)
            .expect("the leader")
            .clone();
        Cluster {
            network,
            nodes,
            leader,
        }
    }

    /// Shuts every node down.
    pub async fn shutdown(&self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }
}

/// Answers every command with its index.
#[derive(Default)]
pub struct Echo {
    applied: Index,
}

impl StateMachine for Echo {
    async fn apply(&mut self, index: Index, _command: Bytes) -> Result<Bytes, StateMachineError> {
        self.applied = index;
        Ok(Bytes::from(index.to_string()))
    }
    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }
    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(Bytes::new())
            .await
            .map_err(|e| StateMachineError::storage(self.applied, e))
    }
    async fn restore(
        &mut self,
        index: Index,
        _input: &mut dyn SnapshotRead,
    ) -> Result<(), StateMachineError> {
        self.applied = index;
        Ok(())
    }
    fn applied_index(&self) -> Index {
        self.applied
    }
}

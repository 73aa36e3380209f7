//! What the node's integration tests share.
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_node::mem::{MemInbox, MemNetwork, MemStorage, MemTransport};
use raft_node::raft_core::{
    Inbox, Index, LogStorage, Membership, NodeId, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError, Transport,
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
        storage: impl FnMut(NodeId) -> S,
    ) -> Cluster {
        Self::start_wrapped(seed, membership, config, storage, |transport, inbox| {
            (transport, inbox)
        })
        .await
    }

    /// [`start_on`](Self::start_on) with each node's transport and inbox passed through
    /// `wrap` (to record or alter what they carry).
    pub async fn start_wrapped<S: LogStorage + Sync, T: Transport, I: Inbox>(
        seed: u64,
        membership: Membership,
        config: impl Fn(NodeId) -> NodeConfig,
        mut storage: impl FnMut(NodeId) -> S,
        wrap: impl Fn(MemTransport, MemInbox) -> (T, I),
    ) -> Cluster {
        let network = MemNetwork::new(seed);
        let mut nodes = Vec::new();
        for id in membership.members().collect::<Vec<_>>() {
            let (transport, inbox) = network.register(id);
            let (transport, inbox) = wrap(transport, inbox);
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

    /// Proposes `count` commands to the leader at once, each from a task of its own, and
    /// asserts that every one is answered with success within `within`.
    pub async fn propose_all_at_once(&self, count: u32, within: Duration) {
        let proposals: Vec<_> = (0..count)
            .map(|n| {
                let leader = self.leader.clone();
                tokio::spawn(async move { leader.propose(n.to_le_bytes().to_vec()).await })
            })
            .collect();
        for proposal in proposals {
            let answer = tokio::time::timeout(within, proposal)
                .await
                .expect("answered in time")
                .expect("the task ran");
            assert!(answer.is_ok(), "a proposal failed: {answer:?}");
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
    async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
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

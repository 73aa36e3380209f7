//! Three nodes on the durable backends, in one process for the example's sake: each has its own
//! RocksDB directory and its own QUIC endpoint on loopback, with certificates from a cluster CA
//! made on the spot (mutual TLS). The state machine keeps the last command it applied. In a real
//! deployment each node is its own process on its own machine: see the `raft-kv` server.
//!
//! ```sh
//! cargo run -p raft-node --features rocksdb,quic --example quic_rocks_cluster
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{Index, Membership, NodeId, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError};
use raft_node::quic::{ClusterCa, QuicConfig, QuicTransport};
use raft_node::rocks::{RocksStorage, StoreIdentity};
use raft_node::{NodeConfig, RaftNode, ReadConsistency};

const CLUSTER_ID: u64 = 7;

/// Keeps the last command applied.
#[derive(Default)]
struct LastWrite {
    last: Bytes,
    applied: Index,
}

impl StateMachine for LastWrite {
    async fn apply(&mut self, index: Index, command: &Bytes) -> Result<Bytes, StateMachineError> {
        (self.last, self.applied) = (command.clone(), index);
        Ok(Bytes::from(index.to_string()))
    }

    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(self.last.clone())
    }

    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(self.last.clone())
            .await
            .map_err(|e| StateMachineError::storage(self.applied, e))
    }

    async fn restore(&mut self, index: Index, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
        let bytes = input
            .read()
            .await
            .map_err(|e| StateMachineError::storage(index, e))?;
        (self.last, self.applied) = (bytes.unwrap_or_default(), index);
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.applied
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ids: [NodeId; 3] = [1, 2, 3];
    let ca = ClusterCa::generate("example cluster")?;
    // Bind every endpoint first (port 0: the system picks), so each node knows the others' ports.
    let sockets = ids.map(|_| UdpSocket::bind("127.0.0.1:0"));
    let mut peers: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
    let mut bound = Vec::new();
    for (id, socket) in ids.into_iter().zip(sockets) {
        let socket = socket?;
        peers.insert(id, socket.local_addr()?);
        bound.push((id, socket));
    }
    let data = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    let mut transports = Vec::new();
    for (id, socket) in bound {
        let tls = ca.issue(CLUSTER_ID, id)?.tls(&ca.cert_pem())?;
        let quic = QuicConfig::new(id, CLUSTER_ID, peers[&id], peers.clone(), tls);
        let (transport, inbox) = QuicTransport::start_on(quic, socket)?;
        let identity = StoreIdentity {
            cluster_id: CLUSTER_ID,
            node_id: id,
        };
        let storage = RocksStorage::open(data.path().join(format!("node-{id}")), identity).await?;
        let membership = Membership::voters(ids)?;
        let node = RaftNode::start(
            NodeConfig::new(id),
            membership,
            storage,
            transport.clone(),
            inbox,
            LastWrite::default(),
        )
        .await?;
        nodes.push(node);
        transports.push(transport);
    }
    let leader_id = nodes[0]
        .wait_for_leader(Duration::from_secs(10))
        .await
        .ok_or("no leader")?;
    let leader = nodes
        .iter()
        .find(|n| n.id() == leader_id)
        .ok_or("the leader is ours")?;
    let index = leader.propose(&b"hello, durable world"[..]).await?;
    println!(
        "node {leader_id} leads; the write is durable on a majority at index {}",
        String::from_utf8_lossy(&index)
    );
    for node in &nodes {
        let seen = node.read(Bytes::new(), ReadConsistency::Linearizable).await?;
        println!("node {} reads {:?}", node.id(), String::from_utf8_lossy(&seen));
    }
    for node in &nodes {
        node.shutdown().await;
    }
    for transport in &transports {
        transport.shutdown();
    }
    Ok(())
}

//! `MemNetwork` passes the transport conformance suite. Shutting a node down unregisters it.

use async_trait::async_trait;
use raft_conformance::transport::TransportHarness;
use raft_core::NodeId;
use raft_net_mem::{MemInbox, MemNetwork, MemTransport};

struct Harness {
    network: MemNetwork,
}

#[async_trait]
impl TransportHarness for Harness {
    type Transport = MemTransport;
    type Inbox = MemInbox;

    async fn start(&mut self, id: NodeId) -> (MemTransport, MemInbox) {
        self.network.register(id)
    }

    async fn shutdown(&mut self, id: NodeId) {
        self.network.unregister(id);
    }
}

raft_conformance::transport_suite!(Harness {
    network: MemNetwork::new(7)
});

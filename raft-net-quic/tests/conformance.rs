//! `QuicTransport` passes the transport conformance suite, over loopback with mutual TLS.

mod support;

use async_trait::async_trait;
use raft_conformance::transport::TransportHarness;
use raft_core::NodeId;
use raft_net_quic::{QuicInbox, QuicTransport};
use support::Cluster;

struct Harness {
    cluster: Cluster,
}

#[async_trait]
impl TransportHarness for Harness {
    type Transport = QuicTransport;
    type Inbox = QuicInbox;

    async fn start(&mut self, id: NodeId) -> (QuicTransport, QuicInbox) {
        self.cluster.start(id)
    }

    async fn shutdown(&mut self, id: NodeId) {
        self.cluster.shutdown(id);
    }
}

raft_conformance::transport_suite!(Harness {
    cluster: Cluster::new(3)
});

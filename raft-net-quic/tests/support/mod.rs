//! A cluster of QUIC endpoints on loopback for the tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};

use raft_core::{Heartbeat, Message, MessageBody, NodeId};
use raft_net_quic::{ClusterCa, NodeTls, QuicConfig, QuicInbox, QuicTransport};

/// The cluster id the tests use.
pub const CLUSTER: u64 = 77;

/// Nodes 1..=n of one cluster, each with a loopback address reserved and a certificate.
pub struct Cluster {
    /// The cluster's CA.
    pub ca: ClusterCa,
    /// Each node's reserved address.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    sockets: BTreeMap<NodeId, UdpSocket>,
    /// The transports started and not shut down.
    pub running: BTreeMap<NodeId, QuicTransport>,
}

/// A heartbeat from node 1 to node 2 in term 1: the smallest message there is.
pub fn heartbeat(round: u64) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat { commit: 0, round }),
    }
}

/// Sends heartbeats from node 1's `transport` until one reaches node 2's `inbox` (the first few
/// may go before the connection is up): at most 100, each given 100 ms. Whether one arrived.
pub async fn connected(transport: &QuicTransport, inbox: &mut QuicInbox) -> bool {
    reaches(transport, 1, inbox, 2).await
}

/// [`connected`] from node `from`'s `transport` to node `to`'s `inbox`.
pub async fn reaches(transport: &QuicTransport, from: NodeId, inbox: &mut QuicInbox, to: NodeId) -> bool {
    use raft_core::{Inbox, Transport};
    for round in 0..100 {
        let _ = transport.send(Message {
            from,
            to,
            ..heartbeat(round)
        });
        let arrived = tokio::time::timeout(std::time::Duration::from_millis(100), inbox.recv()).await;
        if let Ok(Some(_)) = arrived {
            return true;
        }
    }
    false
}

/// A socket on a free loopback port.
pub fn bind_loopback() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port")
}

impl Cluster {
    /// Nodes 1..=n, none started.
    pub fn new(n: u64) -> Self {
        let ca = ClusterCa::generate("test").expect("CA");
        let mut addrs = BTreeMap::new();
        let mut sockets = BTreeMap::new();
        for id in 1..=n {
            let socket = bind_loopback();
            addrs.insert(id, socket.local_addr().expect("addr"));
            sockets.insert(id, socket);
        }
        Cluster {
            ca,
            addrs,
            sockets,
            running: BTreeMap::new(),
        }
    }

    /// A fresh certificate for node `id` from the cluster's CA.
    pub fn tls(&self, id: NodeId) -> NodeTls {
        self.ca
            .issue(CLUSTER, id)
            .expect("issue")
            .tls(&self.ca.cert_pem())
            .expect("tls")
    }

    /// Node `id`'s settings with the given TLS material.
    pub fn config(&self, id: NodeId, tls: NodeTls) -> QuicConfig {
        let mut config = QuicConfig::new(id, CLUSTER, self.addrs[&id], self.addrs.clone(), tls);
        config.max_frame_bytes = 16 << 20;
        config
    }

    /// The node's reserved socket the first time, its address bound again after a shutdown.
    pub fn socket(&mut self, id: NodeId) -> UdpSocket {
        match self.sockets.remove(&id) {
            Some(socket) => socket,
            // The address is free once the stopped endpoint's tasks have ended.
            None => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    match UdpSocket::bind(self.addrs[&id]) {
                        Ok(socket) => break socket,
                        Err(e) if std::time::Instant::now() < deadline => {
                            let _ = e;
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        Err(e) => panic!("rebind the address of node {id}: {e}"),
                    }
                }
            }
        }
    }

    /// Starts a node with these settings on its reserved address.
    pub fn start_with(&mut self, config: QuicConfig) -> (QuicTransport, QuicInbox) {
        let id = config.node_id;
        let socket = self.socket(id);
        let (transport, inbox) = QuicTransport::start_on(config, socket).expect("start");
        self.running.insert(id, transport.clone());
        (transport, inbox)
    }

    /// Starts node `id` with a valid certificate.
    pub fn start(&mut self, id: NodeId) -> (QuicTransport, QuicInbox) {
        let config = self.config(id, self.tls(id));
        self.start_with(config)
    }

    /// Shuts node `id` down.
    pub fn shutdown(&mut self, id: NodeId) {
        if let Some(transport) = self.running.remove(&id) {
            transport.shutdown();
        }
    }
}

/// A bare QUIC client with a node's certificate, to send hand-made bytes.
pub async fn raw_connection(tls: &NodeTls, to: NodeId, addr: SocketAddr) -> quinn::Connection {
    try_raw_connection(tls, true, to, addr).await.expect("handshake")
}

/// A bare QUIC connection trusting the CA in `tls`, presenting its certificate only when
/// `present_certificate`.
pub async fn try_raw_connection(
    tls: &NodeTls,
    present_certificate: bool,
    to: NodeId,
    addr: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in &tls.cas {
        roots.add(ca.clone()).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    let mut client = if present_certificate {
        builder
            .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    client.alpn_protocols = vec![b"raft/1".to_vec()];
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client).expect("QUIC client config");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(client)));
    endpoint
        .connect(addr, &raft_net_quic::certs::node_name(CLUSTER, to))
        .expect("connect")
        .await
}

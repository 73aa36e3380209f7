//! A 3-node cluster of real backends: RocksDB in temporary directories and QUIC with mutual TLS on
//! loopback ports. It elects, replicates, survives a leader restart with every committed entry
//! intact, and refuses a node whose certificate comes from another CA.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use raft_core::{Membership, NodeId};
use raft_kv::{KvCommand, KvReply, KvResponse, KvStateMachine};
use raft_node::quic::{ClusterCa, NodeTls, QuicConfig, QuicTransport};
use raft_node::rocks::{RocksStorage, StoreIdentity};
use raft_node::{NodeConfig, RaftNode, ReadConsistency};

const CLUSTER: u64 = 0xC0FFEE;
const TIMEOUT: Duration = Duration::from_secs(20);

struct Member {
    node: RaftNode,
    transport: QuicTransport,
}

struct Cluster {
    ca: ClusterCa,
    addrs: BTreeMap<NodeId, SocketAddr>,
    sockets: BTreeMap<NodeId, UdpSocket>,
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    members: BTreeMap<NodeId, Member>,
}

fn bind(addr: SocketAddr) -> UdpSocket {
    // After a shutdown the address frees once the old endpoint's tasks end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match UdpSocket::bind(addr) {
            Ok(socket) => return socket,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "cannot bind {addr}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Cluster {
    fn new() -> Self {
        let mut addrs = BTreeMap::new();
        let mut sockets = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        for id in 1..=3 {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            addrs.insert(id, socket.local_addr().expect("addr"));
            sockets.insert(id, socket);
            dirs.insert(id, tempfile::tempdir().expect("tempdir"));
        }
        Cluster {
            ca: ClusterCa::generate("test").expect("CA"),
            addrs,
            sockets,
            dirs,
            members: BTreeMap::new(),
        }
    }

    fn tls(&self, id: NodeId) -> NodeTls {
        self.ca
            .issue(CLUSTER, id)
            .expect("issue")
            .tls(&self.ca.cert_pem())
            .expect("tls")
    }

    async fn start(&mut self, id: NodeId, tls: NodeTls) {
        let storage = RocksStorage::open(
            self.dirs[&id].path(),
            StoreIdentity {
                cluster_id: CLUSTER,
                node_id: id,
            },
        )
        .await
        .expect("open RocksDB");
        let socket = match self.sockets.remove(&id) {
            Some(socket) => socket,
            None => bind(self.addrs[&id]),
        };
        let config = QuicConfig::new(id, CLUSTER, self.addrs[&id], self.addrs.clone(), tls);
        let (transport, inbox) = QuicTransport::start_on(config, socket).expect("start QUIC");
        let membership = Membership::voters([1, 2, 3]).expect("membership");
        let node = RaftNode::start(
            NodeConfig::new(id),
            membership,
            storage,
            transport.clone(),
            inbox,
            KvStateMachine::new(),
        )
        .await
        .expect("start node");
        self.members.insert(id, Member { node, transport });
    }

    async fn stop(&mut self, id: NodeId) {
        if let Some(member) = self.members.remove(&id) {
            member.node.shutdown().await;
            member.transport.shutdown();
        }
    }

    async fn leader(&self) -> NodeId {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            for member in self.members.values() {
                if let Some(leader) = member.node.wait_for_leader(Duration::from_millis(200)).await {
                    if self.members.contains_key(&leader) {
                        return leader;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader within {TIMEOUT:?}"
            );
        }
    }

    async fn put(&self, key: &str, value: &str) {
        let command = KvCommand::Put {
            key: key.into(),
            value: value.into(),
        }
        .encode();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let leader = self.leader().await;
            match self.members[&leader].node.propose(command.clone()).await {
                Ok(_) => return,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "put {key}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn get(&self, on: NodeId, key: &str, consistency: ReadConsistency) -> Option<String> {
        let query = KvCommand::Get { key: key.into() }.encode();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match self.members[&on].node.read(query.clone(), consistency).await {
                Ok(reply) => match KvReply::response_of(&reply).expect("decodes") {
                    KvResponse::Value(value) => return value,
                    other => panic!("unexpected answer {other:?}"),
                },
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "get {key} on {on}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_quic_and_rocksdb_survive_a_leader_restart() {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        let tls = cluster.tls(id);
        cluster.start(id, tls).await;
    }
    let leader = cluster.leader().await;
    for i in 0..50 {
        cluster.put(&format!("k{i}"), &format!("v{i}")).await;
    }

    // Restart the leader from its RocksDB directory on the same address.
    cluster.stop(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader, "a surviving node takes over");
    for i in 50..60 {
        cluster.put(&format!("k{i}"), &format!("v{i}")).await;
    }
    let tls = cluster.tls(leader);
    cluster.start(leader, tls).await;
    for i in 60..70 {
        cluster.put(&format!("k{i}"), &format!("v{i}")).await;
    }

    // Every committed write is there, on the cluster and on the restarted node.
    let reader = cluster.leader().await;
    for i in 0..70 {
        let value = cluster
            .get(reader, &format!("k{i}"), ReadConsistency::Linearizable)
            .await;
        assert_eq!(value, Some(format!("v{i}")), "k{i} through the leader");
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while cluster
        .get(leader, "k69", ReadConsistency::Serializable)
        .await
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted node never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..70 {
        let value = cluster
            .get(leader, &format!("k{i}"), ReadConsistency::Serializable)
            .await;
        assert_eq!(value, Some(format!("v{i}")), "k{i} on the restarted node");
    }
    for id in 1..=3 {
        cluster.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_certificate_from_another_ca_cannot_join() {
    let mut cluster = Cluster::new();
    for id in 1..=2 {
        let tls = cluster.tls(id);
        cluster.start(id, tls).await;
    }
    let leader = cluster.leader().await;
    cluster.put("before", "1").await;
    // Node 3 trusts our CA but holds a certificate from another one: nobody talks to it.
    let rogue = ClusterCa::generate("rogue").expect("CA");
    let mut tls = rogue
        .issue(CLUSTER, 3)
        .expect("issue")
        .tls(&rogue.cert_pem())
        .expect("tls");
    tls.cas = cluster.tls(3).cas;
    cluster.start(3, tls).await;
    cluster.put("after", "2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        cluster.get(3, "before", ReadConsistency::Serializable).await,
        None,
        "node 3 got nothing"
    );
    assert_eq!(cluster.members[&3].node.status().raft.commit_index, 0);
    // The two trusted nodes carry on as a majority.
    assert_eq!(
        cluster.get(leader, "after", ReadConsistency::Linearizable).await,
        Some("2".into())
    );
    for id in 1..=3 {
        cluster.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_the_certs_command_connect_two_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_raft-kv"))
            .args(args)
            .status()
            .expect("run raft-kv");
        assert!(status.success(), "raft-kv {args:?} failed");
    };
    let out = dir.path().to_str().expect("utf-8 path");
    run(&["certs", "ca", "--out", out, "--name", "cli"]);
    let cluster = CLUSTER.to_string();
    for id in ["1", "2"] {
        run(&[
            "certs",
            "node",
            "--ca-dir",
            out,
            "--cluster-id",
            &cluster,
            "--id",
            id,
            "--out",
            out,
        ]);
    }
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
    let tls = |id: u64| {
        NodeTls::from_pem(
            &read("ca.pem"),
            &read(&format!("node-{id}.pem")),
            &read(&format!("node-{id}.key")),
        )
        .expect("PEM files load")
    };
    let sockets = [1u64, 2].map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"));
    let addrs: BTreeMap<NodeId, SocketAddr> = [
        (1, sockets[0].local_addr().expect("addr")),
        (2, sockets[1].local_addr().expect("addr")),
    ]
    .into();
    let [s1, s2] = sockets;
    let (t1, _i1) =
        QuicTransport::start_on(QuicConfig::new(1, CLUSTER, addrs[&1], addrs.clone(), tls(1)), s1)
            .expect("start 1");
    let (_t2, mut i2) =
        QuicTransport::start_on(QuicConfig::new(2, CLUSTER, addrs[&2], addrs.clone(), tls(2)), s2)
            .expect("start 2");
    let heartbeat = raft_core::Message {
        from: 1,
        to: 2,
        term: 1,
        body: raft_core::MessageBody::Heartbeat(raft_core::Heartbeat { commit: 0, round: 0 }),
    };
    use raft_core::{Inbox, Transport};
    t1.send(heartbeat.clone()).expect("send");
    let received = tokio::time::timeout(TIMEOUT, i2.recv()).await.expect("in time");
    assert_eq!(received, Some(heartbeat));
}

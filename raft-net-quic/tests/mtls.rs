//! Mutual TLS and bad input: who is refused, and that nothing a peer sends can panic or wedge a
//! node.

mod support;

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use raft_conformance::transport::{heartbeat, send_until_received};
use raft_core::{Inbox, NodeId, Transport};
use raft_net_quic::wire::{encode_hello, encode_message, Hello, PROTOCOL_VERSION};
use raft_net_quic::{ClusterCa, QuicInbox, QuicTransport};
use support::{raw_connection, try_raw_connection, Cluster, CLUSTER};

/// Long enough for a connection, a handshake and a delivery on loopback, many times over.
const QUIET: Duration = Duration::from_secs(2);

/// Sends for `QUIET` and asserts that nothing arrives.
async fn nothing_arrives(from: &QuicTransport, from_id: NodeId, to: &mut QuicInbox, to_id: NodeId) {
    let deadline = tokio::time::Instant::now() + QUIET;
    let mut commit = 0;
    while tokio::time::Instant::now() < deadline {
        commit += 1;
        let _ = from.send(heartbeat(from_id, to_id, commit));
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(100), to.recv()).await {
            panic!("a refused peer's message arrived: {message:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_a_certificate_from_another_ca_is_refused_both_ways() {
    let mut cluster = Cluster::new(2);
    let (t1, mut i1) = cluster.start(1);
    // An impostor at node 2's address: trusts our CA but its certificate is from its own.
    let rogue_ca = ClusterCa::generate("rogue").expect("CA");
    let mut tls = rogue_ca
        .issue(CLUSTER, 2)
        .expect("issue")
        .tls(&rogue_ca.cert_pem())
        .expect("tls");
    tls.cas = cluster.tls(1).cas;
    let config = cluster.config(2, tls);
    let (t2, mut i2) = cluster.start_with(config);
    nothing_arrives(&t2, 2, &mut i1, 1).await;
    nothing_arrives(&t1, 1, &mut i2, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_a_certificate_is_refused() {
    let mut cluster = Cluster::new(2);
    let (_t1, mut i1) = cluster.start(1);
    let tls = cluster.tls(2);
    // TLS 1.3 may finish the client's side of the handshake before the server checks the
    // (missing) certificate; then the connection is closed at once and no stream gets through.
    if let Ok(connection) = try_raw_connection(&tls, false, 1, cluster.addrs[&1]).await {
        let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
        encode_message(&heartbeat(2, 1, 1), 1 << 20, &mut buf).expect("encode");
        if let Ok(mut stream) = connection.open_uni().await {
            let _ = stream.write_all(&buf).await;
            let _ = stream.finish();
        }
        let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
        assert!(
            closed.is_ok(),
            "a connection without a client certificate must be closed"
        );
    }
    assert!(
        tokio::time::timeout(QUIET, i1.recv()).await.is_err(),
        "nothing from a client without a certificate may arrive"
    );
    // The same client with its certificate is heard.
    let connection = raw_connection(&tls, 1, cluster.addrs[&1]).await;
    let mut stream = connection.open_uni().await.expect("open stream");
    let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
    encode_message(&heartbeat(2, 1, 2), 1 << 20, &mut buf).expect("encode");
    stream.write_all(&buf).await.expect("write");
    let received = tokio::time::timeout(Duration::from_secs(10), i1.recv()).await;
    assert_eq!(received.ok().flatten(), Some(heartbeat(2, 1, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_an_expired_certificate_is_refused() {
    let mut cluster = Cluster::new(2);
    let (_t1, mut i1) = cluster.start(1);
    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let expired = cluster
        .ca
        .issue_valid_between(CLUSTER, 2, now - 30 * day, now - day)
        .expect("issue")
        .tls(&cluster.ca.cert_pem())
        .expect("tls");
    let config = cluster.config(2, expired);
    let (t2, _i2) = cluster.start_with(config);
    nothing_arrives(&t2, 2, &mut i1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_whose_certificate_names_another_node_is_refused() {
    let mut cluster = Cluster::new(3);
    let (t1, mut i1) = cluster.start(1);
    // Claims to be node 2 with node 3's (valid) certificate.
    let config = cluster.config(2, cluster.tls(3));
    let (t2, mut i2) = cluster.start_with(config);
    nothing_arrives(&t2, 2, &mut i1, 1).await;
    // And node 1, dialing node 2, refuses a server whose certificate is for node 3.
    nothing_arrives(&t1, 1, &mut i2, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_outside_the_configured_peers_is_refused() {
    let mut cluster = Cluster::new(2);
    let (_t1, mut i1) = cluster.start(1);
    // Node 5 has a valid certificate from our CA but is not one of node 1's peers.
    let addr = support::bind_loopback();
    let mut peers = cluster.addrs.clone();
    peers.insert(5, addr.local_addr().expect("addr"));
    let mut config = cluster.config(2, cluster.tls(5));
    config.node_id = 5;
    config.peers = peers;
    let (t5, _i5) = QuicTransport::start_on(config, addr).expect("start");
    nothing_arrives(&t5, 5, &mut i1, 1).await;
    t5.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_of_another_cluster_is_refused() {
    let mut cluster = Cluster::new(2);
    let (_t1, mut i1) = cluster.start(1);
    let mut config = cluster.config(2, cluster.tls(2));
    config.cluster_id = CLUSTER + 1;
    let (t2, _i2) = cluster.start_with(config);
    nothing_arrives(&t2, 2, &mut i1, 1).await;
}

/// Writes `bytes` on a new stream from node 2 to node 1 and waits until node 1 closes it.
async fn send_raw(connection: &quinn::Connection, bytes: &[u8]) {
    let mut stream = connection.open_uni().await.expect("open stream");
    // The node may close the stream before everything is written; that is the point.
    let _ = stream.write_all(bytes).await;
    let _ = stream.finish();
    let stopped = tokio::time::timeout(Duration::from_secs(10), stream.stopped()).await;
    assert!(stopped.is_ok(), "the node must close a stream carrying bad input");
}

fn hello(cluster_id: u64, version: u16) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_hello(
        &Hello {
            version,
            cluster_id,
            from: 2,
            to: 1,
        },
        &mut buf,
    );
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_their_stream_and_the_node_carries_on() {
    let mut cluster = Cluster::new(3);
    let (_t1, mut i1) = cluster.start(1);
    let connection = raw_connection(&cluster.tls(2), 1, cluster.addrs[&1]).await;

    let mut cases: Vec<(&str, BytesMut)> = Vec::new();
    cases.push(("garbage", BytesMut::from(&b"\x00\x00\x00\x05\xffhello"[..])));
    cases.push(("message before hello", {
        let mut buf = BytesMut::new();
        encode_message(&heartbeat(2, 1, 1), 1 << 20, &mut buf).expect("encode");
        buf
    }));
    cases.push(("oversized frame", {
        let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&[0; 64]);
        buf
    }));
    cases.push(("truncated frame", {
        let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
        buf.extend_from_slice(&100u32.to_be_bytes());
        buf.extend_from_slice(&[2; 10]);
        buf
    }));
    cases.push(("unknown kind", {
        let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
        buf.extend_from_slice(&[0, 0, 0, 2, 99, 0]);
        buf
    }));
    cases.push(("malformed message", {
        let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
        buf.extend_from_slice(&[0, 0, 0, 4, 2, 0xff, 0xff, 0xff]);
        buf
    }));
    cases.push(("wrong cluster", hello(CLUSTER + 1, PROTOCOL_VERSION)));
    cases.push(("wrong version", hello(CLUSTER, PROTOCOL_VERSION + 1)));
    cases.push(("message claiming another sender", {
        let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
        encode_message(&heartbeat(3, 1, 1), 1 << 20, &mut buf).expect("encode");
        buf
    }));
    for (name, bytes) in &cases {
        tracing::info!(case = name, "sending bad input");
        send_raw(&connection, bytes).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), i1.recv())
            .await
            .is_err(),
        "no bad input may reach the inbox"
    );
    // The node is not wedged: a good stream on the same connection is still heard.
    let mut good = connection.open_uni().await.expect("open stream");
    let mut buf = hello(CLUSTER, PROTOCOL_VERSION);
    encode_message(&heartbeat(2, 1, 9), 1 << 20, &mut buf).expect("encode");
    good.write_all(&buf).await.expect("write");
    let received = tokio::time::timeout(Duration::from_secs(10), i1.recv()).await;
    assert_eq!(received.ok().flatten(), Some(heartbeat(2, 1, 9)));
    // And so is a real peer.
    let (t3, _i3) = cluster.start(3);
    let message = send_until_received(&t3, 3, &mut i1, 1).await;
    assert_eq!(message.from, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_of_another_cluster_sharing_the_ca_cannot_join_as_a_node_of_this_one() {
    let mut cluster = Cluster::new(2);
    let (t1, mut i1) = cluster.start(1);
    // The same CA issued node 2 of cluster 78 its certificate. Configured (and saying in its
    // hello) that it is node 2 of this cluster, it is refused: the certificate binds the cluster.
    let other_cluster = cluster
        .ca
        .issue(CLUSTER + 1, 2)
        .expect("issue")
        .tls(&cluster.ca.cert_pem())
        .expect("tls");
    let config = cluster.config(2, other_cluster);
    let (t2, mut i2) = cluster.start_with(config);
    nothing_arrives(&t2, 2, &mut i1, 1).await;
    // Node 1 dialing it refuses it too: it is not node-2.cluster-77.
    nothing_arrives(&t1, 1, &mut i2, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_ca_rotation_nodes_trusting_both_cas_talk_across_them() {
    let mut cluster = Cluster::new(3);
    let new_ca = ClusterCa::generate("new").expect("CA");
    let bundle = format!("{}{}", cluster.ca.cert_pem(), new_ca.cert_pem());
    // Node 1 still has its certificate from the old CA, node 2 already one from the new; both
    // trust the bundle.
    let old_cert = cluster
        .ca
        .issue(CLUSTER, 1)
        .expect("issue")
        .tls(&bundle)
        .expect("tls");
    let new_cert = new_ca
        .issue(CLUSTER, 2)
        .expect("issue")
        .tls(&bundle)
        .expect("tls");
    let (t1, mut i1) = cluster.start_with(cluster.config(1, old_cert));
    let (t2, mut i2) = cluster.start_with(cluster.config(2, new_cert));
    assert_eq!(send_until_received(&t2, 2, &mut i1, 1).await.from, 2);
    assert_eq!(send_until_received(&t1, 1, &mut i2, 2).await.from, 1);
    // Node 3 trusts only the new CA: node 1's old certificate is refused, once the old CA is
    // dropped from the bundle.
    let only_new = new_ca
        .issue(CLUSTER, 3)
        .expect("issue")
        .tls(&new_ca.cert_pem())
        .expect("tls");
    let (_t3, mut i3) = cluster.start_with(cluster.config(3, only_new));
    nothing_arrives(&t1, 1, &mut i3, 3).await;
}

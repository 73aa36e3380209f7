//! `QuicTransport::close`: a node that stops tells its peers, which drop its connections at once
//! instead of after their idle timeout.

mod support;

use std::time::{Duration, Instant};

use support::{raw_connection, reaches, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_tells_connected_peers_at_once_and_returns_within_its_bound() {
    let mut cluster = Cluster::new(2);
    let (t1, _i1) = cluster.start(1);
    // A peer's connection to node 1, idle: without a close it would last the idle timeout.
    let connection = raw_connection(&cluster.tls(2), 1, cluster.addrs[&1]).await;

    let started = Instant::now();
    assert!(
        t1.close(Duration::from_secs(2)).await,
        "the endpoint goes idle within the bound"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let reason = tokio::time::timeout(Duration::from_secs(1), connection.closed())
        .await
        .expect("the peer learns of the close at once, not at its idle timeout");
    // The close is the node's (an application close, or, when the handshake is not yet
    // confirmed on the node's side, the transport's form of one), not the idle timeout.
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(&close.reason[..], b"shutdown", "closed by the node's shutdown")
        }
        quinn::ConnectionError::ConnectionClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::TransportErrorCode::APPLICATION_ERROR,
                "{close}"
            )
        }
        other => panic!("closed for another reason: {other}"),
    }
    // A second close, or a shutdown after it, has nothing left to do.
    assert!(t1.close(Duration::from_millis(10)).await);
    t1.shutdown();
}

/// A node restarted in the same process binds its address again the moment `close` returns:
/// the endpoint's driver and every connection (each holds the socket) have let go of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_once_the_address_can_be_bound_again() {
    let mut cluster = Cluster::new(2);
    let (t2, mut i2) = cluster.start(2);
    let (mut t1, mut i1) = cluster.start(1);
    for restart in 0..3 {
        // Connections both ways, so that node 1's socket is held by its accepted connection too.
        assert!(
            reaches(&t1, 1, &mut i2, 2).await,
            "restart {restart}: 1 reaches 2"
        );
        assert!(
            reaches(&t2, 2, &mut i1, 1).await,
            "restart {restart}: 2 reaches 1"
        );
        assert!(
            t1.close(Duration::from_secs(5)).await,
            "restart {restart}: closed in time"
        );
        let socket = std::net::UdpSocket::bind(cluster.addrs[&1])
            .unwrap_or_else(|e| panic!("restart {restart}: the address is free once close returns: {e}"));
        let config = cluster.config(1, cluster.tls(1));
        (t1, i1) = raft_net_quic::QuicTransport::start_on(config, socket).expect("start again");
    }
    assert!(t1.close(Duration::from_secs(5)).await);
    t2.shutdown();
}

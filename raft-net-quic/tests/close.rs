//! `QuicTransport::close`: a node that stops tells its peers, which drop its connections at once
//! instead of after their idle timeout.

mod support;

use std::time::{Duration, Instant};

use support::{raw_connection, Cluster};

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

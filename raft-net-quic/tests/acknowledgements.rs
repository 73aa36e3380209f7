//! How often a receiver acknowledges. Raft's traffic on a connection goes one way (each node
//! sends its messages on its own connection), so every acknowledgement is a datagram of its own,
//! and each one wakes the sending process for nothing. The transport asks its peers (the QUIC
//! acknowledgement frequency extension) to acknowledge after several packets or their ack delay,
//! not after every second one, as QUIC does by default.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Inbox, Transport};
use support::{heartbeat, Cluster};
use tokio::net::UdpSocket;

/// Datagrams a relay passed on, each way.
#[derive(Default)]
struct Counts {
    to_receiver: AtomicUsize,
    to_sender: AtomicUsize,
}

/// Relays datagrams between the sender (whoever writes to `relay` first) and `receiver`,
/// counting them, until the test ends.
async fn relay(relay: UdpSocket, receiver: SocketAddr, counts: Arc<Counts>) {
    let mut sender: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, from)) = relay.recv_from(&mut buf).await {
        if from == receiver {
            if let Some(sender) = sender {
                counts.to_sender.fetch_add(1, Ordering::Relaxed);
                let _ = relay.send_to(&buf[..n], sender).await;
            }
        } else {
            sender = Some(from);
            counts.to_receiver.fetch_add(1, Ordering::Relaxed);
            let _ = relay.send_to(&buf[..n], receiver).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_acknowledges_a_stream_of_single_messages_every_few_packets_not_every_other() {
    const MESSAGES: u64 = 200;
    let mut cluster = Cluster::new(2);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the relay");
    let relay_addr = socket.local_addr().expect("the relay's address");
    let counts = Arc::new(Counts::default());
    let relaying = tokio::spawn(relay(socket, cluster.addrs[&2], counts.clone()));

    // Node 1 reaches node 2 through the relay; node 2 sends nothing on that connection but
    // acknowledgements (it answers nobody here).
    let mut c1 = cluster.config(1, cluster.tls(1));
    c1.peers.insert(2, relay_addr);
    let (t1, _i1) = cluster.start_with(c1);
    let (_t2, mut i2) = cluster.start(2);

    assert!(
        support::connected(&t1, &mut i2).await,
        "node 1 never reached node 2 through the relay"
    );
    while i2.try_recv().is_some() {}
    let before = counts.to_sender.load(Ordering::Relaxed);
    let sent_before = counts.to_receiver.load(Ordering::Relaxed);

    // One message at a time, each sent once the previous one has arrived.
    for round in 0..MESSAGES {
        t1.send(heartbeat(1_000 + round)).expect("queued");
        let arrived = tokio::time::timeout(Duration::from_secs(5), i2.recv()).await;
        assert!(
            matches!(arrived, Ok(Some(_))),
            "message {round} did not arrive within 5 s"
        );
    }
    let acknowledgements = counts.to_sender.load(Ordering::Relaxed) - before;
    let datagrams = counts.to_receiver.load(Ordering::Relaxed) - sent_before;
    relaying.abort();

    assert!(
        datagrams >= MESSAGES as usize,
        "each message went in a datagram of its own ({datagrams} for {MESSAGES})"
    );
    // QUIC's default acknowledges every second packet: 106 here when measured. Asked to wait
    // for more than ten, the receiver sent 25 to 28 (every eleventh packet, and the path-MTU
    // probes the sender adds); the rest of the margin is for ack-delay timers that fire when
    // the machine stalls between two messages.
    assert!(
        acknowledgements <= MESSAGES as usize / 4,
        "node 2 sent {acknowledgements} datagrams to acknowledge {MESSAGES} single messages"
    );
}

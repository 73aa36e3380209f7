//! Floods from a peer that holds a valid certificate: a huge first frame, a stream that trickles a
//! byte at a time, many connections, more data than the node takes. Memory stays bounded (a
//! counting allocator measures it) and honest peers keep getting through.

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peak_alloc::PeakAlloc;
use raft_conformance::transport::{heartbeat, send_until_received};
use raft_core::{AppendEntries, Entry, Inbox, Message, MessageBody, Transport};
use raft_net_quic::wire::{encode_hello, encode_message, Hello, PROTOCOL_VERSION};
use support::{raw_connection, Cluster, CLUSTER};
use tokio::sync::Mutex;

/// The global allocator, counting the bytes allocated now and the most at any time.
#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// The tests measure the one process's memory, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Starts measuring: the peak is reset to what is allocated now, which is returned.
fn baseline() -> usize {
    ALLOCATOR.reset_peak_usage();
    ALLOCATOR.current_usage()
}

/// The most allocated above `baseline` since it was taken.
fn growth_since(baseline: usize) -> usize {
    ALLOCATOR.peak_usage().saturating_sub(baseline)
}

const MIB: usize = 1 << 20;

fn hello_from_2() -> BytesMut {
    let mut buf = BytesMut::new();
    encode_hello(
        &Hello {
            version: PROTOCOL_VERSION,
            cluster_id: CLUSTER,
            from: 2,
            to: 1,
        },
        &mut buf,
    );
    buf
}

/// Waits until the node stops the stream, or `within` passes; whether it did.
async fn stopped_within(stream: &mut quinn::SendStream, within: Duration) -> bool {
    tokio::time::timeout(within, stream.stopped()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_frame_longer_than_a_hello_is_refused_before_its_body_is_held() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new(3);
    let (_t1, mut i1) = cluster.start(1);
    let connection = raw_connection(&cluster.tls(2), 1, cluster.addrs[&1]).await;
    let before = baseline();
    // As many streams as the node allows, each announcing a first frame of the 16 MiB maximum.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = connection.open_uni().await.expect("open stream");
        let mut claim = (16 * MIB as u32).to_be_bytes().to_vec();
        claim.extend_from_slice(&[1; 256]);
        let _ = stream.write_all(&claim).await;
        streams.push(stream);
    }
    for stream in &mut streams {
        assert!(
            stopped_within(stream, Duration::from_secs(5)).await,
            "a first frame that is not a hello is refused at once"
        );
    }
    let growth = growth_since(before);
    assert!(
        growth < 8 * MIB,
        "the node held {} MiB for frames that announced 64 MiB before saying who sent them",
        growth / MIB
    );
    // Honest peers are still heard.
    let (t3, _i3) = cluster.start(3);
    assert_eq!(send_until_received(&t3, 3, &mut i1, 1).await.from, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_sends_a_byte_at_a_time_is_cut_at_the_read_deadline() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new(3);
    let mut config = cluster.config(1, cluster.tls(1));
    config.frame_read_timeout = Duration::from_secs(1);
    let (_t1, mut i1) = cluster.start_with(config);
    let connection = raw_connection(&cluster.tls(2), 1, cluster.addrs[&1]).await;

    // A hello trickled byte by byte, and a good hello followed by a frame trickled the same way.
    let mut trickled_hello = connection.open_uni().await.expect("open stream");
    let hello = hello_from_2();
    let mut slow_frame = connection.open_uni().await.expect("open stream");
    let mut opening = hello_from_2();
    opening.extend_from_slice(&1000u32.to_be_bytes());
    slow_frame.write_all(&opening).await.expect("write");
    let started = tokio::time::Instant::now();
    let mut cut = [None, None];
    for (i, byte) in hello.iter().cycle().take(60).enumerate() {
        if cut[0].is_none() && trickled_hello.write_all(&[*byte]).await.is_err() {
            cut[0] = Some(started.elapsed());
        }
        if cut[1].is_none() && slow_frame.write_all(&[i as u8]).await.is_err() {
            cut[1] = Some(started.elapsed());
        }
        if cut.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, cut) in ["trickled hello", "trickled frame"].iter().zip(cut) {
        let cut = cut.unwrap_or_else(|| panic!("the {name} was never cut off"));
        assert!(
            cut < Duration::from_secs(4),
            "the {name} was cut only after {cut:?}"
        );
    }
    // The connection is still good for a stream that behaves.
    let mut good = connection.open_uni().await.expect("open stream");
    let mut buf = hello_from_2();
    encode_message(&heartbeat(2, 1, 5), MIB, &mut buf).expect("encode");
    good.write_all(&buf).await.expect("write");
    let received = tokio::time::timeout(Duration::from_secs(10), i1.recv()).await;
    assert_eq!(received.ok().flatten(), Some(heartbeat(2, 1, 5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_from_one_peer_are_bounded_and_honest_peers_keep_replicating() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new(3);
    let mut config = cluster.config(1, cluster.tls(1));
    config.frame_read_timeout = Duration::from_secs(1);
    config.max_connections_per_peer = 4;
    let (_t1, mut i1) = cluster.start_with(config);
    let tls = cluster.tls(2);
    let mut connections = Vec::new();
    for n in 0..12u64 {
        let connection = raw_connection(&tls, 1, cluster.addrs[&1]).await;
        let mut stream = connection.open_uni().await.expect("open stream");
        let mut buf = hello_from_2();
        encode_message(&heartbeat(2, 1, n), MIB, &mut buf).expect("encode");
        stream.write_all(&buf).await.expect("write");
        // Each is identified (its heartbeat arrives) before the next opens.
        let received = tokio::time::timeout(Duration::from_secs(10), i1.recv()).await;
        assert_eq!(received.ok().flatten(), Some(heartbeat(2, 1, n)));
        connections.push((connection, stream));
    }
    // And connections that never say hello.
    let silent: Vec<_> = {
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(raw_connection(&tls, 1, cluster.addrs[&1]).await);
        }
        silent
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = connections
            .iter()
            .filter(|(c, _)| c.close_reason().is_none())
            .count();
        let silent_open = silent.iter().filter(|c| c.close_reason().is_none()).count();
        if open <= 4 && silent_open == 0 {
            // The newest ones are the ones kept.
            assert!(connections[8..].iter().all(|(c, _)| c.close_reason().is_none()));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} identified and {silent_open} silent connections of node 2 still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (t3, _i3) = cluster.start(3);
    assert_eq!(send_until_received(&t3, 3, &mut i1, 1).await.from, 3);
}

/// AppendEntries carrying one entry of `payload` (shared, not copied).
fn append(payload: &Bytes, index: u64) -> Message {
    Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: index - 1,
            prev_log_term: 1,
            entries: vec![Entry::command(1, index, payload.clone())].into(),
            leader_commit: 0,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_data_than_the_node_takes_is_held_within_the_inbox_byte_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new(3);
    let mut config = cluster.config(1, cluster.tls(1));
    config.max_frame_bytes = 2 * MIB;
    config.inbox_bytes = 4 * MIB;
    let (_t1, mut i1) = cluster.start_with(config);
    let mut config = cluster.config(2, cluster.tls(2));
    config.max_frame_bytes = 2 * MIB;
    config.send_timeout = Duration::from_secs(30);
    let (t2, _i2) = cluster.start_with(config);
    // Connected first, so that nothing below is dropped for want of a connection.
    assert_eq!(send_until_received(&t2, 2, &mut i1, 1).await.from, 2);
    while i1.try_recv().is_some() {}

    let payload = Bytes::from(vec![7u8; MIB]);
    let before = baseline();
    let sent = 200u64;
    for index in 1..=sent {
        t2.send(append(&payload, index)).expect("queued");
    }
    // The node takes nothing for a while: 200 MiB arrive at a node that reads none of it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let growth = growth_since(before);
    assert!(
        growth < 48 * MIB,
        "{} MiB held for a node that took nothing (budget 4 MiB)",
        growth / MIB
    );
    // Backpressure, not loss: once the node takes its messages, they all arrive, in order.
    let mut next = 1;
    while next <= sent {
        let received = tokio::time::timeout(Duration::from_secs(20), i1.recv()).await;
        let Ok(Some(message)) = received else {
            panic!("message {next} of {sent} did not arrive");
        };
        if let MessageBody::AppendEntries(append) = message.body {
            assert_eq!(append.prev_log_index + 1, next);
            next += 1;
        }
    }
}

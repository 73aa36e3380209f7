//! The transport suite: what every [`Transport`] and [`Inbox`] must do.
//!
//! The cluster is nodes 1, 2 and 3; node 99 is never part of it. Each case is a public async
//! function taking a fresh [`TransportHarness`]; [`transport_suite!`] turns them into tests.
//!
//! [`transport_suite!`]: crate::transport_suite

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{
    AppendEntries, Entry, Heartbeat, Inbox, InstallSnapshot, Membership, Message, MessageBody, NodeId,
    SnapshotMeta, Transport, TransportError,
};

/// How long the suite waits for a message that should arrive. Generous: a real transport may
/// have to connect (or reconnect, with backoff) first.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// Starts and stops the endpoints of a test cluster of nodes 1, 2 and 3.
#[async_trait]
pub trait TransportHarness: Send {
    /// The sending side.
    type Transport: Transport;
    /// The receiving side.
    type Inbox: Inbox;

    /// Starts node `id` (again, after [`shutdown`](Self::shutdown): a restarted peer).
    async fn start(&mut self, id: NodeId) -> (Self::Transport, Self::Inbox);

    /// Shuts node `id` down as its process stopping would: its inbox ends (`recv` returns
    /// `None`) and its transport sends nothing more.
    async fn shutdown(&mut self, id: NodeId);
}

/// Expands to one `#[tokio::test]` per case of the transport suite, each with a harness made by
/// `$make` (an expression evaluated once per test).
#[macro_export]
macro_rules! transport_suite {
    ($make:expr) => {
        $crate::transport_suite!(@cases $make;
            message_is_delivered_to_its_addressee,
            messages_on_one_link_arrive_in_order,
            every_link_works_both_ways,
            large_messages_arrive_intact,
            snapshot_chunks_do_not_hold_back_heartbeats,
            restarted_peer_receives_again,
            unknown_peer_is_refused_and_other_links_still_work,
            shutdown_ends_the_inbox_and_sends_to_it_do_not_block,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::transport::$case($make).await;
            }
        )*
    };
}

/// A heartbeat from `from` to `to` carrying `commit` (the suites' probe message).
pub fn heartbeat(from: NodeId, to: NodeId, commit: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat { commit, round: 0 }),
    }
}

fn send<T: Transport>(transport: &T, message: Message) {
    if let Err(e) = transport.send(message) {
        panic!("send failed: {e}");
    }
}

/// The next message, or a panic after the deadline.
async fn receive<I: Inbox>(inbox: &mut I, waiting_for: &str) -> Message {
    match tokio::time::timeout(DELIVERY_DEADLINE, inbox.recv()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("inbox ended while waiting for {waiting_for}"),
        Err(_) => panic!("nothing arrived within {DELIVERY_DEADLINE:?} while waiting for {waiting_for}"),
    }
}

/// Sends heartbeats (commit = attempt number) until one arrives, for links that may need to
/// (re)connect first; returns the first one received. Panics after [`DELIVERY_DEADLINE`].
pub async fn send_until_received<T: Transport, I: Inbox>(
    from: &T,
    from_id: NodeId,
    to: &mut I,
    to_id: NodeId,
) -> Message {
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A transport may refuse while it reconnects; that is allowed, the suite retries.
        let _ = from.send(heartbeat(from_id, to_id, attempt));
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), to.recv()).await {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{from_id} -> {to_id}: nothing arrived within {DELIVERY_DEADLINE:?}"
        );
    }
}

/// Connects the link from `from` to `to` and drains what the warm-up left in flight.
async fn warm_up<T: Transport, I: Inbox>(from: &T, from_id: NodeId, to: &mut I, to_id: NodeId) {
    send_until_received(from, from_id, to, to_id).await;
    while tokio::time::timeout(Duration::from_millis(300), to.recv())
        .await
        .is_ok()
    {}
}

/// A message reaches the node it is addressed to, unchanged.
pub async fn message_is_delivered_to_its_addressee<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    let message = heartbeat(1, 2, 42);
    send(&t1, message.clone());
    assert_eq!(receive(&mut i2, "the heartbeat").await, message);
}

/// Messages sent on one link arrive in the order they were sent.
pub async fn messages_on_one_link_arrive_in_order<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    warm_up(&t1, 1, &mut i2, 2).await;
    for commit in 1_000..1_500 {
        send(&t1, heartbeat(1, 2, commit));
    }
    for commit in 1_000..1_500 {
        let message = receive(&mut i2, "heartbeat in order").await;
        assert_eq!(
            message,
            heartbeat(1, 2, commit),
            "messages on one link must keep their order"
        );
    }
}

/// Every node reaches every other, both ways.
pub async fn every_link_works_both_ways<H: TransportHarness>(mut harness: H) {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let (transport, inbox) = harness.start(id).await;
        nodes.push((id, transport, inbox));
    }
    for from in 0..3 {
        for to in 0..3 {
            if from == to {
                continue;
            }
            let (from_id, to_id) = (nodes[from].0, nodes[to].0);
            send(&nodes[from].1, heartbeat(from_id, to_id, 7));
            let message = receive(&mut nodes[to].2, "a message on every link").await;
            assert_eq!((message.from, message.to), (from_id, to_id));
        }
    }
}

/// Messages of several MiB (big entry batches, snapshot chunks) arrive intact.
pub async fn large_messages_arrive_intact<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    let entries: Vec<Entry> = (1..=4)
        .map(|i| Entry::command(1, i, Bytes::from(vec![i as u8; 1 << 20])))
        .collect();
    let message = Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: entries.into(),
            leader_commit: 0,
        }),
    };
    send(&t1, message.clone());
    let received = receive(&mut i2, "a 4 MiB AppendEntries").await;
    assert!(received == message, "a large message must arrive unchanged");
}

fn snapshot_chunk(offset: u64, data: Bytes) -> Message {
    let membership = match Membership::voters([1, 2, 3]) {
        Ok(m) => m,
        Err(e) => panic!("membership: {e}"),
    };
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                index: 100,
                term: 1,
                membership,
                size: 64 << 20,
                checksum: 0,
            },
            offset,
            data,
            done: false,
        }),
    }
}

/// Snapshot chunks and heartbeats to the same peer both arrive; chunks queued first do not keep
/// a later heartbeat from arriving.
pub async fn snapshot_chunks_do_not_hold_back_heartbeats<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    warm_up(&t1, 1, &mut i2, 2).await;
    let chunk = Bytes::from(vec![0x5A; 1 << 20]);
    for i in 0..8u64 {
        // A transport may drop chunks when its queue for the peer is full; Raft resends them.
        let _ = t1.send(snapshot_chunk(i << 20, chunk.clone()));
    }
    send(&t1, heartbeat(1, 2, 77));
    let (mut heartbeats, mut chunks) = (0, 0);
    while heartbeats == 0 {
        let message = receive(&mut i2, "the heartbeat sent after the chunks").await;
        match message.body {
            MessageBody::Heartbeat(_) => heartbeats += 1,
            MessageBody::InstallSnapshot(c) => {
                assert!(c.data == chunk, "a snapshot chunk must arrive intact");
                chunks += 1;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert!(chunks <= 8);
}

/// After a peer restarts, messages reach its new inbox (a real transport reconnects).
pub async fn restarted_peer_receives_again<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    send_until_received(&t1, 1, &mut i2, 2).await;
    harness.shutdown(2).await;
    drop(i2);
    // Sends while the peer is down are lost, but never block or panic.
    for commit in 0..10 {
        let _ = t1.send(heartbeat(1, 2, commit));
    }
    let (t2, mut i2) = harness.start(2).await;
    let message = send_until_received(&t1, 1, &mut i2, 2).await;
    assert_eq!((message.from, message.to), (1, 2));
    // And the restarted node can answer.
    let mut i1 = _i1;
    let answer = send_until_received(&t2, 2, &mut i1, 1).await;
    assert_eq!((answer.from, answer.to), (2, 1));
}

/// A message to a node outside the cluster is refused with `UnknownPeer`, and the links that
/// exist keep working.
pub async fn unknown_peer_is_refused_and_other_links_still_work<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    let refused = t1.send(heartbeat(1, 99, 1));
    assert_eq!(refused, Err(TransportError::UnknownPeer(99)));
    let message = send_until_received(&t1, 1, &mut i2, 2).await;
    assert_eq!(message.to, 2);
}

/// Shutting a node down ends its inbox; sending to it afterwards neither blocks nor panics.
pub async fn shutdown_ends_the_inbox_and_sends_to_it_do_not_block<H: TransportHarness>(mut harness: H) {
    let (t1, _i1) = harness.start(1).await;
    let (_t2, mut i2) = harness.start(2).await;
    send_until_received(&t1, 1, &mut i2, 2).await;
    harness.shutdown(2).await;
    let ended = tokio::time::timeout(DELIVERY_DEADLINE, async { while i2.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the inbox of a shut-down node must end");
    let started = std::time::Instant::now();
    for commit in 0..1_000 {
        let _ = t1.send(heartbeat(1, 2, commit));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "send must queue and return, not wait for a peer that is gone"
    );
}

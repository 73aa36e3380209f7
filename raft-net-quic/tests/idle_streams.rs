//! Each of a connection's two streams (messages, snapshot chunks) says hello as soon as it opens.
//! A receiver closes a stream that has not said who it is within its read deadline, and QUIC
//! opens a stream at the receiver as soon as a later-numbered one carries data: so the chunk
//! stream, idle until a snapshot must go, would otherwise be closed on the receiver's side, and
//! the first chunk sent on it, seconds later, would break the connection and be lost.

mod support;

use std::time::Duration;

use bytes::Bytes;
use raft_core::{Inbox, InstallSnapshot, Membership, Message, MessageBody, SnapshotMeta, Transport};
use support::{heartbeat, Cluster};

fn snapshot_chunk() -> Message {
    let membership = Membership::voters([1, 2]).expect("membership");
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                index: 10,
                term: 1,
                membership,
                size: 3,
                checksum: 0,
            },
            offset: 0,
            data: Bytes::from_static(b"abc"),
            done: true,
        }),
    }
}

/// One connection from node 1 to node 2: heartbeats for three read deadlines, then one chunk,
/// which must arrive.
async fn chunk_arrives_after_the_chunk_stream_sat_idle() -> Result<(), String> {
    let deadline = Duration::from_millis(150);
    let mut cluster = Cluster::new(2);
    let mut c1 = cluster.config(1, cluster.tls(1));
    c1.frame_read_timeout = deadline;
    let mut c2 = cluster.config(2, cluster.tls(2));
    c2.frame_read_timeout = deadline;
    let (t1, _i1) = cluster.start_with(c1);
    let (_t2, mut i2) = cluster.start_with(c2);

    if !support::connected(&t1, &mut i2).await {
        return Err("never connected".into());
    }
    // The message stream stays busy; the chunk stream has nothing to carry.
    for round in 0..9 {
        let _ = t1.send(heartbeat(1_000 + round));
        tokio::time::sleep(deadline / 3).await;
        while i2.try_recv().is_some() {}
    }
    t1.send(snapshot_chunk())
        .map_err(|e| format!("chunk refused: {e}"))?;
    let wait = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match i2.recv().await {
                Some(Message {
                    body: MessageBody::InstallSnapshot(chunk),
                    ..
                }) => return Some(chunk),
                Some(_) => continue,
                None => return None,
            }
        }
    });
    match wait.await {
        Ok(Some(chunk)) if chunk.data == Bytes::from_static(b"abc") => Ok(()),
        Ok(Some(chunk)) => Err(format!("the chunk arrived changed: {chunk:?}")),
        Ok(None) => Err("the inbox closed".into()),
        Err(_) => Err("the chunk never arrived".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_chunk_goes_through_after_its_stream_sat_idle_past_the_read_deadline() {
    // Which of the two streams a connection opens first varies from connection to connection;
    // eight connections make it all but certain that some open the chunk stream first.
    let runs: Vec<_> = (0..8)
        .map(|_| tokio::spawn(chunk_arrives_after_the_chunk_stream_sat_idle()))
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(why),
            Err(e) => failures.push(format!("the run panicked: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 8 connections failed: {failures:?}",
        failures.len()
    );
}

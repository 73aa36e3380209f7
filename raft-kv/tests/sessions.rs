//! Scenario tests for exactly-once client sessions through `raft-node`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_kv::{ClusterOptions, KvCommand, KvReply, KvResponse, MemCluster};
use raft_node::{ReadConsistency, SessionClient, SessionCommand, SessionResponse};

const TIMEOUT: Duration = Duration::from_secs(10);

fn append(value: &str) -> Bytes {
    KvCommand::Append {
        key: "log".into(),
        value: value.into(),
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_retried_across_a_leader_change_is_applied_exactly_once() {
    let cluster = Arc::new(MemCluster::start(3, ClusterOptions::default()).await.unwrap());
    let client = SessionClient::register(cluster.clone(), TIMEOUT).await.unwrap();
    let session = client.session();
    // The request is applied, but suppose its answer never reached the client.
    let request = SessionCommand::Request {
        session,
        sequence: 1,
        command: append("x"),
    }
    .encode();
    let first = cluster.propose(request.clone()).await.unwrap();
    // The leader dies; the client retries the same request on the new leader.
    let old_leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    cluster.kill(old_leader);
    let retried = cluster.propose(request).await.unwrap();
    assert_ne!(cluster.wait_for_leader(TIMEOUT).await.unwrap(), old_leader);
    assert_eq!(
        SessionResponse::decode(&retried).unwrap(),
        SessionResponse::decode(&first).unwrap(),
        "the retry gets the first answer"
    );
    let value = cluster.get("log", ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(value.as_deref(), Some("x"), "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_client_writes_exactly_once_while_leaders_are_cut_off() {
    let options = ClusterOptions {
        seed: 21,
        propose_timeout: Duration::from_millis(300),
        ..ClusterOptions::default()
    };
    let cluster = Arc::new(MemCluster::start(3, options).await.unwrap());
    let mut client = SessionClient::register(cluster.clone(), TIMEOUT).await.unwrap();
    let mut expected = String::new();
    for round in 0..30 {
        if round % 6 == 3 {
            // Cut the leader off while the next requests are in flight.
            let leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
            cluster.network().isolate(leader);
        }
        if round % 6 == 5 {
            cluster.network().heal();
        }
        let token = format!("<{round}>");
        let reply = client.propose(append(&token)).await.unwrap();
        expected.push_str(&token);
        assert_eq!(
            KvReply::response_of(&reply).unwrap(),
            KvResponse::Value(Some(expected.clone())),
            "each append lands once, in order"
        );
    }
    cluster.network().heal();
    let value = cluster.get("log", ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(value, Some(expected));
}

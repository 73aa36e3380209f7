//! The node's metrics, read back through a recorder: each series named in `raft_node::metrics`
//! exists on the node it describes and moves when the cluster does something.
//!
//! One test per file: the recorder is global to the process.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use raft_node::raft_core::Membership;
use raft_node::{NodeConfig, ProposeError, ReadConsistency};

/// One recorded series: its name, its labels, and its value.
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: DebugValue,
}

fn read_all(snapshotter: &Snapshotter) -> Vec<Series> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            Series {
                name: key.name().to_string(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect(),
                value,
            }
        })
        .collect()
}

/// The series called `name` whose labels include every pair of `labels`.
fn find<'a>(all: &'a [Series], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Series> {
    all.iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn counter(all: &[Series], name: &str, labels: &[(&str, &str)]) -> u64 {
    find(all, name, labels)
        .iter()
        .map(|s| match s.value {
            DebugValue::Counter(n) => n,
            _ => panic!("{name} is not a counter"),
        })
        .sum()
}

fn gauge(all: &[Series], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(all, name, labels);
    assert_eq!(found.len(), 1, "one {name} series for {labels:?}");
    match &found[0].value {
        DebugValue::Gauge(v) => v.into_inner(),
        _ => panic!("{name} is not a gauge"),
    }
}

fn samples(all: &[Series], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    find(all, name, labels)
        .iter()
        .flat_map(|s| match &s.value {
            DebugValue::Histogram(values) => values.iter().map(|v| v.into_inner()).collect::<Vec<_>>(),
            _ => panic!("{name} is not a histogram"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_metrics_exist_per_node_and_move_with_its_work() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder in this process");

    // Node 4 is a learner that records nothing: metrics off.
    let mut membership = Membership::voters([1, 2, 3]).expect("membership");
    membership.learners.insert(4);
    let cluster = Cluster::start(5, membership, |id| {
        NodeConfig::new(id)
            .with_tick_interval(Duration::from_millis(5))
            .with_metrics(id != 4)
    })
    .await;
    let (nodes, leader) = (&cluster.nodes, cluster.leader.clone());
    let leader_id = leader.id();
    let follower = nodes
        .iter()
        .find(|n| n.id() != leader_id && n.id() != 4)
        .expect("a follower")
        .clone();

    const WRITES: u64 = 20;
    for i in 0..WRITES {
        leader.propose(format!("w{i}")).await.expect("commits");
    }
    let refused = follower.propose(&b"to a follower"[..]).await;
    assert!(matches!(refused, Err(ProposeError::Refused(_))), "{refused:?}");
    leader
        .read(&b"q"[..], ReadConsistency::Linearizable)
        .await
        .expect("reads");
    follower
        .read(&b"q"[..], ReadConsistency::Serializable)
        .await
        .expect("reads");
    let snapshot = leader.snapshot().await.expect("a snapshot");
    // Let every node apply everything and the leader tick (follower gauges are set on ticks).
    let applied = snapshot.index;
    for node in nodes {
        let caught_up = tokio::time::timeout(Duration::from_secs(10), async {
            while node.status().raft.applied_index < applied {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(caught_up.is_ok(), "node {} applies up to {applied}", node.id());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let all = read_all(&snapshotter);
    let leader_label = leader_id.to_string();
    let leader_node = [("node", leader_label.as_str())];
    let follower_label = follower.id().to_string();
    let follower_node = [("node", follower_label.as_str())];

    // The state gauges.
    for id in ["1", "2", "3"] {
        let node = [("node", id)];
        assert!(gauge(&all, "raft_term", &node) >= 1.0, "node {id} has a term");
        assert_eq!(
            gauge(&all, "raft_leader_id", &node),
            leader_id as f64,
            "node {id} knows the leader"
        );
        assert!(gauge(&all, "raft_commit_index", &node) >= applied as f64);
        assert!(gauge(&all, "raft_applied_index", &node) >= applied as f64);
        assert!(gauge(&all, "raft_last_log_index", &node) >= applied as f64);
        let leads = gauge(&all, "raft_role", &[("node", id), ("role", "leader")]);
        assert_eq!(
            leads,
            if id == leader_label { 1.0 } else { 0.0 },
            "node {id}'s role"
        );
    }
    assert!(gauge(&all, "raft_snapshot_index", &leader_node) >= WRITES as f64);
    assert!(
        find(&all, "raft_term", &[("node", "4")]).is_empty(),
        "node 4 records nothing"
    );
    assert!(
        all.iter()
            .all(|s| s.labels.get("node").map(String::as_str) != Some("4")),
        "no series at all for the node with metrics off"
    );

    // What the nodes decided.
    assert_eq!(
        counter(&all, "raft_elections_won_total", &[]),
        1,
        "one election won"
    );
    assert!(counter(&all, "raft_elections_started_total", &leader_node) >= 1);
    assert!(counter(&all, "raft_leader_changes_total", &follower_node) >= 1);
    assert_eq!(
        counter(
            &all,
            "raft_proposals_total",
            &[("node", &leader_label), ("outcome", "accepted")]
        ),
        WRITES
    );
    assert_eq!(
        counter(
            &all,
            "raft_proposals_total",
            &[("node", &follower_label), ("outcome", "not_leader")]
        ),
        1
    );
    assert_eq!(counter(&all, "raft_snapshots_built_total", &leader_node), 1);

    // Messages, per peer and kind, with their payload.
    let to_follower = [
        ("node", leader_label.as_str()),
        ("peer", follower_label.as_str()),
        ("kind", "AppendEntries"),
    ];
    assert!(counter(&all, "raft_messages_sent_total", &to_follower) >= 1);
    assert!(
        counter(&all, "raft_message_bytes_sent_total", &to_follower) >= WRITES * 2,
        "the commands' bytes"
    );
    let from_leader = [
        ("node", follower_label.as_str()),
        ("peer", leader_label.as_str()),
        ("kind", "AppendEntries"),
    ];
    assert!(counter(&all, "raft_messages_received_total", &from_leader) >= 1);
    assert!(counter(&all, "raft_message_bytes_received_total", &from_leader) >= WRITES * 2);
    assert!(
        counter(
            &all,
            "raft_messages_sent_total",
            &[("node", &follower_label), ("kind", "AppendEntriesResponse")]
        ) >= 1
    );

    // Histograms.
    let commits = samples(&all, "raft_commit_latency_seconds", &leader_node);
    assert_eq!(commits.len() as u64, WRITES, "one sample per committed proposal");
    assert!(commits.iter().all(|s| *s > 0.0 && *s < 10.0), "{commits:?}");
    assert!(!samples(&all, "raft_persist_latency_seconds", &follower_node).is_empty());
    let persisted: f64 = samples(&all, "raft_persist_batch_entries", &follower_node)
        .iter()
        .sum();
    assert!(
        persisted >= WRITES as f64,
        "the follower wrote every entry: {persisted}"
    );
    assert!(!samples(&all, "raft_persist_batch_bytes", &follower_node).is_empty());
    let applied_entries: f64 = samples(&all, "raft_apply_batch_entries", &follower_node)
        .iter()
        .sum();
    assert!(applied_entries >= WRITES as f64);
    assert_eq!(
        samples(
            &all,
            "raft_read_latency_seconds",
            &[("node", &leader_label), ("consistency", "linearizable")]
        )
        .len(),
        1
    );
    assert_eq!(
        samples(
            &all,
            "raft_read_latency_seconds",
            &[("node", &follower_label), ("consistency", "serializable")]
        )
        .len(),
        1
    );

    // The leader's view of its followers.
    for peer in ["1", "2", "3", "4"].into_iter().filter(|p| *p != leader_label) {
        let labels = [("node", leader_label.as_str()), ("peer", peer)];
        assert_eq!(
            gauge(&all, "raft_follower_match_lag", &labels),
            0.0,
            "peer {peer} caught up"
        );
        assert_eq!(gauge(&all, "raft_follower_inflight_messages", &labels), 0.0);
        assert_eq!(gauge(&all, "raft_follower_inflight_bytes", &labels), 0.0);
    }

    cluster.shutdown().await;
}

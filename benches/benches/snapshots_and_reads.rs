//! Read latency by consistency level, and the time to catch a new node up through a large
//! snapshot (3-node in-memory cluster).
//!
//! Run with `cargo bench -p raft-benches --bench snapshots_and_reads`. The snapshot size defaults
//! to 100 MB; set `RAFT_BENCH_SNAPSHOT_MB` to change it. Results are recorded in
//! `docs/benchmarks.md`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use hdrhistogram::Histogram;
use raft_kv::{ClusterOptions, KvCommand, MemCluster};
use raft_node::raft_core::NodeId;
use raft_node::ReadConsistency;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn cluster(configure: fn(&mut raft_node::raft_core::Config)) -> (Arc<MemCluster>, NodeId) {
    let options = ClusterOptions {
        propose_timeout: Duration::from_secs(60),
        configure,
        ..ClusterOptions::default()
    };
    let cluster = MemCluster::start(3, options).await.expect("cluster starts");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("a leader is elected");
    (Arc::new(cluster), leader)
}

/// One read at the leader, at each consistency level: ReadIndex pays a heartbeat round to a
/// quorum, a lease read does not.
fn read_latency(c: &mut Criterion) {
    let rt = runtime();
    let (cluster, leader) = rt.block_on(cluster(|config| config.lease_reads = true));
    let put = KvCommand::Put {
        key: "k".into(),
        value: "v".into(),
    };
    rt.block_on(cluster.kv(put)).expect("write");
    let node = cluster.node(leader).expect("leader runs");
    let query = KvCommand::Get { key: "k".into() }.encode();
    let mut group = c.benchmark_group("read_latency/mem-mem");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, consistency) in [
        ("linearizable", ReadConsistency::Linearizable),
        ("lease", ReadConsistency::Lease),
        ("serializable", ReadConsistency::Serializable),
    ] {
        let mut histogram = Histogram::<u64>::new(3).expect("histogram");
        rt.block_on(async {
            for _ in 0..5000 {
                let started = Instant::now();
                node.read(query.clone(), consistency).await.expect("read");
                let _ = histogram.record(started.elapsed().as_micros() as u64);
            }
        });
        println!(
            "read_latency/mem-mem/{name}: p50 {} us, p99 {} us, max {} us over 5000 reads",
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
            histogram.max()
        );
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(node.read(query.clone(), consistency)).expect("read"));
        });
    }
    group.finish();
}

/// Fills the state machine with about `RAFT_BENCH_SNAPSHOT_MB` of data, snapshots it, then adds
/// a learner and times until it has caught up through that snapshot.
fn snapshot_transfer(_c: &mut Criterion) {
    let megabytes: u64 = std::env::var("RAFT_BENCH_SNAPSHOT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = runtime();
    let (cluster, leader) = rt.block_on(cluster(|config| {
        config.snapshot_after_entries = 0;
        config.snapshot_after_log_bytes = 0;
        config.snapshot_keep_entries = 0;
    }));
    let value_bytes = 1024;
    let keys = megabytes * 1024 * 1024 / value_bytes;
    let filled = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    for k in (t..keys).step_by(64) {
                        let put = KvCommand::Put {
                            key: format!("key-{k:08}"),
                            value: "x".repeat(value_bytes as usize),
                        };
                        cluster.kv(put).await.expect("write");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
    });
    let fill_time = filled.elapsed();
    let node = cluster.node(leader).expect("leader runs");
    let built = Instant::now();
    let snapshot = rt.block_on(node.snapshot()).expect("snapshot");
    let build_time = built.elapsed();
    let started = Instant::now();
    rt.block_on(async {
        cluster.add_node(4).await.expect("learner starts");
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        cluster
            .change_membership(voters, [4].into())
            .await
            .expect("learner added");
        let learner = cluster.node(4).expect("learner runs");
        while learner.status().raft.applied_index < snapshot.index {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let transfer_time = started.elapsed();
    let mb = snapshot.size as f64 / (1024.0 * 1024.0);
    println!(
        "snapshot_transfer/mem-mem: {keys} keys written in {fill_time:.1?}; snapshot of {mb:.1} MiB at index {} \
         built in {build_time:.2?}; new learner caught up in {transfer_time:.2?} ({:.0} MiB/s)",
        snapshot.index,
        mb / transfer_time.as_secs_f64()
    );
    let replica = cluster.replica(4).expect("learner replica");
    assert_eq!(replica.len() as u64, keys, "the learner holds every key");
}

criterion_group!(benches, read_latency, snapshot_transfer);
criterion_main!(benches);

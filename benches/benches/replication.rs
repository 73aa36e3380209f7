//! Replication throughput and commit latency of a 3-node cluster (in-memory storage and network).
//!
//! Run with `cargo bench -p raft-benches`. Results are recorded in `docs/benchmarks.md`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_benches::{command, start, PAYLOAD_BYTES};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Committed entries per second with 1, 16 and 256 concurrent proposers.
fn replication_throughput(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(start(3));
    let mut group = c.benchmark_group("replication_throughput/mem-mem");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    for proposers in [1u64, 16, 256] {
        let per_iteration = if proposers == 1 { 500 } else { 4096 };
        group.throughput(Throughput::Elements(per_iteration));
        group.bench_with_input(
            BenchmarkId::from_parameter(proposers),
            &proposers,
            |b, &proposers| {
                b.iter_custom(|iterations| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            total += bench.run_proposals(proposers, per_iteration).await;
                        }
                        total
                    })
                });
            },
        );
    }
    group.finish();
    rt.block_on(async {
        if let Ok(cluster) = std::sync::Arc::try_unwrap(bench.cluster) {
            cluster.shutdown().await;
        }
    });
}

/// Time from propose to applied at the leader, one proposer; p50/p99 printed from a histogram.
fn commit_latency(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(start(3));
    let histogram = rt.block_on(bench.latency_histogram(5000));
    println!(
        "commit_latency/mem-mem ({PAYLOAD_BYTES} B): p50 {} us, p99 {} us, p99.9 {} us, max {} us over {} proposals",
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
        histogram.len()
    );
    let mut group = c.benchmark_group("commit_latency");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    let node = bench.cluster.node(bench.leader).expect("leader runs");
    let mut n = 0u64;
    group.bench_function("mem-mem", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            node.propose(command(n))
        });
    });
    group.finish();
}

criterion_group!(benches, replication_throughput, commit_latency);
criterion_main!(benches);

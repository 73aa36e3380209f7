//! Replication throughput and commit latency of a 3-node cluster, for each pair of backends:
//! mem-mem, rocks-mem, mem-quic and rocks-quic (storage-transport).
//!
//! Run with `cargo bench -p raft-benches --bench replication`; `RAFT_BENCH_BACKENDS=rocks-quic`
//! (comma-separated) picks pairs. Results are recorded in `docs/benchmarks.md`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_benches::{command, start, BACKENDS, PAYLOAD_BYTES};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn selected(name: &str) -> bool {
    match std::env::var("RAFT_BENCH_BACKENDS") {
        Ok(list) => list.split(',').any(|n| n.trim() == name),
        Err(_) => true,
    }
}

/// Committed entries per second with 1, 16 and 256 concurrent proposers.
fn replication_throughput(c: &mut Criterion) {
    let rt = runtime();
    for (storage, net, name) in BACKENDS {
        if !selected(name) {
            continue;
        }
        let bench = rt.block_on(start(storage, net));
        let mut group = c.benchmark_group(format!("replication_throughput/{name}"));
        group.sample_size(10).measurement_time(Duration::from_secs(8));
        for proposers in [1u64, 16, 256] {
            let per_iteration = if proposers == 1 { 200 } else { 4096 };
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
        rt.block_on(bench.shutdown());
    }
}

/// Time from propose to applied at the leader, one proposer; p50/p99 printed from a histogram.
fn commit_latency(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("commit_latency");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    for (storage, net, name) in BACKENDS {
        if !selected(name) {
            continue;
        }
        let bench = rt.block_on(start(storage, net));
        let histogram = rt.block_on(bench.latency_histogram(2000));
        println!(
            "commit_latency/{name} ({PAYLOAD_BYTES} B): p50 {} us, p99 {} us, p99.9 {} us, max {} us over {} proposals",
            histogram.value_at_quantile(0.50),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
            histogram.max(),
            histogram.len()
        );
        let node = bench.leader.clone();
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                n += 1;
                node.propose(command(n))
            });
        });
        rt.block_on(bench.shutdown());
    }
    group.finish();
}

criterion_group!(benches, replication_throughput, commit_latency);
criterion_main!(benches);

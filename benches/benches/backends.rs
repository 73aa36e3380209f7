//! What the backends cost on their own, on this machine: an fsync (the floor of a durable
//! commit), one synced RocksDB write and one synced journal write of an entry, and a QUIC round
//! trip between two nodes on loopback (the floor of a replication round).
//!
//! Run with `cargo bench -p raft-benches --bench backends`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use raft_node::file::JournalStorage;
use raft_node::quic::{ClusterCa, QuicConfig, QuicTransport};
use raft_node::raft_core::{Entry, Heartbeat, Inbox, LogStorage, LogWrite, Message, MessageBody, Transport};
use raft_node::rocks::{RocksStorage, StoreIdentity};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `write` + `fdatasync` of 128 bytes appended to a file, and one synced batch of one 128-byte
/// entry (and of 64) to RocksDB and to the journal.
fn fsync(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("fsync");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    let mut file = std::fs::File::create(dir.path().join("log")).expect("create");
    let record = [7u8; 128];
    group.bench_function("file_append_fdatasync_128B", |b| {
        b.iter(|| {
            file.write_all(&record).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    let rt = runtime();
    let identity = StoreIdentity {
        cluster_id: 1,
        node_id: 1,
    };
    let rocks = rt
        .block_on(RocksStorage::open(dir.path().join("rocks"), identity))
        .expect("open");
    persist_writes(&mut group, &rt, "rocks", rocks);
    let journal = rt
        .block_on(JournalStorage::open(dir.path().join("journal"), identity))
        .expect("open");
    persist_writes(&mut group, &rt, "journal", journal);
    group.finish();
}

/// `<name>_persist_1_entry_128B` and `<name>_persist_64_entries_128B`: synced writes of one and of
/// 64 entries of 128 bytes, appended one write after another.
fn persist_writes<S: LogStorage>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    mut storage: S,
) {
    let mut last = 0u64;
    let mut append = |count: u64| {
        let entries = (last + 1..=last + count)
            .map(|i| Entry::command(1, i, vec![7u8; 128]))
            .collect::<Vec<_>>()
            .into();
        last += count;
        rt.block_on(storage.persist(LogWrite {
            entries,
            ..LogWrite::default()
        }))
        .expect("persist");
    };
    group.bench_function(format!("{name}_persist_1_entry_128B"), |b| b.iter(|| append(1)));
    group.bench_function(format!("{name}_persist_64_entries_128B"), |b| {
        b.iter(|| append(64))
    });
}

/// A heartbeat from node 1 to node 2 and the answer back, over QUIC with mutual TLS on loopback.
fn quic_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let ca = ClusterCa::generate("bench").expect("CA");
    let sockets = [
        UdpSocket::bind("127.0.0.1:0").expect("bind"),
        UdpSocket::bind("127.0.0.1:0").expect("bind"),
    ];
    let addrs: BTreeMap<u64, _> = [
        (1, sockets[0].local_addr().expect("addr")),
        (2, sockets[1].local_addr().expect("addr")),
    ]
    .into();
    let [s1, s2] = sockets;
    let (t1, mut i1, t2, mut i2) = rt.block_on(async {
        let tls = |id| ca.issue(1, id).expect("issue").tls(&ca.cert_pem()).expect("tls");
        let (t1, i1) = QuicTransport::start_on(QuicConfig::new(1, 1, addrs[&1], addrs.clone(), tls(1)), s1)
            .expect("start");
        let (t2, i2) = QuicTransport::start_on(QuicConfig::new(2, 1, addrs[&2], addrs.clone(), tls(2)), s2)
            .expect("start");
        (t1, i1, t2, i2)
    });
    let ping = |from, to| Message {
        from,
        to,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat { commit: 0, round: 0 }),
    };
    // Warm up: connect both ways.
    rt.block_on(async {
        loop {
            let _ = t1.send(ping(1, 2));
            if tokio::time::timeout(Duration::from_millis(200), i2.recv())
                .await
                .is_ok()
            {
                break;
            }
        }
        loop {
            let _ = t2.send(ping(2, 1));
            if tokio::time::timeout(Duration::from_millis(200), i1.recv())
                .await
                .is_ok()
            {
                break;
            }
        }
        while tokio::time::timeout(Duration::from_millis(100), i1.recv())
            .await
            .is_ok()
        {}
        while tokio::time::timeout(Duration::from_millis(100), i2.recv())
            .await
            .is_ok()
        {}
    });
    let mut group = c.benchmark_group("quic");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.bench_function("round_trip_heartbeat", |b| {
        b.iter_custom(|iterations| {
            rt.block_on(async {
                let started = std::time::Instant::now();
                for _ in 0..iterations {
                    t1.send(ping(1, 2)).expect("send");
                    i2.recv().await.expect("arrives");
                    t2.send(ping(2, 1)).expect("send");
                    i1.recv().await.expect("arrives");
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    t1.shutdown();
    t2.shutdown();
}

criterion_group!(benches, fsync, quic_round_trip);
criterion_main!(benches);

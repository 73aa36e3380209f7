//! Closed-loop put clients against an etcd cluster over its gRPC API: the anchor `raft-kv
//! bench` is compared with. Each client waits for its put before it sends the next; the clients
//! share `--conns` gRPC connections (as etcd's own `benchmark put --conns` does). The report has
//! `raft-kv bench --json`'s fields.
//!
//! ```sh
//! etcd-anchor --endpoints 127.0.0.1:2379,127.0.0.1:22379 --clients 256 --conns 16 --duration 8
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use etcd_client::Client;
use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Parser)]
struct Args {
    /// etcd client endpoints, comma separated (host:port).
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// gRPC connections the clients share (at most one per client).
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
}

#[derive(Serialize)]
struct Report {
    service: &'static str,
    clients: usize,
    connections: usize,
    value_size: usize,
    operations: u64,
    errors: u64,
    seconds: f64,
    ops_per_second: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

/// A small xorshift generator, seeded per client, so the key sequence repeats from run to run.
struct SeededRng(u64);

impl SeededRng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.clients == 0 || args.conns == 0 || args.keys == 0 {
        return Err("--clients, --conns and --keys must be positive".into());
    }
    // The clients talk to the leader alone, as etcd's performance guide does: a put sent to a
    // follower costs it one more hop.
    let mut leader = None;
    for endpoint in &args.endpoints {
        let mut client = Client::connect([endpoint.clone()], None).await?;
        let status = client.status().await?;
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            leader = Some(endpoint.clone());
        }
    }
    let leader = leader.ok_or("no endpoint is the leader")?;
    let mut connections = Vec::new();
    for _ in 0..args.conns.min(args.clients) {
        let mut client = Client::connect([leader.clone()], None).await?;
        client.put("bench/warmup", "x", None).await?;
        connections.push(client);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let value = vec![b'v'; args.value_size];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        let mut client = connections[n % connections.len()].clone();
        let (stop, done, errors, value, keys) = (
            stop.clone(),
            done.clone(),
            errors.clone(),
            value.clone(),
            args.keys,
        );
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).ok();
            let mut rng = SeededRng(n as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                let key = format!("bench/{:08}", rng.below(keys));
                let began = Instant::now();
                if client.put(key, value.clone(), None).await.is_ok() {
                    if let Some(h) = histogram.as_mut() {
                        let _ = h.record((began.elapsed().as_micros() as u64).max(1));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let operations = done.load(Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new(3)?;
    for task in tasks {
        if let Ok(Some(h)) = task.await {
            histogram.add(&h)?;
        }
    }
    let report = Report {
        service: "etcd",
        clients: args.clients,
        connections: connections.len(),
        value_size: args.value_size,
        operations,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        ops_per_second: operations as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.50),
        p90_us: histogram.value_at_quantile(0.90),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

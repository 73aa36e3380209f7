//! `raft-kv bench`: closed-loop clients over the client API, each with its own session, each
//! waiting for its answer before it sends the next request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use raft_core::SeededRng;
use raft_kv::api::Consistency;
use serde::Serialize;

use crate::ops::{ClientArgs, ConsistencyArg};
use crate::Failure;

#[derive(Args)]
pub struct BenchArgs {
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// HTTP/2 connections the clients share (to each node), as etcd's benchmark shares gRPC
    /// connections; each client keeps its own session. Without it every client has its own
    /// HTTP/1.1 connection.
    #[arg(long)]
    connections: Option<usize>,
    /// Stop after this many seconds (unless --ops is given).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many operations in total.
    #[arg(long)]
    ops: Option<u64>,
    /// Bytes per value written.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Percentage of operations that are reads (gets).
    #[arg(long, default_value_t = 0)]
    read_percent: u8,
    /// The reads' consistency.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    consistency: ConsistencyArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// A name for this run in the `--json` line (a curve of its own in `raft-bench plot`).
    #[arg(long, default_value = "")]
    label: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// The result, as `--json` prints it: one line, so that runs append into a file that
/// `raft-bench plot` draws (beside `etcd-anchor`'s lines, which have the same fields).
#[derive(Serialize)]
struct Report {
    /// What was measured: `raft-kv`.
    service: &'static str,
    /// `--label`, if given.
    #[serde(skip_serializing_if = "String::is_empty")]
    label: String,
    clients: usize,
    /// Shared HTTP/2 connections (per node), or none: a HTTP/1.1 connection per client.
    connections: Option<usize>,
    value_size: usize,
    read_percent: u8,
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

pub async fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.clients == 0 || args.keys == 0 || args.read_percent > 100 || args.connections == Some(0) {
        return Err(Failure {
            code: 2,
            message: "--clients, --connections and --keys must be positive and --read-percent at most 100"
                .into(),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let budget = args.ops.map(|n| Arc::new(AtomicU64::new(n)));
    let value = "v".repeat(args.value_size);
    let consistency: Consistency = args.consistency.into();

    // Open every client's session before the clock starts.
    let mut clients = Vec::new();
    let shared = match args.connections {
        Some(n) => (0..n.min(args.clients))
            .map(|_| args.client.client_with(true))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    for n in 0..args.clients {
        let mut client = match shared.get(n % shared.len().max(1)) {
            Some(connection) => connection.fork(),
            None => args.client.client()?,
        };
        client.put("bench/warmup", "x").await?;
        clients.push(client);
    }

    let bar = if args.quiet || args.client.json {
        ProgressBar::hidden()
    } else {
        let bar = match args.ops {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new(args.duration),
        };
        let template = if args.ops.is_some() {
            "{bar:40} {pos}/{len} ops {per_sec} {msg}"
        } else {
            "{bar:40} {pos}/{len} s {msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut client) in clients.into_iter().enumerate() {
        let (stop, done, errors, budget, value) = (
            stop.clone(),
            done.clone(),
            errors.clone(),
            budget.clone(),
            value.clone(),
        );
        let (keys, read_percent) = (args.keys, u64::from(args.read_percent));
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).ok();
            // Seeded per client, so runs are repeatable.
            let mut rng = SeededRng::new(n as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                if let Some(budget) = &budget {
                    if budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_err()
                    {
                        break;
                    }
                }
                let key = format!("bench/{:08}", rng.below(keys));
                let began = Instant::now();
                let ok = if rng.below(100) < read_percent {
                    client.get(&key, consistency).await.is_ok()
                } else {
                    client.put(&key, &value).await.is_ok()
                };
                let micros = began.elapsed().as_micros() as u64;
                if ok {
                    if let Some(h) = histogram.as_mut() {
                        let _ = h.record(micros.max(1));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            histogram
        }));
    }

    let deadline = started + Duration::from_secs(args.duration);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let finished = done.load(Ordering::Relaxed);
        let elapsed = started.elapsed();
        match args.ops {
            Some(_) => bar.set_position(finished + errors.load(Ordering::Relaxed)),
            None => bar.set_position(elapsed.as_secs().min(args.duration)),
        }
        bar.set_message(format!("{:.0} ops/s", finished as f64 / elapsed.as_secs_f64()));
        let out_of_budget = budget.as_ref().is_some_and(|b| b.load(Ordering::Relaxed) == 0);
        if (args.ops.is_none() && Instant::now() >= deadline) || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        if out_of_budget && tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| Failure::new(e.to_string()))?;
    for task in tasks {
        if let Ok(Some(h)) = task.await {
            let _ = histogram.add(&h);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let operations = done.load(Ordering::Relaxed);
    let report = Report {
        service: "raft-kv",
        label: args.label.clone(),
        clients: args.clients,
        connections: args.connections,
        value_size: args.value_size,
        read_percent: args.read_percent,
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
    if args.client.json {
        let text = serde_json::to_string(&report).map_err(|e| Failure::new(e.to_string()))?;
        println!("{text}");
    } else {
        println!(
            "{} clients, {} B values, {}% reads: {} ops in {:.1} s = {:.0} ops/s ({} errors)",
            report.clients,
            report.value_size,
            report.read_percent,
            report.operations,
            report.seconds,
            report.ops_per_second,
            report.errors
        );
        println!(
            "latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            report.p50_us, report.p90_us, report.p99_us, report.p999_us, report.max_us
        );
    }
    if report.errors > 0 && report.operations == 0 {
        return Err(Failure::new("every operation failed"));
    }
    Ok(())
}

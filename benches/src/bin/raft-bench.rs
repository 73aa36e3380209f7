//! `raft-bench`: closed-loop write benchmarks of a 3-node cluster in one process, and the plots
//! of their results.
//!
//! ```sh
//! # openraft's benchmark shape: no-op state machine, 128 B writes, 1 to 1024 clients
//! cargo run --release -p raft-benches --bin raft-bench -- closed-loop --backend mem-mem \
//!     --clients 1,64,256,1024 --out target/closed-loop.jsonl
//! cargo run --release -p raft-benches --bin raft-bench -- plot --input target/closed-loop.jsonl --out-dir docs/img
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use comfy_table::Table;
use raft_benches::plot::{plot_results, BenchRecord};
use raft_benches::{
    closed_loop, handoff_round_trip, start_with, ChannelFloor, MachineKind, NodeSettings, BACKENDS,
};
use raft_node::NodeConfig;

/// Round trips of each hand-off measurement around a closed-loop run.
const PROBE_ROUND_TRIPS: u32 = 50_000;

/// The `--backend` that runs the clients against [`ChannelFloor`] instead of a cluster.
const FLOOR: &str = "floor";

#[derive(Parser)]
#[command(about = "Closed-loop write benchmarks of a 3-node cluster in one process, and their plots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Closed-loop writers against the leader: each waits for its write to be applied before it
    /// sends the next. Prints throughput and latency percentiles per client count.
    ClosedLoop(ClosedLoopArgs),
    /// Measures the host's cross-CPU hand-off round trip (a cache line to another thread and
    /// back) and prints it in nanoseconds, one line per measurement. `closed-loop` measures it
    /// before and after every run; this is for runs of other programs (an anchor) beside them.
    Handoff {
        /// Round trips per measurement.
        #[arg(long, default_value_t = 50_000)]
        round_trips: u32,
        /// Measurements, one after the other.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Draws SVG plots from the JSON lines `closed-loop --out` wrote.
    Plot {
        /// The JSON lines file.
        #[arg(long)]
        input: PathBuf,
        /// Where the SVG files go.
        #[arg(long, default_value = "docs/img")]
        out_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct ClosedLoopArgs {
    /// Storage and transport: mem-mem, rocks-mem, journal-mem, mem-quic, rocks-quic or
    /// journal-quic; or `floor`, no cluster:
    /// a server task that answers each write at once, so the run measures what the clients' queue,
    /// oneshot answers and cross-runtime wake-ups cost alone (what no cluster can beat).
    #[arg(long, default_value = "mem-mem")]
    backend: String,
    /// The state machine: `noop` (replication only) or `kv` (the key-value store).
    #[arg(long, default_value = "noop")]
    machine: String,
    /// Client counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256,1024")]
    clients: Vec<u64>,
    /// Writes per run, all clients together. Default: openraft's counts for in-memory storage
    /// (100k for 1 client, 1M for 64, 2M for 256, 4M for 1024) and a tenth of them on disk.
    #[arg(long)]
    operations: Option<u64>,
    /// Command sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128")]
    value_size: Vec<usize>,
    /// Worker threads of the runtime the three nodes run on.
    #[arg(long, default_value_t = 2)]
    server_workers: usize,
    /// Worker threads of the runtime the clients run on.
    #[arg(long, default_value_t = 1)]
    client_workers: usize,
    /// How many times to run each point.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Appends one JSON line per run to this file (for `plot`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Metrics: `none` (the nodes record, no recorder is installed), `prometheus` (the Prometheus
    /// recorder `raft-kv serve` installs) or `off` (`NodeConfig::metrics` false).
    #[arg(long, default_value = "none")]
    metrics: String,
    /// A due snapshot waits until the log since the last one holds this percentage of its size
    /// (raft_core's `snapshot_min_log_percent`; 0, the library's default, never waits).
    #[arg(long, default_value_t = 0)]
    snapshot_min_log_percent: u64,
    /// Nagle's rule for AppendEntries (raft_core's `hold_partial_appends`; off, the library's
    /// default; `raft-kv` runs with it on).
    #[arg(long)]
    hold_partial_appends: bool,
    /// A label for the build measured, written into each JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

/// openraft's `benchmarks/minimal` operation counts, by client count.
fn default_operations(clients: u64, on_disk: bool) -> u64 {
    let in_memory = match clients {
        0..=1 => 100_000,
        2..=64 => 1_000_000,
        65..=256 => 2_000_000,
        _ => 4_000_000,
    };
    if on_disk {
        in_memory / 10
    } else {
        in_memory
    }
}

/// The process's resident memory now (all three nodes and the clients), from `/proc/self/status`;
/// 0 where that file does not exist.
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The host's cross-CPU hand-off round trip now, in nanoseconds (0 if it could not be measured):
/// 50,000 round trips, 5–25 ms on the hosts of `docs/benchmarks.md`. It says which of a virtual
/// machine's modes a run met (see `raft_benches::handoff_round_trip`).
fn probe_handoff() -> u64 {
    handoff_round_trip(PROBE_ROUND_TRIPS).map_or(0, |round_trip| {
        u64::try_from(round_trip.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn runtime(workers: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn closed_loop_command(args: ClosedLoopArgs) -> Result<(), String> {
    // `None`: the channel floor, no cluster.
    let (cluster, backend) = if args.backend == FLOOR {
        (None, FLOOR)
    } else {
        let (storage, net, name) = BACKENDS
            .into_iter()
            .find(|(_, _, name)| *name == args.backend)
            .ok_or_else(|| {
                let names: Vec<&str> = BACKENDS.iter().map(|(_, _, name)| *name).collect();
                format!(
                    "unknown backend {:?}: {} or {FLOOR}",
                    args.backend,
                    names.join(", ")
                )
            })?;
        (Some((storage, net)), name)
    };
    let machine = match args.machine.as_str() {
        "noop" => MachineKind::Noop,
        "kv" => MachineKind::Kv,
        other => return Err(format!("unknown state machine {other:?}: noop or kv")),
    };
    let node_metrics = match args.metrics.as_str() {
        "none" => true,
        "off" => false,
        "prometheus" => {
            raft_kv::metrics::prometheus().ok_or("another metrics recorder is installed")?;
            true
        }
        other => {
            return Err(format!(
                "unknown metrics setting {other:?}: none, prometheus or off"
            ))
        }
    };
    let server = runtime(args.server_workers, "bench-server");
    let client = runtime(args.client_workers, "bench-client");
    let mut out = match &args.out {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("cannot open {}: {error}", path.display()))?,
        ),
        None => None,
    };
    let mut table = Table::new();
    table.set_header([
        "backend",
        "machine",
        "size B",
        "clients",
        "writes",
        "failed",
        "writes/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "resident MiB",
        "hand-off ns",
    ]);
    let on_disk = backend.starts_with("rocks");
    for &value_size in &args.value_size {
        // A fresh cluster per size, shared by the client counts.
        let settings = NodeSettings {
            metrics: node_metrics,
            snapshot_min_log_percent: args.snapshot_min_log_percent,
            hold_partial_appends: args.hold_partial_appends,
        };
        let bench =
            cluster.map(|(storage, net)| server.block_on(start_with(storage, net, machine, settings)));
        for &clients in &args.clients {
            for _ in 0..args.repeat {
                let operations = args
                    .operations
                    .unwrap_or_else(|| default_operations(clients, on_disk));
                let handoff_before = probe_handoff();
                let run = match &bench {
                    Some(bench) => client.block_on(closed_loop(
                        bench.nodes.clone(),
                        client.handle(),
                        clients,
                        operations,
                        machine,
                        value_size,
                    )),
                    None => client.block_on(closed_loop(
                        ChannelFloor::start(server.handle(), NodeConfig::new(1).request_queue),
                        client.handle(),
                        clients,
                        operations,
                        machine,
                        value_size,
                    )),
                };
                let handoff_after = probe_handoff();
                let record = BenchRecord {
                    label: args.label.clone(),
                    backend: backend.to_string(),
                    machine: args.machine.clone(),
                    value_size,
                    clients,
                    operations: run.operations,
                    errors: run.errors,
                    seconds: run.elapsed.as_secs_f64(),
                    per_second: run.per_second(),
                    p50_us: run.latency_us.value_at_quantile(0.50),
                    p99_us: run.latency_us.value_at_quantile(0.99),
                    p999_us: run.latency_us.value_at_quantile(0.999),
                    max_us: run.latency_us.max(),
                    rss_mib: resident_mib(),
                    unix_time: SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    handoff_before_ns: handoff_before,
                    handoff_after_ns: handoff_after,
                };
                println!(
                    "{backend} {} {value_size} B, {clients} clients: {:.0} writes/s, p50 {} µs, p99 {} µs, p99.9 {} µs, resident {:.1} MiB, {} failed, hand-off {} → {} ns",
                    args.machine, record.per_second, record.p50_us, record.p99_us, record.p999_us, record.rss_mib, record.errors,
                    record.handoff_before_ns, record.handoff_after_ns
                );
                if let Some(file) = out.as_mut() {
                    let line = serde_json::to_string(&record).map_err(|error| error.to_string())?;
                    writeln!(file, "{line}").map_err(|error| format!("cannot write the results: {error}"))?;
                }
                table.add_row([
                    record.backend.clone(),
                    record.machine.clone(),
                    value_size.to_string(),
                    clients.to_string(),
                    record.operations.to_string(),
                    record.errors.to_string(),
                    format!("{:.0}", record.per_second),
                    record.p50_us.to_string(),
                    record.p99_us.to_string(),
                    record.p999_us.to_string(),
                    record.max_us.to_string(),
                    format!("{:.1}", record.rss_mib),
                    format!("{} → {}", record.handoff_before_ns, record.handoff_after_ns),
                ]);
            }
        }
        if let Some(bench) = bench {
            server.block_on(bench.shutdown());
        }
    }
    println!("{table}");
    Ok(())
}

fn main() {
    // `RUST_LOG=raft_node=debug` shows role changes and the like; nothing is logged otherwise.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ClosedLoop(args) => closed_loop_command(args),
        Command::Handoff { round_trips, repeat } => (0..repeat.max(1)).try_for_each(|_| {
            let round_trip = handoff_round_trip(round_trips)
                .ok_or("the hand-off did not complete within 2 s: is a second CPU free?")?;
            println!("{}", round_trip.as_nanos());
            Ok(())
        }),
        Command::Plot { input, out_dir } => plot_results(&input, &out_dir).map(|written| {
            for path in written {
                println!("wrote {}", path.display());
            }
        }),
    };
    if let Err(error) = result {
        eprintln!("raft-bench: {error}");
        std::process::exit(2);
    }
}

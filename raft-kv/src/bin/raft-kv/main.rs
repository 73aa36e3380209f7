//! `raft-kv`: the replicated key-value service's command line.
//!
//! - `raft-kv serve --config node.toml`: runs one node.
//! - `raft-kv get|put|delete|cas|append|scan`: the key-value API; `raft-kv cluster ...`: status
//!   and membership; both take `--endpoints` (any nodes) and the client certificate.
//! - `raft-kv bench`: a closed-loop load generator over the client API; `raft-kv serve-floor`
//!   answers it at once, with no Raft behind, to measure the client protocol's own ceiling.
//! - `raft-kv certs ca|node|client`: certificates.
//! - `raft-kv demo`: three server processes on loopback, a leader killed and restarted, every
//!   acknowledged write checked on every node; `--in-memory` runs the one-process demo.
//!
//! Exit codes: 0 success; 1 the request failed or was refused (nothing applied), or the demo
//! found a loss; 2 bad usage; 3 no answer in time (a write's outcome is unknown).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: a server allocates and frees per request on every worker
/// thread (see docs/benchmarks.md, "The service's allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod certs;
mod demo;
mod demo_mem;
mod ops;
mod serve;

#[derive(Parser)]
#[command(name = "raft-kv", about = "A replicated key-value store on Raft", version)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Tokio worker threads for this process (default: one per core). On a small machine one
    /// thread keeps a write's hand-offs between tasks on that thread instead of waking another:
    /// measured in docs/benchmarks.md ("Worker threads").
    #[arg(long, global = true, value_name = "N")]
    worker_threads: Option<std::num::NonZeroUsize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node of the service.
    Serve(Box<serve::ServeArgs>),
    /// Answers the client API's sessions and writes at once, with no Raft behind them, on a
    /// node's client address and TLS (the same flags and config file as `serve`): the most any
    /// service of this client protocol reaches on the machine, for `raft-kv bench` to measure.
    ServeFloor(Box<serve::ServeArgs>),
    /// Reads a key.
    Get(ops::GetArgs),
    /// Sets a key.
    Put(ops::PutArgs),
    /// Removes a key.
    Delete(ops::KeyArgs),
    /// Sets a key only if it has an expected value.
    Cas(ops::CasArgs),
    /// Appends to a key's value.
    Append(ops::PutArgs),
    /// Lists the keys with a prefix.
    Scan(ops::ScanArgs),
    /// Cluster status and operations.
    #[command(subcommand)]
    Cluster(ops::ClusterCommand),
    /// Runs closed-loop clients against the cluster and reports throughput and latency.
    Bench(bench::BenchArgs),
    /// Creates certificates for the cluster's mutual TLS.
    #[command(subcommand)]
    Certs(certs::Certs),
    /// Starts three server processes, kills the leader, restarts it, and verifies every write.
    Demo(demo::DemoArgs),
}

/// A command's failure and the exit code it maps to.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure (exit code 1).
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<raft_kv::client::ClientError> for Failure {
    fn from(error: raft_kv::client::ClientError) -> Self {
        let code = if error.is_unknown_outcome() { 3 } else { 1 };
        Failure {
            code,
            message: error.to_string(),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::new(message)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match &cli.command {
        Command::Serve(_) | Command::ServeFloor(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match cli.log_format {
        LogFormat::Human => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        builder.worker_threads(threads.get());
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Failure> = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::ServeFloor(args) => serve::run_floor(*args).await,
            Command::Get(args) => ops::get(args).await,
            Command::Put(args) => ops::put(args, false).await,
            Command::Append(args) => ops::put(args, true).await,
            Command::Delete(args) => ops::delete(args).await,
            Command::Cas(args) => ops::cas(args).await,
            Command::Scan(args) => ops::scan(args).await,
            Command::Cluster(command) => ops::cluster(command).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Certs(command) => certs::run(command).map_err(Failure::new),
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn worker_threads_is_a_positive_count_given_before_or_after_the_command() {
        use clap::Parser;
        let before = super::Cli::try_parse_from(["raft-kv", "--worker-threads", "1", "get", "k"]);
        let after = super::Cli::try_parse_from(["raft-kv", "serve", "--worker-threads", "3"]);
        assert_eq!(
            before.map(|c| c.worker_threads.map(|n| n.get())).ok(),
            Some(Some(1))
        );
        assert_eq!(
            after.map(|c| c.worker_threads.map(|n| n.get())).ok(),
            Some(Some(3))
        );
        for refused in ["0", "-1", "many"] {
            let parsed = super::Cli::try_parse_from(["raft-kv", "serve", "--worker-threads", refused]);
            assert!(parsed.is_err(), "--worker-threads {refused} was accepted");
        }
    }
}

//! `raft-kv`: the replicated key-value service's command-line entry point.
//!
//! `raft-kv demo` runs a cluster in this process on the in-memory backends, writes keys, kills the
//! leader, shows the new leader, and checks that nothing committed was lost.
//!
//! With the `quic` feature, `raft-kv certs ca` creates a cluster's certificate authority and
//! `raft-kv certs node` issues a node its certificate (the node id is bound to it as the name
//! `node-<id>`), for the QUIC transport's mutual TLS.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use raft_kv::{ClusterError, ClusterOptions, KvCommand, KvResponse, MemCluster};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "raft-kv", about = "A replicated key-value store on Raft", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an in-memory cluster, kills its leader, and verifies that no committed write is lost.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Keys written before and again after the leader is killed.
        #[arg(long, default_value_t = 20)]
        keys: usize,
        /// Seed of the election timers and the network.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Creates certificates for the QUIC transport's mutual TLS.
    #[command(subcommand)]
    Certs(certs::Certs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { nodes, keys, seed } => demo(nodes, keys, seed)
            .await
            .map_err(|e| format!("demo FAILED: {e}")),
        Command::Certs(command) => certs::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

async fn demo(nodes: u64, keys: usize, seed: u64) -> Result<(), String> {
    if nodes == 0 {
        return Err("a cluster needs at least one node".into());
    }
    let fail = |e: ClusterError| e.to_string();
    let started = Instant::now();
    println!("starting a {nodes}-node cluster (in-memory storage and network, seed {seed})");
    let options = ClusterOptions {
        seed,
        ..ClusterOptions::default()
    };
    let cluster = MemCluster::start(nodes, options).await.map_err(fail)?;
    let leader = cluster.wait_for_leader(TIMEOUT).await.map_err(fail)?;
    let term = cluster
        .node(leader)
        .map(|n| n.status().raft.term)
        .unwrap_or_default();
    println!(
        "leader elected: node {leader} (term {term}) after {:?}",
        started.elapsed()
    );

    let mut expected = Vec::new();
    for i in 0..keys {
        let (key, value) = (format!("key-{i:03}"), format!("written-under-node-{leader}"));
        put(&cluster, &key, &value).await?;
        expected.push((key, value));
    }
    let commit = cluster
        .node(leader)
        .map(|n| n.status().raft.commit_index)
        .unwrap_or_default();
    println!("wrote {keys} keys through node {leader}; commit index {commit}");

    println!("killing the leader, node {leader}");
    cluster.kill(leader);
    let killed_at = Instant::now();
    let new_leader = cluster.wait_for_leader(TIMEOUT).await.map_err(fail)?;
    let new_term = cluster
        .node(new_leader)
        .map(|n| n.status().raft.term)
        .unwrap_or_default();
    println!(
        "new leader: node {new_leader} (term {new_term}), elected {:?} after the kill",
        killed_at.elapsed()
    );

    for i in keys..2 * keys {
        let (key, value) = (format!("key-{i:03}"), format!("written-under-node-{new_leader}"));
        put(&cluster, &key, &value).await?;
        expected.push((key, value));
    }
    println!("wrote {keys} more keys through node {new_leader}");

    for (key, value) in &expected {
        let read = cluster
            .kv(KvCommand::Get { key: key.clone() })
            .await
            .map_err(fail)?;
        if read != KvResponse::Value(Some(value.clone())) {
            return Err(format!("{key}: expected {value:?}, read {read:?}"));
        }
    }
    println!(
        "read back all {} keys through the log: nothing committed was lost",
        expected.len()
    );

    println!("restarting node {leader} from its storage");
    cluster.restart(leader).await.map_err(fail)?;
    put(&cluster, "after-restart", "yes").await?;
    let last = cluster
        .node(new_leader)
        .map(|n| n.status().raft.last_log_index)
        .unwrap_or_default();
    if !cluster.wait_for_applied(last, TIMEOUT).await {
        return Err("the restarted node did not catch up".into());
    }
    let reference = cluster.replica(new_leader);
    for id in cluster.ids() {
        if cluster.replica(id) != reference {
            return Err(format!("node {id}'s replica differs from the leader's"));
        }
    }
    println!(
        "all {} replicas are identical ({} keys)",
        cluster.ids().len(),
        expected.len() + 1
    );
    cluster.shutdown().await;
    println!("demo OK in {:?}", started.elapsed());
    Ok(())
}

async fn put(cluster: &MemCluster, key: &str, value: &str) -> Result<(), String> {
    let command = KvCommand::Put {
        key: key.into(),
        value: value.into(),
    };
    cluster
        .kv(command)
        .await
        .map(|_| ())
        .map_err(|e| format!("writing {key}: {e}"))
}

mod certs {
    //! `raft-kv certs`: the cluster CA and node certificates, as PEM files.

    use std::path::{Path, PathBuf};

    use clap::Subcommand;
    use raft_node::quic::ClusterCa;

    #[derive(Subcommand)]
    pub enum Certs {
        /// Creates a new CA: writes `ca.pem` (give it to every node) and `ca.key` (keep it secret).
        Ca {
            /// The directory to write to (created if missing).
            #[arg(long)]
            out: PathBuf,
            /// The cluster's name, written into the CA certificate.
            #[arg(long, default_value = "raft")]
            name: String,
        },
        /// Issues node `id` a certificate signed by the CA: writes `node-<id>.pem` and `node-<id>.key`.
        Node {
            /// The directory holding `ca.pem` and `ca.key`.
            #[arg(long)]
            ca_dir: PathBuf,
            /// The node id to bind to the certificate.
            #[arg(long)]
            id: u64,
            /// The directory to write to (created if missing).
            #[arg(long)]
            out: PathBuf,
        },
    }

    pub fn run(command: Certs) -> Result<(), String> {
        match command {
            Certs::Ca { out, name } => {
                let ca = ClusterCa::generate(&name).map_err(|e| e.to_string())?;
                write(&out, "ca.pem", &ca.cert_pem(), false)?;
                write(&out, "ca.key", &ca.key_pem(), true)?;
                println!("wrote {0}/ca.pem and {0}/ca.key", out.display());
            }
            Certs::Node { ca_dir, id, out } => {
                let read = |name: &str| {
                    let path = ca_dir.join(name);
                    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
                };
                let ca =
                    ClusterCa::from_pem(&read("ca.pem")?, &read("ca.key")?).map_err(|e| e.to_string())?;
                let cert = ca.issue(id).map_err(|e| e.to_string())?;
                write(&out, &format!("node-{id}.pem"), &cert.cert_pem, false)?;
                write(&out, &format!("node-{id}.key"), &cert.key_pem, true)?;
                println!("wrote {0}/node-{id}.pem and {0}/node-{id}.key", out.display());
            }
        }
        Ok(())
    }

    /// Writes a file; a secret one is readable by its owner only.
    fn write(dir: &Path, name: &str, contents: &str, secret: bool) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&path)
            .map_err(|e| format!("cannot create {} (it must not exist yet): {e}", path.display()))?;
        file.write_all(contents.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

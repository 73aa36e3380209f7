//! `raft-kv serve`: the config file, flags over it, and the process's life (signals).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use raft_kv::{FloorServer, InitialMember, Server, ServerConfig, StorageEngine, TlsFiles, Tuning};
use tracing::info;

use crate::Failure;

/// Every setting of the config file, as a flag that overrides it.
#[derive(Args)]
pub struct ServeArgs {
    /// The TOML config file (see docs/operating.md); flags override its fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start on an empty data directory as a non-member that waits for the leader to add it
    /// (`raft-kv cluster add`); `initial_members` then only says where the cluster is.
    #[arg(long)]
    join: bool,
    /// This node's id (not 0).
    #[arg(long)]
    node_id: Option<u64>,
    /// The cluster's id; peers and data directories of another cluster are refused.
    #[arg(long)]
    cluster_id: Option<u64>,
    /// The data directory (the log, snapshots, the first configuration).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The storage engine of the log and hard state (default: the file's, else rocksdb).
    #[arg(long, value_enum)]
    storage: Option<StorageEngine>,
    /// The UDP address for Raft traffic (QUIC with mutual TLS).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// The TCP address of the client API.
    #[arg(long)]
    client_listen: Option<SocketAddr>,
    /// The cluster CA's certificate (PEM).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// This node's certificate (PEM), from `raft-kv certs node`.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Serve the client API over plain HTTP; refused unless it listens on a loopback address.
    #[arg(long)]
    insecure: bool,
    /// An initial member as `ID=PEER_ADDR,CLIENT_ADDR` (repeat it; replaces the file's list).
    #[arg(long = "member", value_parser = parse_member)]
    members: Vec<InitialMember>,
    /// One tick in milliseconds (default 10).
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Election timeout in ticks (default 15; randomized in [T, 2T)).
    #[arg(long)]
    election_timeout_ticks: Option<u32>,
    /// Heartbeat interval in ticks (default 3).
    #[arg(long)]
    heartbeat_ticks: Option<u32>,
    /// Serve lease reads (needs bounded clock drift between nodes).
    #[arg(long)]
    lease_reads: Option<bool>,
    /// Snapshot after this many entries (default 100,000).
    #[arg(long)]
    snapshot_after_entries: Option<u64>,
    /// A due snapshot waits until the log since the last one holds this % of its size (default 100; 0: never waits).
    #[arg(long)]
    snapshot_min_log_percent: Option<u64>,
    /// How long a request may wait before the client hears the outcome is unknown (ms, default 5,000).
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// The longest key in bytes (default 4 KiB).
    #[arg(long)]
    max_key_bytes: Option<usize>,
    /// The longest value in bytes (default 1 MiB).
    #[arg(long)]
    max_value_bytes: Option<usize>,
    /// The largest request body in bytes (default 2 MiB).
    #[arg(long)]
    max_request_bytes: Option<usize>,
    /// The most pairs one scan returns (default 10,000).
    #[arg(long)]
    max_scan_limit: Option<usize>,
    /// A peer connection silent this long is dropped (ms, default 5,000).
    #[arg(long)]
    peer_idle_timeout_ms: Option<u64>,
    /// QUIC's round-trip guess to a peer before it measures one (ms, default 10).
    #[arg(long)]
    peer_initial_rtt_ms: Option<u64>,
    /// At most this many AppendEntries in flight to one follower (default 32).
    #[arg(long)]
    max_inflight_messages: Option<usize>,
    /// Whether an AppendEntries short of a message waits while another is in flight (Nagle's
    /// rule; default true; false suits peers far apart).
    #[arg(long)]
    hold_partial_appends: Option<bool>,
}

fn parse_member(text: &str) -> Result<InitialMember, String> {
    let usage = || format!("`{text}` is not ID=PEER_ADDR,CLIENT_ADDR");
    let (id, addrs) = text.split_once('=').ok_or_else(usage)?;
    let (peer, client) = addrs.split_once(',').ok_or_else(usage)?;
    Ok(InitialMember {
        id: id.trim().parse().map_err(|_| usage())?,
        peer: peer.trim().parse().map_err(|_| usage())?,
        client: client.trim().parse().map_err(|_| usage())?,
    })
}

fn missing(flag: &str) -> Failure {
    Failure {
        code: 2,
        message: format!("no {flag}: give it in the config file or as a flag"),
    }
}

/// The config file with the flags applied.
fn merged(args: ServeArgs) -> Result<(ServerConfig, bool), Failure> {
    let file = match &args.config {
        Some(path) => Some(ServerConfig::from_file(path).map_err(|e| Failure {
            code: 2,
            message: e.to_string(),
        })?),
        None => None,
    };
    let tls = file.as_ref().map(|f| f.tls.clone());
    let mut config = ServerConfig {
        node_id: args
            .node_id
            .or(file.as_ref().map(|f| f.node_id))
            .ok_or_else(|| missing("node_id"))?,
        cluster_id: args
            .cluster_id
            .or(file.as_ref().map(|f| f.cluster_id))
            .ok_or_else(|| missing("cluster_id"))?,
        data_dir: args
            .data_dir
            .or(file.as_ref().map(|f| f.data_dir.clone()))
            .ok_or_else(|| missing("data_dir"))?,
        storage: args
            .storage
            .or(file.as_ref().map(|f| f.storage))
            .unwrap_or_default(),
        peer_listen: args
            .peer_listen
            .or(file.as_ref().map(|f| f.peer_listen))
            .ok_or_else(|| missing("peer_listen"))?,
        client_listen: args
            .client_listen
            .or(file.as_ref().map(|f| f.client_listen))
            .ok_or_else(|| missing("client_listen"))?,
        tls: TlsFiles {
            ca_cert: args
                .ca_cert
                .or(tls.as_ref().map(|t| t.ca_cert.clone()))
                .ok_or_else(|| missing("tls.ca_cert"))?,
            cert: args
                .cert
                .or(tls.as_ref().map(|t| t.cert.clone()))
                .ok_or_else(|| missing("tls.cert"))?,
            key: args
                .key
                .or(tls.as_ref().map(|t| t.key.clone()))
                .ok_or_else(|| missing("tls.key"))?,
        },
        insecure: args.insecure || file.as_ref().is_some_and(|f| f.insecure),
        initial_members: if args.members.is_empty() {
            file.as_ref()
                .map(|f| f.initial_members.clone())
                .unwrap_or_default()
        } else {
            args.members
        },
        tuning: file.map(|f| f.tuning).unwrap_or_default(),
    };
    let t: &mut Tuning = &mut config.tuning;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field { t.$field = v; } )* };
    }
    set!(
        tick_ms,
        election_timeout_ticks,
        lease_reads,
        snapshot_after_entries,
        snapshot_min_log_percent,
        request_timeout_ms,
        max_key_bytes,
        max_value_bytes,
        max_request_bytes,
        max_scan_limit,
        peer_idle_timeout_ms,
        peer_initial_rtt_ms,
        max_inflight_messages,
        hold_partial_appends
    );
    if let Some(v) = args.heartbeat_ticks {
        t.heartbeat_ticks = v;
    }
    config.validate().map_err(|e| Failure {
        code: 2,
        message: e.to_string(),
    })?;
    Ok((config, args.join))
}

async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down"),
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<(), Failure> {
    let (config, join) = merged(args)?;
    let server = Server::start(config, join)
        .await
        .map_err(|e| Failure::new(format!("raft-kv serve: {e}")))?;
    terminated().await;
    server.shutdown().await;
    Ok(())
}

/// `raft-kv serve-floor`: the client API answered at once, on the node's client address, until
/// SIGTERM.
pub async fn run_floor(args: ServeArgs) -> Result<(), Failure> {
    let (config, _) = merged(args)?;
    let floor = FloorServer::start(&config)
        .await
        .map_err(|e| Failure::new(format!("raft-kv serve-floor: {e}")))?;
    terminated().await;
    floor.shutdown().await;
    Ok(())
}

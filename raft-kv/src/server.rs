//! `raft-kv serve`: one node of the service, on RocksDB storage and the QUIC transport, with the
//! client API over HTTPS.
//!
//! **First start.** On an empty data directory the node takes its initial configuration from
//! `initial_members` (or, with `join`, starts as a non-member that waits for the leader to add it)
//! and writes it to `membership.json` in the data directory. Every later start takes the
//! configuration from there and from the log; a changed `initial_members` is ignored with a
//! warning.
//!
//! **Addresses travel with the membership.** Each member's peer and client addresses are in the
//! replicated configuration ([`MemberAddress`] in `Membership::addresses`). A task follows the
//! configuration: the transport's peers are the members of the latest and of the committed
//! configuration, so a node added at runtime is reached as soon as its entry is in the log, and a
//! removed node is cut off (its connections closed and refused) once its removal commits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use raft_core::{Membership, MembershipError, NodeId};
use raft_node::file::JournalStorage;
use raft_node::quic::{NodeTls, QuicConfig, QuicError, QuicTransport};
use raft_node::rocks::{OpenError, RocksStorage, StoreIdentity};
use raft_node::{NodeConfig, RaftNode, Sessions, StartError};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::api::MemberAddress;
use crate::config::{ConfigError, ServerConfig, StorageEngine};
use crate::http::{log_rejected, router, ApiState};
use crate::kv::KvStateMachine;
use crate::tls::{TlsError, TlsMaterial};

/// The file in the data directory that holds the configuration the node was first started with.
const MEMBERSHIP_FILE: &str = "membership.json";

/// Why a server did not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificates cannot be read or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The QUIC transport did not start.
    #[error("peer transport: {0}")]
    Transport(#[from] QuicError),
    /// The RocksDB storage did not open (another node's or cluster's directory, a damaged store).
    #[error("storage: {0}")]
    Storage(#[from] OpenError),
    /// The journal storage did not open (another node's or cluster's directory, a damaged
    /// journal).
    #[error("storage: {0}")]
    JournalStorage(#[from] raft_node::file::OpenError),
    /// The node did not start.
    #[error("node: {0}")]
    Start(#[from] StartError),
    /// The initial configuration is invalid.
    #[error("initial configuration: {0}")]
    Membership(#[from] MembershipError),
    /// A file of the data directory cannot be read or written.
    #[error("{path}: {detail}")]
    DataDir {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The client API's address cannot be bound.
    #[error("cannot listen for clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running server. [`shutdown`](Self::shutdown) stops it cleanly.
pub struct Server {
    node: Arc<RaftNode>,
    transport: QuicTransport,
    client_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.node.id())
            .field("client_addr", &self.client_addr)
            .finish_non_exhaustive()
    }
}

fn data_dir_error(path: &Path, detail: impl std::fmt::Display) -> ServerError {
    ServerError::DataDir {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// The configuration from `initial_members`.
fn initial_membership(config: &ServerConfig) -> Result<Membership, ServerError> {
    if config.initial_members.is_empty() {
        return Err(ConfigError::Invalid(
            "an empty data directory needs initial_members (or --join to wait to be added)".into(),
        )
        .into());
    }
    let voters = config.initial_members.iter().map(|m| m.id);
    let addresses = config.initial_members.iter().map(|m| {
        let address = MemberAddress {
            peer: m.peer,
            client: m.client,
        };
        (m.id, address.encode())
    });
    Ok(Membership::voters(voters)?.with_addresses(addresses)?)
}

/// Writes a file and makes it durable: a temporary file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, contents: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| data_dir_error(&tmp, e))?;
    file.write_all(contents).map_err(|e| data_dir_error(&tmp, e))?;
    file.sync_all().map_err(|e| data_dir_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| data_dir_error(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| data_dir_error(dir, e))
}

/// The configuration the node starts from: the one recorded at its first start, or a new one.
fn base_membership(config: &ServerConfig, join: bool) -> Result<Membership, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| data_dir_error(&config.data_dir, e))?;
    let path = config.data_dir.join(MEMBERSHIP_FILE);
    if path.exists() {
        let text = std::fs::read(&path).map_err(|e| data_dir_error(&path, e))?;
        let recorded: Membership = serde_json::from_slice(&text).map_err(|e| {
            data_dir_error(
                &path,
                format!("not a configuration ({e}); the data directory is damaged"),
            )
        })?;
        if !recorded.is_empty() {
            recorded.validate()?;
        }
        if !join && !config.initial_members.is_empty() {
            if let Ok(given) = initial_membership(config) {
                if given != recorded {
                    warn!(
                        file = %path.display(),
                        "initial_members differs from the configuration this node first started with; \
                         ignoring it (the configuration now comes from the data directory and the log)"
                    );
                }
            }
        }
        return Ok(recorded);
    }
    let has_state = std::fs::read_dir(&config.data_dir)
        .map_err(|e| data_dir_error(&config.data_dir, e))?
        .next()
        .is_some();
    if has_state {
        return Err(data_dir_error(
            &config.data_dir,
            format!("holds files but no {MEMBERSHIP_FILE}: not a raft-kv data directory, or a damaged one"),
        ));
    }
    let membership = if join {
        Membership::default()
    } else {
        initial_membership(config)?
    };
    let text = serde_json::to_vec_pretty(&membership).map_err(|e| data_dir_error(&path, e))?;
    write_durably(&path, &text)?;
    Ok(membership)
}

/// The peers of a configuration: every member but `me` whose address is known.
fn peers_of(memberships: [&Membership; 2], me: NodeId) -> BTreeMap<NodeId, SocketAddr> {
    let mut peers = BTreeMap::new();
    for m in memberships {
        for id in m.members().filter(|id| *id != me) {
            if let Some(address) = m.addresses.get(&id).and_then(|a| MemberAddress::decode(a)) {
                peers.entry(id).or_insert(address.peer);
            }
        }
    }
    peers
}

/// Keeps the transport's peers equal to the members of the latest and the committed
/// configuration. A node that is not a member yet keeps `seeds` (the members it was told of) so
/// that the leader's messages are accepted.
async fn follow_membership(
    node: Arc<RaftNode>,
    transport: QuicTransport,
    seeds: BTreeMap<NodeId, SocketAddr>,
    mut current: BTreeMap<NodeId, SocketAddr>,
) {
    let me = node.id();
    // Wakes only when a configuration changes, not on every commit.
    let mut configurations = node.watch_membership();
    loop {
        let desired = {
            let now = configurations.borrow_and_update();
            let mut desired = peers_of([&now.membership, &now.committed_membership], me);
            if now.membership.is_empty() && now.committed_membership.is_empty() {
                desired.extend(seeds.iter().filter(|(id, _)| **id != me));
            }
            desired
        };
        for (id, addr) in &desired {
            if current.get(id) != Some(addr) {
                info!(node = me, peer = id, %addr, "peer added");
                transport.add_peer(*id, *addr);
            }
        }
        for id in current.keys() {
            if !desired.contains_key(id) {
                info!(
                    node = me,
                    peer = id,
                    "peer removed: its connections are closed and refused"
                );
                transport.remove_peer(*id);
            }
        }
        current = desired;
        if configurations.changed().await.is_err() {
            return;
        }
    }
}

/// The node's store, opened before anything else starts.
enum OpenedStorage {
    Rocksdb(RocksStorage),
    Journal(JournalStorage),
}

impl Server {
    /// Starts the node and its client API. `join`: an empty data directory waits to be added.
    pub async fn start(config: ServerConfig, join: bool) -> Result<Server, ServerError> {
        config.validate()?;
        // Before the node starts: it registers its metrics with the recorder installed then.
        let _ = crate::metrics::prometheus();
        let id = config.node_id;
        let tls = TlsMaterial::from_files(&config.tls.ca_cert, &config.tls.cert, &config.tls.key)?;
        let membership = base_membership(&config, join)?;
        let identity = StoreIdentity {
            cluster_id: config.cluster_id,
            node_id: id,
        };
        let engine = config.storage;
        let other = config.data_dir.join(engine.other().dir_name());
        if !config.data_dir.join(engine.dir_name()).exists() && other.exists() {
            // Opening the configured engine would start this node afresh, forgetting its term,
            // its vote and its log.
            return Err(data_dir_error(
                &other,
                format!(
                    "holds this node's {:?} store, but the config says storage = {:?}; set it back",
                    engine.other(),
                    engine
                )
                .to_lowercase(),
            ));
        }
        let store_dir = config.data_dir.join(engine.dir_name());
        let storage = match engine {
            StorageEngine::Rocksdb => OpenedStorage::Rocksdb(RocksStorage::open(store_dir, identity).await?),
            StorageEngine::Journal => {
                OpenedStorage::Journal(JournalStorage::open(store_dir, identity).await?)
            }
        };

        let seeds: BTreeMap<NodeId, SocketAddr> =
            config.initial_members.iter().map(|m| (m.id, m.peer)).collect();
        let mut peers = peers_of([&membership, &membership], id);
        if membership.is_empty() {
            peers.extend(seeds.iter().filter(|(p, _)| **p != id));
        }
        let node_tls = NodeTls::clone(&tls);
        let mut quic = QuicConfig::new(id, config.cluster_id, config.peer_listen, peers.clone(), node_tls);
        quic.idle_timeout = Duration::from_millis(config.tuning.peer_idle_timeout_ms);
        quic.initial_rtt = Duration::from_millis(config.tuning.peer_initial_rtt_ms);
        let (transport, inbox) = QuicTransport::start(quic)?;

        let t = &config.tuning;
        let mut node_config = NodeConfig::new(id)
            .with_tick_interval(Duration::from_millis(t.tick_ms))
            .with_propose_timeout(Duration::from_millis(t.request_timeout_ms));
        node_config.core.election_timeout_ticks = t.election_timeout_ticks;
        node_config.core.heartbeat_interval_ticks = t.heartbeat_ticks;
        node_config.core.lease_reads = t.lease_reads;
        node_config.core.snapshot_after_entries = t.snapshot_after_entries;
        node_config.core.snapshot_min_log_percent = t.snapshot_min_log_percent;
        node_config.core.max_inflight_messages = t.max_inflight_messages;
        node_config.core.hold_partial_appends = t.hold_partial_appends;
        node_config.core.seed = rand_seed(id);
        let state_machine = Sessions::new(KvStateMachine::new());
        let started = match storage {
            OpenedStorage::Rocksdb(storage) => {
                RaftNode::start(
                    node_config,
                    membership,
                    storage,
                    transport.clone(),
                    inbox,
                    state_machine,
                )
                .await
            }
            OpenedStorage::Journal(storage) => {
                RaftNode::start(
                    node_config,
                    membership,
                    storage,
                    transport.clone(),
                    inbox,
                    state_machine,
                )
                .await
            }
        };
        let node = match started {
            Ok(node) => Arc::new(node),
            Err(e) => {
                transport.shutdown();
                return Err(e.into());
            }
        };

        let listener = match TcpListener::bind(config.client_listen).await {
            Ok(listener) => listener,
            Err(source) => {
                node.shutdown().await;
                transport.shutdown();
                return Err(ServerError::Bind {
                    addr: config.client_listen,
                    source,
                });
            }
        };
        let client_addr = listener.local_addr().unwrap_or(config.client_listen);
        let acceptor = if config.insecure {
            None
        } else {
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config()?)))
        };
        let scheme = if config.insecure { "http" } else { "https" };
        info!(
            node = id,
            cluster = config.cluster_id,
            data_dir = %config.data_dir.display(),
            peer = %config.peer_listen,
            client = %format!("{scheme}://{client_addr}"),
            "raft-kv node {id} of cluster {} serving: data in {}, peers on {} (QUIC, mutual TLS), clients on {scheme}://{client_addr}{}",
            config.cluster_id,
            config.data_dir.display(),
            config.peer_listen,
            if config.insecure { " (plain HTTP, loopback only)" } else { " (client certificates required)" },
        );

        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(ApiState {
            node: node.clone(),
            cluster_id: config.cluster_id,
            tuning: config.tuning.clone(),
        });
        let http = tokio::spawn(serve_clients(id, listener, acceptor, router(state), stopped));
        let sync = tokio::spawn(follow_membership(node.clone(), transport.clone(), seeds, peers));
        Ok(Server {
            node,
            transport,
            client_addr,
            stop,
            tasks: vec![http, sync],
        })
    }

    /// The node.
    pub fn node(&self) -> &Arc<RaftNode> {
        &self.node
    }

    /// The address the client API listens on.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Stops taking requests, lets those in flight finish (up to a few seconds), hands
    /// leadership to another voter if this node leads (so the cluster does not wait an election
    /// timeout for a new leader), stops the node (which closes the store) and closes the
    /// transport, telling the peers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.into_iter();
        if let Some(http) = tasks.next() {
            let _ = tokio::time::timeout(crate::http::DRAIN_TIMEOUT, http).await;
        }
        let id = self.node.id();
        match self.node.hand_off_leadership().await {
            Ok(Some(next)) => info!(
                node = id,
                next, "handed leadership to node {next} before stopping"
            ),
            Ok(None) => {}
            Err(error) => warn!(node = id, %error, "stopping without handing off leadership"),
        }
        self.node.shutdown().await;
        if !self.transport.close(PEER_CLOSE_TIMEOUT).await {
            debug!(node = id, "some peers did not acknowledge the close in time");
        }
        for task in tasks {
            task.abort();
        }
        info!(node = self.node.id(), "stopped");
    }
}

/// How long a stopping server waits for its peers to learn that it closed their connections.
const PEER_CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// A seed for the election timer that differs between nodes and between starts.
fn rand_seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
}

/// Requests in flight at once on one HTTP/2 connection: above the load generator's largest
/// number of clients per connection, below what would let one connection hog the node.
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// Accepts client connections until told to stop, then lets open connections finish their
/// current request.
pub(crate) async fn serve_clients(
    id: NodeId,
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accepting a client connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let http2 = tls.get_ref().1.alpn_protocol() == Some(crate::tls::H2);
                            let _open = ConnectionMetrics::opened(id, http2);
                            serve_connection(TokioIo::new(tls), http2, service, stop).await
                        }
                        Ok(Err(e)) => log_rejected(remote, &e),
                        Err(_) => log_rejected(remote, &"TLS handshake timed out"),
                    }
                }
                None => {
                    let _open = ConnectionMetrics::opened(id, false);
                    serve_connection(TokioIo::new(stream), false, service, stop).await
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// The client connections a node serves, in `/metrics`: `raft_kv_client_connections_total`
/// counts those opened (past the TLS handshake) by `protocol` (`h2`, `http1`), and
/// `raft_kv_client_connections_open` those open now. Held for as long as a connection is
/// served; dropping it closes the count.
struct ConnectionMetrics {
    open: metrics::Gauge,
}

impl ConnectionMetrics {
    fn opened(id: NodeId, http2: bool) -> Self {
        let node = id.to_string();
        let protocol = if http2 { "h2" } else { "http1" };
        metrics::counter!("raft_kv_client_connections_total", "node" => node.clone(), "protocol" => protocol)
            .increment(1);
        let open = metrics::gauge!("raft_kv_client_connections_open", "node" => node, "protocol" => protocol);
        open.increment(1.0);
        ConnectionMetrics { open }
    }
}

impl Drop for ConnectionMetrics {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// Serves one connection in HTTP/2 (`http2`: TLS agreed on it by ALPN) or HTTP/1.1. Plain
/// connections (`--insecure`, loopback only) speak HTTP/1.1.
async fn serve_connection<I>(
    io: I,
    http2: bool,
    service: TowerToHyperService<axum::Router>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Serves `connection` to its end, or until told to stop, then lets the request in flight
    // finish. (HTTP/1.1's and HTTP/2's connections share no trait for `graceful_shutdown`.)
    macro_rules! serve_until_stopped {
        ($connection:expr) => {{
            let connection = $connection;
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        }};
    }
    if http2 {
        // A connection that stops answering pings is closed.
        serve_until_stopped!(
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                .keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10))
                .serve_connection(io, service)
        );
    } else {
        // A client that dribbles its request headers is cut off (slow-loris).
        serve_until_stopped!(hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(io, service));
    }
}

//! Shared set-up for the benchmarks: a 3-node cluster on a chosen pair of backends (in-memory or
//! RocksDB storage; in-memory or QUIC transport) and workloads against its leader.

mod floor;
mod handoff;
pub mod plot;

pub use floor::ChannelFloor;
pub use handoff::handoff_round_trip;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use raft_kv::{KvCommand, KvStateMachine};
use raft_net_mem::MemNetwork;
use raft_node::file::JournalStorage;
use raft_node::quic::{ClusterCa, QuicConfig, QuicTransport};
use raft_node::raft_core::{
    Inbox, Index, LogStorage, Membership, NodeId, SnapshotRead, SnapshotWrite, StateMachine,
    StateMachineError, Transport,
};
use raft_node::rocks::{RocksStorage, StoreIdentity};
use raft_node::{NodeConfig, RaftNode};
use raft_storage_mem::MemStorage;

/// The payload size of the headline figures.
pub const PAYLOAD_BYTES: usize = 128;

const CLUSTER_ID: u64 = 0xBE7C;

/// Where the log is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// `MemStorage`: no disk.
    Mem,
    /// `RocksStorage` in a temporary directory: one synced batch per group commit.
    Rocks,
    /// `JournalStorage` in a temporary directory: one synced journal record per group commit.
    Journal,
}

/// How messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    /// `MemNetwork`: channels in one process.
    Mem,
    /// `QuicTransport` on loopback with mutual TLS.
    Quic,
}

/// The pairs the benchmarks compare, with their names (`storage-transport`).
pub const BACKENDS: [(StorageKind, NetKind, &str); 6] = [
    (StorageKind::Mem, NetKind::Mem, "mem-mem"),
    (StorageKind::Rocks, NetKind::Mem, "rocks-mem"),
    (StorageKind::Journal, NetKind::Mem, "journal-mem"),
    (StorageKind::Mem, NetKind::Quic, "mem-quic"),
    (StorageKind::Rocks, NetKind::Quic, "rocks-quic"),
    (StorageKind::Journal, NetKind::Quic, "journal-quic"),
];

/// A running 3-node cluster and its leader.
pub struct Bench {
    /// The leader proposals go to.
    pub leader: Arc<RaftNode>,
    /// All three nodes, the leader among them.
    pub nodes: Vec<Arc<RaftNode>>,
    quic: Vec<QuicTransport>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Which state machine the nodes apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineKind {
    /// The key-value store (`KvStateMachine`): commands are decoded and applied to a map.
    Kv,
    /// [`NoopStateMachine`]: applying costs nothing, so the figures are the replication's own.
    Noop,
}

/// A state machine that keeps nothing: it counts the index it applied and answers every command
/// with an empty response. The closed-loop benchmark uses it, as openraft's does, so that only
/// the replication is measured.
#[derive(Debug, Default)]
pub struct NoopStateMachine {
    applied: Index,
}

impl StateMachine for NoopStateMachine {
    async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
        self.applied = index;
        Ok(Bytes::new())
    }

    async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }

    async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
        out.write(Bytes::from_static(b"noop"))
            .await
            .map_err(|error| StateMachineError::storage(self.applied, error))
    }

    async fn restore(
        &mut self,
        index: Index,
        _input: &mut dyn SnapshotRead,
    ) -> Result<(), StateMachineError> {
        self.applied = index;
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.applied
    }
}

/// The node settings a benchmark run varies.
#[derive(Clone, Copy, Debug)]
pub struct NodeSettings {
    /// Whether the nodes record metrics (`NodeConfig::metrics`).
    pub metrics: bool,
    /// `raft_core::Config::snapshot_min_log_percent` (the library's default: 0).
    pub snapshot_min_log_percent: u64,
    /// `raft_core::Config::hold_partial_appends`, Nagle's rule (the library's default: off).
    pub hold_partial_appends: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            metrics: true,
            snapshot_min_log_percent: 0,
            hold_partial_appends: false,
        }
    }
}

async fn start_node<S: LogStorage, T: Transport, I: Inbox>(
    id: NodeId,
    storage: S,
    transport: T,
    inbox: I,
    machine: MachineKind,
    settings: NodeSettings,
) -> Arc<RaftNode> {
    let membership = Membership::voters([1, 2, 3]).expect("membership");
    let mut config = NodeConfig::new(id)
        .with_propose_timeout(Duration::from_secs(30))
        .with_metrics(settings.metrics);
    config.core.snapshot_min_log_percent = settings.snapshot_min_log_percent;
    config.core.hold_partial_appends = settings.hold_partial_appends;
    let node = match machine {
        MachineKind::Kv => {
            RaftNode::start(
                config,
                membership,
                storage,
                transport,
                inbox,
                KvStateMachine::new(),
            )
            .await
        }
        MachineKind::Noop => {
            let noop = NoopStateMachine::default();
            RaftNode::start(config, membership, storage, transport, inbox, noop).await
        }
    };
    Arc::new(node.expect("node starts"))
}

/// Starts 3 nodes on the given backends with the key-value state machine and waits for a leader.
pub async fn start(storage: StorageKind, net: NetKind) -> Bench {
    start_with(storage, net, MachineKind::Kv, NodeSettings::default()).await
}

/// Starts 3 nodes on the given backends and state machine and waits for a leader.
pub async fn start_with(
    storage: StorageKind,
    net: NetKind,
    machine: MachineKind,
    settings: NodeSettings,
) -> Bench {
    let ids = [1u64, 2, 3];
    let network = MemNetwork::new(1);
    let ca = ClusterCa::generate("bench").expect("CA");
    let sockets: Vec<UdpSocket> = ids
        .iter()
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let addrs: BTreeMap<NodeId, SocketAddr> = ids
        .iter()
        .zip(&sockets)
        .map(|(id, s)| (*id, s.local_addr().expect("addr")))
        .collect();
    let mut nodes = Vec::new();
    let mut quic = Vec::new();
    let mut dirs = Vec::new();
    for (id, socket) in ids.into_iter().zip(sockets) {
        macro_rules! with_net {
            ($storage:expr) => {
                match net {
                    NetKind::Mem => {
                        let (transport, inbox) = network.register(id);
                        start_node(id, $storage, transport, inbox, machine, settings).await
                    }
                    NetKind::Quic => {
                        let tls = ca
                            .issue(CLUSTER_ID, id)
                            .expect("issue")
                            .tls(&ca.cert_pem())
                            .expect("tls");
                        let config = QuicConfig::new(id, CLUSTER_ID, addrs[&id], addrs.clone(), tls);
                        let (transport, inbox) =
                            QuicTransport::start_on(config, socket).expect("QUIC starts");
                        quic.push(transport.clone());
                        start_node(id, $storage, transport, inbox, machine, settings).await
                    }
                }
            };
        }
        let node = match storage {
            StorageKind::Mem => with_net!(MemStorage::new()),
            StorageKind::Rocks => {
                let dir = tempfile::tempdir().expect("tempdir");
                let identity = StoreIdentity {
                    cluster_id: CLUSTER_ID,
                    node_id: id,
                };
                let rocks = RocksStorage::open(dir.path(), identity)
                    .await
                    .expect("RocksDB opens");
                dirs.push(dir);
                with_net!(rocks)
            }
            StorageKind::Journal => {
                let dir = tempfile::tempdir().expect("tempdir");
                let identity = StoreIdentity {
                    cluster_id: CLUSTER_ID,
                    node_id: id,
                };
                let journal = JournalStorage::open(dir.path(), identity)
                    .await
                    .expect("the journal opens");
                dirs.push(dir);
                with_net!(journal)
            }
        };
        nodes.push(node);
    }
    let leader = loop {
        let id = nodes[0]
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("a leader is elected");
        if let Some(node) = nodes.iter().find(|n| n.id() == id) {
            break node.clone();
        }
    };
    Bench {
        leader,
        nodes,
        quic,
        _dirs: dirs,
    }
}

/// A put of a `PAYLOAD_BYTES` value under a key derived from `n`.
pub fn command(n: u64) -> Bytes {
    KvCommand::Put {
        key: format!("k{}", n % 1024),
        value: "v".repeat(PAYLOAD_BYTES),
    }
    .encode()
}

impl Bench {
    /// Proposes `total` commands from `proposers` concurrent tasks, each waiting for its command
    /// to be applied before sending the next; returns the elapsed time.
    pub async fn run_proposals(&self, proposers: u64, total: u64) -> Duration {
        let per_proposer = total.div_ceil(proposers);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..proposers {
            let node = self.leader.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_proposer {
                    node.propose(command(p * per_proposer + i))
                        .await
                        .expect("proposal commits");
                }
            }));
        }
        for task in tasks {
            task.await.expect("proposer task");
        }
        started.elapsed()
    }

    /// Proposes `count` commands one after another and records each one's latency.
    pub async fn latency_histogram(&self, count: u64) -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        for i in 0..count {
            let started = Instant::now();
            self.leader.propose(command(i)).await.expect("proposal commits");
            let micros = started.elapsed().as_micros() as u64;
            histogram.saturating_record(micros.max(1));
        }
        histogram
    }

    /// Stops every node and transport.
    pub async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
        for transport in &self.quic {
            transport.shutdown();
        }
    }
}

/// What one closed-loop run measured.
#[derive(Debug)]
pub struct ClosedLoopRun {
    /// Writes completed (each applied at the leader and answered).
    pub operations: u64,
    /// Writes that failed (a leader change dropped them, or the node asked was no longer the
    /// leader); each client then moves on to the leader.
    pub errors: u64,
    /// From the first proposal to the last answer.
    pub elapsed: Duration,
    /// Each completed write's latency, propose to answer, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl ClosedLoopRun {
    /// Completed writes per second.
    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A command of `size` bytes for write number `n`: a key-value put for [`MachineKind::Kv`] (the
/// value is `size` bytes), raw bytes for [`MachineKind::Noop`].
pub fn sized_command(machine: MachineKind, n: u64, size: usize) -> Bytes {
    match machine {
        MachineKind::Kv => KvCommand::Put {
            key: format!("k{}", n % 10_000),
            value: "v".repeat(size),
        }
        .encode(),
        MachineKind::Noop => {
            let mut bytes = vec![b'v'; size];
            let tag = n.to_le_bytes();
            let len = tag.len().min(size);
            bytes[..len].copy_from_slice(&tag[..len]);
            Bytes::from(bytes)
        }
    }
}

/// What closed-loop clients write to: a Raft cluster ([`Vec<Arc<RaftNode>>`], each write to the
/// leader) or [`ChannelFloor`] (a server that answers at once, to measure the clients' own cost).
pub trait WriteTarget: Send + Sync + 'static {
    /// Where one client sends its writes until one fails.
    type Endpoint: Send + 'static;
    /// The endpoint to write to now (for a cluster, whoever says it leads), if there is one.
    fn endpoint(&self) -> Option<Self::Endpoint>;
    /// The endpoint a client starts with when [`WriteTarget::endpoint`] finds none.
    fn fallback(&self) -> Self::Endpoint;
    /// Writes `command` and waits for its answer; false if the write failed.
    fn write(endpoint: &Self::Endpoint, command: Bytes) -> impl Future<Output = bool> + Send;
}

impl WriteTarget for Vec<Arc<RaftNode>> {
    type Endpoint = Arc<RaftNode>;

    fn endpoint(&self) -> Option<Arc<RaftNode>> {
        let leader = self.iter().find_map(|node| node.status().raft.leader)?;
        self.iter().find(|node| node.id() == leader).cloned()
    }

    fn fallback(&self) -> Arc<RaftNode> {
        self[0].clone()
    }

    async fn write(node: &Arc<RaftNode>, command: Bytes) -> bool {
        node.propose(command).await.is_ok()
    }
}

/// Runs `clients` closed-loop writers against `target` (each waits for its write to be answered
/// before it sends the next; for a cluster, answered once applied at the leader), `operations`
/// writes in all, spawned on `runtime`. A write that fails is counted, not retried; the client
/// then moves to the endpoint `target` names (for a cluster, the new leader).
pub async fn closed_loop<T: WriteTarget>(
    target: T,
    runtime: &tokio::runtime::Handle,
    clients: u64,
    operations: u64,
    machine: MachineKind,
    value_size: usize,
) -> ClosedLoopRun {
    let clients = clients.max(1);
    let per_client = (operations / clients).max(1);
    let target = Arc::new(target);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let target = target.clone();
        tasks.push(runtime.spawn(async move {
            // Plain samples: a histogram per client (hundreds of KiB each) would miss the cache
            // on every record with a thousand clients and cost more than a write.
            let mut samples = Vec::with_capacity(per_client as usize);
            let mut errors = 0u64;
            let mut endpoint = target.endpoint().unwrap_or_else(|| target.fallback());
            let mut sent = Instant::now();
            for i in 0..per_client {
                let command = sized_command(machine, client * per_client + i, value_size);
                let written = T::write(&endpoint, command).await;
                let answered = Instant::now();
                // One clock read per write: the answer's time starts the next write (its latency
                // then counts the next command's construction too, well under a µs), except
                // after a wait for a leader.
                sent = if written {
                    samples.push(u32::try_from((answered - sent).as_micros()).unwrap_or(u32::MAX));
                    answered
                } else {
                    errors += 1;
                    // Wait out an election (bounded), then go to whoever leads.
                    for _ in 0..100 {
                        if let Some(next) = target.endpoint() {
                            endpoint = next;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Instant::now()
                };
            }
            (samples, errors)
        }));
    }
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut completed = 0;
    let mut errors = 0;
    for task in tasks {
        let (samples, failed) = task.await.expect("client task");
        completed += samples.len() as u64;
        errors += failed;
        for sample in samples {
            latency_us.saturating_record(u64::from(sample).max(1));
        }
    }
    ClosedLoopRun {
        operations: completed,
        errors,
        elapsed: started.elapsed(),
        latency_us,
    }
}

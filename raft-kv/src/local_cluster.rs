//! A cluster of `raft-kv serve` processes on this machine's loopback interface, in one
//! directory: certificates made on the spot, a config file per node, a log file per process.
//! The demo and the process tests run on it; every child is killed when it is dropped.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use raft_core::NodeId;
use raft_node::quic::ClusterCa;
use thiserror::Error;
use tokio::time::Instant;

use crate::api::{AddNodeRequest, NodeStatusReply};
use crate::client::{Client, ClientOptions};
use crate::config::{InitialMember, ServerConfig, StorageEngine, TlsFiles, Tuning};
use crate::tls::TlsMaterial;
use crate::udp_relay::UdpRelay;

/// Why a local cluster operation failed.
#[derive(Debug, Error)]
pub enum LocalClusterError {
    /// A file or a process could not be made.
    #[error("{0}")]
    Io(String),
    /// The cluster did not reach the state waited for.
    #[error("timed out: {0}")]
    Timeout(String),
}

fn io(what: &str, e: impl std::fmt::Display) -> LocalClusterError {
    LocalClusterError::Io(format!("{what}: {e}"))
}

/// One node's files and process.
#[derive(Debug)]
pub struct LocalNode {
    /// Its id.
    pub id: NodeId,
    /// Its peer (QUIC) address.
    pub peer: SocketAddr,
    /// Its client API address.
    pub client: SocketAddr,
    /// Its config file.
    pub config_path: PathBuf,
    /// Its process's output.
    pub log_path: PathBuf,
    child: Option<Child>,
}

/// A cluster of server processes.
pub struct LocalCluster {
    dir: PathBuf,
    binary: PathBuf,
    cluster_id: u64,
    ca: ClusterCa,
    client_tls: TlsMaterial,
    /// Tuning written into every node's config.
    pub tuning: Tuning,
    /// The storage engine written into every node's config.
    pub storage: StorageEngine,
    nodes: BTreeMap<NodeId, LocalNode>,
    /// A relay in front of each node's peer port, when [`add_relays`](Self::add_relays) was called.
    relays: BTreeMap<NodeId, UdpRelay>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A free loopback port for UDP and one for TCP (the OS picks them; they are free right after).
fn free_addrs() -> Result<(SocketAddr, SocketAddr), LocalClusterError> {
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| io("bind UDP", e))?;
    let tcp = TcpListener::bind("127.0.0.1:0").map_err(|e| io("bind TCP", e))?;
    let addrs = (
        udp.local_addr().map_err(|e| io("UDP address", e))?,
        tcp.local_addr().map_err(|e| io("TCP address", e))?,
    );
    Ok(addrs)
}

fn write(path: &Path, contents: &str) -> Result<(), LocalClusterError> {
    std::fs::write(path, contents).map_err(|e| io(&format!("write {}", path.display()), e))
}

impl LocalCluster {
    /// Prepares nodes `1..=size` in `dir` (created): a CA, node and client certificates, and a
    /// config file per node. Nothing runs yet.
    pub fn create(binary: &Path, dir: &Path, size: u64) -> Result<Self, LocalClusterError> {
        std::fs::create_dir_all(dir.join("certs")).map_err(|e| io("create the cluster directory", e))?;
        let ca = ClusterCa::generate("raft-kv-local").map_err(|e| io("make the CA", e))?;
        let certs = dir.join("certs");
        write(&certs.join("ca.pem"), &ca.cert_pem())?;
        let client = ca
            .issue_client("local")
            .map_err(|e| io("issue a client certificate", e))?;
        write(&certs.join("client-local.pem"), &client.cert_pem)?;
        write(&certs.join("client-local.key"), &client.key_pem)?;
        let client_tls = TlsMaterial::from_files(
            &certs.join("ca.pem"),
            &certs.join("client-local.pem"),
            &certs.join("client-local.key"),
        )
        .map_err(|e| io("read the client certificate", e))?;
        let mut cluster = LocalCluster {
            dir: dir.to_path_buf(),
            binary: binary.to_path_buf(),
            cluster_id: 0x6b76,
            ca,
            client_tls,
            tuning: Tuning::default(),
            storage: StorageEngine::default(),
            nodes: BTreeMap::new(),
            relays: BTreeMap::new(),
        };
        for id in 1..=size {
            cluster.prepare_node(id)?;
        }
        let members: Vec<InitialMember> = cluster
            .nodes
            .values()
            .map(|n| InitialMember {
                id: n.id,
                peer: n.peer,
                client: n.client,
            })
            .collect();
        for id in 1..=size {
            cluster.write_config(id, &members)?;
        }
        Ok(cluster)
    }

    /// Prepares one more node (certificates and addresses); [`write_config`](Self::write_config)
    /// then writes its config.
    pub fn prepare_node(&mut self, id: NodeId) -> Result<&LocalNode, LocalClusterError> {
        let certs = self.dir.join("certs");
        let cert = self
            .ca
            .issue_for_hosts(self.cluster_id, id, &["127.0.0.1".into(), "localhost".into()])
            .map_err(|e| io("issue a node certificate", e))?;
        write(&certs.join(format!("node-{id}.pem")), &cert.cert_pem)?;
        write(&certs.join(format!("node-{id}.key")), &cert.key_pem)?;
        let (peer, client) = free_addrs()?;
        let node = LocalNode {
            id,
            peer,
            client,
            config_path: self.dir.join(format!("node-{id}.toml")),
            log_path: self.dir.join(format!("node-{id}.log")),
            child: None,
        };
        self.nodes.insert(id, node);
        Ok(&self.nodes[&id])
    }

    /// Prepares node `id` as a newcomer and starts it with `--join`: it knows where the running
    /// members are and waits to be added. Returns the request that adds it.
    pub fn start_joining(&mut self, id: NodeId) -> Result<AddNodeRequest, LocalClusterError> {
        let members = self.members();
        self.prepare_node(id)?;
        self.write_config(id, &members)?;
        self.start(id, &["--join"])?;
        let node = self.node(id)?;
        Ok(AddNodeRequest {
            id,
            peer: self.relays.get(&id).map_or(node.peer, UdpRelay::addr),
            client: node.client,
        })
    }

    /// The config of node `id` with these initial members.
    pub fn config_of(
        &self,
        id: NodeId,
        members: &[InitialMember],
    ) -> Result<ServerConfig, LocalClusterError> {
        let node = self.node(id)?;
        let certs = self.dir.join("certs");
        Ok(ServerConfig {
            node_id: id,
            cluster_id: self.cluster_id,
            data_dir: self.dir.join(format!("data-{id}")),
            storage: self.storage,
            peer_listen: node.peer,
            client_listen: node.client,
            tls: TlsFiles {
                ca_cert: certs.join("ca.pem"),
                cert: certs.join(format!("node-{id}.pem")),
                key: certs.join(format!("node-{id}.key")),
            },
            insecure: false,
            initial_members: members.to_vec(),
            tuning: self.tuning.clone(),
        })
    }

    /// Writes node `id`'s config file.
    pub fn write_config(&self, id: NodeId, members: &[InitialMember]) -> Result<(), LocalClusterError> {
        let config = self.config_of(id, members)?;
        let text = toml::to_string_pretty(&config).map_err(|e| io("encode a config", e))?;
        write(&self.node(id)?.config_path, &text)
    }

    /// The members as `initial_members` lists them (with relays, the relays' addresses).
    pub fn members(&self) -> Vec<InitialMember> {
        self.nodes
            .values()
            .map(|n| InitialMember {
                id: n.id,
                peer: self.relays.get(&n.id).map_or(n.peer, UdpRelay::addr),
                client: n.client,
            })
            .collect()
    }

    /// Puts a [`UdpRelay`] in front of every node's peer port and rewrites the configs so that
    /// the nodes reach each other through them; then [`isolate`](Self::isolate) and
    /// [`heal`](Self::heal) cut and restore Raft traffic. Call it before the first start.
    pub async fn add_relays(&mut self) -> Result<(), LocalClusterError> {
        for node in self.nodes.values() {
            let relay = UdpRelay::start(node.peer)
                .await
                .map_err(|e| io("start a relay", e))?;
            self.relays.insert(node.id, relay);
        }
        let members = self.members();
        for id in self.ids() {
            self.write_config(id, &members)?;
        }
        Ok(())
    }

    /// Cuts node `id`'s Raft traffic to and from every other node (its client API still works).
    pub fn isolate(&self, id: NodeId) -> Result<(), LocalClusterError> {
        let node = self.node(id)?;
        let own = self
            .relays
            .get(&id)
            .ok_or_else(|| LocalClusterError::Io("no relays: call add_relays first".into()))?;
        own.block_all(true);
        for (other, relay) in &self.relays {
            if *other != id {
                relay.block_source(node.peer);
            }
        }
        Ok(())
    }

    /// Restores all Raft traffic.
    pub fn heal(&self) {
        for relay in self.relays.values() {
            relay.heal();
        }
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> Result<&LocalNode, LocalClusterError> {
        self.nodes
            .get(&id)
            .ok_or_else(|| LocalClusterError::Io(format!("no node {id}")))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The nodes' ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The client certificate's TLS material.
    pub fn client_tls(&self) -> &TlsMaterial {
        &self.client_tls
    }

    /// Starts node `id`'s process (`extra` flags after `serve --config FILE`).
    pub fn start(&mut self, id: NodeId, extra: &[&str]) -> Result<(), LocalClusterError> {
        let binary = self.binary.clone();
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| LocalClusterError::Io(format!("no node {id}")))?;
        if node.child.is_some() {
            return Err(LocalClusterError::Io(format!("node {id} is already running")));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| io("open a log file", e))?;
        let log_err = log.try_clone().map_err(|e| io("open a log file", e))?;
        let child = Command::new(&binary)
            .arg("serve")
            .arg("--config")
            .arg(&node.config_path)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| io(&format!("spawn {}", binary.display()), e))?;
        node.child = Some(child);
        Ok(())
    }

    fn signal(&self, id: NodeId, signal: Signal) -> Result<(), LocalClusterError> {
        let child = self
            .node(id)?
            .child
            .as_ref()
            .ok_or_else(|| LocalClusterError::Io(format!("node {id} is not running")))?;
        let pid = i32::try_from(child.id()).map_err(|e| io("pid", e))?;
        kill(Pid::from_raw(pid), signal).map_err(|e| io(&format!("signal node {id}"), e))
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: NodeId) -> Result<(), LocalClusterError> {
        self.signal(id, Signal::SIGKILL)?;
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGSTOPs node `id` (it stays paused until [`resume`](Self::resume)).
    pub fn pause(&self, id: NodeId) -> Result<(), LocalClusterError> {
        self.signal(id, Signal::SIGSTOP)
    }

    /// SIGCONTs a paused node.
    pub fn resume(&self, id: NodeId) -> Result<(), LocalClusterError> {
        self.signal(id, Signal::SIGCONT)
    }

    /// SIGTERMs node `id` and waits (at most `timeout`) for it to exit; returns its exit status.
    pub async fn stop(&mut self, id: NodeId, timeout: Duration) -> Result<ExitStatus, LocalClusterError> {
        self.signal(id, Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            let node = self
                .nodes
                .get_mut(&id)
                .ok_or_else(|| LocalClusterError::Io(format!("no node {id}")))?;
            let Some(child) = node.child.as_mut() else {
                return Err(LocalClusterError::Io(format!("node {id} is not running")));
            };
            if let Some(status) = child.try_wait().map_err(|e| io("wait", e))? {
                node.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(LocalClusterError::Timeout(format!(
                    "node {id} did not exit after SIGTERM"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether node `id`'s process runs (and has not exited).
    pub fn is_running(&mut self, id: NodeId) -> bool {
        match self.nodes.get_mut(&id).and_then(|n| n.child.as_mut()) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A client of the given nodes (all when empty).
    pub fn client(&self, ids: &[NodeId], options: ClientOptions) -> Result<Client, LocalClusterError> {
        let endpoints: Vec<SocketAddr> = self
            .nodes
            .values()
            .filter(|n| ids.is_empty() || ids.contains(&n.id))
            .map(|n| n.client)
            .collect();
        Client::new(endpoints, Some(&self.client_tls), options).map_err(|e| io("make a client", e))
    }

    /// Node `id`'s status, if it answers.
    pub async fn status(&self, id: NodeId) -> Option<NodeStatusReply> {
        let node = self.nodes.get(&id)?;
        let options = ClientOptions {
            deadline: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            ..ClientOptions::default()
        };
        let mut client = Client::new(vec![node.client], Some(&self.client_tls), options).ok()?;
        client.status_of(node.client).await.ok()
    }

    /// Waits until one of `among` leads in a term that a majority of `among` agrees on.
    pub async fn wait_for_leader(
        &self,
        among: &[NodeId],
        timeout: Duration,
    ) -> Result<NodeId, LocalClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut views = BTreeMap::new();
            for &id in among {
                if let Some(status) = self.status(id).await {
                    if let Some(leader) = status.leader {
                        *views.entry((leader, status.term)).or_insert(0usize) += 1;
                    }
                }
            }
            let found = views
                .into_iter()
                .find(|((leader, _), votes)| among.contains(leader) && *votes > among.len() / 2);
            if let Some(((leader, _), _)) = found {
                if self.status(leader).await.is_some_and(|s| s.role == "leader") {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                return Err(LocalClusterError::Timeout(format!("no leader among {among:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied `index`.
    pub async fn wait_for_applied(
        &self,
        id: NodeId,
        index: u64,
        timeout: Duration,
    ) -> Result<(), LocalClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status(id).await.is_some_and(|s| s.applied_index >= index) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LocalClusterError::Timeout(format!(
                    "node {id} did not apply index {index}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How many of a node's last log lines a failing test prints.
const LOG_TAIL_LINES: usize = 60;

impl LocalCluster {
    /// Prints the last lines of every node's log to stderr: a failing test's cluster lives in a
    /// temporary directory that goes away with it, and the logs are what says why it failed.
    fn print_log_tails(&self) {
        for node in self.nodes.values() {
            let Ok(log) = std::fs::read_to_string(&node.log_path) else {
                continue;
            };
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "---- node {} log, last {} of {} lines ({}) ----",
                node.id,
                tail.len(),
                lines.len(),
                node.log_path.display()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // A paused child must run again to die of anything but SIGKILL; SIGKILL it.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            self.print_log_tails();
        }
    }
}

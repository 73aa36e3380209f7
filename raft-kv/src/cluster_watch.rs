//! Watches a running cluster and records its timeline: each node's role, term and commit index
//! as it reports them, plus the faults the caller marks. The nodes are asked over their client
//! API (`/v1/status`: `raft-kv demo --timeline out.svg`) or, for an in-process [`MemCluster`],
//! directly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use raft_core::NodeId;
use raft_timeline::{Event, Fault, Role, Timeline};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Client, ClientOptions};
use crate::cluster::MemCluster;
use crate::tls::TlsMaterial;

/// How often the nodes are asked for their status.
const POLL: Duration = Duration::from_millis(25);

/// What one node says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The node.
    pub node: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: u64,
    /// Its commit index.
    pub commit: u64,
}

/// Where a watch learns the nodes' state from. A node that does not answer is left out.
#[async_trait]
pub trait StatusSource: Send + 'static {
    /// Every node that answers, now.
    async fn observe(&mut self) -> Vec<Observation>;
}

/// Asks each node's client API for `/v1/status`.
pub struct ClientApi {
    clients: Vec<(SocketAddr, Client)>,
}

impl ClientApi {
    /// Asks the nodes at `endpoints` (client API addresses), over TLS with `tls` (or plain HTTP
    /// with `None`).
    pub fn new(
        endpoints: &[SocketAddr],
        tls: Option<&TlsMaterial>,
    ) -> Result<Self, crate::client::ClientError> {
        let options = ClientOptions {
            deadline: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
            ..ClientOptions::default()
        };
        let mut clients = Vec::new();
        for endpoint in endpoints {
            clients.push((*endpoint, Client::new(vec![*endpoint], tls, options.clone())?));
        }
        Ok(ClientApi { clients })
    }
}

#[async_trait]
impl StatusSource for ClientApi {
    async fn observe(&mut self) -> Vec<Observation> {
        let mut seen = Vec::new();
        for (endpoint, client) in &mut self.clients {
            if let Ok(status) = client.status_of(*endpoint).await {
                let role = match status.role.as_str() {
                    "leader" => Role::Leader,
                    "candidate" => Role::Candidate,
                    "pre_candidate" => Role::PreCandidate,
                    _ => Role::Follower,
                };
                seen.push(Observation {
                    node: status.id,
                    role,
                    term: status.term,
                    commit: status.commit_index,
                });
            }
        }
        seen
    }
}

#[async_trait]
impl StatusSource for Arc<MemCluster> {
    async fn observe(&mut self) -> Vec<Observation> {
        self.running()
            .iter()
            .map(|node| {
                let raft = node.status().raft;
                let role = match raft.role {
                    raft_core::Role::Leader => Role::Leader,
                    raft_core::Role::Candidate => Role::Candidate,
                    raft_core::Role::PreCandidate => Role::PreCandidate,
                    raft_core::Role::Follower => Role::Follower,
                };
                Observation {
                    node: raft.id,
                    role,
                    term: raft.term,
                    commit: raft.commit_index,
                }
            })
            .collect()
    }
}

/// A cluster being watched; [`ClusterWatch::finish`] returns what was seen.
pub struct ClusterWatch {
    timeline: Arc<Mutex<Timeline>>,
    started: Instant,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ClusterWatch {
    /// Starts asking `source` for the nodes' state every 25 ms. Times are milliseconds from now.
    pub fn start(title: impl Into<String>, mut source: impl StatusSource) -> Self {
        let timeline = Arc::new(Mutex::new(Timeline::new(title, "ms")));
        let started = Instant::now();
        let (stop, mut stopped) = watch::channel(false);
        let shared = timeline.clone();
        let task = tokio::spawn(async move {
            let mut last: std::collections::BTreeMap<NodeId, Observation> = Default::default();
            let mut ticker = tokio::time::interval(POLL);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return,
                }
                let seen = source.observe().await;
                let at = started.elapsed().as_secs_f64() * 1000.0;
                let mut timeline = shared.lock().unwrap_or_else(|e| e.into_inner());
                for now in seen {
                    let before = last.insert(now.node, now);
                    if before.is_none_or(|b| (b.role, b.term) != (now.role, now.term)) {
                        let event = Event::Role {
                            role: now.role,
                            term: now.term,
                        };
                        timeline.push(at, Some(now.node), event);
                    }
                    if before.is_none_or(|b| b.commit != now.commit) {
                        timeline.push(at, Some(now.node), Event::Commit { index: now.commit });
                    }
                }
            }
        });
        ClusterWatch {
            timeline,
            started,
            stop,
            task,
        }
    }

    /// A handle that marks faults on this watch's timeline from another task.
    pub fn marker(&self) -> FaultMarker {
        FaultMarker {
            timeline: self.timeline.clone(),
            started: self.started,
        }
    }

    /// Marks a fault (or an operator's action) on `node`, or on the whole cluster, now.
    pub fn mark(&self, node: Option<NodeId>, fault: Fault, detail: impl Into<String>) {
        self.marker().mark(node, fault, detail);
    }

    /// Stops watching and returns the timeline, in time order.
    pub async fn finish(self) -> Timeline {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let mut timeline = self.timeline.lock().unwrap_or_else(|e| e.into_inner()).clone();
        timeline.records.sort_by(|a, b| a.time.total_cmp(&b.time));
        timeline
    }
}

/// Marks faults on a [`ClusterWatch`]'s timeline (it can be cloned into the task that injects
/// them).
#[derive(Clone)]
pub struct FaultMarker {
    timeline: Arc<Mutex<Timeline>>,
    started: Instant,
}

impl FaultMarker {
    /// Marks a new configuration of the cluster, now.
    pub fn membership(&self, voters: Vec<NodeId>, learners: Vec<NodeId>) {
        let at = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut timeline = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
        timeline.push(at, None, Event::Membership { voters, learners });
    }

    /// Marks a fault on `node`, or on the whole cluster, now.
    pub fn mark(&self, node: Option<NodeId>, fault: Fault, detail: impl Into<String>) {
        let at = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut timeline = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event::Fault {
            fault,
            detail: detail.into(),
        };
        timeline.push(at, node, event);
    }
}

//! Watches a running cluster through its nodes' `/v1/status` and records its timeline: role and
//! term changes and commit indexes as the nodes report them, plus the faults the caller marks
//! (`raft-kv demo --timeline out.svg`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_core::NodeId;
use raft_timeline::{Event, Fault, Role, Timeline};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Client, ClientOptions};
use crate::tls::TlsMaterial;

/// How often each node is asked for its status.
const POLL: Duration = Duration::from_millis(25);

/// A cluster being watched; [`ClusterWatch::finish`] returns what was seen.
pub struct ClusterWatch {
    timeline: Arc<Mutex<Timeline>>,
    started: Instant,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ClusterWatch {
    /// Starts polling the nodes at `endpoints` (client API addresses), over TLS with `tls` (or
    /// plain HTTP with `None`). Times are milliseconds from now.
    pub fn start(
        title: impl Into<String>,
        endpoints: Vec<(NodeId, SocketAddr)>,
        tls: Option<&TlsMaterial>,
    ) -> Result<Self, crate::client::ClientError> {
        let options = ClientOptions {
            deadline: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
        };
        let mut clients = Vec::new();
        for (id, endpoint) in endpoints {
            clients.push((id, endpoint, Client::new(vec![endpoint], tls, options.clone())?));
        }
        let timeline = Arc::new(Mutex::new(Timeline::new(title, "ms")));
        let started = Instant::now();
        let (stop, mut stopped) = watch::channel(false);
        let shared = timeline.clone();
        let task = tokio::spawn(async move {
            let mut seen: Vec<Option<(String, u64, u64)>> = vec![None; clients.len()];
            let mut ticker = tokio::time::interval(POLL);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return,
                }
                for ((id, endpoint, client), last) in clients.iter_mut().zip(seen.iter_mut()) {
                    let Ok(status) = client.status_of(*endpoint).await else {
                        continue;
                    };
                    let at = started.elapsed().as_secs_f64() * 1000.0;
                    let mut timeline = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let role_changed = last
                        .as_ref()
                        .is_none_or(|(role, term, _)| *role != status.role || *term != status.term);
                    if role_changed {
                        let role = match status.role.as_str() {
                            "leader" => Role::Leader,
                            "candidate" => Role::Candidate,
                            "pre_candidate" => Role::PreCandidate,
                            _ => Role::Follower,
                        };
                        timeline.push(
                            at,
                            Some(*id),
                            Event::Role {
                                role,
                                term: status.term,
                            },
                        );
                    }
                    if last
                        .as_ref()
                        .is_none_or(|(_, _, commit)| *commit != status.commit_index)
                    {
                        timeline.push(
                            at,
                            Some(*id),
                            Event::Commit {
                                index: status.commit_index,
                            },
                        );
                    }
                    *last = Some((status.role, status.term, status.commit_index));
                }
            }
        });
        Ok(ClusterWatch {
            timeline,
            started,
            stop,
            task,
        })
    }

    /// Marks a fault (or an operator's action) on `node`, or on the whole cluster, now.
    pub fn mark(&self, node: Option<NodeId>, fault: Fault, detail: impl Into<String>) {
        let at = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut timeline = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
        timeline.push(
            at,
            node,
            Event::Fault {
                fault,
                detail: detail.into(),
            },
        );
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

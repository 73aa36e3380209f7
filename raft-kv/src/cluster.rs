//! [`MemCluster`]: a whole cluster in one process, on the in-memory backends.
//!
//! It is what the scenario tests, the demo and the benchmarks run on: every node has a
//! [`MemStorage`] that outlives it (so a node can be killed and restarted from what it persisted),
//! a [`KvStateMachine`], and a link to one shared [`MemNetwork`] whose faults the caller controls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{Entry, HardState, Membership, MembershipChangeError, MembershipError, NodeId, Role};
use raft_net_mem::MemNetwork;
use raft_storage_mem::MemStorage;
use thiserror::Error;
use tokio::time::Instant;

use raft_node::{
    ChangeMembershipError, NodeConfig, NodeDirectory, ProposeError, RaftNode, ReadConsistency, ReadError,
    SessionLimits, Sessions, StartError,
};

use crate::kv::{KvCommand, KvReply, KvResponse, KvStateMachine};

/// Settings of a [`MemCluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Seed of the network's faults; each node's election seed is derived from it.
    pub seed: u64,
    /// Applied to each node's default [`NodeConfig`].
    pub tick_interval: Duration,
    /// How long [`MemCluster::propose`] keeps retrying.
    pub propose_timeout: Duration,
    /// Applied to each node's protocol settings.
    pub configure: fn(&mut raft_core::Config),
    /// The limits client sessions start with on every node (see [`Sessions`]); they change
    /// through the log.
    pub session_limits: SessionLimits,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            seed: 1,
            tick_interval: Duration::from_millis(10),
            propose_timeout: Duration::from_secs(10),
            configure: |_| {},
            session_limits: SessionLimits {
                expire_after_entries: 100_000,
                ..SessionLimits::default()
            },
        }
    }
}

/// Why a cluster operation failed.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// A node did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The membership is invalid.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// No leader emerged in time.
    #[error("no leader within {0:?}")]
    NoLeader(Duration),
    /// The proposal failed for good or timed out.
    #[error("proposal failed: {0}")]
    Propose(#[from] ProposeError),
    /// The node id is not part of the cluster, or is not running.
    #[error("node {0} is not running")]
    NotRunning(NodeId),
    /// The reply could not be decoded.
    #[error(transparent)]
    Decode(#[from] crate::kv::DecodeError),
    /// The read failed for good or timed out.
    #[error("read failed: {0}")]
    Read(#[from] ReadError),
    /// A membership change failed.
    #[error("membership change failed: {0}")]
    MembershipChange(#[from] ChangeMembershipError),
    /// The state machine answered something other than what was asked.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
}

struct Member {
    /// The configuration it starts with: the bootstrap one, or empty for a node added later.
    initial: Membership,
    storage: MemStorage,
    state_machine: KvStateMachine,
    node: Option<Arc<RaftNode>>,
}

/// A cluster of [`RaftNode`]s over in-memory storage and network. All methods take `&self`, so
/// clients and a fault injector can share one cluster (in an `Arc`) while it runs.
///
/// ```
/// use raft_kv::{ClusterOptions, KvCommand, MemCluster};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cluster = MemCluster::start(3, ClusterOptions::default()).await?;
/// let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
/// cluster.kv(KvCommand::Put { key: "a".into(), value: "1".into() }).await?;
/// println!("leader is node {leader}");
/// cluster.shutdown().await;
/// # Ok::<(), raft_kv::ClusterError>(())
/// # }).unwrap();
/// ```
pub struct MemCluster {
    network: MemNetwork,
    options: ClusterOptions,
    members: Mutex<BTreeMap<NodeId, Member>>,
}

impl MemCluster {
    /// Starts nodes `1..=size` with empty storage.
    pub async fn start(size: u64, options: ClusterOptions) -> Result<Self, ClusterError> {
        let storages = (1..=size).map(|id| (id, MemStorage::new())).collect();
        Self::start_with_storage(storages, options).await
    }

    /// Starts one node per given storage (which may hold a log already, to set up a scenario).
    pub async fn start_with_storage(
        storages: BTreeMap<NodeId, MemStorage>,
        options: ClusterOptions,
    ) -> Result<Self, ClusterError> {
        let membership = Membership::voters(storages.keys().copied())?;
        let ids: Vec<NodeId> = storages.keys().copied().collect();
        let members = storages
            .into_iter()
            .map(|(id, storage)| {
                let member = Member {
                    initial: membership.clone(),
                    storage,
                    state_machine: KvStateMachine::new(),
                    node: None,
                };
                (id, member)
            })
            .collect();
        let cluster = MemCluster {
            network: MemNetwork::new(options.seed),
            options,
            members: Mutex::new(members),
        };
        for id in ids {
            cluster.restart(id).await?;
        }
        Ok(cluster)
    }

    /// A storage that already holds `entries` and `hard_state`, for [`start_with_storage`](Self::start_with_storage).
    pub fn storage_with(hard_state: HardState, entries: Vec<Entry>) -> MemStorage {
        MemStorage::with_state(hard_state, entries)
    }

    fn members(&self) -> MutexGuard<'_, BTreeMap<NodeId, Member>> {
        // Every update under the lock is a single assignment; a poisoned lock holds valid data.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node_config(&self, id: NodeId) -> NodeConfig {
        let mut config = NodeConfig::new(id)
            .with_tick_interval(self.options.tick_interval)
            .with_propose_timeout(self.options.propose_timeout);
        config.core.seed = self.options.seed.wrapping_mul(0x9E37_79B9).wrapping_add(id);
        (self.options.configure)(&mut config.core);
        config
    }

    /// The shared network, to inject faults.
    pub fn network(&self) -> &MemNetwork {
        &self.network
    }

    /// The ids of all members, running or not.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members().keys().copied().collect()
    }

    /// The running node `id`.
    pub fn node(&self, id: NodeId) -> Option<Arc<RaftNode>> {
        self.members().get(&id).and_then(|m| m.node.clone())
    }

    /// The running nodes.
    pub fn running(&self) -> Vec<Arc<RaftNode>> {
        self.members().values().filter_map(|m| m.node.clone()).collect()
    }

    /// Node `id`'s storage (it survives the node).
    pub fn storage(&self, id: NodeId) -> Option<MemStorage> {
        self.members().get(&id).map(|m| m.storage.clone())
    }

    /// Node `id`'s replica of the key-value data.
    pub fn replica(&self, id: NodeId) -> Option<BTreeMap<String, String>> {
        self.members().get(&id).map(|m| m.state_machine.contents())
    }

    /// Stops node `id` at once, as a crash: it stops sending and receiving.
    pub fn kill(&self, id: NodeId) {
        let node = self.members().get_mut(&id).and_then(|m| m.node.take());
        if let Some(node) = node {
            node.abort();
        }
        self.network.unregister(id);
    }

    /// Starts node `id` again from its storage, with a fresh state machine that is restored from
    /// the latest snapshot and replays the log after it.
    pub async fn restart(&self, id: NodeId) -> Result<(), ClusterError> {
        self.kill(id);
        let config = self.node_config(id);
        let state_machine = KvStateMachine::new();
        let (storage, membership) = {
            let mut members = self.members();
            let member = members.get_mut(&id).ok_or(ClusterError::NotRunning(id))?;
            member.state_machine = state_machine.clone();
            (member.storage.clone(), member.initial.clone())
        };
        let (transport, inbox) = self.network.register(id);
        let state_machine = Sessions::with_limits(state_machine, self.options.session_limits);
        let node = RaftNode::start(config, membership, storage, transport, inbox, state_machine).await?;
        if let Some(member) = self.members().get_mut(&id) {
            member.node = Some(Arc::new(node));
        }
        Ok(())
    }

    /// Starts a new node `id` with empty storage and no configuration: it takes part once a
    /// membership change adds it (see [`change_membership`](Self::change_membership)).
    pub async fn add_node(&self, id: NodeId) -> Result<(), ClusterError> {
        let member = Member {
            initial: Membership::default(),
            storage: MemStorage::new(),
            state_machine: KvStateMachine::new(),
            node: None,
        };
        self.members().insert(id, member);
        self.restart(id).await
    }

    /// Removes node `id` from the cluster object (after a membership change removed it).
    pub fn remove_node(&self, id: NodeId) {
        self.kill(id);
        self.members().remove(&id);
    }

    /// Changes the configuration through the current leader, retrying while the leader changes.
    /// A node that is to become a voter but is behind is first added as a learner; it is promoted
    /// once it has caught up (Raft thesis §4.2.1).
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.options.propose_timeout;
        loop {
            let leader = self.wait_for_leader(self.options.propose_timeout).await?;
            let node = self.node(leader).ok_or(ClusterError::NotRunning(leader))?;
            let retry = match node.change_membership(voters.clone(), learners.clone()).await {
                Ok(()) => return Ok(()),
                Err(ChangeMembershipError::Dropped)
                | Err(ChangeMembershipError::Refused(MembershipChangeError::NotLeader { .. }))
                | Err(ChangeMembershipError::Refused(MembershipChangeError::LeaderNotReady))
                | Err(ChangeMembershipError::Refused(MembershipChangeError::ChangeInProgress))
                | Err(ChangeMembershipError::Refused(MembershipChangeError::TransferInProgress)) => true,
                Err(ChangeMembershipError::Refused(MembershipChangeError::NotCaughtUp {
                    node: behind,
                    ..
                })) => {
                    let current = node.status().membership;
                    if !current.is_joint() && !current.contains(behind) {
                        let mut staged = current.learners.clone();
                        staged.insert(behind);
                        // A refusal here is retried by the loop, as is the promotion itself.
                        let _ = node.change_membership(current.voters.clone(), staged).await;
                    }
                    true
                }
                // The leader removed itself and stepped down; the change is in force elsewhere.
                Err(ChangeMembershipError::Timeout) | Err(ChangeMembershipError::Stopped) => true,
                Err(error) => return Err(error.into()),
            };
            if self.configuration_in_force(&voters, &learners) {
                return Ok(());
            }
            if !retry || Instant::now() >= deadline {
                return Err(ClusterError::MembershipChange(ChangeMembershipError::Timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the stable leader has this configuration in force.
    fn configuration_in_force(&self, voters: &BTreeSet<NodeId>, learners: &BTreeSet<NodeId>) -> bool {
        self.stable_leader()
            .and_then(|id| self.node(id))
            .is_some_and(|n| {
                let m = n.status().membership;
                m.voters == *voters && m.learners == *learners && !m.is_joint()
            })
    }

    /// The leaders among running nodes, as (id, term).
    pub fn leaders(&self) -> Vec<(NodeId, u64)> {
        self.running()
            .iter()
            .map(|n| n.status().raft)
            .filter(|s| s.role == Role::Leader)
            .map(|s| (s.id, s.term))
            .collect()
    }

    /// Waits until one running node leads in the highest term any running node has seen, and a
    /// majority of the running nodes follow it in that term.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.stable_leader() {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NoLeader(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stable_leader(&self) -> Option<NodeId> {
        let statuses: Vec<_> = self.running().iter().map(|n| n.status().raft).collect();
        let max_term = statuses.iter().map(|s| s.term).max()?;
        let leader = statuses
            .iter()
            .find(|s| s.role == Role::Leader && s.term == max_term)?
            .id;
        let followers = statuses
            .iter()
            .filter(|s| s.term == max_term && s.leader == Some(leader))
            .count();
        (followers > self.members().len() / 2).then_some(leader)
    }

    /// Proposes `command` to the leader, following leader hints and retrying until it is applied
    /// or the cluster's propose timeout passes. A retry after a timeout may apply the command
    /// twice; exactly-once needs client sessions.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, ClusterError> {
        let deadline = Instant::now() + self.options.propose_timeout;
        let mut target = self.stable_leader().or_else(|| self.ids().first().copied());
        loop {
            let node = target.and_then(|id| self.node(id));
            let attempt = match node {
                Some(node) => node.propose(command.clone()).await,
                None => Err(not_leader(None)),
            };
            let hint = match attempt {
                Ok(reply) => return Ok(reply),
                // Nothing was proposed (not the leader, busy, transferring): retry after a pause,
                // on the new leader if known. Too large is final.
                Err(error @ ProposeError::Refused(raft_core::ProposeError::EntryTooLarge { .. })) => {
                    return Err(error.into())
                }
                Err(error @ ProposeError::Refused(_)) => error.leader_hint(),
                // Another leader's entry took its place: certainly not applied, so retry.
                Err(ProposeError::Dropped) => None,
                Err(error) => return Err(error.into()),
            };
            if Instant::now() >= deadline {
                return Err(not_leader(hint).into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            target = hint
                .filter(|id| self.node(*id).is_some())
                .or_else(|| self.stable_leader());
        }
    }

    /// Runs a key-value command through [`propose`](Self::propose).
    pub async fn kv(&self, command: KvCommand) -> Result<KvResponse, ClusterError> {
        let reply = self.propose(command.encode()).await?;
        Ok(KvReply::response_of(&reply)?)
    }

    /// Reads `key` at the given consistency level through [`RaftNode::read`], retrying on another
    /// node while no leader can confirm the read, until the cluster's propose timeout.
    pub async fn get(&self, key: &str, consistency: ReadConsistency) -> Result<Option<String>, ClusterError> {
        let query = KvCommand::Get { key: key.to_string() }.encode();
        let deadline = Instant::now() + self.options.propose_timeout;
        let mut target = self.stable_leader().or_else(|| self.ids().first().copied());
        loop {
            let node = target.and_then(|id| self.node(id));
            let attempt = match node {
                Some(node) => node.read(query.clone(), consistency).await,
                None => Err(raft_core::ReadError::NotLeader { leader_hint: None }.into()),
            };
            let hint = match attempt {
                Ok(reply) => match KvReply::response_of(&reply)? {
                    KvResponse::Value(value) => return Ok(value),
                    other => return Err(ClusterError::UnexpectedReply(format!("{other:?}"))),
                },
                Err(error @ ReadError::Refused(_)) => error.leader_hint(),
                Err(error) => return Err(error.into()),
            };
            if Instant::now() >= deadline {
                let error = ReadError::from(raft_core::ReadError::NotLeader { leader_hint: hint });
                return Err(error.into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            target = hint
                .filter(|id| self.node(*id).is_some())
                .or_else(|| self.stable_leader());
        }
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_for_applied(&self, index: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .running()
                .iter()
                .all(|n| n.status().raft.applied_index >= index)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every node gracefully.
    pub async fn shutdown(self) {
        let nodes: Vec<Arc<RaftNode>> = self
            .members()
            .values_mut()
            .filter_map(|m| m.node.take())
            .collect();
        for node in nodes {
            node.shutdown().await;
        }
    }
}

impl NodeDirectory for MemCluster {
    fn node_ids(&self) -> Vec<NodeId> {
        self.ids()
    }

    fn node(&self, id: NodeId) -> Option<Arc<RaftNode>> {
        MemCluster::node(self, id)
    }
}

/// The refusal of a proposal sent to no leader.
fn not_leader(leader_hint: Option<NodeId>) -> ProposeError {
    raft_core::ProposeError::NotLeader { leader_hint }.into()
}

//! Disks that fail: every node's storage is wrapped in a `FaultyStorage`, whose writes and reads
//! fail on command. A node whose disk fails stops, acknowledges nothing it did not write, and
//! says why; the others carry on with every acknowledged write.

use std::collections::BTreeMap;
use std::time::Duration;

use raft_core::{Membership, Role};
use raft_kv::{KvCommand, KvReply, KvResponse, KvStateMachine};
use raft_net_mem::MemNetwork;
use raft_node::{NodeConfig, ProposeError, RaftNode, ReadConsistency, RunState, StartError};
use raft_storage_mem::{FaultyStorage, MemStorage, StorageFaults, WriteFault};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Cluster {
    network: MemNetwork,
    nodes: BTreeMap<u64, RaftNode>,
    faults: BTreeMap<u64, StorageFaults>,
    stores: BTreeMap<u64, MemStorage>,
}

fn config(id: u64) -> NodeConfig {
    let mut config = NodeConfig::new(id);
    config.core = config.core.with_seed(id * 131);
    config.propose_timeout = Duration::from_secs(2);
    config
}

async fn start_node(
    network: &MemNetwork,
    id: u64,
    storage: MemStorage,
) -> Result<(RaftNode, StorageFaults), StartError> {
    let (storage, faults) = FaultyStorage::new(storage);
    let (transport, inbox) = network.register(id);
    let node = RaftNode::start(
        config(id),
        Membership::voters([1, 2, 3]).expect("membership"),
        storage,
        transport,
        inbox,
        KvStateMachine::new(),
    )
    .await?;
    Ok((node, faults))
}

impl Cluster {
    async fn start() -> Self {
        let network = MemNetwork::new(41);
        let mut cluster = Cluster {
            network,
            nodes: BTreeMap::new(),
            faults: BTreeMap::new(),
            stores: BTreeMap::new(),
        };
        for id in 1..=3 {
            let store = MemStorage::new();
            let (node, faults) = start_node(&cluster.network, id, store.clone())
                .await
                .expect("start");
            cluster.nodes.insert(id, node);
            cluster.faults.insert(id, faults);
            cluster.stores.insert(id, store);
        }
        cluster
    }

    async fn leader_among(&self, ids: &[u64]) -> u64 {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            for id in ids {
                let status = self.nodes[id].status();
                if status.raft.role == Role::Leader && status.state == RunState::Running {
                    return *id;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader among {ids:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_failed(&self, id: u64) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let RunState::Failed(why) = self.nodes[&id].status().state {
                return why;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {id} did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn put(key: &str, value: &str) -> bytes::Bytes {
    KvCommand::Put {
        key: key.into(),
        value: value.into(),
    }
    .encode()
}

async fn get(node: &RaftNode, key: &str) -> Option<String> {
    let reply = node
        .read(
            KvCommand::Get { key: key.into() }.encode(),
            ReadConsistency::Linearizable,
        )
        .await
        .expect("read");
    match KvReply::response_of(&reply).expect("reply") {
        KvResponse::Value(value) => value,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_fills_up_stops_and_the_others_keep_every_acknowledged_write() {
    for fault in [
        WriteFault::DiskFull,
        WriteFault::Io,
        WriteFault::SyncFailsAfterWrite,
    ] {
        let cluster = Cluster::start().await;
        let leader = cluster.leader_among(&[1, 2, 3]).await;
        for i in 0..10 {
            cluster.nodes[&leader]
                .propose(put(&format!("k{i}"), "v"))
                .await
                .expect("acknowledged");
        }
        cluster.faults[&leader].fail_writes(fault);
        let refused = cluster.nodes[&leader].propose(put("lost", "v")).await;
        assert!(
            matches!(refused, Err(ProposeError::Stopped | ProposeError::Timeout)),
            "{fault:?}: a write the leader could not make durable was acknowledged: {refused:?}"
        );
        let why = cluster.wait_failed(leader).await;
        assert!(
            why.contains("storage failed") && why.contains("injected"),
            "{fault:?}: {why}"
        );
        assert!(cluster.faults[&leader].writes_failed() >= 1);
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
        let next = cluster.leader_among(&others).await;
        for i in 0..10 {
            assert_eq!(
                get(&cluster.nodes[&next], &format!("k{i}")).await.as_deref(),
                Some("v"),
                "{fault:?}: acknowledged write k{i} lost"
            );
        }
        cluster.nodes[&next]
            .propose(put("after", "v"))
            .await
            .expect("the others go on");
        for node in cluster.nodes.into_values() {
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_sync_fails_does_not_acknowledge_the_entries_so_they_do_not_commit() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader_among(&[1, 2, 3]).await;
    cluster.nodes[&leader]
        .propose(put("before", "v"))
        .await
        .expect("acknowledged");
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let (failing, away) = (followers[0], followers[1]);
    // With one follower away, the leader's only way to a quorum is the follower whose fsync fails
    // after the bytes went in: it must not answer that it stored them.
    cluster.network.isolate(away);
    cluster.faults[&failing].fail_writes(WriteFault::SyncFailsAfterWrite);
    let outcome = cluster.nodes[&leader].propose(put("unsynced", "v")).await;
    assert!(
        matches!(outcome, Err(ProposeError::Timeout)),
        "an entry only a failed fsync holds must not commit: {outcome:?}"
    );
    let why = cluster.wait_failed(failing).await;
    assert!(why.contains("fsync"), "{why}");
    let leader_status = cluster.nodes[&leader].status().raft;
    assert!(
        leader_status.commit_index < leader_status.last_log_index,
        "nothing after the failed fsync committed: {leader_status:?}"
    );
    for node in cluster.nodes.into_values() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_cannot_be_read_refuses_to_start() {
    let network = MemNetwork::new(43);
    let store = MemStorage::new();
    // A disk that reads fine the first time and holds something.
    {
        let (node, _faults) = start_node(&network, 1, store.clone()).await.expect("start");
        node.shutdown().await;
        network.unregister(1);
    }
    let (storage, faults) = FaultyStorage::new(store);
    faults.fail_reads();
    let (transport, inbox) = network.register(1);
    let refused = RaftNode::start(
        config(1),
        Membership::voters([1, 2, 3]).expect("membership"),
        storage,
        transport,
        inbox,
        KvStateMachine::new(),
    )
    .await;
    let Err(error) = refused else {
        panic!("a node that cannot read its log must not start");
    };
    assert!(matches!(error, StartError::Storage(_)), "{error}");
    assert!(error.to_string().contains("injected read error"), "{error}");
    assert_eq!(faults.reads_failed(), 1);
}

//! A paused process (SIGSTOP, a VM pause, a long GC-like stall) misses its ticks. The leader
//! here runs on a runtime of its own, which the test freezes by blocking its only worker, the way
//! a pause freezes a whole process; the other nodes go on, elect a new leader and write. A lease
//! read that was waiting when the old leader wakes must not be served from its stale lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Membership, Role};
use raft_kv::{KvCommand, KvReply, KvResponse, KvStateMachine};
use raft_net_mem::MemNetwork;
use raft_node::{NodeConfig, RaftNode, ReadConsistency};
use raft_storage_mem::MemStorage;

const TIMEOUT: Duration = Duration::from_secs(10);

fn config(id: u64) -> NodeConfig {
    let mut config = NodeConfig::new(id);
    config.core = config.core.with_lease_reads(true).with_seed(id * 31);
    config
}

async fn start(network: &MemNetwork, id: u64) -> RaftNode {
    let (transport, inbox) = network.register(id);
    RaftNode::start(
        config(id),
        Membership::voters([1, 2, 3]).expect("membership"),
        MemStorage::new(),
        transport,
        inbox,
        KvStateMachine::new(),
    )
    .await
    .expect("start")
}

async fn put(node: &RaftNode, value: &str) -> u64 {
    let command = KvCommand::Put {
        key: "k".into(),
        value: value.into(),
    };
    let reply = node.propose(command.encode()).await.expect("put");
    KvReply::decode(&reply).expect("reply").index
}

fn value_of(reply: &[u8]) -> Option<String> {
    match KvReply::response_of(reply).expect("reply") {
        KvResponse::Value(value) => value,
        other => panic!("unexpected reply {other:?}"),
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_leader_frozen_past_its_lease_serves_no_stale_lease_read_when_it_wakes() {
    let network = MemNetwork::new(7);
    // Node 1's own runtime: one worker, which the test blocks to freeze the node.
    let frozen = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let node1 = Arc::new(frozen.block_on(start(&network, 1)));
    main.block_on(async {
        let node2 = start(&network, 2).await;
        let node3 = start(&network, 3).await;
        // Node 1 leads.
        wait_until("a leader", || node1.status().raft.leader.is_some()).await;
        if node1.status().raft.role != Role::Leader {
            let leader = node1.status().raft.leader.expect("leader");
            let current = if leader == 2 { &node2 } else { &node3 };
            current.transfer_leadership(1).await.expect("transfer to node 1");
        }
        put(&node1, "1").await;
        let read = node1
            .read(KvCommand::Get { key: "k".into() }.encode(), ReadConsistency::Lease)
            .await
            .expect("lease read");
        assert_eq!(value_of(&read).as_deref(), Some("1"));

        // Freeze node 1 for three seconds, twenty election timeouts.
        let frozen_now = Arc::new(AtomicBool::new(false));
        let flag = frozen_now.clone();
        let pause = frozen.spawn(async move {
            flag.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(3));
        });
        wait_until("node 1 is frozen", || frozen_now.load(Ordering::SeqCst)).await;
        let started = std::time::Instant::now();

        // The others elect a leader among themselves and overwrite the key.
        wait_until("a new leader", || {
            [&node2, &node3]
                .iter()
                .any(|n| n.status().raft.role == Role::Leader)
        })
        .await;
        let new_leader = if node2.status().raft.role == Role::Leader {
            &node2
        } else {
            &node3
        };
        let acknowledged = put(new_leader, "2").await;
        // A lease read reaches node 1 while it is still frozen: it waits in its queue.
        let waiting = {
            let node1 = node1.clone();
            tokio::spawn(async move {
                node1
                    .read(KvCommand::Get { key: "k".into() }.encode(), ReadConsistency::Lease)
                    .await
            })
        };
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the new leader and the write took {:?}; the freeze is too short for the test",
            started.elapsed()
        );
        pause.await.expect("the pause ends");

        match waiting.await.expect("read task") {
            Ok(reply) => assert_eq!(
                value_of(&reply).as_deref(),
                Some("2"),
                "a read on the woken leader returned the value from before the write acknowledged at {acknowledged}"
            ),
            // Refusing is fine: the old leader has lost its lease and its leadership.
            Err(error) => tracing::info!(%error, "the woken leader refused the read"),
        }
        node2.shutdown().await;
        node3.shutdown().await;
    });
    frozen.block_on(async {
        if let Ok(node) = Arc::try_unwrap(node1) {
            node.shutdown().await;
        }
    });
}

//! `raft-kv demo --in-memory`: a cluster in this process on the in-memory backends: writes keys,
//! kills the leader, shows the new leader, and checks that nothing committed was lost.

use std::time::{Duration, Instant};

use raft_kv::{ClusterError, ClusterOptions, KvCommand, KvResponse, MemCluster};

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(nodes: u64, keys: usize, seed: u64) -> Result<(), String> {
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

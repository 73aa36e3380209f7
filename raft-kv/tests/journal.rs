//! The journal storage engine (`storage = "journal"`) in the service: real processes keep every
//! acknowledged write across SIGKILLs, and a data directory keeps the engine it was made with.

use std::path::Path;
use std::time::Duration;

use raft_kv::api::Consistency;
use raft_kv::client::{Client, ClientOptions};
use raft_kv::local_cluster::LocalCluster;
use raft_kv::{Server, ServerError, StorageEngine};

const BINARY: &str = env!("CARGO_BIN_EXE_raft-kv");
const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_processes_keep_every_acknowledged_write_across_sigkills_of_the_leader_and_of_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = LocalCluster::create(Path::new(BINARY), dir.path(), 3).expect("prepare the cluster");
    cluster.storage = StorageEngine::Journal;
    // Snapshots (and so purges and checkpoints of a shorter log) within the test's writes.
    cluster.tuning.snapshot_after_entries = 40;
    for id in cluster.ids() {
        cluster.write_config(id, &cluster.members()).expect("config");
        cluster.start(id, &[]).expect("start");
    }
    let ids = cluster.ids();
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("a leader");
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    let mut acknowledged = Vec::new();
    let put = async |client: &mut Client, i: usize, acknowledged: &mut Vec<(String, String)>| {
        let (key, value) = (format!("k{i:03}"), format!("v{i}"));
        client.put(&key, &value).await.expect("put");
        acknowledged.push((key, value));
    };
    for i in 0..50 {
        put(&mut client, i, &mut acknowledged).await;
    }

    cluster.kill(leader).expect("SIGKILL the leader");
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    cluster
        .wait_for_leader(&survivors, TIMEOUT)
        .await
        .expect("a new leader");
    for i in 50..100 {
        put(&mut client, i, &mut acknowledged).await;
    }
    cluster.start(leader, &[]).expect("restart the old leader");

    // Every process at once: nothing is left but what each journal made durable.
    for &id in &ids {
        cluster.kill(id).expect("SIGKILL");
    }
    for &id in &ids {
        cluster.start(id, &[]).expect("restart");
    }
    cluster
        .wait_for_leader(&ids, TIMEOUT)
        .await
        .expect("a leader after the restart");
    for i in 100..110 {
        put(&mut client, i, &mut acknowledged).await;
    }
    for &id in &ids {
        let data = dir.path().join(format!("data-{id}"));
        assert!(data.join("raft-journal").is_dir(), "node {id} keeps a journal");
        assert!(!data.join("raft").exists(), "node {id} has no RocksDB store");
    }
    let mut reader = cluster.client(&[], ClientOptions::default()).expect("client");
    for (key, value) in &acknowledged {
        let read = reader.get(key, Consistency::Linearizable).await.expect("read");
        assert_eq!(read.value.as_ref(), Some(value), "{key} was lost");
    }
    for &id in &ids {
        let status = cluster.stop(id, Duration::from_secs(15)).await.expect("SIGTERM");
        assert!(status.success(), "node {id} exited with {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_one_engine_is_refused_by_a_config_that_names_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = LocalCluster::create(Path::new(BINARY), dir.path(), 1).expect("prepare the cluster");
    let config = cluster.config_of(1, &cluster.members()).expect("config");
    assert_eq!(
        config.storage,
        StorageEngine::Rocksdb,
        "RocksDB unless the config says otherwise"
    );
    let server = Server::start(config.clone(), false)
        .await
        .expect("start on RocksDB");
    let mut client = cluster.client(&[1], ClientOptions::default()).expect("client");
    client.put("k", "v").await.expect("put");
    server.shutdown().await;

    let mut journal = config.clone();
    journal.storage = StorageEngine::Journal;
    match Server::start(journal, false).await {
        Err(ServerError::DataDir { path, detail }) => {
            assert!(path.ends_with("raft"), "{}", path.display());
            assert!(detail.contains("storage = journal"), "{detail}");
        }
        Err(other) => panic!("the other engine's directory must be named, not {other}"),
        Ok(_) => panic!("a journal must not start afresh beside this node's RocksDB store"),
    }

    // `shutdown` returns once the transport's socket is closed: the same ports at once.
    let server = Server::start(config.clone(), false)
        .await
        .expect("start on RocksDB again");
    let mut client = cluster.client(&[1], ClientOptions::default()).expect("client");
    let read = client.get("k", Consistency::Linearizable).await.expect("read");
    assert_eq!(
        read.value.as_deref(),
        Some("v"),
        "the write made on RocksDB is still there"
    );
    server.shutdown().await;
}

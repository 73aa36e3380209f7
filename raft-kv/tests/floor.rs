//! The floor server (`raft-kv serve-floor`, [`FloorServer`]): the client API's sessions and writes
//! answered at once over the node's own HTTPS stack, refusing what a node refuses.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raft_kv::api::Consistency;
use raft_kv::client::{ClientError, ClientOptions};
use raft_kv::local_cluster::LocalCluster;
use raft_kv::FloorServer;

const BINARY: &str = env!("CARGO_BIN_EXE_raft-kv");

fn options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_answers_sessions_and_writes_at_once_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::create(Path::new(BINARY), dir.path(), 1).unwrap();
    let config = cluster.config_of(1, &cluster.members()).unwrap();
    let floor = FloorServer::start(&config).await.unwrap();
    assert_eq!(floor.client_addr(), config.client_listen);

    let mut client = cluster.client(&[1], options()).unwrap();
    let first = client.put("k", "v").await.unwrap();
    let second = client.put("k", "w").await.unwrap();
    assert!(second.index > first.index, "each write gets the next index");
    assert_eq!(second.previous, None, "nothing is stored behind the floor");
    // Another client has its own session.
    let mut other = cluster.client(&[1], options()).unwrap();
    assert!(other.delete("k").await.unwrap().index > second.index);
    floor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_refuses_what_a_node_refuses_and_serves_no_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::create(Path::new(BINARY), dir.path(), 1).unwrap();
    cluster.tuning.max_value_bytes = 16;
    let config = cluster.config_of(1, &cluster.members()).unwrap();
    let floor = FloorServer::start(&config).await.unwrap();
    let mut client = cluster.client(&[1], options()).unwrap();

    match client.put("k", &"v".repeat(17)).await {
        Err(ClientError::Refused { status, reply }) => {
            assert_eq!(status, 413);
            assert_eq!(reply.error, "too_large");
        }
        other => panic!("an over-long value must be refused, not {other:?}"),
    }
    // The limit is the node's: a value within it goes through.
    client.put("k", &"v".repeat(16)).await.unwrap();
    match client.get("k", Consistency::Serializable).await {
        Err(ClientError::Refused { status, reply }) => {
            assert_eq!(status, 501);
            assert_eq!(reply.error, "not_served");
        }
        other => panic!("the floor serves no reads, not {other:?}"),
    }
    floor.shutdown().await;
}

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_floor_takes_a_nodes_config_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::create(Path::new(BINARY), dir.path(), 1).unwrap();
    let config_path = &cluster.node(1).unwrap().config_path;
    let child = Command::new(BINARY)
        .arg("serve-floor")
        .arg("--config")
        .arg(config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut client = cluster.client(&[1], options()).unwrap();
    // The client retries until the listener is up (bounded by its deadline).
    let written = client.put("k", "v").await.unwrap();
    assert!(written.index > 0);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve-floor did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "serve-floor exited with {status}");
}

//! Real processes: the `raft-kv` binary run as a cluster on loopback (RocksDB, QUIC with mutual
//! TLS, the HTTPS client API), killed, paused, changed and fed bad input. Every wait is bounded;
//! the children are killed when the cluster is dropped.

use std::path::Path;
use std::time::Duration;

use raft_kv::api::{Consistency, ErrorReply};
use raft_kv::client::ClientOptions;
use raft_kv::local_cluster::LocalCluster;
use raft_kv::StorageEngine;

const BINARY: &str = env!("CARGO_BIN_EXE_raft-kv");
const TIMEOUT: Duration = Duration::from_secs(30);

fn cluster(dir: &Path, size: u64) -> LocalCluster {
    LocalCluster::create(Path::new(BINARY), dir, size).expect("prepare the cluster")
}

fn start_all(cluster: &mut LocalCluster) {
    for id in cluster.ids() {
        cluster.start(id, &[]).expect("start");
    }
}

/// Starts every node and waits for a leader: the ids, and the leader.
async fn start_and_elect(cluster: &mut LocalCluster) -> (Vec<u64>, u64) {
    start_all(cluster);
    let ids = cluster.ids();
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("a leader");
    (ids, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_a_sigkill_of_the_leader_and_its_restart_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    // Long enough that only a stateless reset lets the leader reach the restarted node soon.
    cluster.tuning.peer_idle_timeout_ms = 60_000;
    for id in cluster.ids() {
        cluster.write_config(id, &cluster.members()).expect("config");
    }
    let (ids, leader) = start_and_elect(&mut cluster).await;
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        let key = format!("k{i:02}");
        let reply = client.put(&key, &format!("v{i}")).await.expect("put");
        acknowledged.push((key, format!("v{i}"), reply.index));
    }

    cluster.kill(leader).expect("SIGKILL");
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = cluster
        .wait_for_leader(&survivors, Duration::from_secs(10))
        .await
        .expect("a new leader within 10 s");
    assert_ne!(new_leader, leader);
    for i in 30..60 {
        let key = format!("k{i:02}");
        let reply = client
            .put(&key, &format!("v{i}"))
            .await
            .expect("put after the kill");
        acknowledged.push((key, format!("v{i}"), reply.index));
    }

    cluster.start(leader, &[]).expect("restart");
    let last = acknowledged.last().map(|a| a.2).unwrap_or_default();
    // The new leader's connection to the killed process is stale; the restarted endpoint must
    // reset it (it recognizes its earlier self's connection ids) rather than drop its packets
    // until the 60 s idle timeout.
    cluster
        .wait_for_applied(leader, last, Duration::from_secs(20))
        .await
        .expect("the restarted node catches up long before the peer idle timeout");
    for &id in &ids {
        cluster
            .wait_for_applied(id, last, TIMEOUT)
            .await
            .expect("caught up");
        let endpoint = cluster.node(id).expect("node").client;
        let mut local = raft_kv::client::Client::new(
            vec![endpoint],
            Some(cluster.client_tls()),
            ClientOptions::default(),
        )
        .expect("client");
        for (key, value, _) in &acknowledged {
            let read = local
                .get(key, Consistency::Serializable)
                .await
                .expect("local read");
            assert_eq!(read.value.as_ref(), Some(value), "node {id} lost {key}");
        }
    }
    for &id in &ids {
        let status = cluster.stop(id, Duration::from_secs(15)).await.expect("SIGTERM");
        assert!(status.success(), "node {id} exited with {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_by_sigterm_hands_leadership_to_a_follower_before_it_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    // A 500 ms election timeout, not the default 150: the hand-off (a vote persisted on two
    // nodes and two round trips) must fit in one, and on a loaded machine 150 ms did not (the
    // transfer timed out and the target won only in the next term). It also leaves the stop,
    // about 100 ms, well inside an election timeout, so no election but the hand-off's can have
    // happened by the time it returns.
    cluster.tuning.election_timeout_ticks = 50;
    for id in cluster.ids() {
        cluster.write_config(id, &cluster.members()).expect("config");
    }
    let (ids, leader) = start_and_elect(&mut cluster).await;
    let term = cluster.status(leader).await.expect("status").term;
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    client.put("before", "1").await.expect("put");

    let status = cluster
        .stop(leader, Duration::from_secs(15))
        .await
        .expect("SIGTERM");
    assert!(status.success(), "the leader exited with {status}");
    // The process is gone, well within an election timeout: only a hand-off can have made a
    // new leader by now, and the survivors must already agree on it.
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let mut views = Vec::new();
    for &id in &survivors {
        let status = cluster.status(id).await.expect("a survivor answers");
        views.push((status.leader, status.term));
    }
    let next = views[0].0.expect("a survivor names a leader");
    assert!(survivors.contains(&next), "the new leader {next} is a survivor");
    assert!(
        views.iter().all(|view| *view == (Some(next), term + 1)),
        "both survivors follow node {next} in term {}: {views:?}",
        term + 1
    );
    let log = std::fs::read_to_string(&cluster.node(leader).expect("node").log_path).expect("log");
    assert!(
        log.contains(&format!("handed leadership to node {next} before stopping")),
        "the stopped leader says whom it handed over to:\n{log}"
    );
    client
        .put("after", "2")
        .await
        .expect("the new leader takes writes");
    for &id in &survivors {
        let status = cluster.stop(id, Duration::from_secs(15)).await.expect("SIGTERM");
        assert!(status.success(), "node {id} exited with {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_live_is_promoted_and_an_original_member_is_removed_and_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    let _ = start_and_elect(&mut cluster).await;
    let mut client = cluster
        .client(&[1, 2, 3], ClientOptions::default())
        .expect("client");
    for i in 0..20 {
        client.put(&format!("before-{i}"), "x").await.expect("put");
    }

    // Node 4 joins: it knows where the cluster is (initial_members) and waits to be added.
    let request = cluster.start_joining(4).expect("start node 4 with --join");
    let added = client.add_node(&request).await.expect("add node 4 as a learner");
    assert!(added.learners.contains(&4), "{added:?}");
    let promoted = client
        .promote_when_caught_up(4, TIMEOUT)
        .await
        .expect("promote node 4");
    assert!(promoted.voters.contains(&4), "{promoted:?}");
    client
        .put("after-join", "y")
        .await
        .expect("the cluster serves with 4 voters");

    // Remove an original member that is not the leader; the cluster keeps serving.
    let leader = cluster
        .wait_for_leader(&[1, 2, 3, 4], TIMEOUT)
        .await
        .expect("leader");
    let removed = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let reply = client.remove_node(removed).await.expect("remove");
    assert!(!reply.voters.contains(&removed) && !reply.learners.contains(&removed));
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != removed).collect();
    let mut client = cluster
        .client(&remaining, ClientOptions::default())
        .expect("client");
    let last = client
        .put("after-remove", "z")
        .await
        .expect("the cluster serves after the removal")
        .index;
    for &id in &remaining {
        cluster
            .wait_for_applied(id, last, TIMEOUT)
            .await
            .expect("applied");
    }
    let term = cluster.status(leader).await.expect("leader status").term;

    // The removed node still runs, but the others refuse it: it learns nothing new and cannot
    // disturb the leader.
    let removed_status = cluster.status(removed).await.expect("removed node answers");
    for i in 0..10 {
        client.put(&format!("late-{i}"), "w").await.expect("put");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = cluster.status(removed).await.expect("removed node answers");
    assert!(
        later.commit_index <= removed_status.commit_index + 1,
        "the removed node kept receiving entries: {removed_status:?} then {later:?}"
    );
    let now = cluster.status(leader).await.expect("leader status");
    assert_eq!(
        (now.role.as_str(), now.term),
        ("leader", term),
        "the removed node disturbed the leader"
    );
    let log = std::fs::read_to_string(&cluster.node(leader).expect("leader").log_path).expect("leader log");
    assert!(
        log.contains("peer removed"),
        "the leader did not drop the removed peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_election_timeout_steps_down_and_no_read_goes_back_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    cluster.tuning.lease_reads = true;
    for id in cluster.ids() {
        cluster.write_config(id, &cluster.members()).expect("config");
    }
    let (ids, leader) = start_and_elect(&mut cluster).await;
    let mut writer = cluster.client(&[], ClientOptions::default()).expect("client");
    writer.put("k", "1").await.expect("put 1");

    cluster.pause(leader).expect("SIGSTOP");
    let others: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = cluster
        .wait_for_leader(&others, TIMEOUT)
        .await
        .expect("a new leader");
    let mut writer = cluster.client(&others, ClientOptions::default()).expect("client");
    let acked = writer.put("k", "2").await.expect("put 2 under the new leader");
    cluster.resume(leader).expect("SIGCONT");

    // Right after it wakes, the old leader may still think it leads: a lease read through it
    // must not return the value from before the acknowledged write.
    let endpoint = cluster.node(leader).expect("node").client;
    let options = ClientOptions {
        deadline: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let mut old =
        raft_kv::client::Client::new(vec![endpoint], Some(cluster.client_tls()), options).expect("client");
    for _ in 0..20 {
        for consistency in [Consistency::Lease, Consistency::Linearizable] {
            if let Ok(read) = old.get("k", consistency).await {
                assert_eq!(
                    read.value.as_deref(),
                    Some("2"),
                    "{consistency:?} read went back in time"
                );
                assert!(read.index >= acked.index);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = cluster.status(leader).await.expect("old leader answers");
    assert_ne!(
        status.role, "leader",
        "the paused leader did not step down: {status:?}"
    );
    assert_eq!(
        cluster.wait_for_leader(&ids, TIMEOUT).await.expect("leader"),
        new_leader
    );
}

/// Runs the CLI against the cluster; returns its exit code and stdout.
fn cli(cluster: &LocalCluster, args: &[&str]) -> (i32, String) {
    let endpoints: Vec<String> = cluster
        .ids()
        .iter()
        .map(|id| cluster.node(*id).expect("node").client.to_string())
        .collect();
    let certs = cluster.dir().join("certs");
    let output = std::process::Command::new(BINARY)
        .args(args)
        .env("RAFT_KV_ENDPOINTS", endpoints.join(","))
        .env("RAFT_KV_CA_CERT", certs.join("ca.pem"))
        .env("RAFT_KV_CERT", certs.join("client-local.pem"))
        .env("RAFT_KV_KEY", certs.join("client-local.key"))
        .output()
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_reads_scans_swaps_and_shows_the_cluster_with_exit_codes_that_mean_something() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    start_all(&mut cluster);
    cluster
        .wait_for_leader(&cluster.ids(), TIMEOUT)
        .await
        .expect("a leader");

    assert_eq!(cli(&cluster, &["put", "greeting", "hello"]).0, 0);
    assert_eq!(cli(&cluster, &["append", "greeting", "!"]).0, 0);
    assert_eq!(cli(&cluster, &["get", "greeting"]), (0, "hello!\n".to_string()));
    assert_eq!(cli(&cluster, &["get", "absent"]).0, 1, "a missing key exits 1");
    assert_eq!(
        cli(&cluster, &["cas", "greeting", "--expected", "nope", "--new", "x"]).0,
        1
    );
    assert_eq!(
        cli(
            &cluster,
            &["cas", "greeting", "--expected", "hello!", "--new", "bye"]
        )
        .0,
        0
    );
    // Linearizable by default: it sees the swap, wherever the CLI lands.
    let (code, out) = cli(&cluster, &["get", "greeting", "--json"]);
    assert_eq!(code, 0);
    let read: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(read["value"], "bye");
    assert_eq!(read["consistency"], "linearizable");
    // Serializable reads this node's copy, which may lag: it answers, maybe with an older value.
    let (code, out) = cli(
        &cluster,
        &["get", "greeting", "--consistency", "serializable", "--json"],
    );
    assert_eq!(code, 0);
    let read: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    // (A node still connecting after the start may not have applied anything yet.)
    let held = [
        serde_json::Value::Null,
        "hello".into(),
        "hello!".into(),
        "bye".into(),
    ];
    assert!(held.contains(&read["value"]), "a value the key never held: {out}");
    assert_eq!(read["consistency"], "serializable");
    assert_eq!(cli(&cluster, &["put", "other", "1"]).0, 0);
    let (code, out) = cli(&cluster, &["scan", "", "--json"]);
    assert_eq!(code, 0);
    let scan: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(scan["entries"].as_array().map(Vec::len), Some(2), "{out}");
    let (code, out) = cli(&cluster, &["delete", "other", "--json"]);
    assert_eq!(code, 0);
    let deleted: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let index = deleted["index"].as_u64().expect("the index of the delete");
    for id in cluster.ids() {
        cluster
            .wait_for_applied(id, index, TIMEOUT)
            .await
            .expect("applied everywhere");
    }
    let (code, out) = cli(&cluster, &["cluster", "status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let roles: Vec<&str> = status
        .as_array()
        .expect("one entry per node")
        .iter()
        .filter_map(|n| n["status"]["role"].as_str())
        .collect();
    assert_eq!(roles.len(), 3, "{out}");
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{out}");
    // On the first endpoint, which has applied the writes by now.
    let (code, out) = cli(&cluster, &["cluster", "snapshot"]);
    assert_eq!(code, 0, "{out}");
    // Session limits go through the log: the answer is what every node now applies.
    let (code, out) = cli(
        &cluster,
        &[
            "cluster",
            "sessions",
            "--expire-after-entries",
            "5000",
            "--max-sessions",
            "64",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let limits: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(limits["expire_after_entries"], 5000, "{out}");
    assert_eq!(limits["max_sessions"], 64, "{out}");
    let (code, _) = cli(&cluster, &["cluster", "sessions", "--max-sessions", "0"]);
    assert_eq!(code, 1, "a limit of 0 is refused by the server");
    let (code, _) = cli(
        &cluster,
        &["get", "k", "--endpoints", "127.0.0.1:1", "--timeout", "1"],
    );
    assert_eq!(code, 3, "no answer in time exits 3");
}

/// A raw HTTPS client with the cluster's client certificate, or with `tls` as given.
fn raw_client(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_status_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    let (_, leader) = start_and_elect(&mut cluster).await;
    let base = format!("https://{}", cluster.node(leader).expect("leader").client);
    let http = raw_client(cluster.client_tls().client_config(false).expect("tls"));
    let error = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: ErrorReply = response.json().await.expect("an error body in JSON");
        (status, body.error)
    };

    let r = http
        .post(format!("{base}/v1/kv"))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(error(r).await, (400, "bad_request".to_string()));
    let r = http
        .post(format!("{base}/v1/kv"))
        .body(r#"{"op":"put","key":"k","value":"v","ttl":3}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(
        error(r).await,
        (400, "bad_request".to_string()),
        "an unknown field is refused"
    );
    let big = "x".repeat(1 << 20 | 1);
    let body = serde_json::json!({"op": "put", "key": "big", "value": big}).to_string();
    let r = http
        .post(format!("{base}/v1/kv"))
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(error(r).await, (413, "too_large".to_string()));
    // The server answers a body over the limit before reading it all, and closes the connection
    // (it says so). A client still writing may see the connection reset instead of the answer.
    let huge = "x".repeat(3 << 20);
    match http.post(format!("{base}/v1/kv")).body(huge).send().await {
        Ok(r) => {
            let closes = r.headers().get(reqwest::header::CONNECTION).cloned();
            assert_eq!(
                error(r).await,
                (413, "too_large".to_string()),
                "a body over the limit"
            );
            assert_eq!(closes.as_ref().and_then(|v| v.to_str().ok()), Some("close"));
        }
        Err(e) => assert!(e.is_request(), "the oversized body was cut off: {e}"),
    }
    let r = http.get(format!("{base}/v1/nope")).send().await.expect("send");
    assert_eq!(error(r).await, (404, "not_found".to_string()));
    let r = http
        .get(format!("{base}/v1/kv?consistency=psychic&key=k"))
        .send()
        .await
        .expect("send");
    assert_eq!(error(r).await.0, 400);

    // Nothing was applied.
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    let read = client.get("big", Consistency::Linearizable).await.expect("get");
    assert_eq!(read.value, None);
    let read = client.get("k", Consistency::Linearizable).await.expect("get");
    assert_eq!(read.value, None);

    // Without a client certificate, or with one from another CA: no TLS session at all.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in &cluster.client_tls().cas {
        roots.add(ca.clone()).expect("root");
    }
    let no_cert = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    assert!(raw_client(no_cert)
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .is_err());
    let stranger_dir = tempfile::tempdir().expect("tempdir");
    let stranger = LocalCluster::create(Path::new(BINARY), stranger_dir.path(), 1).expect("another CA");
    let foreign = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            stranger.client_tls().chain.clone(),
            stranger.client_tls().key.clone_key(),
        )
        .expect("client auth");
    assert!(raw_client(foreign)
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .is_err());
    let ok = http
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .expect("status");
    assert!(ok.status().is_success());
}

fn serve_fails(args: &[&str]) -> String {
    let output = std::process::Command::new(BINARY)
        .arg("serve")
        .args(args)
        .output()
        .expect("run raft-kv serve");
    assert!(!output.status.success(), "serve {args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_config_or_a_data_directory_of_another_node_is_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 2);
    let config_1 = cluster.node(1).expect("node").config_path.clone();

    let text = std::fs::read_to_string(&config_1).expect("config");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, format!("{text}\nelection_timeout = 3\n")).expect("write");
    let stderr = serve_fails(&["--config", typo.to_str().expect("path")]);
    assert!(stderr.contains("unknown field"), "{stderr}");

    let stderr = serve_fails(&[
        "--config",
        config_1.to_str().expect("path"),
        "--insecure",
        "--client-listen",
        "0.0.0.0:0",
    ]);
    assert!(stderr.contains("loopback"), "{stderr}");

    // Node 1 makes its data directory; node 2 pointed at it is refused.
    cluster.start(1, &[]).expect("start node 1");
    cluster
        .wait_for_applied(1, 0, TIMEOUT)
        .await
        .expect("node 1 answers");
    cluster
        .stop(1, Duration::from_secs(15))
        .await
        .expect("stop node 1");
    let data_1 = dir.path().join("data-1");
    let config_2 = cluster.node(2).expect("node").config_path.clone();
    let stderr = serve_fails(&[
        "--config",
        config_2.to_str().expect("path"),
        "--data-dir",
        data_1.to_str().expect("path"),
    ]);
    assert!(stderr.contains("node"), "{stderr}");
    // And node 1 still starts from it.
    cluster.start(1, &[]).expect("restart node 1");
    cluster
        .wait_for_applied(1, 0, TIMEOUT)
        .await
        .expect("node 1 answers again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_or_the_other_engine_on_the_command_line_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 1);
    cluster.storage = StorageEngine::Journal;
    cluster.write_config(1, &cluster.members()).expect("config");
    cluster.start(1, &[]).expect("start");
    cluster.wait_for_leader(&[1], TIMEOUT).await.expect("a leader");
    let mut client = cluster.client(&[1], ClientOptions::default()).expect("client");
    for i in 0..20 {
        client.put(&format!("k{i}"), "v").await.expect("put");
    }
    let status = cluster.stop(1, Duration::from_secs(15)).await.expect("SIGTERM");
    assert!(status.success(), "node 1 exited with {status}");
    let config = cluster.node(1).expect("node").config_path.clone();
    let config = config.to_str().expect("path");

    let stderr = serve_fails(&["--config", config, "--storage", "rocksdb"]);
    assert!(stderr.contains("storage = rocksdb"), "{stderr}");

    // A byte of the first write after the checkpoint, with more writes after it.
    let segment = dir
        .path()
        .join("data-1/raft-journal/journal")
        .join(format!("{:020}.journal", 1));
    let original = std::fs::read(&segment).expect("the journal segment");
    let checkpoint_len = u32::from_le_bytes(original[0..4].try_into().expect("4 bytes")) as usize;
    let damaged_at = 8 + checkpoint_len + 8 + 1;
    let mut damaged = original.clone();
    damaged[damaged_at] ^= 0x40;
    std::fs::write(&segment, &damaged).expect("damage the journal");
    let stderr = serve_fails(&["--config", config]);
    assert!(
        stderr.contains("journal at") && stderr.contains("is corrupt"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&segment).expect("the journal"),
        damaged,
        "the refusal changed nothing"
    );

    std::fs::write(&segment, &original).expect("repair the journal");
    cluster.start(1, &[]).expect("start again");
    cluster.wait_for_leader(&[1], TIMEOUT).await.expect("a leader");
    let mut client = cluster.client(&[1], ClientOptions::default()).expect("client");
    for i in 0..20 {
        let read = client
            .get(&format!("k{i}"), Consistency::Linearizable)
            .await
            .expect("read");
        assert_eq!(read.value.as_deref(), Some("v"), "k{i} after the repair");
    }
}

/// The value of the first sample of `name` whose labels include all of `labels`, in a scrape.
fn sample(scrape: &str, name: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_serves_its_nodes_metrics_for_prometheus_and_they_move_with_the_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    let (_, leader) = start_and_elect(&mut cluster).await;
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    let endpoint = cluster.node(leader).expect("leader").client;
    let node = format!("node=\"{leader}\"");
    let node = node.as_str();

    for i in 0..10 {
        client.put(&format!("m{i}"), "v").await.expect("put");
    }
    let accepted = |scrape: &str| sample(scrape, "raft_proposals_total", &[node, "outcome=\"accepted\""]);
    // The node adds accepted proposals to the counter once per tick: scrape until the writes
    // show (within a bound), as Prometheus would on its next scrape.
    let scrape_until = |least: f64| {
        let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let scrape = client.metrics_of(endpoint).await.expect("scrape");
                let counted = accepted(&scrape).unwrap_or(0.0);
                if counted >= least || std::time::Instant::now() > deadline {
                    return (scrape, counted);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (before, first) = scrape_until(10.0).await;
    assert!(first >= 10.0, "accepted proposals counted: {first}");
    assert_eq!(
        sample(&before, "raft_role", &[node, "role=\"leader\""]),
        Some(1.0)
    );
    assert!(sample(&before, "raft_term", &[node]).is_some_and(|t| t >= 1.0));
    assert!(sample(&before, "raft_commit_index", &[node]).is_some_and(|c| c >= 10.0));
    for name in [
        "raft_messages_sent_total",
        "raft_message_bytes_sent_total",
        "raft_messages_received_total",
        "raft_follower_match_lag",
    ] {
        assert!(sample(&before, name, &[node]).is_some(), "{name} in\n{before}");
    }
    // Histograms with buckets, so that they add up across nodes.
    for name in [
        "raft_commit_latency_seconds_bucket",
        "raft_persist_latency_seconds_bucket",
    ] {
        assert!(
            sample(&before, name, &[node, "le=\"+Inf\""]).is_some_and(|n| n >= 1.0),
            "{name} in\n{before}"
        );
    }
    assert!(before.contains("# TYPE raft_commit_latency_seconds histogram"));

    for i in 10..20 {
        client.put(&format!("m{i}"), "v").await.expect("put");
    }
    let (after, second) = scrape_until(first + 10.0).await;
    assert!(second >= first + 10.0, "{first} then {second}");
    let commits = |scrape: &str| sample(scrape, "raft_commit_latency_seconds_count", &[node]).unwrap_or(0.0);
    assert!(commits(&after) >= commits(&before) + 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_draws_its_timeline_with_both_leaders_the_kill_and_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let picture = dir.path().join("demo.svg");
    let mut demo = tokio::process::Command::new(BINARY);
    demo.args(["demo", "--keys", "5", "--timeline"])
        .arg(&picture)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), demo.output())
        .await
        .expect("the demo ends within 2 minutes")
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the demo succeeds:\n{stdout}");
    assert!(
        stdout.contains(&format!("timeline: {}", picture.display())),
        "it says where:\n{stdout}"
    );
    let svg = std::fs::read_to_string(&picture).expect("the picture");
    assert!(svg.starts_with("<svg") && svg.contains("SIGKILL"));
    let timeline = raft_timeline::Timeline::read_jsonl(&picture.with_extension("jsonl")).expect("the events");
    let lanes = timeline.lanes();
    let leaders: std::collections::BTreeSet<u64> = lanes.leaders().iter().map(|(node, _, _)| *node).collect();
    assert!(
        leaders.len() >= 2,
        "a leader before the kill and another after: {leaders:?}"
    );
    let faults: Vec<raft_timeline::Fault> = lanes
        .lanes
        .values()
        .flat_map(|lane| lane.faults.iter().map(|(_, fault, _)| *fault))
        .collect();
    assert!(faults.contains(&raft_timeline::Fault::Kill) && faults.contains(&raft_timeline::Fault::Restart));
    assert!(lanes.max_commit >= 10, "the commits are drawn");
}

/// The Grafana dashboard in `docs/grafana` asks only for series a node records.
#[test]
fn the_grafana_dashboard_asks_only_for_metrics_the_nodes_record() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/raft-kv.json")).expect("the dashboard is JSON");
    let recorded = include_str!("../../raft-node/src/metrics.rs");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a panel per concern");
    let mut asked = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a query");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let Some(name) = word.strip_prefix("raft_") else {
                    continue;
                };
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    recorded.contains(&format!("\"raft_{base}\"")),
                    "panel {:?} asks for raft_{name}, which raft-node does not record",
                    panel["title"]
                );
                asked += 1;
            }
        }
    }
    assert!(asked >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_api_speaks_http2_and_http1_and_forked_clients_share_a_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    let (ids, leader) = start_and_elect(&mut cluster).await;
    let base = format!("https://{}", cluster.node(leader).expect("leader").client);

    // ALPN picks the protocol: HTTP/2 when the client offers it, HTTP/1.1 otherwise.
    for (http2, version) in [
        (true, reqwest::Version::HTTP_2),
        (false, reqwest::Version::HTTP_11),
    ] {
        let http = raw_client(cluster.client_tls().client_config(http2).expect("tls"));
        let response = http
            .get(format!("{base}/v1/status"))
            .send()
            .await
            .expect("status");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.version(), version, "offered HTTP/2: {http2}");
        // The body limit holds on either protocol: nothing is written.
        let big = "x".repeat(3 << 20);
        let body = serde_json::json!({"op": "put", "key": "big", "value": big}).to_string();
        let sent = http.post(format!("{base}/v1/kv")).body(body).send().await;
        match sent {
            Ok(response) => assert_eq!(response.status().as_u16(), 413, "offered HTTP/2: {http2}"),
            // HTTP/1.1 has no way to refuse a body but to answer and close: the server does not
            // read the rest, and a client still writing it can see the connection reset before
            // it reads the 413 (seen on a loaded machine). HTTP/2 refuses the stream alone.
            Err(error) if !http2 && error.is_request() => {}
            Err(error) => panic!("offered HTTP/2: {http2}: {error:?}"),
        }
        let read: serde_json::Value = http
            .get(format!("{base}/v1/kv?key=big"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("a JSON answer");
        assert!(read["value"].is_null(), "the refused body wrote nothing: {read}");
    }

    // Clients forked from one HTTP/2 client each have their own session and write at once.
    let options = ClientOptions {
        http2: true,
        ..ClientOptions::default()
    };
    let mut first = cluster.client(&ids, options).expect("client");
    first.put("fork/warmup", "x").await.expect("put");
    // The leader counts the HTTP/2 connections it accepted (the raw clients' above among them).
    // The scrape goes over the first client's own connection, so it opens none.
    let leader_endpoint = cluster.node(leader).expect("leader").client;
    let node = format!("node=\"{leader}\"");
    let opened = |scrape: &str| {
        sample(
            scrape,
            "raft_kv_client_connections_total",
            &[node.as_str(), "protocol=\"h2\""],
        )
        .expect("the leader counts its HTTP/2 connections")
    };
    let scrape = first.metrics_of(leader_endpoint).await.expect("scrape");
    let connections_before = opened(&scrape);
    assert!(
        connections_before >= 2.0,
        "the raw HTTP/2 client's and the first client's connections are counted: {connections_before}"
    );
    assert!(
        sample(
            &scrape,
            "raft_kv_client_connections_open",
            &[node.as_str(), "protocol=\"h2\""]
        )
        .is_some_and(|open| open >= 1.0),
        "the first client's connection is open"
    );
    let writers: Vec<_> = (0..32)
        .map(|n| {
            let mut client = first.fork();
            tokio::spawn(async move {
                for round in 0..5 {
                    client
                        .put(&format!("fork/{n}"), &format!("{round}"))
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let connections_after = opened(&first.metrics_of(leader_endpoint).await.expect("scrape"));
    assert_eq!(
        connections_after, connections_before,
        "32 forked clients wrote over the connection the first one opened \
         (the leader had accepted {connections_before} HTTP/2 connections before them, {connections_after} after)"
    );
    let mut reader = first.fork();
    for n in 0..32 {
        let read = reader
            .get(&format!("fork/{n}"), Consistency::Linearizable)
            .await
            .expect("get");
        assert_eq!(read.value.as_deref(), Some("4"), "fork {n}'s last write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_on_one_worker_thread_each_commit_fail_over_and_stop_cleanly() {
    // `--worker-threads 1` puts each server's event loop, persist queue, apply task, QUIC, HTTP
    // and RocksDB completions on one thread: nothing may wait on another worker.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = cluster(dir.path(), 3);
    for id in cluster.ids() {
        cluster.start(id, &["--worker-threads", "1"]).expect("start");
    }
    let ids = cluster.ids();
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("a leader");
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    for i in 0..20 {
        client.put(&format!("k{i}"), &format!("v{i}")).await.expect("put");
    }

    cluster.kill(leader).expect("SIGKILL");
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = cluster
        .wait_for_leader(&survivors, TIMEOUT)
        .await
        .expect("a new leader among the survivors");
    assert_ne!(new_leader, leader);
    for i in 20..40 {
        client
            .put(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("put after the kill");
    }
    for i in 0..40 {
        let read = client
            .get(&format!("k{i}"), Consistency::Linearizable)
            .await
            .expect("get");
        assert_eq!(read.value, Some(format!("v{i}")), "k{i}");
    }
    for id in survivors {
        let status = cluster.stop(id, Duration::from_secs(15)).await.expect("SIGTERM");
        assert!(status.success(), "node {id} exited with {status}");
    }
}

//! Real processes under network faults: a UDP relay in front of every node's peer port cuts and
//! heals Raft traffic; and concurrent clients over the HTTP API during kills, pauses, partitions
//! and a membership change, with every operation recorded (`shared/history-format.md`) and
//! checked for linearizability.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_core::SeededRng;
use raft_kv::api::{Consistency, WriteOp};
use raft_kv::client::{Client, ClientError, ClientOptions};
use raft_kv::local_cluster::LocalCluster;
use raft_sim::history::{history_path, write_history, Command, Operation, Outcome, Recorder};
use raft_sim::linearizability::{check, Verdict};

const BINARY: &str = env!("CARGO_BIN_EXE_raft-kv");
const TIMEOUT: Duration = Duration::from_secs(30);

/// Three nodes behind UDP relays, started; `election_timeout_ticks` replaces the default's.
async fn relayed_cluster(dir: &Path, election_timeout_ticks: Option<u32>) -> LocalCluster {
    let mut cluster = LocalCluster::create(Path::new(BINARY), dir, 3).expect("prepare");
    if let Some(ticks) = election_timeout_ticks {
        cluster.tuning.election_timeout_ticks = ticks;
    }
    cluster.add_relays().await.expect("relays");
    for id in cluster.ids() {
        cluster.start(id, &[]).expect("start");
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_steps_down_and_nothing_written_on_its_side_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A 500 ms election timeout, not the default 150: the story ends by checking that the
    // healed node did not unseat the majority's leader, and on a loaded machine (CI runs the
    // debug binaries beside the other process tests) a 150 ms check-quorum let a leader of the
    // healthy majority step down on its own, an election no rejoin caused.
    let cluster = relayed_cluster(dir.path(), Some(50)).await;
    let ids = cluster.ids();
    cluster.wait_for_leader(&ids, TIMEOUT).await.expect("a leader");
    let mut client = cluster.client(&[], ClientOptions::default()).expect("client");
    client.put("before", "1").await.expect("put");
    // The leader now, after a write went through it: the first one elected may have stepped
    // down meanwhile (CI once isolated such a former leader, a follower by then).
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("a leader");

    cluster.isolate(leader).expect("isolate the leader");
    let majority: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    // A write through the isolated leader alone is never acknowledged.
    let minority_options = ClientOptions {
        deadline: Duration::from_secs(3),
        request_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let mut minority = cluster.client(&[leader], minority_options).expect("client");
    let written = minority.put("minority", "lost").await;
    assert!(
        written.is_err(),
        "a write on the minority side was acknowledged: {written:?}"
    );
    let new_leader = cluster
        .wait_for_leader(&majority, TIMEOUT)
        .await
        .expect("the majority elects");
    let mut majority_client = cluster
        .client(&majority, ClientOptions::default())
        .expect("client");
    majority_client
        .put("majority", "kept")
        .await
        .expect("the majority serves");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = cluster
            .status(leader)
            .await
            .expect("the isolated node answers its clients");
        if status.role != "leader" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the isolated leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.heal();
    let last = majority_client.put("after-heal", "2").await.expect("put").index;
    cluster
        .wait_for_applied(leader, last, TIMEOUT)
        .await
        .expect("the old leader catches up");
    let mut local = Client::new(
        vec![cluster.node(leader).expect("node").client],
        Some(cluster.client_tls()),
        ClientOptions::default(),
    )
    .expect("client");
    let lost = local
        .get("minority", Consistency::Serializable)
        .await
        .expect("read");
    assert_eq!(
        lost.value, None,
        "the unacknowledged minority write survived the heal"
    );
    let kept = local
        .get("majority", Consistency::Serializable)
        .await
        .expect("read");
    assert_eq!(kept.value.as_deref(), Some("kept"));
    assert_eq!(
        cluster.wait_for_leader(&ids, TIMEOUT).await.expect("leader"),
        new_leader
    );
}

async fn client_loop(mut client: Client, client_id: u64, recorder: Arc<Recorder>, until: Instant) {
    let mut rng = SeededRng::new(client_id + 1);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let key = format!("k{}", rng.below(12));
        let value = format!("c{client_id}-{n}");
        let call_ns = recorder.now();
        let (command, result) = match rng.below(4) {
            0 => {
                let read = client.get(&key, Consistency::Linearizable).await;
                let output = read.as_ref().ok().and_then(|r| r.value.clone());
                (Command::Get { output }, read.map(|_| ()))
            }
            1 => {
                let op = WriteOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                };
                (Command::Put { value }, client.write(op).await.map(|_| ()))
            }
            2 => {
                let op = WriteOp::Append {
                    key: key.clone(),
                    value: value.clone(),
                };
                (Command::Append { value }, client.write(op).await.map(|_| ()))
            }
            _ => {
                let expected = if rng.below(2) == 0 {
                    None
                } else {
                    Some(format!("c{}-{}", rng.below(4), rng.below(n + 1)))
                };
                let op = WriteOp::Cas {
                    key: key.clone(),
                    expected: expected.clone(),
                    new: Some(value.clone()),
                };
                let reply = client.write(op).await;
                let swapped = reply.as_ref().ok().and_then(|r| r.swapped).unwrap_or(false);
                (
                    Command::Cas {
                        expected,
                        value,
                        swapped,
                    },
                    reply.map(|_| ()),
                )
            }
        };
        let (outcome, return_ns) = match &result {
            Ok(()) => (Outcome::Ok, Some(recorder.now())),
            // A read never takes effect; a refused write was not applied.
            Err(_) if matches!(command, Command::Get { .. }) => (Outcome::Failed, Some(recorder.now())),
            Err(ClientError::Refused { .. }) => (Outcome::Failed, Some(recorder.now())),
            Err(_) => (Outcome::Unknown, None),
        };
        recorder.record(Operation {
            client_id,
            key,
            command,
            call_ns,
            return_ns,
            outcome,
        });
        if result.is_err() {
            // A timed-out write stays pending in this client; start the next one fresh.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_stay_linearizable_through_kills_pauses_partitions_and_a_membership_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = relayed_cluster(dir.path(), None).await;
    let ids = cluster.ids();
    cluster.wait_for_leader(&ids, TIMEOUT).await.expect("a leader");

    let recorder = Arc::new(Recorder::new());
    let until = Instant::now() + Duration::from_secs(14);
    let options = ClientOptions {
        deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let mut clients = Vec::new();
    for client_id in 0..6 {
        let client = cluster.client(&[], options.clone()).expect("client");
        clients.push(tokio::spawn(client_loop(
            client,
            client_id,
            recorder.clone(),
            until,
        )));
    }

    let pause = Duration::from_millis(1200);
    // 1. SIGKILL the leader, restart it.
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("leader");
    cluster.kill(leader).expect("kill");
    tokio::time::sleep(pause).await;
    cluster.start(leader, &[]).expect("restart");
    tokio::time::sleep(pause).await;
    // 2. SIGSTOP the leader past its election timeout, SIGCONT.
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("leader");
    cluster.pause(leader).expect("pause");
    tokio::time::sleep(pause).await;
    cluster.resume(leader).expect("resume");
    tokio::time::sleep(pause).await;
    // 3. Isolate the leader, heal.
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.expect("leader");
    cluster.isolate(leader).expect("isolate");
    tokio::time::sleep(pause).await;
    cluster.heal();
    tokio::time::sleep(pause).await;
    // 4. A membership change: node 4 joins as a learner and is promoted.
    let request = cluster.start_joining(4).expect("start node 4 with --join");
    let mut admin = cluster.client(&ids, ClientOptions::default()).expect("admin");
    admin.add_node(&request).await.expect("add node 4");
    admin
        .promote_when_caught_up(4, TIMEOUT)
        .await
        .expect("promote node 4");

    for client in clients {
        client.await.expect("client task");
    }
    let operations = recorder.take();
    let path = history_path("processes-http-faults");
    write_history(&path, &operations).expect("write the history");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &operations {
        let kind = match op.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        *counts.entry(kind).or_default() += 1;
    }
    eprintln!(
        "history: {} operations {counts:?} in {}",
        operations.len(),
        path.display()
    );
    assert!(
        counts.get("ok").copied().unwrap_or(0) > 100,
        "too few operations completed: {counts:?}"
    );
    match check(&operations, 50_000_000) {
        Verdict::Linearizable => {}
        other => panic!("not linearizable (history in {}): {other:?}", path.display()),
    }
}

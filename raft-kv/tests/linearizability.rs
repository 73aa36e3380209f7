//! Linearizability of the key-value service under faults.
//!
//! Concurrent clients drive a `MemCluster` with get, put, append and compare-and-swap over a few
//! keys while a fault injector partitions the network, isolates the leader, kills and restarts
//! nodes and drops messages. Every operation is recorded in the format of
//! `shared/history-format.md`, the history is written to `target/histories/<name>.jsonl` (or
//! `$RAFT_HISTORY_DIR`), and a Wing & Gong / Lowe checker judges it.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_core::ProposeError as Refusal;
use raft_core::{NodeId, SeededRng};
use raft_kv::cluster_watch::{ClusterWatch, FaultMarker};
use raft_kv::{ClusterOptions, KvCommand, KvReply, KvResponse, MemCluster};
use raft_net_mem::Faults;
use raft_node::{ClientError, ProposeError, ReadConsistency, ReadError, SessionClient};
use raft_sim::history::{history_path, write_history, Command, Operation, Outcome, Recorder};
use raft_sim::linearizability::{check, Verdict};
use raft_timeline::Fault;

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    /// Random splits of the cluster, healed now and then.
    Partitions,
    /// The leader is cut off, again and again.
    LeaderIsolation,
    /// Nodes are killed and restarted from their storage.
    CrashRestart,
    /// Messages are lost, duplicated and delayed.
    MessageLoss,
    /// All of the above, plus leadership transfers and membership changes.
    Mixed,
}

/// Reads a key through `RaftNode::read` on the guessed node (a follower forwards to the leader);
/// retries only while no leader confirmed it, since a read changes nothing.
async fn read(
    cluster: &MemCluster,
    guess: &mut Option<NodeId>,
    key: &str,
    consistency: ReadConsistency,
    rng: &mut SeededRng,
) -> Attempt {
    let query = KvCommand::Get { key: key.to_string() }.encode();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let ids = cluster.ids();
        let target = guess
            .filter(|id| cluster.node(*id).is_some())
            .unwrap_or_else(|| ids[rng.below(ids.len() as u64) as usize]);
        if let Some(node) = cluster.node(target) {
            match node.read(query.clone(), consistency).await {
                Ok(reply) => return Attempt::Done(KvReply::response_of(&reply).unwrap()),
                Err(ReadError::Refused(raft_core::ReadError::NotLeader { leader_hint })) => {
                    *guess = leader_hint
                }
                // Reads fall back to ReadIndex without a lease, so this one never surfaces.
                Err(ReadError::Refused(raft_core::ReadError::LeaseNotHeld)) => *guess = None,
                // A lost request or answer: a read has no effect, so it is retried.
                Err(ReadError::Refused(raft_core::ReadError::Expired)) => *guess = None,
                Err(ReadError::Timeout) | Err(ReadError::Stopped) => return Attempt::Failed,
            }
        } else {
            *guess = None;
        }
        if Instant::now() > deadline {
            return Attempt::Failed;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs one command through an exactly-once session: it retries across leader changes itself,
/// so only running out of time leaves the outcome unknown.
async fn execute_once(session: &mut SessionClient<MemCluster>, command: &KvCommand) -> Attempt {
    match session.propose(command.encode()).await {
        Ok(reply) => Attempt::Done(KvReply::response_of(&reply).unwrap()),
        Err(ClientError::Timeout) => Attempt::Unknown,
        Err(ClientError::SessionExpired) | Err(ClientError::Refused(_)) => Attempt::Failed,
        Err(ClientError::BadResponse(what)) => panic!("bad session response: {what}"),
    }
}

/// Snapshot every 200 applied entries, keeping 20, in 4 KiB chunks.
fn compact_often(config: &mut raft_core::Config) {
    config.snapshot_after_entries = 200;
    config.snapshot_keep_entries = 20;
    config.snapshot_chunk_bytes = 4096;
}

enum Attempt {
    Done(KvResponse),
    Failed,
    Unknown,
}

/// Runs one command to completion: retries while it is certain that nothing took effect (not
/// the leader, dropped, busy), and gives up as unknown once a proposal may have taken effect.
async fn execute(
    cluster: &MemCluster,
    guess: &mut Option<NodeId>,
    command: &KvCommand,
    rng: &mut SeededRng,
) -> Attempt {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let ids = cluster.ids();
        let target = guess
            .filter(|id| cluster.node(*id).is_some())
            .unwrap_or_else(|| ids[rng.below(ids.len() as u64) as usize]);
        let Some(node) = cluster.node(target) else {
            *guess = None;
            if Instant::now() > deadline {
                return Attempt::Failed;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        match node.propose(command.encode()).await {
            Ok(reply) => return Attempt::Done(KvReply::response_of(&reply).unwrap()),
            Err(ProposeError::Refused(Refusal::NotLeader { leader_hint })) => *guess = leader_hint,
            Err(ProposeError::Dropped)
            | Err(ProposeError::Refused(
                Refusal::TooManyUncommitted { .. } | Refusal::TooManyUncommittedBytes { .. },
            )) => *guess = None,
            Err(ProposeError::Refused(Refusal::TransferInProgress { target })) => *guess = Some(target),
            Err(ProposeError::Refused(Refusal::EntryTooLarge { .. })) => return Attempt::Failed,
            Err(ProposeError::Timeout) | Err(ProposeError::Stopped) | Err(ProposeError::Superseded) => {
                return Attempt::Unknown
            }
        }
        if Instant::now() > deadline {
            return Attempt::Failed;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn client(
    id: u64,
    cluster: Arc<MemCluster>,
    recorder: Arc<Recorder>,
    seed: u64,
    until: Instant,
    consistency: ReadConsistency,
    sessions: bool,
) {
    let mut session = None;
    if sessions {
        while session.is_none() && Instant::now() < until {
            session = SessionClient::register(cluster.clone(), Duration::from_secs(3))
                .await
                .ok();
        }
    }
    let keys = 20;
    let mut rng = SeededRng::new(seed ^ (id << 32));
    let mut guess = None;
    let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let key = format!("k{}", rng.below(keys));
        let value = format!("c{id}n{n};");
        let roll = rng.below(100);
        let (kv, mut command) = if roll < 40 {
            (KvCommand::Get { key: key.clone() }, Command::Get { output: None })
        } else if roll < 65 {
            let kv = KvCommand::Put {
                key: key.clone(),
                value: value.clone(),
            };
            (kv, Command::Put { value })
        } else if roll < 85 {
            let kv = KvCommand::Append {
                key: key.clone(),
                value: value.clone(),
            };
            (kv, Command::Append { value })
        } else {
            let expected = last_seen.get(&key).cloned().flatten();
            let kv = KvCommand::CompareAndSwap {
                key: key.clone(),
                expected: expected.clone(),
                new: Some(value.clone()),
            };
            let command = Command::Cas {
                expected,
                value,
                swapped: false,
            };
            (kv, command)
        };
        let call_ns = recorder.now();
        let attempt = match &kv {
            KvCommand::Get { key } => read(&cluster, &mut guess, key, consistency, &mut rng).await,
            _ => match session.as_mut() {
                Some(session) => execute_once(session, &kv).await,
                None => execute(&cluster, &mut guess, &kv, &mut rng).await,
            },
        };
        let return_ns = recorder.now();
        let outcome = match attempt {
            Attempt::Done(response) => {
                match (&mut command, response) {
                    (Command::Get { output }, KvResponse::Value(v)) => {
                        last_seen.insert(key.clone(), v.clone());
                        *output = v;
                    }
                    (Command::Cas { swapped, .. }, KvResponse::Swapped { swapped: s, current }) => {
                        *swapped = s;
                        last_seen.insert(key.clone(), current);
                    }
                    (Command::Put { .. }, KvResponse::Previous(_))
                    | (Command::Append { .. }, KvResponse::Value(_)) => {}
                    (command, response) => panic!("response {response:?} does not answer {command:?}"),
                }
                Outcome::Ok
            }
            Attempt::Failed => Outcome::Failed,
            Attempt::Unknown => Outcome::Unknown,
        };
        let operation = Operation {
            client_id: id,
            key,
            command,
            call_ns,
            return_ns: (outcome != Outcome::Unknown).then_some(return_ns),
            outcome,
        };
        recorder.record(operation);
    }
}

/// Injects the schedule's faults until `until`, then heals everything and restarts the dead.
/// Returns the number of fault events and of completed membership changes.
async fn inject_faults(
    cluster: Arc<MemCluster>,
    schedule: Schedule,
    seed: u64,
    until: Instant,
    marker: FaultMarker,
) -> (usize, usize) {
    let mut reconfigurations = 0;
    let mut rng = SeededRng::new(seed.wrapping_mul(31));
    let ids = cluster.ids();
    let max_down = (ids.len() - 1) / 2;
    let mut down: Vec<NodeId> = Vec::new();
    let mut events = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(150 + rng.below(350))).await;
        events += 1;
        let kind = match schedule {
            Schedule::Partitions => [0, 4][rng.below(2) as usize],
            Schedule::LeaderIsolation => [1, 4][rng.below(2) as usize],
            Schedule::CrashRestart => [2, 5][rng.below(2) as usize],
            Schedule::MessageLoss => [3, 4][rng.below(2) as usize],
            Schedule::Mixed => rng.below(8),
        };
        let network = cluster.network();
        match kind {
            0 => {
                let side: Vec<NodeId> = ids.iter().copied().filter(|_| rng.chance(0.5)).collect();
                let rest: Vec<NodeId> = ids.iter().copied().filter(|id| !side.contains(id)).collect();
                network.heal();
                network.partition(&[&side, &rest]);
                marker.mark(None, Fault::Partition, format!("{side:?} | {rest:?}"));
            }
            1 => {
                if let Some((leader, _)) = cluster.leaders().into_iter().max_by_key(|(_, term)| *term) {
                    network.heal();
                    network.isolate(leader);
                    marker.mark(Some(leader), Fault::Isolate, "");
                }
            }
            2 if down.len() < max_down => {
                let up: Vec<NodeId> = ids.iter().copied().filter(|id| !down.contains(id)).collect();
                let victim = up[rng.below(up.len() as u64) as usize];
                cluster.kill(victim);
                marker.mark(Some(victim), Fault::Kill, "");
                down.push(victim);
            }
            3 => {
                let drop_probability = 0.05 + rng.below(15) as f64 / 100.0;
                network.set_faults(Faults {
                    drop_probability,
                    duplicate_probability: 0.05,
                    delay: (Duration::ZERO, Duration::from_millis(1 + rng.below(8))),
                });
                marker.mark(
                    None,
                    Fault::Loss,
                    format!("{:.0} % lost", drop_probability * 100.0),
                );
            }
            4 => {
                network.heal();
                network.set_faults(Faults::none());
                marker.mark(None, Fault::Heal, "");
            }
            5 => {
                if let Some(id) = down.pop() {
                    cluster.restart(id).await.unwrap();
                    marker.mark(Some(id), Fault::Restart, "");
                }
            }
            7 => {
                // Move to a random configuration: three or more voters, the rest learners. A
                // change refused or not finished in time is fine; it is retried by later events.
                let mut voters: BTreeSet<NodeId> = ids.iter().copied().filter(|_| rng.chance(0.7)).collect();
                for id in &ids {
                    if voters.len() >= 3.min(ids.len()) {
                        break;
                    }
                    voters.insert(*id);
                }
                let learners: BTreeSet<NodeId> =
                    ids.iter().copied().filter(|id| !voters.contains(id)).collect();
                let (new_voters, new_learners) = (
                    voters.iter().copied().collect(),
                    learners.iter().copied().collect(),
                );
                if cluster.change_membership(voters, learners).await.is_ok() {
                    reconfigurations += 1;
                    marker.membership(new_voters, new_learners);
                }
            }
            _ => {
                // Hand leadership to a random running node; a refusal or timeout is fine.
                let up: Vec<NodeId> = ids.iter().copied().filter(|id| !down.contains(id)).collect();
                let target = up[rng.below(up.len() as u64) as usize];
                if let Some((leader, _)) = cluster.leaders().into_iter().max_by_key(|(_, term)| *term) {
                    if let Some(node) = cluster.node(leader) {
                        marker.mark(Some(leader), Fault::Transfer, format!("to {target}"));
                        let _ = node.transfer_leadership(target).await;
                    }
                }
            }
        }
    }
    cluster.network().heal();
    cluster.network().set_faults(Faults::none());
    for id in down {
        cluster.restart(id).await.unwrap();
    }
    (events, reconfigurations)
}

struct Run {
    name: &'static str,
    schedule: Schedule,
    seed: u64,
    nodes: u64,
    clients: u64,
    seconds: u64,
    reads: ReadConsistency,
    /// Writes go through exactly-once client sessions.
    sessions: bool,
    /// Compact the log often, so snapshots are taken and installed under the faults.
    compact: bool,
}

async fn run_schedule(run: Run) {
    let Run {
        name,
        schedule,
        seed,
        nodes,
        clients,
        seconds,
        reads,
        sessions,
        compact,
    } = run;
    let configure: fn(&mut raft_core::Config) = match (reads == ReadConsistency::Lease, compact) {
        (false, false) => |_| {},
        (true, false) => |config| config.lease_reads = true,
        (false, true) => |config| compact_often(config),
        (true, true) => |config| {
            config.lease_reads = true;
            compact_often(config);
        },
    };
    let options = ClusterOptions {
        seed,
        propose_timeout: Duration::from_millis(800),
        configure,
        ..ClusterOptions::default()
    };
    let cluster = Arc::new(MemCluster::start(nodes, options).await.unwrap());
    cluster.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let recorder = Arc::new(Recorder::new());
    let until = Instant::now() + Duration::from_secs(seconds);
    let watch = ClusterWatch::start(format!("{name}, seed {seed}: {schedule:?}"), cluster.clone());
    let faults = tokio::spawn(inject_faults(
        cluster.clone(),
        schedule,
        seed,
        until,
        watch.marker(),
    ));
    let mut tasks = Vec::new();
    for id in 0..clients {
        tasks.push(tokio::spawn(client(
            id,
            cluster.clone(),
            recorder.clone(),
            seed,
            until,
            reads,
            sessions,
        )));
    }
    let (events, reconfigurations) = faults.await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let operations = recorder.take();
    let path = history_path(&format!("{name}-{seed}"));
    write_history(&path, &operations).unwrap();
    // The run's picture beside its history: who led when, and the faults.
    let timeline = watch.finish().await;
    let picture = path.with_extension("svg");
    timeline
        .write_jsonl(&path.with_extension("timeline.jsonl"))
        .unwrap();
    timeline.write_svg(&picture).unwrap();
    assert!(
        !timeline.lanes().leaders().is_empty(),
        "the timeline shows who led"
    );

    let count = |outcome| operations.iter().filter(|o| o.outcome == outcome).count();
    let (ok, failed, unknown) = (
        count(Outcome::Ok),
        count(Outcome::Failed),
        count(Outcome::Unknown),
    );
    let started = Instant::now();
    let verdict = check(&operations, 50_000_000);
    println!(
        "{name} (seed {seed}, {schedule:?}, {reads:?} reads, {nodes} nodes, {clients} clients): {} operations \
         ({ok} ok, {failed} failed, {unknown} unknown), {events} fault events ({reconfigurations} membership changes), checked in {:.1?}: {verdict:?}; \
         history at {}, timeline at {}",
        operations.len(),
        started.elapsed(),
        path.display(),
        picture.display()
    );
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, .. } => {
            panic!(
                "history is NOT linearizable on key {key}; kept at {}, the run's timeline at {}",
                path.display(),
                picture.display()
            )
        }
        Verdict::Inconclusive { key, steps } => {
            panic!(
                "check of key {key} gave up after {steps} steps; history kept at {}",
                path.display()
            )
        }
    }
    assert!(
        ok > 100,
        "too few operations completed ({ok}) for the check to mean much"
    );
    if schedule == Schedule::Mixed && nodes >= 5 {
        assert!(
            reconfigurations > 0,
            "the mixed schedule must change the membership at least once"
        );
    }
    let reads_with_values = operations
        .iter()
        .filter(|o| matches!(&o.command, Command::Get { output: Some(_) }) && o.outcome == Outcome::Ok)
        .count();
    assert!(reads_with_values > 10, "reads must observe writes");
    if compact {
        let compacted = cluster
            .running()
            .iter()
            .any(|n| n.status().raft.snapshot_index > 0);
        assert!(compacted, "the log was compacted during the run");
    }
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_history_is_linearizable_under_partitions() {
    let run = Run {
        name: "partitions",
        schedule: Schedule::Partitions,
        seed: 1,
        nodes: 5,
        clients: 6,
        seconds: 4,
        reads: ReadConsistency::Linearizable,
        sessions: false,
        compact: false,
    };
    run_schedule(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_history_is_linearizable_while_the_leader_is_isolated() {
    let run = Run {
        name: "leader-isolation",
        schedule: Schedule::LeaderIsolation,
        seed: 2,
        nodes: 3,
        clients: 6,
        seconds: 4,
        reads: ReadConsistency::Linearizable,
        sessions: true,
        compact: false,
    };
    run_schedule(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_history_is_linearizable_across_crashes_and_restarts() {
    let run = Run {
        name: "crash-restart",
        schedule: Schedule::CrashRestart,
        seed: 3,
        nodes: 5,
        clients: 6,
        seconds: 4,
        reads: ReadConsistency::Linearizable,
        sessions: true,
        compact: true,
    };
    run_schedule(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_history_is_linearizable_under_message_loss() {
    let run = Run {
        name: "message-loss",
        schedule: Schedule::MessageLoss,
        seed: 4,
        nodes: 3,
        clients: 6,
        seconds: 4,
        reads: ReadConsistency::Linearizable,
        sessions: false,
        compact: true,
    };
    run_schedule(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_history_is_linearizable_under_mixed_faults_and_transfers() {
    let run = Run {
        name: "mixed",
        schedule: Schedule::Mixed,
        seed: 5,
        nodes: 5,
        clients: 8,
        seconds: 5,
        reads: ReadConsistency::Linearizable,
        sessions: true,
        compact: true,
    };
    run_schedule(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_reads_are_linearizable_under_mixed_faults_and_transfers() {
    let run = Run {
        name: "mixed-lease",
        schedule: Schedule::Mixed,
        seed: 6,
        nodes: 3,
        clients: 6,
        seconds: 4,
        reads: ReadConsistency::Lease,
        sessions: false,
        compact: true,
    };
    run_schedule(run).await;
}

//! `raft-kv demo`: three `raft-kv serve` processes on loopback (RocksDB, QUIC, mutual TLS, with
//! certificates made on the spot): writes keys, SIGKILLs the leader's process, shows the new
//! leader and how long the election took, restarts the killed node from its directory, shows it
//! catching up, and checks that every acknowledged write is on every node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use raft_kv::api::Consistency;
use raft_kv::client::{Client, ClientOptions};
use raft_kv::cluster_watch::{ClientApi, ClusterWatch};
use raft_kv::local_cluster::LocalCluster;
use raft_timeline::Fault;

use crate::Failure;

#[derive(Args)]
pub struct DemoArgs {
    /// Run the one-process demo on the in-memory backends instead.
    #[arg(long)]
    in_memory: bool,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Keys written before and again after the leader is killed.
    #[arg(long, default_value_t = 20)]
    keys: usize,
    /// Seed of the in-memory demo's election timers and network.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the cluster's directory (certificates, configs, data, logs) in this directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Draw the run's timeline (who led when, the kill and the restart) into this file, a PNG if
    /// it ends in .png and an SVG otherwise; its event log goes beside it as .jsonl.
    #[arg(long)]
    timeline: Option<PathBuf>,
}

const TIMEOUT: Duration = Duration::from_secs(20);

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    if args.in_memory {
        return crate::demo_mem::run(args.nodes, args.keys, args.seed)
            .await
            .map_err(|e| Failure::new(format!("demo FAILED: {e}")));
    }
    processes(args)
        .await
        .map_err(|e| Failure::new(format!("demo FAILED: {e}")))
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn processes(args: DemoArgs) -> Result<(), String> {
    if args.nodes < 3 {
        return Err("the process demo needs at least 3 nodes (it kills one)".into());
    }
    let started = Instant::now();
    let temp = tempfile::tempdir().map_err(fail)?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let binary = std::env::current_exe().map_err(fail)?;
    let mut cluster = LocalCluster::create(&binary, &dir, args.nodes).map_err(fail)?;
    let ids = cluster.ids();
    println!(
        "made a CA, {} node certificates and a client certificate, and a config per node in {}",
        ids.len(),
        dir.display()
    );
    let watch = match &args.timeline {
        Some(_) => {
            let endpoints = ids
                .iter()
                .map(|&id| cluster.node(id).map(|n| n.client))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let source = ClientApi::new(&endpoints, Some(cluster.client_tls())).map_err(fail)?;
            let title = format!(
                "raft-kv demo: {} processes, the leader SIGKILLed and restarted",
                ids.len()
            );
            Some(ClusterWatch::start(title, source))
        }
        None => None,
    };
    let mark = |node, fault, detail: &str| {
        if let Some(watch) = &watch {
            watch.mark(node, fault, detail);
        }
    };
    for &id in &ids {
        cluster.start(id, &[]).map_err(fail)?;
        let node = cluster.node(id).map_err(fail)?;
        println!(
            "started node {id}: `raft-kv serve --config {}` (peers on {} QUIC, clients on https://{}; log {})",
            node.config_path.display(),
            node.peer,
            node.client,
            node.log_path.display()
        );
    }
    let leader = cluster.wait_for_leader(&ids, TIMEOUT).await.map_err(fail)?;
    let term = cluster.status(leader).await.map_or(0, |s| s.term);
    println!(
        "leader elected: node {leader} (term {term}) {:.2?} after the start",
        started.elapsed()
    );

    let mut client = cluster.client(&[], ClientOptions::default()).map_err(fail)?;
    let mut acknowledged = BTreeMap::new();
    let mut last_index = 0;
    for i in 0..args.keys {
        let (key, value) = (format!("demo/key-{i:03}"), format!("written-under-node-{leader}"));
        last_index = client.put(&key, &value).await.map_err(fail)?.index;
        acknowledged.insert(key, value);
    }
    println!(
        "wrote {} keys through the client API (exactly-once session); last at index {last_index}",
        args.keys
    );

    println!("SIGKILL the leader's process, node {leader}");
    cluster.kill(leader).map_err(fail)?;
    mark(Some(leader), Fault::Kill, "SIGKILL");
    let killed_at = Instant::now();
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors, TIMEOUT).await.map_err(fail)?;
    let election = killed_at.elapsed();
    let new_term = cluster.status(new_leader).await.map_or(0, |s| s.term);
    println!("new leader: node {new_leader} (term {new_term}), {election:.2?} after the kill");

    for i in args.keys..2 * args.keys {
        let (key, value) = (
            format!("demo/key-{i:03}"),
            format!("written-under-node-{new_leader}"),
        );
        last_index = client.put(&key, &value).await.map_err(fail)?.index;
        acknowledged.insert(key, value);
    }
    println!("wrote {} more keys; last at index {last_index}", args.keys);

    println!("restarting node {leader} from its data directory");
    cluster.start(leader, &[]).map_err(fail)?;
    mark(Some(leader), Fault::Restart, "");
    let restarted = Instant::now();
    cluster
        .wait_for_applied(leader, last_index, TIMEOUT)
        .await
        .map_err(fail)?;
    println!(
        "node {leader} caught up to index {last_index} {:.2?} after its restart",
        restarted.elapsed()
    );

    for &id in &ids {
        cluster
            .wait_for_applied(id, last_index, TIMEOUT)
            .await
            .map_err(fail)?;
        let endpoint = cluster.node(id).map_err(fail)?.client;
        let mut local = Client::new(
            vec![endpoint],
            Some(cluster.client_tls()),
            ClientOptions::default(),
        )
        .map_err(fail)?;
        let reply = local
            .scan("demo/", acknowledged.len() + 10, Consistency::Serializable)
            .await
            .map_err(fail)?;
        let found: BTreeMap<String, String> = reply.entries.unwrap_or_default().into_iter().collect();
        if found != acknowledged {
            let missing: Vec<&String> = acknowledged
                .keys()
                .filter(|k| found.get(*k) != acknowledged.get(*k))
                .collect();
            return Err(format!(
                "node {id} lost or changed acknowledged writes: {missing:?}"
            ));
        }
        println!(
            "node {id}: all {} acknowledged keys present (read locally at index {})",
            found.len(),
            reply.index
        );
    }

    for &id in &ids {
        let status = cluster.stop(id, Duration::from_secs(15)).await.map_err(fail)?;
        if !status.success() {
            return Err(format!("node {id} exited with {status} after SIGTERM"));
        }
    }
    println!("stopped every node with SIGTERM (each exited 0)");
    if let (Some(watch), Some(path)) = (watch, &args.timeline) {
        let timeline = watch.finish().await;
        let events = path.with_extension("jsonl");
        timeline.write_jsonl(&events).map_err(fail)?;
        timeline.write_picture(path).map_err(fail)?;
        println!("timeline: {} (events: {})", path.display(), events.display());
    }
    println!(
        "demo OK in {:.1?}: election after SIGKILL took {election:.2?}; nothing acknowledged was lost",
        started.elapsed()
    );
    Ok(())
}

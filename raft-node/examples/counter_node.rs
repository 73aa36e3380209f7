//! The tutorial's replicated counter as three processes on QUIC with mutual TLS. Make the
//! certificates once, then start each node in its own terminal and type `add` or `get`:
//!
//! ```sh
//! cargo run -p raft-node --features quic --example counter_node -- certs /tmp/counter
//! cargo run -p raft-node --features quic --example counter_node -- run 1 /tmp/counter
//! cargo run -p raft-node --features quic --example counter_node -- run 2 /tmp/counter
//! cargo run -p raft-node --features quic --example counter_node -- run 3 /tmp/counter
//! ```
//!
//! Each node keeps its log in memory, so a node that stops forgets its votes: stop all three and
//! start again (or give each a `RocksStorage`, feature `rocksdb`, to restart one on its own).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use raft_core::{Membership, NodeId};
use raft_node::mem::MemStorage;
use raft_node::quic::{ClusterCa, NodeTls, QuicConfig, QuicTransport};
use raft_node::{NodeConfig, RaftNode, ReadConsistency};
use tokio::io::{AsyncBufReadExt, BufReader};

#[path = "support/counter.rs"]
mod counter;
use counter::Counter;

/// Certificates name the cluster: a node of another cluster is refused at the handshake.
const CLUSTER_ID: u64 = 1;
const NODES: [NodeId; 3] = [1, 2, 3];

#[derive(Parser)]
#[command(about = "The tutorial's counter, one node per process")]
enum Command {
    /// Makes a cluster CA and a certificate for each of the three nodes, in DIR.
    Certs { dir: PathBuf },
    /// Runs node ID (1, 2 or 3) and reads `add` and `get` from standard input.
    Run {
        id: NodeId,
        /// Where `certs` wrote the certificates.
        dir: PathBuf,
        /// The three nodes' QUIC addresses, in order.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
        )]
        peers: Vec<SocketAddr>,
    },
}

fn make_certs(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let ca = ClusterCa::generate("counter cluster")?;
    std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
    for id in NODES {
        let cert = ca.issue(CLUSTER_ID, id)?;
        std::fs::write(dir.join(format!("node-{id}.pem")), &cert.cert_pem)?;
        std::fs::write(dir.join(format!("node-{id}.key")), &cert.key_pem)?;
    }
    println!("certificates for nodes 1, 2 and 3 are in {}", dir.display());
    Ok(())
}

async fn run(id: NodeId, dir: &Path, addrs: &[SocketAddr]) -> Result<(), Box<dyn std::error::Error>> {
    let peers: BTreeMap<NodeId, SocketAddr> = NODES.into_iter().zip(addrs.iter().copied()).collect();
    let (Some(&listen), 3) = (peers.get(&id), peers.len()) else {
        return Err(format!("node {id} of three needs three addresses, got {addrs:?}").into());
    };
    let read = |name: String| std::fs::read_to_string(dir.join(name));
    let tls = NodeTls::from_pem(
        &read("ca.pem".into())?,
        &read(format!("node-{id}.pem"))?,
        &read(format!("node-{id}.key"))?,
    )?;
    let (transport, inbox) = QuicTransport::start(QuicConfig::new(id, CLUSTER_ID, listen, peers, tls))?;
    let node = RaftNode::start(
        NodeConfig::new(id),
        Membership::voters(NODES)?,
        MemStorage::new(),
        transport.clone(),
        inbox,
        Counter::default(),
    )
    .await?;
    println!("node {id} listens on {listen}; type add or get");

    // Say who leads whenever it changes.
    let mut status = node.watch_status();
    tokio::spawn(async move {
        let mut last = None;
        while status.changed().await.is_ok() {
            let now = status.borrow_and_update().raft;
            if now.leader != last {
                last = now.leader;
                if let Some(leader) = last {
                    println!("node {leader} leads term {}", now.term);
                }
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "add" => match node.propose(Bytes::new()).await {
                Ok(count) => println!("count is now {}", String::from_utf8_lossy(&count)),
                Err(e) => match e.leader_hint() {
                    Some(leader) => println!("not the leader: node {leader} leads"),
                    None => println!("not written: {e}"),
                },
            },
            "get" => match node.read(Bytes::new(), ReadConsistency::Linearizable).await {
                Ok(count) => println!("count is {}", String::from_utf8_lossy(&count)),
                Err(e) => println!("no answer: {e}"),
            },
            "quit" => break,
            "" => {}
            other => println!("unknown command {other:?}: type add, get or quit"),
        }
    }
    // A leader that quits hands over first, so the other two need not wait for an election.
    if let Ok(Some(next)) = node.hand_off_leadership().await {
        println!("node {next} leads now");
    }
    node.shutdown().await;
    // Tell the peers before the process exits, so they drop its connections at once.
    transport.close(Duration::from_millis(500)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Command::parse() {
        Command::Certs { dir } => make_certs(&dir),
        Command::Run { id, dir, peers } => run(id, &dir, &peers).await,
    }
}

//! The key-value and cluster commands of the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use comfy_table::Table;
use raft_kv::api::{AddNodeRequest, Consistency, NodeStatusReply};
use raft_kv::client::{Client, ClientOptions};
use raft_kv::TlsMaterial;
use serde::Serialize;

use crate::Failure;

/// How to reach the cluster.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Client API addresses of any nodes, comma-separated.
    #[arg(
        long,
        env = "RAFT_KV_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:8001"
    )]
    pub endpoints: Vec<SocketAddr>,
    /// The cluster CA's certificate.
    #[arg(long, env = "RAFT_KV_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// This client's certificate, from `raft-kv certs client`.
    #[arg(long, env = "RAFT_KV_CERT")]
    pub cert: Option<PathBuf>,
    /// This client's key.
    #[arg(long = "key", env = "RAFT_KV_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Talk plain HTTP (to servers started with --insecure).
    #[arg(long)]
    pub insecure: bool,
    /// How long to keep trying, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    pub fn tls(&self) -> Result<Option<TlsMaterial>, Failure> {
        if self.insecure {
            return Ok(None);
        }
        match (&self.ca_cert, &self.cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(
                TlsMaterial::from_files(ca, cert, key).map_err(|e| Failure::new(e.to_string()))?,
            )),
            _ => Err(Failure {
                code: 2,
                message: "give --ca-cert, --cert and --key (or RAFT_KV_CA_CERT, RAFT_KV_CERT, RAFT_KV_KEY), or --insecure"
                    .into(),
            }),
        }
    }

    pub fn client(&self) -> Result<Client, Failure> {
        self.client_with(false)
    }

    /// A client speaking HTTP/2 (`http2`) or HTTP/1.1.
    pub fn client_with(&self, http2: bool) -> Result<Client, Failure> {
        let options = ClientOptions {
            deadline: std::time::Duration::from_secs(self.timeout),
            http2,
            ..ClientOptions::default()
        };
        Ok(Client::new(
            self.endpoints.clone(),
            self.tls()?.as_ref(),
            options,
        )?)
    }
}

#[derive(Args)]
pub struct GetArgs {
    key: String,
    /// linearizable (default), lease, or serializable (may be stale).
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    consistency: ConsistencyArg,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConsistencyArg {
    Linearizable,
    Lease,
    Serializable,
}

impl From<ConsistencyArg> for Consistency {
    fn from(c: ConsistencyArg) -> Self {
        match c {
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Lease => Consistency::Lease,
            ConsistencyArg::Serializable => Consistency::Serializable,
        }
    }
}

#[derive(Args)]
pub struct PutArgs {
    key: String,
    value: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct KeyArgs {
    key: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct CasArgs {
    key: String,
    /// The value the key must have (omit: it must be absent).
    #[arg(long)]
    expected: Option<String>,
    /// The value to set (omit: delete the key).
    #[arg(long)]
    new: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ScanArgs {
    /// The prefix (empty: every key).
    #[arg(default_value = "")]
    prefix: String,
    /// The most pairs to list.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    consistency: ConsistencyArg,
    #[command(flatten)]
    client: ClientArgs,
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::new(e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub async fn get(args: GetArgs) -> Result<(), Failure> {
    let reply = args
        .client
        .client()?
        .get(&args.key, args.consistency.into())
        .await?;
    if args.client.json {
        return print_json(&reply);
    }
    match &reply.value {
        Some(value) => println!("{value}"),
        None => {
            eprintln!("{}: not found (index {})", args.key, reply.index);
            return Err(Failure {
                code: 1,
                message: String::new(),
            });
        }
    }
    Ok(())
}

pub async fn put(args: PutArgs, append: bool) -> Result<(), Failure> {
    let mut client = args.client.client()?;
    let reply = if append {
        client.append(&args.key, &args.value).await?
    } else {
        client.put(&args.key, &args.value).await?
    };
    if args.client.json {
        return print_json(&reply);
    }
    println!("OK (index {})", reply.index);
    Ok(())
}

pub async fn delete(args: KeyArgs) -> Result<(), Failure> {
    let reply = args.client.client()?.delete(&args.key).await?;
    if args.client.json {
        return print_json(&reply);
    }
    match reply.previous {
        Some(_) => println!("deleted (index {})", reply.index),
        None => println!("was absent (index {})", reply.index),
    }
    Ok(())
}

pub async fn cas(args: CasArgs) -> Result<(), Failure> {
    let reply = args
        .client
        .client()?
        .cas(&args.key, args.expected.as_deref(), args.new.as_deref())
        .await?;
    if args.client.json {
        return print_json(&reply);
    }
    if reply.swapped == Some(true) {
        println!("swapped (index {})", reply.index);
        Ok(())
    } else {
        Err(Failure::new(format!(
            "not swapped: the value is {:?} (index {})",
            reply.value, reply.index
        )))
    }
}

pub async fn scan(args: ScanArgs) -> Result<(), Failure> {
    let reply = args
        .client
        .client()?
        .scan(&args.prefix, args.limit, args.consistency.into())
        .await?;
    if args.client.json {
        return print_json(&reply);
    }
    let mut table = Table::new();
    table.set_header(["key", "value"]);
    for (key, value) in reply.entries.iter().flatten() {
        table.add_row([key, value]);
    }
    println!("{table}");
    let count = reply.entries.as_ref().map_or(0, Vec::len);
    let more = if reply.more == Some(true) {
        " (more left out by --limit)"
    } else {
        ""
    };
    println!("{count} keys at index {}{more}", reply.index);
    Ok(())
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// The status of every member (asks each one).
    Status(ClientArgs),
    /// Adds a node as a learner; promote it once it has caught up.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its peer (QUIC) address.
        #[arg(long)]
        peer: SocketAddr,
        /// Its client API address.
        #[arg(long = "client-addr")]
        client_addr: SocketAddr,
        /// Promote it to voter as soon as it has caught up.
        #[arg(long)]
        promote: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Makes a caught-up learner a voter.
    Promote {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Removes a member.
    Remove {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Hands leadership to a voter.
    Transfer {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Takes a snapshot now on the first endpoint.
    Snapshot(ClientArgs),
    /// Sets the limits on client sessions, for every node at once (they are replicated).
    Sessions {
        /// A session unused for this many log entries expires.
        #[arg(long, default_value_t = 1_000_000)]
        expire_after_entries: u64,
        /// At most this many sessions are kept; one more evicts the least recently used.
        #[arg(long, default_value_t = 100_000)]
        max_sessions: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The status of every member the first answering endpoint knows of, plus the endpoints.
async fn cluster_status(
    args: &ClientArgs,
) -> Result<Vec<(SocketAddr, Result<NodeStatusReply, String>)>, Failure> {
    let mut client = args.client()?;
    let mut known = None;
    for &endpoint in &args.endpoints {
        if let Ok(status) = client.status_of(endpoint).await {
            known = Some(status);
            break;
        }
    }
    let Some(first) = known else {
        return Err(Failure {
            code: 3,
            message: format!("no endpoint answered: {:?}", args.endpoints),
        });
    };
    let mut addrs: Vec<SocketAddr> = first
        .members
        .iter()
        .filter_map(|m| m.address.as_ref().map(|a| a.client))
        .collect();
    for endpoint in &args.endpoints {
        if !addrs.contains(endpoint) {
            addrs.push(*endpoint);
        }
    }
    let mut out = Vec::new();
    for addr in addrs {
        out.push((addr, client.status_of(addr).await.map_err(|e| e.to_string())));
    }
    Ok(out)
}

pub async fn cluster(command: ClusterCommand) -> Result<(), Failure> {
    match command {
        ClusterCommand::Status(args) => {
            let statuses = cluster_status(&args).await?;
            if args.json {
                let json: Vec<_> = statuses
                    .iter()
                    .map(|(addr, s)| match s {
                        Ok(status) => serde_json::json!({ "endpoint": addr, "status": status }),
                        Err(e) => serde_json::json!({ "endpoint": addr, "error": e }),
                    })
                    .collect();
                return print_json(&json);
            }
            let mut table = Table::new();
            table.set_header([
                "id", "endpoint", "role", "term", "leader", "contact", "last", "commit", "applied",
                "snapshot", "members",
            ]);
            for (addr, status) in &statuses {
                match status {
                    Ok(s) => {
                        let members: Vec<String> = s
                            .members
                            .iter()
                            .map(|m| {
                                if m.role == "learner" {
                                    format!("{}(l)", m.id)
                                } else {
                                    m.id.to_string()
                                }
                            })
                            .collect();
                        table.add_row([
                            s.id.to_string(),
                            addr.to_string(),
                            s.role.clone(),
                            s.term.to_string(),
                            s.leader.map_or("-".into(), |l| l.to_string()),
                            s.last_contact_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                            s.last_index.to_string(),
                            s.commit_index.to_string(),
                            s.applied_index.to_string(),
                            s.snapshot_index.to_string(),
                            format!("{}{}", members.join(","), if s.joint { " (joint)" } else { "" }),
                        ]);
                    }
                    Err(e) => {
                        table.add_row(["?".to_string(), addr.to_string(), format!("unreachable: {e}")]);
                    }
                }
            }
            println!("{table}");
            Ok(())
        }
        ClusterCommand::Add {
            id,
            peer,
            client_addr,
            promote,
            client: args,
        } => {
            let mut client = args.client()?;
            let request = AddNodeRequest {
                id,
                peer,
                client: client_addr,
            };
            let mut reply = client.add_node(&request).await?;
            if promote {
                let deadline = std::time::Duration::from_secs(args.timeout);
                reply = client.promote_when_caught_up(id, deadline).await?;
            }
            if args.json {
                return print_json(&reply);
            }
            println!("voters {:?}, learners {:?}", reply.voters, reply.learners);
            Ok(())
        }
        ClusterCommand::Promote { id, client: args } => {
            let reply = args.client()?.promote_node(id).await?;
            if args.json {
                return print_json(&reply);
            }
            println!("voters {:?}, learners {:?}", reply.voters, reply.learners);
            Ok(())
        }
        ClusterCommand::Remove { id, client: args } => {
            let reply = args.client()?.remove_node(id).await?;
            if args.json {
                return print_json(&reply);
            }
            println!("voters {:?}, learners {:?}", reply.voters, reply.learners);
            Ok(())
        }
        ClusterCommand::Transfer { id, client: args } => {
            let reply = args.client()?.transfer_leadership(id).await?;
            if args.json {
                return print_json(&reply);
            }
            println!("node {id} leads (term {})", reply.term);
            Ok(())
        }
        ClusterCommand::Sessions {
            expire_after_entries,
            max_sessions,
            client: args,
        } => {
            let limits = raft_kv::api::SessionLimitsRequest {
                expire_after_entries,
                max_sessions,
            };
            let reply = args.client()?.configure_sessions(limits).await?;
            if args.json {
                return print_json(&reply);
            }
            println!(
                "sessions expire after {} entries unused; at most {} are kept",
                reply.expire_after_entries, reply.max_sessions
            );
            Ok(())
        }
        ClusterCommand::Snapshot(args) => {
            let first = args.endpoints[0];
            let reply = args.client()?.snapshot(first).await?;
            if args.json {
                return print_json(&reply);
            }
            println!(
                "snapshot at index {} (term {}) on {first}",
                reply.index, reply.term
            );
            Ok(())
        }
    }
}

//! `raft-kv`: a replicated key-value service on Raft.
//!
//! - [`KvStateMachine`]: the store (get, put, delete, append, compare-and-swap, scan by prefix),
//!   whose every answer carries the index it reflects ([`KvReply`]).
//! - [`MemCluster`]: a whole cluster in one process on the in-memory backends, for tests, the
//!   benchmarks and `raft-kv demo --in-memory`.
//! - [`Server`]: one node of the service (`raft-kv serve`): RocksDB storage, the QUIC transport
//!   with mutual TLS, and the client API over HTTPS ([`api`] lists its routes), configured by a
//!   [`ServerConfig`].
//! - [`FloorServer`]: the client API answered at once, with nothing behind it: the ceiling of
//!   the service's benchmark on a machine (`raft-kv serve-floor`).
//! - [`Client`](client::Client): the client library (sessions for exactly-once writes, following
//!   the leader), used by the CLI and the load generator.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use raft_kv::{ClusterOptions, KvCommand, KvResponse, MemCluster};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cluster = MemCluster::start(3, ClusterOptions::default()).await?;
//! let leader = cluster.wait_for_leader(Duration::from_secs(5)).await?;
//! cluster.kv(KvCommand::Put { key: "x".into(), value: "1".into() }).await?;
//!
//! cluster.kill(leader);
//! cluster.wait_for_leader(Duration::from_secs(5)).await?;
//! let read = cluster.kv(KvCommand::Get { key: "x".into() }).await?;
//! assert_eq!(read, KvResponse::Value(Some("1".into())));
//! cluster.shutdown().await;
//! # Ok::<(), raft_kv::ClusterError>(())
//! # }).unwrap();
//! ```

pub mod api;
pub mod client;
mod cluster;
pub mod cluster_watch;
mod config;
mod floor;
mod http;
mod kv;

pub mod local_cluster;
pub mod metrics;
mod server;
mod tls;
pub mod udp_relay;

pub use crate::cluster::{ClusterError, ClusterOptions, MemCluster};
pub use crate::config::{ConfigError, InitialMember, ServerConfig, StorageEngine, TlsFiles, Tuning};
pub use crate::floor::FloorServer;
pub use crate::kv::{DecodeError, KvCommand, KvReply, KvResponse, KvStateMachine};
pub use crate::server::{Server, ServerError};
pub use crate::tls::{TlsError, TlsMaterial};

//! The tokio runtime that drives `raft-core`.
//!
//! A [`RaftNode`] ticks the protocol core on a timer, persists through a [`LogStorage`], sends
//! through a [`Transport`], applies committed commands to the user's [`StateMachine`], and answers
//! proposals with the state machine's response. Backends are chosen with cargo features: `mem`
//! (default) brings the in-memory storage and transport and [`MemCluster`], a whole cluster in one
//! process; `rocksdb` brings the `rocks` module (durable storage) and `quic` the `quic` module (a QUIC
//! transport with mutual TLS), for a cluster of separate processes.
//!
//! [`KvStateMachine`] is a replicated key-value store built on it, used by the tests, the
//! benchmarks and the `raft-kv` demo.
//!
//! [`LogStorage`]: raft_core::LogStorage
//! [`Transport`]: raft_core::Transport
//! [`StateMachine`]: raft_core::StateMachine
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use raft_node::{ClusterOptions, KvCommand, KvResponse, MemCluster};
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
//! # Ok::<(), raft_node::ClusterError>(())
//! # }).unwrap();
//! ```

#[cfg(feature = "mem")]
mod cluster;
mod config;
mod error;
mod kv;
mod node;
mod session_client;
mod sessions;
pub mod snapshot_stream;

#[cfg(feature = "mem")]
pub use crate::cluster::{ClusterError, ClusterOptions, MemCluster};
pub use crate::config::NodeConfig;
pub use crate::error::{
    ChangeMembershipError, ProposeError, ReadError, SnapshotError, StartError, TransferError,
};
pub use crate::kv::{DecodeError, KvCommand, KvResponse, KvStateMachine};
pub use crate::node::{NodeStatus, RaftNode, ReadConsistency, RunState};
pub use crate::session_client::{ClientError, NodeDirectory, SessionClient};
pub use crate::sessions::{SessionCommand, SessionId, SessionResponse, Sessions};
pub use raft_core;
#[cfg(feature = "quic")]
pub use raft_net_quic as quic;
#[cfg(feature = "rocksdb")]
pub use raft_storage_rocks as rocks;

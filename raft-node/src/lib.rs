//! The tokio runtime that drives `raft-core`.
//!
//! A [`RaftNode`] ticks the protocol core on a timer, persists through a [`LogStorage`], sends
//! through a [`Transport`], applies committed commands to the user's [`StateMachine`], and answers
//! proposals with the state machine's response. Backends are chosen with cargo features: `mem`
//! (default) brings the in-memory storage and transport (`raft_node::mem`); `file` brings the
//! `file` module (durable storage in plain files, nothing to build but Rust); `rocksdb` the
//! `rocks` module (durable storage on RocksDB) and `quic` the `quic` module (a QUIC transport
//! with mutual TLS), for a cluster of separate processes.
//!
//! The `raft-kv` crate is a replicated key-value service built on it: its state machine, an
//! in-process cluster (`MemCluster`), a server, a client and a CLI.
//!
//! [`LogStorage`]: raft_core::LogStorage
//! [`Transport`]: raft_core::Transport
//! [`StateMachine`]: raft_core::StateMachine
//!
//! # Example
//!
//! A single-voter node with a state machine of a dozen lines; a cluster gives each node its own
//! storage and a transport to the others (the `raft-kv` crate's `MemCluster`, or QUIC).
//!
//! ```
//! use bytes::Bytes;
//! use raft_core::{Index, Membership, SnapshotRead, SnapshotWrite, StateMachine, StateMachineError};
//! use raft_net_mem::MemNetwork;
//! use raft_node::{NodeConfig, RaftNode};
//! use raft_storage_mem::MemStorage;
//!
//! /// Counts the commands it applies, and answers each with the count.
//! #[derive(Default)]
//! struct Counter { count: u64, applied: Index }
//!
//! impl StateMachine for Counter {
//!     async fn apply(&mut self, index: Index, _command: &Bytes) -> Result<Bytes, StateMachineError> {
//!         self.count += 1;
//!         self.applied = index;
//!         Ok(Bytes::from(self.count.to_string()))
//!     }
//!     async fn query(&mut self, _query: Bytes) -> Result<Bytes, StateMachineError> {
//!         Ok(Bytes::from(self.count.to_string()))
//!     }
//!     async fn snapshot(&mut self, out: &mut dyn SnapshotWrite) -> Result<(), StateMachineError> {
//!         let bytes = Bytes::copy_from_slice(&self.count.to_le_bytes());
//!         out.write(bytes).await.map_err(|e| StateMachineError::storage(self.applied, e))
//!     }
//!     async fn restore(&mut self, index: Index, input: &mut dyn SnapshotRead) -> Result<(), StateMachineError> {
//!         let bytes = input.read().await.map_err(|e| StateMachineError::storage(index, e))?;
//!         let count = bytes.as_deref().and_then(|b| <[u8; 8]>::try_from(b).ok()).unwrap_or_default();
//!         (self.count, self.applied) = (u64::from_le_bytes(count), index);
//!         Ok(())
//!     }
//!     fn applied_index(&self) -> Index { self.applied }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let network = MemNetwork::new(7);
//! let (transport, inbox) = network.register(1);
//! let node = RaftNode::start(
//!     NodeConfig::new(1),
//!     Membership::voters([1])?,
//!     MemStorage::new(),
//!     transport,
//!     inbox,
//!     Counter::default(),
//! )
//! .await?;
//! node.wait_for_leader(std::time::Duration::from_secs(5)).await;
//! let reply = node.propose(&b"tick"[..]).await?;
//! assert_eq!(&reply[..], b"1");
//! node.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Observing a node
//!
//! [`RaftNode::status`] is the node's view now. [`metrics`] lists what the node records through
//! the `metrics` facade (install a recorder to export it), and proposals, reads, elections and
//! snapshots run in `tracing` spans (`raft.propose`, `raft.read`, `raft.election`,
//! `raft.snapshot.build`, `raft.snapshot.restore`).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
pub mod metrics;
mod node;
mod session_client;
mod sessions;
pub mod snapshot_stream;

pub use crate::config::NodeConfig;
pub use crate::error::{
    ChangeMembershipError, ProposeError, ReadError, SnapshotError, StartError, TransferError,
};
pub use crate::node::{NodeMembership, NodeStatus, RaftNode, ReadConsistency, RunState};
pub use crate::session_client::{ClientError, NodeDirectory, SessionClient};
pub use crate::sessions::{SessionCommand, SessionId, SessionLimits, SessionResponse, Sessions};
pub use raft_core;
/// The in-memory backends: storage (`raft_storage_mem`) and transport (`raft_net_mem`).
#[cfg(feature = "mem")]
#[cfg_attr(docsrs, doc(cfg(feature = "mem")))]
pub mod mem {
    pub use raft_net_mem::{MemInbox, MemNetwork, MemTransport};
    pub use raft_storage_mem::MemStorage;
}
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub use raft_net_quic as quic;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use raft_storage_file as file;
#[cfg(feature = "rocksdb")]
#[cfg_attr(docsrs, doc(cfg(feature = "rocksdb")))]
pub use raft_storage_rocks as rocks;

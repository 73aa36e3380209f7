//! The tokio runtime that drives `raft-core`.
//!
//! A [`RaftNode`] ticks the protocol core on a timer, persists through a [`LogStorage`], sends
//! through a [`Transport`], applies committed commands to the user's [`StateMachine`], and answers
//! proposals with the state machine's response. Backends are chosen with cargo features: `mem`
//! (default) brings the in-memory storage and transport (`raft_node::mem`); `rocksdb` brings the
//! `rocks` module (durable storage) and `quic` the `quic` module (a QUIC transport with mutual
//! TLS), for a cluster of separate processes.
//!
//! The `raft-kv` crate is a replicated key-value service built on it: its state machine, an
//! in-process cluster (`MemCluster`), a server, a client and a CLI.
//!
//! [`LogStorage`]: raft_core::LogStorage
//! [`Transport`]: raft_core::Transport
//! [`StateMachine`]: raft_core::StateMachine
//!
//! # Observing a node
//!
//! [`RaftNode::status`] is the node's view now. [`metrics`] lists what the node records through
//! the `metrics` facade (install a recorder to export it), and proposals, reads, elections and
//! snapshots run in `tracing` spans (`raft.propose`, `raft.read`, `raft.election`,
//! `raft.snapshot.build`, `raft.snapshot.restore`).
//!
//! # Example
//!
//! [`RaftNode`] shows a node with a state machine of a dozen lines.

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
pub use crate::node::{NodeStatus, RaftNode, ReadConsistency, RunState};
pub use crate::session_client::{ClientError, NodeDirectory, SessionClient};
pub use crate::sessions::{SessionCommand, SessionId, SessionLimits, SessionResponse, Sessions};
pub use raft_core;
/// The in-memory backends: storage (`raft_storage_mem`) and transport (`raft_net_mem`).
#[cfg(feature = "mem")]
pub mod mem {
    pub use raft_net_mem::{MemInbox, MemNetwork, MemTransport};
    pub use raft_storage_mem::MemStorage;
}
#[cfg(feature = "quic")]
pub use raft_net_quic as quic;
#[cfg(feature = "rocksdb")]
pub use raft_storage_rocks as rocks;

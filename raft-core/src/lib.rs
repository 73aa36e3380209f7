//! The Raft consensus protocol as a deterministic state machine.
//!
//! `raft-core` holds the protocol and nothing else: no I/O, no clock, no threads. Time is a
//! [`RaftCore::tick`], randomness comes from a seed in [`Config`], and everything that touches the
//! outside world (writing the log, sending messages, applying commands) is handed to the caller in
//! a [`Ready`] batch and acknowledged back. The same inputs always give the same outputs, which is
//! what makes a failing simulation seed reproducible.
//!
//! The crate also defines the traits the backends implement ([`LogStorage`], [`StateMachine`],
//! [`Transport`], [`Inbox`]) and the types they share, so that a storage or transport crate depends
//! on this crate only.
//!
//! # Layout
//!
//! | module | concern |
//! |---|---|
//! | `core` | the node's state, its inputs and role transitions |
//! | `election` | election timeouts, pre-vote, votes, check-quorum |
//! | `replication` | AppendEntries, heartbeats, probing and pipelining |
//! | `commit` | quorum commit and the own-term rule |
//! | `log` | the in-memory log and the persisted/committed/applied indexes |
//! | `progress` | the leader's per-follower flow control |
//! | `membership` | voters, learners and quorums (joint-consensus ready) |
//!
//! # Example
//!
//! ```
//! use raft_core::{Config, Membership, RaftCore, Role};
//!
//! let membership = Membership::voters([1, 2, 3])?;
//! let mut node = RaftCore::new(Config::new(1).validated()?, membership)?;
//! for _ in 0..30 {
//!     node.tick();
//! }
//! // With pre-vote on, the node first asks its peers whether they would vote for it.
//! assert_eq!(node.role(), Role::PreCandidate);
//! let ready = node.ready();
//! assert_eq!(ready.messages_after_persist.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod commit;
mod config;
mod core;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod planted;
mod progress;
mod read;
mod ready;
mod reconfiguration;
mod replication;
mod rng;
mod snapshot;
mod storage;
mod transfer;
mod types;

pub use crate::config::Config;
pub use crate::core::{FollowerProgress, RaftCore, RestoredState, Status};
pub use crate::error::{
    ConfigError, InitError, MembershipChangeError, MembershipError, ProposeError, ReadError,
    StateMachineError, StepError, StorageError, TransferError, TransportError,
};
pub use crate::membership::{Membership, VoteResult};
pub use crate::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, InstallSnapshot,
    InstallSnapshotResponse, Message, MessageBody, RequestVote, RequestVoteResponse,
};
pub use crate::planted::PlantedBug;
pub use crate::progress::ReplicationState;
pub use crate::read::{ReadId, ReadState};
pub use crate::ready::Ready;
pub use crate::rng::SeededRng;
pub use crate::snapshot::{
    ReceivedChunk, SnapshotChecksum, SnapshotChunkRequest, SnapshotMeta, SnapshotUpdate,
};
pub use crate::storage::{
    Inbox, LogImage, LogStorage, LogWrite, SnapshotRead, SnapshotSink, SnapshotStore, SnapshotWrite,
    StateMachine, StoredLog, Transport,
};
pub use crate::types::{ClusterId, Entry, EntryPayload, HardState, Index, NodeId, Role, SoftState, Term};

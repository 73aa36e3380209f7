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
//! [`RaftCore`]'s public face is `core.rs`; the protocol's rules are `impl RaftCore` blocks beside
//! it, one concern each; what the core keeps and the values it hands out are leaf modules. The
//! rule files depend on `core` and on leaves; `core` depends on leaves only; a leaf depends only
//! on other leaves. No module imports one that imports it back.
//!
//! | module | what it holds | kind |
//! |---|---|---|
//! | `core` | `RaftCore`: its state and every public method | face |
//! | `election` | election timeouts, pre-vote, votes, check-quorum | rules |
//! | `replication` | AppendEntries, heartbeats, probing and pipelining | rules |
//! | `commit` | quorum commit and the own-term rule | rules |
//! | `read` | ReadIndex rounds, leases, follower reads | rules |
//! | `snapshot` | compaction policy, sending and installing snapshots | rules |
//! | `transfer` | leadership transfer and TimeoutNow | rules |
//! | `reconfiguration` | joint-consensus membership changes and learners | rules |
//! | `log` | the in-memory log and its persisted, committed and applied indexes | state |
//! | `progress` | the leader's per-follower flow control | state |
//! | `read_tracker` | reads in progress, confirmation rounds and the lease | state |
//! | `config_history` | the configurations in the log | state |
//! | `snapshot_transfer` | outgoing and incoming snapshot transfers | state |
//! | `transfer_state` | a leadership transfer under way | state |
//! | `membership` | voters, learners and quorums | values |
//! | `message` | the messages between nodes | values |
//! | `entry` | log entries | values |
//! | `entries` | a shared run of consecutive entries, handed out without copying | values |
//! | `types` | ids, terms, indexes, hard and soft state, roles, `Status` | values |
//! | `snapshot_types` | snapshot metadata, checksum, chunks | values |
//! | `ready` | the batch of work handed to the caller | values |
//! | `storage` | the backend traits (`LogStorage`, `StateMachine`, `Transport`, `Inbox`) and `LogWrite` | values |
//! | `describe` | the one text form of messages, entries, status and ready batches | values |
//! | `error` | every error type | values |
//! | `inbound` | what the core refuses from the network before any rule sees it | values |
//! | `config` | the settings | values |
//! | `rng` | the seeded generator | values |
//! | `planted` | bugs that can be switched on to prove the simulator catches them | values |
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
#![cfg_attr(docsrs, feature(doc_cfg))]

mod commit;
mod config;
mod config_history;
mod core;
mod describe;
mod election;
mod entries;
mod entry;
mod error;
mod inbound;
mod log;
mod membership;
mod message;
mod planted;
mod progress;
mod read;
mod read_tracker;
mod ready;
mod reconfiguration;
mod replication;
mod rng;
mod runs;
mod snapshot;
mod snapshot_transfer;
mod snapshot_types;
mod storage;
mod transfer;
mod transfer_state;
mod types;

pub use crate::config::Config;
pub use crate::core::{FollowerProgress, RaftCore, RestoredState};
pub use crate::describe::MessageSummary;
pub use crate::entries::Entries;
pub use crate::entry::{Entry, EntryPayload};
pub use crate::error::{
    ConfigError, InitError, MembershipChangeError, MembershipError, ProposeError, ReadError,
    StateMachineError, StepError, StorageError, TransferError, TransportError,
};
pub use crate::inbound::{MAX_INDEX, MAX_TERM};
pub use crate::membership::{Membership, VoteResult};
pub use crate::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, InstallSnapshot,
    InstallSnapshotResponse, Message, MessageBody, ReadIndexRequest, ReadIndexResponse, RequestVote,
    RequestVoteResponse,
};
pub use crate::planted::PlantedBug;
pub use crate::progress::ReplicationState;
pub use crate::read_tracker::{ReadId, ReadState};
pub use crate::ready::Ready;
pub use crate::rng::SeededRng;
pub use crate::runs::{EntryRuns, EntryRunsIter};
pub use crate::snapshot_types::{
    ReceivedChunk, SnapshotChecksum, SnapshotChunkRequest, SnapshotMeta, SnapshotUpdate,
};
pub use crate::storage::{
    Inbox, LogImage, LogStorage, LogWrite, SnapshotRead, SnapshotSink, SnapshotStore, SnapshotWrite,
    StateMachine, StoredLog, Transport,
};
pub use crate::types::{ClusterId, HardState, Index, NodeId, Role, SoftState, Status, Term};
